//! Access control through the built binary: identity headers, basic auth, forward auth, IP rules
//! over IPv4 and IPv6 loopback, trusted X-Forwarded-For, rate limits and CORS, with real
//! backends (tiny_http) and real clients (ureq, and raw sockets where header casing matters).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::Ringway;
use std::process::Command;

// bcrypt (cost 4) of "wonderland" and SHA-256-crypt of "hunter2".
const HTPASSWD: &str = "\
alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S
bob:$5$saltsalt$OIdfjX.u4Y3SJ4I2bX8w5BMf1VAUhHABNUirScDzZi3
";
const ALICE: &str = "Basic YWxpY2U6d29uZGVybGFuZA=="; // alice:wonderland
const ALICE_WRONG: &str = "Basic YWxpY2U6d29uZGVyTEFORA=="; // alice:wonderLAND
const BOB: &str = "Basic Ym9iOmh1bnRlcjI="; // bob:hunter2

static N: AtomicUsize = AtomicUsize::new(0);

/// A file for this test run, in cargo's per-target scratch directory (not left behind in /tmp).
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}-{name}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&p, text).unwrap();
    p
}

fn start(config: &str) -> Ringway {
    Ringway::start(config)
}

/// A backend that answers every request with the headers it received, one `name: value` per
/// line, names as sent; it also sends its own CORS header, which CORS routes must replace.
fn echo_backend() -> SocketAddr {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let mut body = format!("{} {}\n", req.method(), req.url());
            for h in req.headers() {
                body.push_str(&format!("{}: {}\n", h.field.as_str(), h.value.as_str()));
            }
            let resp = tiny_http::Response::from_string(body)
                .with_header("Access-Control-Allow-Origin: *".parse::<tiny_http::Header>().unwrap());
            let _ = req.respond(resp);
        }
    });
    addr
}

/// Every value the upstream saw for a header, compared without case.
fn seen<'a>(echo: &'a str, name: &str) -> Vec<&'a str> {
    echo.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// One request on a raw socket, exactly as written; returns status, head and body.
fn raw(addr: SocketAddr, head: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, h.to_string(), b.to_string())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(10))
        .build()
}

/// Status, a response header, and the body, whatever the status.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, ureq::Response) {
    let mut req = agent().get(&format!("http://{addr}{path}"));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    match req.call() {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn base(backend: SocketAddr, extra: &str, routes: &str) -> String {
    format!(
        r#"
[server]
workers = 2
{extra}

[[listener]]
bind = "127.0.0.1:0"

[upstream.app]
servers = ["{backend}"]

{routes}
"#
    )
}

/// An `[auth.staff]` block: Basic auth against the test htpasswd file, the user's name sent
/// upstream in X-WEBAUTH-USER.
fn staff_basic_auth() -> String {
    let htpasswd = scratch("staff.htpasswd", HTPASSWD);
    format!(
        r#"
[auth.staff]
basic = {{ htpasswd = "{}", realm = "Grafana" }}
identity_header = "X-WEBAUTH-USER"
"#,
        htpasswd.display()
    )
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        &staff_basic_auth(),
        r#"
[[route]]
prefix = "/grafana/"
upstream = "app"
auth = "staff"

[[route]]
prefix = "/embed/"
upstream = "app"
identity_static = { header = "X-WEBAUTH-USER", value = "viewer" }

[[route]]
prefix = "/open/"
upstream = "app"
"#,
    );
    let p = start(&cfg);
    let forged = "X-WEBAUTH-USER: admin\r\nx-webauth-user: admin\r\nX-Webauth-User: root\r\nX-WEBAUTH-user:admin\r\n";
    for (path, auth, want) in [
        (
            "/grafana/api/user",
            format!("Authorization: {ALICE}\r\n"),
            vec!["alice"],
        ),
        ("/embed/d/abc", String::new(), vec!["viewer"]),
        ("/open/x", String::new(), vec![]),
    ] {
        let (status, _, body) = raw(
            p.addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{forged}{auth}Connection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(seen(&body, "x-webauth-user"), want, "{path}: upstream saw {body}");
    }
}

#[test]
fn basic_auth_wrong_and_right_passwords() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        &staff_basic_auth(),
        r#"
[[route]]
prefix = "/"
upstream = "app"
auth = "staff"
"#,
    );
    let p = start(&cfg);
    let (status, r) = get(p.addr(), "/", &[]);
    assert_eq!(status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Basic realm="Grafana", charset="UTF-8""#)
    );
    for bad in [ALICE_WRONG, "Basic bm9ib2R5OndvbmRlcmxhbmQ=", "Basic !!!", "Bearer x"] {
        let (status, _) = get(p.addr(), "/", &[("Authorization", bad)]);
        assert_eq!(status, 401, "{bad}");
    }
    // Right passwords, several times (the later ones come from the worker's memory).
    for _ in 0..5 {
        let (status, r) = get(p.addr(), "/", &[("Authorization", ALICE)]);
        assert_eq!(status, 200);
        assert_eq!(seen(&r.into_string().unwrap(), "x-webauth-user"), ["alice"]);
    }
    let (status, r) = get(p.addr(), "/", &[("Authorization", BOB)]);
    assert_eq!(status, 200);
    assert_eq!(seen(&r.into_string().unwrap(), "x-webauth-user"), ["bob"]);
    // Remembered success does not make a wrong password pass.
    let (status, _) = get(p.addr(), "/", &[("Authorization", ALICE_WRONG)]);
    assert_eq!(status, 401);
}

/// An auth service like oauth2-proxy: the session cookie decides.
fn auth_service() -> SocketAddr {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            std::thread::spawn(move || {
                let get = |n: &str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(n))
                        .map(|h| h.value.as_str().to_string())
                        .unwrap_or_default()
                };
                let cookie = get("Cookie");
                let hdr = |s: String| s.parse::<tiny_http::Header>().unwrap();
                if req.url().starts_with("/slow") {
                    std::thread::sleep(Duration::from_secs(3));
                }
                let resp = if cookie.contains("session=good") {
                    let seen = format!(
                        "{} {} {} {}",
                        get("X-Forwarded-Method"),
                        get("X-Forwarded-Uri"),
                        get("X-Forwarded-Host"),
                        get("Authorization")
                    );
                    tiny_http::Response::from_string("")
                        .with_status_code(202)
                        .with_header(hdr("X-Auth-Request-User: alice".into()))
                        .with_header(hdr(format!("X-Auth-Request-Seen: {seen}")))
                } else if cookie.contains("session=bad") {
                    tiny_http::Response::from_string("forbidden by policy").with_status_code(403)
                } else {
                    tiny_http::Response::from_string("please log in")
                        .with_status_code(302)
                        .with_header(hdr("Location: https://sso.example.com/login?rd=/app/".into()))
                        .with_header(hdr("Set-Cookie: csrf=1; Path=/".into()))
                };
                let _ = req.respond(resp);
            });
        }
    });
    addr
}

#[test]
fn forward_auth_allow_deny_redirect_and_down() {
    let backend = echo_backend();
    let auth = auth_service();
    let cfg = base(
        backend,
        &format!(
            r#"
[auth.sso]
forward = {{ url = "http://{auth}/oauth2/auth", copy_headers = {{ "X-Auth-Request-User" = "X-WEBAUTH-USER", "X-Auth-Request-Seen" = "X-Auth-Seen" }} }}
identity_header = "X-WEBAUTH-USER"

[auth.down]
forward = {{ url = "http://127.0.0.1:1/auth", timeout = "1s" }}

[auth.slow]
forward = {{ url = "http://{auth}/slow", timeout = "300ms" }}
"#
        ),
        r#"
[[route]]
prefix = "/app/"
upstream = "app"
auth = "sso"

[[route]]
prefix = "/down/"
upstream = "app"
auth = "down"

[[route]]
prefix = "/slow/"
upstream = "app"
auth = "slow"
"#,
    );
    let p = start(&cfg);
    // Allowed: the copied headers reach the upstream, the forged ones do not.
    let (status, r) = get(
        p.addr(),
        "/app/d/1?x=2",
        &[
            ("Cookie", "session=good"),
            ("Authorization", "Bearer t"),
            ("X-WEBAUTH-USER", "admin"),
            ("X-Auth-Seen", "forged"),
        ],
    );
    assert_eq!(status, 200);
    let body = r.into_string().unwrap();
    assert_eq!(seen(&body, "x-webauth-user"), ["alice"], "{body}");
    let host = p.addr().to_string();
    assert_eq!(
        seen(&body, "x-auth-seen"),
        [format!("GET /app/d/1?x=2 {host} Bearer t").as_str()]
    );
    // Denied: the auth service's answer, unchanged.
    let (status, r) = get(p.addr(), "/app/", &[("Cookie", "session=bad")]);
    assert_eq!(status, 403);
    assert_eq!(r.into_string().unwrap(), "forbidden by policy");
    // Login redirect relayed with its headers.
    let (status, r) = get(p.addr(), "/app/", &[]);
    assert_eq!(status, 302);
    assert_eq!(r.header("Location"), Some("https://sso.example.com/login?rd=/app/"));
    assert_eq!(r.header("Set-Cookie"), Some("csrf=1; Path=/"));
    // Keep-alive survives a relayed answer: two on one raw connection.
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /app/ HTTP/1.1\r\nHost: h\r\nCookie: session=bad\r\n\r\nGET /app/ HTTP/1.1\r\nHost: h\r\nCookie: session=good\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 403"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 200").count(), 1, "{all}");
    // Down or slow: 503, never let through.
    let (status, r) = get(p.addr(), "/down/", &[("Cookie", "session=good")]);
    assert_eq!(status, 503);
    assert!(r.into_string().unwrap().contains("127.0.0.1:1"));
    let t = std::time::Instant::now();
    let (status, _) = get(p.addr(), "/slow/", &[("Cookie", "session=good")]);
    assert_eq!(status, 503);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn allow_and_deny_over_ipv4_loopback() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        "",
        r#"
[[route]]
prefix = "/allowed/"
upstream = "app"
allow = ["192.168.0.0/16", "127.0.0.1/32"]

[[route]]
prefix = "/denied/"
upstream = "app"
allow = ["127.0.0.0/8"]
deny = ["127.0.0.1"]

[[route]]
prefix = "/elsewhere/"
upstream = "app"
allow = ["10.0.0.0/8", "::1/128"]
"#,
    );
    let p = start(&cfg);
    assert_eq!(get(p.addr(), "/allowed/", &[]).0, 200);
    assert_eq!(get(p.addr(), "/denied/", &[]).0, 403, "deny wins over allow");
    assert_eq!(get(p.addr(), "/elsewhere/", &[]).0, 403);
}

#[test]
fn allow_and_deny_over_ipv6_loopback() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        "",
        r#"
[[route]]
prefix = "/allowed/"
upstream = "app"
allow = ["::1/128"]

[[route]]
prefix = "/denied/"
upstream = "app"
deny = ["::/0"]

[[route]]
prefix = "/v4only/"
upstream = "app"
allow = ["127.0.0.0/8"]
"#,
    )
    .replace("127.0.0.1:0", "[::1]:0");
    let p = start(&cfg);
    assert!(p.addr().is_ipv6());
    assert_eq!(get(p.addr(), "/allowed/", &[]).0, 200);
    assert_eq!(get(p.addr(), "/denied/", &[]).0, 403);
    assert_eq!(get(p.addr(), "/v4only/", &[]).0, 403);
}

#[test]
fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let backend = echo_backend();
    let routes = r#"
[[route]]
prefix = "/"
upstream = "app"
allow = ["203.0.113.0/24"]
"#;
    // The test's own address is a trusted proxy: the right-most untrusted entry is the client.
    let trusted = start(&base(backend, r#"trusted_proxies = ["127.0.0.0/8"]"#, routes));
    let (status, r) = get(
        trusted.addr(),
        "/",
        &[("X-Forwarded-For", "198.51.100.9, 203.0.113.7, 127.0.0.5")],
    );
    assert_eq!(status, 200);
    let body = r.into_string().unwrap();
    assert_eq!(seen(&body, "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(
        seen(&body, "x-forwarded-for"),
        ["198.51.100.9, 203.0.113.7, 127.0.0.5, 127.0.0.1"]
    );

    // Not trusted: the header is ignored for the decision and not passed on.
    let untrusted = start(&base(backend, r#"trusted_proxies = ["10.0.0.0/8"]"#, routes));
    let (status, _) = get(untrusted.addr(), "/", &[("X-Forwarded-For", "203.0.113.7")]);
    assert_eq!(status, 403);
    let open = start(&base(
        backend,
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
        "[[route]]\nprefix = \"/\"\nupstream = \"app\"\n",
    ));
    let (_, r) = get(open.addr(), "/", &[("X-Forwarded-For", "203.0.113.7")]);
    let body = r.into_string().unwrap();
    assert_eq!(seen(&body, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen(&body, "x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn a_burst_above_the_rate_limit_gets_429_with_retry_after() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        "",
        r#"
[[route]]
prefix = "/"
upstream = "app"
rate_limit = { per_second = 1, burst = 3 }
"#,
    )
    .replace("workers = 2", "workers = 1");
    let p = start(&cfg);
    let mut codes = Vec::new();
    let mut retry = None;
    for _ in 0..8 {
        let (status, r) = get(p.addr(), "/", &[]);
        if status == 429 {
            retry = r.header("Retry-After").map(str::to_string);
        }
        codes.push(status);
    }
    assert_eq!(&codes[..3], [200, 200, 200], "{codes:?}");
    assert!(codes[3..].iter().all(|&c| c == 429), "{codes:?}");
    assert_eq!(retry.as_deref(), Some("1"));
}

#[test]
fn cors_preflight_is_answered_by_the_proxy() {
    let backend = echo_backend();
    let cfg = base(
        backend,
        "",
        r#"
[[route]]
prefix = "/"
upstream = "app"
cors = { allow_origin = ["https://app.example.com"], allow_methods = ["GET", "POST"], allow_headers = ["Authorization"], max_age = "10m" }
"#,
    );
    let p = start(&cfg);
    let pre = |origin: &str| {
        let r = agent()
            .request("OPTIONS", &format!("http://{}/api/ds", p.addr()))
            .set("Origin", origin)
            .set("Access-Control-Request-Method", "POST")
            .set("Access-Control-Request-Headers", "authorization")
            .call();
        match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        }
    };
    let r = pre("https://app.example.com");
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("https://app.example.com"));
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("GET, POST"));
    assert_eq!(r.header("Access-Control-Allow-Headers"), Some("Authorization"));
    assert_eq!(r.header("Access-Control-Max-Age"), Some("600"));
    let body = r.into_string().unwrap();
    assert!(!body.contains("OPTIONS"), "preflight reached the upstream: {body}");
    assert_eq!(pre("https://evil.example.com").status(), 403);

    // An actual request: the route's headers replace the upstream's `*`.
    let (status, r) = get(p.addr(), "/api/ds", &[("Origin", "https://app.example.com")]);
    assert_eq!(status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("https://app.example.com"));
    assert_eq!(r.all("Access-Control-Allow-Origin").len(), 1);
    assert_eq!(r.header("Vary"), Some("Origin"));
    let (_, r) = get(p.addr(), "/api/ds", &[("Origin", "https://evil.example.com")]);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn weak_htpasswd_formats_are_refused_at_start_naming_the_line() {
    let htpasswd = scratch(
        "weak.htpasswd",
        "alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\nbob:$apr1$abc$def\n",
    );
    let cfg = scratch(
        "weak.toml",
        &format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n[auth.staff]\nbasic = {{ htpasswd = \"{}\" }}\n[[route]]\nupstream = \"app\"\nauth = \"staff\"\n",
            htpasswd.display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", htpasswd.display())), "{err}");
    assert!(err.contains("MD5"), "{err}");
}

#[test]
fn shipped_access_examples_pass_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    for name in [
        "embedded-dashboard-auth-proxy.toml",
        "stash-basic-auth.toml",
        "forward-auth.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .current_dir(root)
            .args(["check", "--config"])
            .arg(format!("config/{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
