//! The command line and process: `--version`, `check` (compiled table in match order, exit 0),
//! `route` (what a request would do), configuration errors naming FILE:LINE and the key with exit
//! status 2 (for `check` and for running), the listening/ready lines, one pinned worker per core
//! with its own SO_REUSEPORT socket, and the shipped quick-start config.

mod common;
use common::*;

#[test]
fn version_prints_and_exits_0() {
    let o = run_cli(&["--version"]);
    assert!(o.status.success());
    let out = stdout_of(&o);
    assert!(out.starts_with("ringway "), "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

const VALID: &str = r#"[server]
workers = 1

[[listener]]
bind = "127.0.0.1:0"

[upstream.grafana]
servers = ["127.0.0.1:3000"]

[upstream.thanos]
servers = ["http://127.0.0.1:10902"]

[[route]]
prefix = "/long/"
upstream = "thanos"

[[route]]
host = "*.wild.test"
prefix = "/"
upstream = "grafana"

[[route]]
host = "exact.test"
prefix = "/grafana/"
upstream = "grafana"
strip_prefix = true
[route.request_headers]
set = { "X-WEBAUTH-USER" = "admin" }
remove = ["X-Debug"]

[[route]]
prefix = "/long/er/"
upstream = "thanos"
"#;

#[test]
fn check_prints_the_compiled_table_in_match_order_and_exits_0() {
    let dir = TempDir::new();
    let path = dir.write("valid.toml", VALID);
    let o = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(o.status.success(), "check failed: {}", stderr_of(&o));
    let out = stdout_of(&o);
    let line_of = |pred: &dyn Fn(&str) -> bool, what: &str| {
        out.lines()
            .position(pred)
            .unwrap_or_else(|| panic!("no line for {what} in:\n{out}"))
    };
    let exact = line_of(
        &|l| l.contains("exact.test") && l.contains("/grafana/"),
        "exact host route",
    );
    let wild = line_of(&|l| l.contains("wild.test"), "wildcard route");
    let longer = line_of(&|l| l.contains("/long/er/"), "/long/er/ route");
    let long = line_of(&|l| l.contains("/long/") && !l.contains("/long/er/"), "/long/ route");
    assert!(
        exact < wild && wild < longer && longer < long,
        "routes not in match order:\n{out}"
    );
    for needle in ["127.0.0.1:0", "grafana", "thanos", "127.0.0.1:3000", "127.0.0.1:10902"] {
        assert!(out.contains(needle), "check output lacks {needle}:\n{out}");
    }
}

#[test]
fn route_explains_a_stripped_request() {
    let dir = TempDir::new();
    let path = dir.write("valid.toml", VALID);
    let o = run_cli(&[
        "route",
        "--config",
        path.to_str().unwrap(),
        "http://exact.test/grafana/api/search?query=a%20b&x=1",
        "-H",
        "X-Debug: 1",
        "-H",
        "X-WEBAUTH-USER: eve",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = stdout_of(&o);
    let has = |prefix: &str| out.lines().any(|l| l.starts_with(prefix));
    assert!(
        out.lines()
            .any(|l| l.starts_with("route: #3 ") && l.contains("host=exact.test") && l.contains("prefix=/grafana/")),
        "{out}"
    );
    assert!(has("upstream: grafana 127.0.0.1:3000"), "{out}");
    assert!(has("upstream request: GET /api/search?query=a%20b&x=1"), "{out}");
    assert!(has("header set: X-WEBAUTH-USER: admin"), "{out}");
    assert!(has("header removed: X-Debug"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("header set: X-Forwarded-Prefix: /grafana")),
        "{out}"
    );
}

#[test]
fn route_explains_redirects_and_misses() {
    let dir = TempDir::new();
    let path = dir.write("valid.toml", VALID);
    let p = path.to_str().unwrap();
    let o = run_cli(&["route", "--config", p, "http://exact.test/grafana?orgId=1"]);
    assert!(o.status.success());
    assert!(
        stdout_of(&o).lines().any(|l| l == "redirect: 301 /grafana/?orgId=1"),
        "{}",
        stdout_of(&o)
    );
    let o = run_cli(&["route", "--config", p, "http://nowhere.test/nothing"]);
    assert!(o.status.success());
    assert!(
        stdout_of(&o).lines().any(|l| l == "route: none (404)"),
        "{}",
        stdout_of(&o)
    );
    // a Host given with -H is used like a browser's Host header
    let o = run_cli(&["route", "--config", p, "/anything", "-H", "Host: a.wild.test"]);
    let out = stdout_of(&o);
    assert!(out.lines().any(|l| l.starts_with("route: #2 ")), "{out}");
    assert!(out.lines().any(|l| l == "upstream request: GET /anything"), "{out}");
}

/// (what, config, lines the error may name, key the error must name)
const BAD: &[(&str, &str, &[usize], &str)] = &[
    (
        "unknown key",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"a\"\nstrip_prefixx = true\n",
        &[9],
        "strip_prefixx",
    ),
    (
        "unknown key in server",
        "[server]\nworkers = 1\nmax_head = 10\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
        &[3],
        "max_head",
    ),
    (
        "undefined upstream",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nprefix = \"/x/\"\nupstream = \"nope\"\n",
        &[9],
        "upstream",
    ),
    (
        "duplicate host+prefix",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nhost = \"h.test\"\nprefix = \"/x/\"\nupstream = \"a\"\n\n[[route]]\nhost = \"h.test\"\nprefix = \"/x/\"\nupstream = \"a\"\n",
        &[12, 13, 14],
        "prefix",
    ),
    (
        "strip and replace together",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nprefix = \"/x/\"\nupstream = \"a\"\nstrip_prefix = true\nreplace_prefix = \"/y/\"\n",
        &[10, 11],
        "_prefix",
    ),
    (
        "unparsable server address",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:notaport\"]\n\n[[route]]\nupstream = \"a\"\n",
        &[5],
        "servers",
    ),
    (
        "unparsable bind address",
        "[[listener]]\nbind = \"127.0.0.1:99999\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"a\"\n",
        &[2],
        "bind",
    ),
    (
        "unparsable duration",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"a\"\nresponse_timeout = \"5 parsecs\"\n",
        &[9],
        "response_timeout",
    ),
    (
        "unparsable connect_timeout",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = \"soon\"\n\n[[route]]\nupstream = \"a\"\n",
        &[6],
        "connect_timeout",
    ),
    (
        "unparsable max_body",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"a\"\nmax_body = \"lots\"\n",
        &[9],
        "max_body",
    ),
    ("toml syntax error", "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.a\n", &[4], ""),
];

fn check_error(what: &str, path: &std::path::Path, o: &std::process::Output, lines: &[usize], key: &str) {
    let err = stderr_of(o);
    assert_eq!(o.status.code(), Some(2), "{what}: exit status; stderr:\n{err}");
    let file = path.to_str().unwrap();
    let named = lines.iter().any(|l| err.contains(&format!("{file}:{l}")));
    assert!(named, "{what}: stderr must name {file}:{lines:?}; got:\n{err}");
    assert!(
        err.contains(key),
        "{what}: stderr must name the key `{key}`; got:\n{err}"
    );
}

#[test]
fn config_errors_name_file_line_and_key_and_exit_2() {
    let dir = TempDir::new();
    for (i, (what, cfg, lines, key)) in BAD.iter().enumerate() {
        let path = dir.write(&format!("bad{i}.toml"), cfg);
        let o = run_cli(&["check", "--config", path.to_str().unwrap()]);
        check_error(what, &path, &o, lines, key);
        // running with the same config fails the same way instead of serving
        let o = run_cli(&["--config", path.to_str().unwrap()]);
        check_error(what, &path, &o, lines, key);
    }
}

#[test]
fn missing_config_file_exits_2_naming_it() {
    let o = run_cli(&["check", "--config", "/nonexistent/ringway.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("/nonexistent/ringway.toml"), "{}", stderr_of(&o));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(run_cli(&["--frobnicate"]).status.code(), Some(2));
}

#[test]
fn each_listener_prints_its_real_address_and_serves() {
    let b = Backend::echo();
    let cfg = format!(
        "[server]\nworkers = 2\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n",
        upstream("app", b.addr)
    );
    let p = Ringway::start(&cfg);
    assert_eq!(p.addrs.len(), 2, "one `listening on` line per listener: {}", p.stderr());
    assert_ne!(p.addrs[0].port(), 0);
    assert_ne!(p.addrs[0], p.addrs[1]);
    for a in &p.addrs {
        // several connections, so both workers' sockets get used
        for i in 0..6 {
            let r = raw_roundtrip(*a, &get_req(&format!("/{i}"), "h", &[]));
            assert_eq!(r.echo().url, format!("/{i}"));
        }
    }
}

/// Sockets in LISTEN state on `port`, from /proc/net/tcp.
fn listen_sockets_on(port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let needle = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&needle) && f[3] == "0A"
        })
        .count()
}

#[test]
fn workers_zero_means_one_pinned_worker_per_core_each_with_its_own_listening_socket() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let b = Backend::echo();
    let cfg = format!(
        "[server]\nworkers = 0\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n",
        upstream("app", b.addr)
    );
    let p = Ringway::start(&cfg);
    assert_eq!(get(&p.url("/")).status, 200);
    assert_eq!(
        listen_sockets_on(p.addr().port()),
        cores,
        "expected one SO_REUSEPORT listening socket per worker ({cores} cores)"
    );
    // Pinned worker threads: each allowed on exactly one CPU, all different.
    let mut pinned = Vec::new();
    for tid in p.tasks() {
        let st = std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", p.pid())).unwrap_or_default();
        if let Some(list) = st.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) {
            let list = list.trim();
            if !list.contains(',') && !list.contains('-') {
                pinned.push(list.to_string());
            }
        }
    }
    pinned.sort();
    pinned.dedup();
    if cores > 1 {
        assert_eq!(pinned.len(), cores, "pinned worker CPUs: {pinned:?}");
    }
}

#[test]
fn the_configured_driver_is_used() {
    let b = Backend::echo();
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n",
        upstream("app", b.addr)
    );
    let p = Ringway::start(&cfg);
    assert_eq!(get(&p.url("/")).status, 200);
    let fds = p.fd_targets();
    let uring = fds.iter().any(|t| t.contains("io_uring"));
    let epoll = fds.iter().any(|t| t.contains("eventpoll"));
    if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some() {
        assert!(
            !uring && epoll,
            "MONOIO_FORCE_LEGACY_DRIVER must force epoll; fds: {fds:?}"
        );
    } else {
        assert!(uring || epoll, "no event driver fd found: {fds:?}");
    }
}

#[test]
fn shipped_quick_start_config_is_valid_and_answers_502_naming_grafana() {
    let shipped = config_dir().join("ringway.toml");
    let o = run_cli(&["check", "--config", shipped.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = stdout_of(&o);
    assert!(
        out.contains("127.0.0.1:8080") && out.contains("127.0.0.1:3000"),
        "{out}"
    );
    let o = run_cli(&[
        "route",
        "--config",
        shipped.to_str().unwrap(),
        "http://localhost:8080/api/health",
    ]);
    assert!(
        stdout_of(&o).lines().any(|l| l == "upstream: grafana 127.0.0.1:3000"),
        "{}",
        stdout_of(&o)
    );

    // Run it (on port 0, Grafana nowhere) and expect the clear 502.
    let dead = refused_addr();
    let text = std::fs::read_to_string(&shipped)
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:3000", &dead.to_string());
    let p = Ringway::start(&text);
    let r = get(&p.url("/"));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("upstream grafana"), "{}", r.text());
}
