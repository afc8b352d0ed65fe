//! Routing: host groups (exact, wildcard, host-less) with fall-through, longest prefix on segment
//! boundaries, the `/grafana` → `/grafana/` redirect, 404, case-insensitive prefixes,
//! absolute-form targets routed by host (never an open forward proxy), CONNECT 405, and the
//! `.`/`..` segment refusals.

mod common;
use common::*;

/// Six backends, each answering with its own name in `X-Backend`, so a test sees which route won.
struct Fleet {
    _backends: Vec<Backend>,
    proxy: Ringway,
}

fn named_backend(name: &'static str) -> Backend {
    Backend::with(move |_, url| Reply::fixed(200, &[("X-Backend", name)], url))
}

fn fleet() -> Fleet {
    let names = ["exact", "wild", "deepwild", "any_root", "any_api", "any_api_v2", "ci"];
    let backends: Vec<Backend> = names.iter().map(|n| named_backend(n)).collect();
    let mut cfg = String::from("[server]\nworkers = 2\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n");
    for (n, b) in names.iter().zip(&backends) {
        cfg.push_str(&upstream(n, b.addr));
    }
    cfg.push_str(
        r#"
[[route]]
host = "exact.example.com"
prefix = "/only/"
upstream = "exact"

[[route]]
host = "*.example.com"
prefix = "/"
upstream = "wild"

[[route]]
host = "*.deep.example.com"
prefix = "/"
upstream = "deepwild"

[[route]]
prefix = "/"
upstream = "any_root"

[[route]]
prefix = "/api/"
upstream = "any_api"

[[route]]
prefix = "/api/v2/"
upstream = "any_api_v2"

[[route]]
prefix = "/Grafana/"
prefix_case_insensitive = true
upstream = "ci"
"#,
    );
    Fleet {
        _backends: backends,
        proxy: Ringway::start(&cfg),
    }
}

fn which(f: &Fleet, host: &str, path: &str) -> (u16, String) {
    let r = raw_roundtrip(f.proxy.addr(), &get_req(path, host, &[]));
    (r.status, r.header("X-Backend").unwrap_or("-").to_string())
}

#[test]
fn host_groups_exact_then_wildcard_then_hostless_with_fall_through() {
    let f = fleet();
    let cases = [
        // exact host route matches its prefix
        ("exact.example.com", "/only/x", "exact"),
        // exact host, path outside its prefix: falls through to the wildcard group
        ("exact.example.com", "/other", "wild"),
        ("a.example.com", "/only/x", "wild"),
        // longest wildcard first
        ("x.deep.example.com", "/", "deepwild"),
        // host-less group
        ("unrelated.test", "/", "any_root"),
        ("unrelated.test", "/api/users", "any_api"),
        ("unrelated.test", "/api/v2/users", "any_api_v2"),
        ("unrelated.test", "/api/v3/users", "any_api"),
        // Host matching ignores case and the port
        ("EXACT.Example.COM", "/only/x", "exact"),
        ("exact.example.com:8080", "/only/x", "exact"),
    ];
    for (host, path, want) in cases {
        let (status, got) = which(&f, host, path);
        assert_eq!((status, got.as_str()), (200, want), "Host: {host}, path {path}");
    }
}

#[test]
fn wildcard_does_not_match_a_host_merely_ending_in_the_suffix() {
    let f = fleet();
    // "evilexample.com" must not be taken for "*.example.com"
    assert_eq!(which(&f, "evilexample.com", "/"), (200, "any_root".to_string()));
}

#[test]
fn prefix_matches_only_on_segment_boundaries() {
    let f = fleet();
    // "/api/" must not swallow "/apix" or "/api-docs"
    assert_eq!(which(&f, "h.test", "/apix"), (200, "any_root".into()));
    assert_eq!(which(&f, "h.test", "/api-docs/x"), (200, "any_root".into()));
    assert_eq!(which(&f, "h.test", "/api/v2x/y"), (200, "any_api".into()));
}

#[test]
fn grafanax_never_matches_grafana_prefix_and_unmatched_is_404() {
    let b = Backend::echo();
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nprefix = \"/grafana/\"\nupstream = \"g\"\n",
        upstream("g", b.addr)
    );
    let p = Ringway::start(&cfg);
    for path in ["/grafanax", "/grafanax/api", "/grafana-old/", "/", "/other/grafana/"] {
        let r = get(&p.url(path));
        assert_eq!(r.status, 404, "{path} must not be routed");
    }
    assert_eq!(b.hits(), 0, "no unmatched request may reach the upstream");
    assert_eq!(get(&p.url("/grafana/api/health")).echo().url, "/grafana/api/health");
}

#[test]
fn exact_prefix_without_slash_redirects_301_keeping_query() {
    let b = Backend::echo();
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nprefix = \"/grafana/\"\nupstream = \"g\"\nstrip_prefix = true\n",
        upstream("g", b.addr)
    );
    let p = Ringway::start(&cfg);
    let r = get(&p.url("/grafana"));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/grafana/"));
    let r = get(&p.url("/grafana?orgId=1&from=now-6h"));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/grafana/?orgId=1&from=now-6h"));
    assert_eq!(b.hits(), 0, "the redirect is answered by ringway itself");
    // The redirect target works.
    assert_eq!(get(&p.url("/grafana/?orgId=1")).echo().url, "/?orgId=1");
}

#[test]
fn case_insensitive_prefix_matches_any_casing() {
    let f = fleet();
    for path in ["/grafana/api", "/GRAFANA/api", "/Grafana/api", "/gRaFaNa/"] {
        assert_eq!(which(&f, "h.test", path), (200, "ci".to_string()), "{path}");
    }
    // still on a segment boundary
    assert_eq!(which(&f, "h.test", "/GRAFANAX/api"), (200, "any_root".to_string()));
}

#[test]
fn case_sensitive_prefix_by_default() {
    let b = Backend::echo();
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nprefix = \"/stash/\"\nupstream = \"s\"\n",
        upstream("s", b.addr)
    );
    let p = Ringway::start(&cfg);
    assert_eq!(get(&p.url("/STASH/x")).status, 404);
    assert_eq!(get(&p.url("/stash/x")).status, 200);
}

#[test]
fn absolute_form_target_is_routed_by_its_host_and_sent_upstream_in_origin_form() {
    let f = fleet();
    // The absolute-form host wins over the Host header (RFC 9112 3.2.2).
    let r = raw_roundtrip(
        f.proxy.addr(),
        b"GET http://exact.example.com/only/page?x=1 HTTP/1.1\r\nHost: unrelated.test\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Backend"), Some("exact"));
    // The backend answers with the URL it saw: origin-form, query intact.
    assert_eq!(r.text(), "/only/page?x=1");
}

#[test]
fn absolute_form_is_never_an_open_forward_proxy() {
    let victim = Backend::echo();
    let b = Backend::echo();
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nhost = \"app.test\"\nupstream = \"app\"\n",
        upstream("app", b.addr)
    );
    let p = Ringway::start(&cfg);
    let req = format!("GET http://{}/secret HTTP/1.1\r\nHost: app.test\r\n\r\n", victim.addr);
    let r = raw_roundtrip(p.addr(), req.as_bytes());
    assert_eq!(r.status, 404, "an unrouted absolute-form host gets 404: {}", r.text());
    assert_eq!(victim.hits(), 0, "ringway connected to a host named by the client");
    assert_eq!(b.hits(), 0);
}

#[test]
fn connect_gets_405() {
    let f = fleet();
    let r = raw_roundtrip(
        f.proxy.addr(),
        b"CONNECT exact.example.com:443 HTTP/1.1\r\nHost: exact.example.com:443\r\n\r\n",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn dot_segments_are_refused_with_400_and_never_reach_upstream() {
    let b = Backend::echo();
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nprefix = \"/public/\"\nupstream = \"pub\"\n",
        upstream("pub", b.addr)
    );
    let p = Ringway::start(&cfg);
    let refused = [
        "/public/../admin",
        "/public/./admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/%2e./admin",
        "/public/%2e/admin",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public%2f..%2fadmin",
        "/public/..%5cadmin",
        "/public/x/..",
        "/public/x/.",
        "/public/x/%2e%2e",
        "/public/a/b/../../../admin",
    ];
    for path in refused {
        let r = raw_roundtrip(p.addr(), &get_req(path, "h.test", &[]));
        assert_eq!(r.status, 400, "{path} must be refused");
    }
    assert_eq!(b.hits(), 0, "a refused path reached the upstream");
    // Dots that are not whole segments are fine.
    for path in [
        "/public/.well-known/x",
        "/public/a..b/c",
        "/public/file.tar.gz",
        "/public/...x",
    ] {
        let r = raw_roundtrip(p.addr(), &get_req(path, "h.test", &[]));
        assert_eq!(r.status, 200, "{path} is a legitimate path");
        assert_eq!(r.echo().url, path);
    }
}

#[test]
fn routes_serve_only_the_listeners_they_name() {
    let public = named_backend("public");
    let internal = named_backend("internal");
    let shared = named_backend("shared");
    let cfg = format!(
        "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"internal\"\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\
         {}{}{}\
         [[route]]\nlisteners = [\"public\"]\nupstream = \"public\"\n\
         [[route]]\nlisteners = [\"internal\"]\nupstream = \"internal\"\n\
         [[route]]\nlisteners = [\"internal\"]\nprefix = \"/admin/\"\nupstream = \"internal\"\n\
         [[route]]\nprefix = \"/shared/\"\nupstream = \"shared\"\n",
        upstream("public", public.addr),
        upstream("internal", internal.addr),
        upstream("shared", shared.addr)
    );
    let p = Ringway::start(&cfg);
    let at = |i: usize, path: &str| {
        let r = get(&format!("http://{}{path}", p.addrs[i]));
        (r.status, r.header("x-backend").unwrap_or("").to_string())
    };
    assert_eq!(at(0, "/"), (200, "public".into()));
    assert_eq!(
        at(0, "/admin/x"),
        (200, "public".into()),
        "/admin/ is not a route of public"
    );
    assert_eq!(at(1, "/"), (200, "internal".into()));
    assert_eq!(at(1, "/admin/x"), (200, "internal".into()));
    for i in 0..3 {
        assert_eq!(at(i, "/shared/a"), (200, "shared".into()), "listener {i}");
    }
    assert_eq!(
        at(2, "/").0,
        404,
        "the unnamed listener has only the route without listeners"
    );

    // check shows the names; route --listener evaluates for that listener.
    let path = p.config_path.to_str().unwrap();
    let out = run_cli(&["check", "--config", path]);
    let text = stdout_of(&out);
    assert!(text.contains("  public (127.0.0.1:0)"), "{text}");
    assert!(text.contains("prefix=/admin/ listeners=internal -> internal"), "{text}");
    let route = |listener: &str| {
        let out = run_cli(&["route", "--config", path, "--listener", listener, "http://h/admin/x"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    let text = route("internal");
    assert!(text.contains("listener: internal (127.0.0.1:0)"), "{text}");
    assert!(text.contains("upstream: internal"), "{text}");
    assert!(route("public").contains("upstream: public"));
    let out = run_cli(&["route", "--config", path, "--listener", "nope", "http://h/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("no listener is named `nope` (named listeners: public, internal)"));
}

#[test]
fn listener_names_in_routes_are_checked() {
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.toml",
        "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [upstream.a]\nservers = [\"127.0.0.1:1\"]\n\
         [[route]]\nlisteners = [\"pubic\"]\nupstream = \"a\"\n\
         [[route]]\nlisteners = [\"public\"]\nupstream = \"a\"\n\
         [[route]]\nupstream = \"a\"\n",
    );
    let out = run_cli(&["check", "--config", bad.to_str().unwrap()]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:5: listener.name: `public` names another listener already"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:10: route.listeners: route #1 names listener `pubic`, which is not defined"),
        "{err}"
    );
    assert!(err.contains("route #3 duplicates route #"), "{err}");
}
