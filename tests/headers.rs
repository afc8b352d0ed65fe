//! Header handling: hop-by-hop removal both ways (including headers named by Connection), the
//! forwarding headers and switching each off, the identity header a route sets (replacing forged
//! copies in any casing), request add/remove, response set/remove, and preserve_host.

mod common;
use common::*;

fn proxy(upstream_addr: std::net::SocketAddr, route: &str) -> Ringway {
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", upstream_addr)
    );
    Ringway::start(&cfg)
}

const HOP_BY_HOP: [&str; 7] = [
    "Keep-Alive",
    "TE",
    "Trailer",
    "Proxy-Connection",
    "Upgrade",
    "X-Named-By-Connection",
    "x-also-named",
];

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let b = Backend::echo();
    let p = proxy(b.addr, "");
    let req = get_req(
        "/x",
        "h.test",
        &[
            "Connection: keep-alive, X-Named-By-Connection",
            "connection: X-ALSO-NAMED",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Trailer: X-Checksum",
            "Proxy-Connection: keep-alive",
            "Upgrade: websocket",
            "X-Named-By-Connection: secret",
            "X-Also-Named: secret2",
            "X-End-To-End: kept",
        ],
    );
    let e = raw_roundtrip(p.addr(), &req).echo();
    for h in HOP_BY_HOP {
        assert!(e.all(h).is_empty(), "{h} was forwarded: {:?}", e.headers);
    }
    for c in e.all("Connection") {
        let c = c.to_ascii_lowercase();
        assert!(
            !c.contains("x-named") && !c.contains("x-also") && !c.contains("upgrade"),
            "Connection: {c}"
        );
    }
    assert_eq!(e.header("X-End-To-End"), Some("kept"));
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let up = Scripted::always(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Resp-Secret, keep-alive\r\n\
X-Resp-Secret: 1\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n\
Upgrade: h2c\r\nTrailer: X-Checksum\r\nX-Kept: yes\r\n\r\nok",
    );
    let p = proxy(up.addr, "");
    let r = raw_roundtrip(p.addr(), &get_req("/", "h.test", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    for h in ["X-Resp-Secret", "Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer"] {
        assert!(r.all(h).is_empty(), "{h} reached the client: {:?}", r.headers);
    }
    for c in r.all("Connection") {
        assert!(!c.to_ascii_lowercase().contains("x-resp-secret"), "Connection: {c}");
    }
    assert_eq!(r.header("X-Kept"), Some("yes"));
}

#[test]
fn forwarding_headers_are_set_and_replace_forged_copies() {
    let b = Backend::echo();
    let p = proxy(b.addr, "prefix = \"/stash/\"\nstrip_prefix = true");
    let req = get_req(
        "/stash/scenes",
        "media.example.com",
        &[
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-For: 198.51.100.7, 192.0.2.1",
            "X-Forwarded-Proto: https",
            "x-forwarded-proto: ftp",
            "X-Forwarded-Host: evil.test",
            "X-Forwarded-Port: 1",
            "X-Real-IP: 10.9.9.9",
            "x-real-ip: 10.8.8.8",
            "X-Forwarded-Prefix: /evil",
        ],
    );
    let e = raw_roundtrip(p.addr(), &req).echo();
    let xff: Vec<String> = e
        .all("X-Forwarded-For")
        .join(",")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(
        xff,
        ["203.0.113.9", "198.51.100.7", "192.0.2.1", "127.0.0.1"],
        "X-Forwarded-For appended"
    );
    assert_eq!(e.all("X-Forwarded-Proto"), ["http"]);
    assert_eq!(e.all("X-Forwarded-Host"), ["media.example.com"]);
    assert_eq!(e.all("X-Forwarded-Port"), [p.addr().port().to_string()]);
    assert_eq!(e.all("X-Real-IP"), ["127.0.0.1"]);
    assert_eq!(e.all("X-Forwarded-Prefix"), ["/stash"]);
}

#[test]
fn forwarding_headers_without_client_copies() {
    let b = Backend::echo();
    let p = proxy(b.addr, "prefix = \"/app/\"\nreplace_prefix = \"/inner/\"");
    let e = raw_roundtrip(p.addr(), &get_req("/app/x", "h.test:8443", &[])).echo();
    assert_eq!(e.url, "/inner/x");
    assert_eq!(e.all("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(e.all("X-Forwarded-Host"), ["h.test:8443"]);
    assert_eq!(
        e.all("X-Forwarded-Prefix"),
        ["/app"],
        "set when the prefix was replaced"
    );
}

#[test]
fn no_forwarded_prefix_when_the_prefix_is_kept() {
    let b = Backend::echo();
    let p = proxy(b.addr, "prefix = \"/thanos/\"");
    let e = get(&p.url("/thanos/api/v1/query")).echo();
    assert_eq!(e.url, "/thanos/api/v1/query");
    assert!(e.all("X-Forwarded-Prefix").is_empty(), "{:?}", e.headers);
    assert_eq!(e.all("X-Forwarded-Proto"), ["http"]);
}

#[test]
fn each_forwarding_header_can_be_switched_off() {
    let keys = [
        ("x_forwarded_for", "X-Forwarded-For"),
        ("x_forwarded_proto", "X-Forwarded-Proto"),
        ("x_forwarded_host", "X-Forwarded-Host"),
        ("x_forwarded_port", "X-Forwarded-Port"),
        ("x_real_ip", "X-Real-IP"),
        ("x_forwarded_prefix", "X-Forwarded-Prefix"),
    ];
    let b = Backend::echo();
    let mut cfg = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}", upstream("app", b.addr));
    for (i, (key, _)) in keys.iter().enumerate() {
        cfg.push_str(&format!(
            "[[route]]\nprefix = \"/r{i}/\"\nupstream = \"app\"\nstrip_prefix = true\n[route.forwarding]\n{key} = false\n\n"
        ));
    }
    let p = Ringway::start(&cfg);
    for (i, (key, header)) in keys.iter().enumerate() {
        let e = get(&p.url(&format!("/r{i}/x"))).echo();
        for (_, other) in keys {
            let present = !e.all(other).is_empty();
            assert_eq!(
                present,
                other != *header,
                "route with {key} = false: {other} present = {present}"
            );
        }
    }
}

#[test]
fn identity_header_set_by_route_replaces_forged_copies_in_any_casing() {
    let b = Backend::echo();
    let p = proxy(
        b.addr,
        "[route.request_headers]\nset = { \"X-WEBAUTH-USER\" = \"admin\" }\nadd = { \"X-Extra\" = \"1\" }\nremove = [\"X-Debug\"]",
    );
    let req = get_req(
        "/d/embedded",
        "h.test",
        &[
            "x-webauth-user: mallory",
            "X-WEBAUTH-USER: root",
            "X-Webauth-User: eve",
            "X-DEBUG: 1",
            "x-debug: 2",
        ],
    );
    let e = raw_roundtrip(p.addr(), &req).echo();
    assert_eq!(e.all("X-WEBAUTH-USER"), ["admin"], "{:?}", e.headers);
    assert!(
        e.all("X-Debug").is_empty(),
        "remove works in any casing: {:?}",
        e.headers
    );
    assert!(e.all("X-Extra").contains(&"1"), "add: {:?}", e.headers);
    // without any client copy
    let e = get(&p.url("/")).echo();
    assert_eq!(e.all("X-WEBAUTH-USER"), ["admin"]);
}

#[test]
fn response_headers_set_replaces_and_remove_drops() {
    let up = Scripted::always(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nAccess-Control-Allow-Origin: https://evil.test\r\n\
access-control-allow-origin: https://evil2.test\r\nServer: Grafana/10\r\nX-Frame-Options: deny\r\n\r\nok",
    );
    let p = proxy(
        up.addr,
        "[route.response_headers]\nset = { \"Access-Control-Allow-Origin\" = \"*\", \"X-Frame-Options\" = \"sameorigin\" }\nremove = [\"Server\"]",
    );
    let r = get(&p.url("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.all("Access-Control-Allow-Origin"), ["*"]);
    assert_eq!(r.all("X-Frame-Options"), ["sameorigin"]);
    assert!(
        r.all("Server").iter().all(|s| !s.contains("Grafana")),
        "Server removed: {:?}",
        r.headers
    );
    // set also applies when the upstream did not send the header
    let up2 = Scripted::always(b"HTTP/1.1 204 No Content\r\n\r\n");
    let p2 = proxy(
        up2.addr,
        "[route.response_headers]\nset = { \"Access-Control-Allow-Origin\" = \"*\" }",
    );
    let r = get(&p2.url("/"));
    assert_eq!(r.status, 204);
    assert_eq!(r.all("Access-Control-Allow-Origin"), ["*"]);
}

#[test]
fn host_is_preserved_by_default_and_replaced_when_asked() {
    let b = Backend::echo();
    let p = proxy(b.addr, "");
    let e = raw_roundtrip(p.addr(), &get_req("/", "grafana.example.com", &[])).echo();
    assert_eq!(e.all("Host"), ["grafana.example.com"]);

    let p = proxy(b.addr, "preserve_host = false");
    let e = raw_roundtrip(p.addr(), &get_req("/", "grafana.example.com", &[])).echo();
    assert_eq!(e.all("Host"), [b.addr.to_string()]);
    assert_eq!(e.all("X-Forwarded-Host"), ["grafana.example.com"]);
}

fn proxy_with_server(upstream_addr: std::net::SocketAddr, server: &str, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\n{server}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", upstream_addr)
    );
    Ringway::start(&cfg)
}

#[test]
fn header_names_with_underscores_are_dropped_by_default_and_passed_on_request() {
    let b = Backend::echo();
    let sent = ["X_Custom: a", "x_forwarded_for: 6.6.6.6", "X-Normal: b"];
    let p = proxy_with_server(b.addr, "", "");
    let e = raw_roundtrip(p.addr(), &get_req("/u", "h.test", &sent)).echo();
    assert_eq!(e.header("x-normal"), Some("b"));
    assert!(e.header("x_custom").is_none(), "{:?}", e.headers);
    assert!(e.all("x_forwarded_for").is_empty(), "{:?}", e.headers);

    let p = proxy_with_server(b.addr, "underscores_in_headers = \"pass\"", "");
    let e = raw_roundtrip(p.addr(), &get_req("/u", "h.test", &sent)).echo();
    assert_eq!(e.header("x_custom"), Some("a"));
    assert_eq!(e.header("x-normal"), Some("b"));
}

#[test]
fn identity_headers_are_removed_in_every_underscore_spelling_even_when_underscores_pass() {
    let b = Backend::echo();
    let p = proxy_with_server(
        b.addr,
        "underscores_in_headers = \"pass\"",
        "identity_static = { header = \"X-WEBAUTH-USER\", value = \"viewer\" }",
    );
    let forged = [
        "X_WEBAUTH_USER: admin",
        "x_webauth_user: admin",
        "X-WEBAUTH_user: root",
        "x_Webauth-User: root",
        "X-Webauth-User: admin",
        "X_WEBAUTH_USER: again",
        "X_WEBAUTH_USERS: kept",
    ];
    let e = raw_roundtrip(p.addr(), &get_req("/i", "h.test", &forged)).echo();
    let identity: Vec<&(String, String)> = e
        .headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case("x-webauth-user"))
        .collect();
    assert_eq!(identity.len(), 1, "{:?}", e.headers);
    assert_eq!(identity[0].1, "viewer");
    assert_eq!(
        e.header("x_webauth_users"),
        Some("kept"),
        "a longer name is another header"
    );
}
