//! Observability through the built binary: access log lines (combined and JSON) for proxied
//! requests, errors and tunnels; SIGUSR1 reopening; request ids; the admin server's /metrics
//! (parsed with a real Prometheus text parser), /healthz and /readyz; the status page in headless
//! Chromium.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The admin address ringway printed (`ringway: admin on http://ADDR/`).
fn admin_addr(p: &Ringway) -> SocketAddr {
    p.admin_addr()
}

/// A GET on the admin server: (status, body).
fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = admin_get(addr, "/metrics");
    assert_eq!(status, 200);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// Sum of the samples of `metric` whose labels include all of `labels`.
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value::*;
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Counter(v) | Gauge(v) | Untyped(v) => *v,
            Histogram(b) => b.iter().map(|h| h.count).fold(0.0, f64::max),
            Summary(_) => 0.0,
        })
        .sum()
}

/// The lines of `path` once there are at least `n` (the log is flushed each second).
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, want {n}:\n{text}",
            path.display(),
            lines.len()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Splits a combined line into fields: bare words, `"quoted"` and `[bracketed]` values.
fn combined_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (field, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            (&r[..end], &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').expect("closing bracket");
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push(field.to_string());
        rest = after;
    }
    out
}

/// One access log line, whichever the format, as named fields.
fn parse_line(format: &str, line: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if format == "json" {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for (k, v) in v.as_object().unwrap() {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            m.insert(k.clone(), s);
        }
        m.insert(
            "request".into(),
            format!("{} {} {}", m["method"], m["target"], m["protocol"]),
        );
    } else {
        let f = combined_fields(line);
        assert_eq!(f.len(), 16, "combined line has 16 fields: {line}\n{f:?}");
        let names = [
            "client",
            "ident",
            "user",
            "time",
            "request",
            "status",
            "bytes_out",
            "referer",
            "user_agent",
            "route",
            "server",
            "duration",
            "upstream_time",
            "bytes_in",
            "request_id",
            "kind",
        ];
        for (n, v) in names.iter().zip(f) {
            m.insert(n.to_string(), v);
        }
        // The time is nginx's: 21/Nov/2026:03:04:05 +0000
        assert!(m["time"].ends_with(" +0000") && m["time"].len() == 26, "{line}");
    }
    for n in ["duration", "bytes_in", "bytes_out", "status"] {
        m[n].parse::<f64>()
            .unwrap_or_else(|_| panic!("{n} is a number in {line}"));
    }
    m
}

fn ws_connect(proxy: SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{proxy}{path}"), stream).expect("handshake through ringway");
    assert_eq!(resp.status(), 101);
    ws
}

/// Upstreams and routes shared by the log and metrics tests: `/app/` (a backend), `/ws` (a
/// WebSocket echo server) and `/dead/` (an address that refuses connections).
fn app_ws_dead(backend: SocketAddr, ws: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
[upstream.app]
servers = ["{backend}"]
[upstream.ws]
servers = ["{ws}"]
[upstream.dead]
servers = ["{dead}"]
[[route]]
prefix = "/app/"
upstream = "app"
[[route]]
prefix = "/ws"
upstream = "ws"
[[route]]
prefix = "/dead/"
upstream = "dead"
"#
    )
}

fn logged_proxy(
    format: &str,
    dir: &TempDir,
    backend: SocketAddr,
    ws: SocketAddr,
    dead: SocketAddr,
) -> (Ringway, PathBuf) {
    let log = dir.path.join("access.log");
    let cfg = format!(
        r#"
[server]
workers = 2
[[listener]]
bind = "127.0.0.1:0"
[log]
access = "{}"
format = "{format}"
[admin]
bind = "127.0.0.1:0"
{}"#,
        log.display(),
        app_ws_dead(backend, ws, dead)
    );
    (Ringway::start(&cfg), log)
}

fn log_lines_parse(format: &str) {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let (p, log) = logged_proxy(format, &dir, backend.addr, ws_echo_server(), refused_addr());
    let ok = get_with(
        &p.url("/app/x?q=1"),
        &[("X-Request-Id", "req-abc.1"), ("Referer", "http://r/\"q\"")],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(get(&p.url("/dead/y")).status, 502);
    assert_eq!(get(&p.url("/nowhere")).status, 404);
    let mut ws = ws_connect(p.addr(), "/ws");
    ws.send(Message::Text("hello tunnel".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hello tunnel".into()));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);

    let lines = wait_lines(&log, 5);
    let rows: Vec<HashMap<String, String>> = lines.iter().map(|l| parse_line(format, l)).collect();
    let find = |pred: &dyn Fn(&HashMap<String, String>) -> bool| {
        rows.iter()
            .find(|r| pred(r))
            .unwrap_or_else(|| panic!("no such line in:\n{}", lines.join("\n")))
            .clone()
    };
    let app = find(&|r| r["request"] == "GET /app/x?q=1 HTTP/1.1");
    assert_eq!(app["client"], "127.0.0.1");
    assert_eq!(app["status"], "200");
    assert_eq!(app["route"], "/app/");
    assert_eq!(app["server"], backend.addr.to_string());
    assert_eq!(app["request_id"], "req-abc.1");
    assert_eq!(app["kind"], "http");
    assert!(app["referer"].contains("http://r/"), "{app:?}");
    assert!(app["bytes_in"].parse::<u64>().unwrap() > 30);
    assert!(app["bytes_out"].parse::<u64>().unwrap() > 100);
    assert_ne!(app["upstream_time"], "-");

    let dead = find(&|r| r["request"] == "GET /dead/y HTTP/1.1");
    assert_eq!(dead["status"], "502");
    assert_eq!(dead["route"], "/dead/");
    assert_eq!(dead["upstream_time"], "-");
    assert!(!dead["request_id"].is_empty() && dead["request_id"] != "-");

    let none = find(&|r| r["request"] == "GET /nowhere HTTP/1.1");
    assert_eq!(none["status"], "404");
    assert_eq!(none["route"], "-");
    assert_eq!(none["server"], "-");

    let upgrade = find(&|r| r["request"] == "GET /ws HTTP/1.1" && r["kind"] == "http");
    assert_eq!(upgrade["status"], "101");
    let tunnel = find(&|r| r["kind"] == "tunnel");
    assert_eq!(tunnel["request"], "GET /ws HTTP/1.1");
    assert_eq!(tunnel["route"], "/ws");
    assert_eq!(tunnel["request_id"], upgrade["request_id"]);
    // A masked 12-byte text frame and a close frame went up; the echo and a close came back.
    assert!(tunnel["bytes_in"].parse::<u64>().unwrap() >= 18, "{tunnel:?}");
    assert!(tunnel["bytes_out"].parse::<u64>().unwrap() >= 14, "{tunnel:?}");
    if format == "json" {
        assert_eq!(tunnel["tunnel_end"], "both sides closed the tunnel");
    }
}

#[test]
fn access_log_lines_parse_in_combined_format() {
    log_lines_parse("combined");
}

#[test]
fn access_log_lines_parse_in_json_format() {
    log_lines_parse("json");
}

/// logrotate's convention: the file is renamed, SIGUSR1 arrives, new lines go to a new file at
/// the configured path (every worker reopens), none to the renamed one.
#[test]
fn sigusr1_reopens_the_access_log() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let (p, log) = logged_proxy("json", &dir, backend.addr, ws_echo_server(), refused_addr());
    for _ in 0..4 {
        assert_eq!(get(&p.url("/app/before")).status, 200);
    }
    wait_lines(&log, 4);
    let rotated = dir.path.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-USR1", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Each worker reopens on its next one-second tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.stderr().contains("reopened access log") {
        assert!(Instant::now() < deadline, "no reopen event:\n{}", p.stderr());
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(1300));
    assert!(log.exists(), "the log path was not recreated");
    for _ in 0..6 {
        assert_eq!(get(&p.url("/app/after")).status, 200);
    }
    let new = wait_lines(&log, 6);
    assert!(new.iter().all(|l| l.contains("/app/after")), "{new:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 4, "{old}");
    assert!(!old.contains("/app/after"));
    assert!(p.is_running_now());
}

trait Alive {
    fn is_running_now(&self) -> bool;
}

impl Alive for Ringway {
    fn is_running_now(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid())).exists()
    }
}

/// The upstream sees the client's id when it is a plain token, a generated one otherwise, and
/// never the client's unacceptable value; the log shows the same id.
#[test]
fn request_id_is_kept_or_generated_and_sent_upstream() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let (p, log) = logged_proxy("json", &dir, backend.addr, ws_echo_server(), refused_addr());
    let seen = |headers: &[(&str, &str)]| {
        let r = get_with(&p.url("/app/id"), headers);
        assert_eq!(r.status, 200);
        let echo = r.echo();
        let ids = echo.all("x-request-id");
        assert_eq!(ids.len(), 1, "exactly one X-Request-Id upstream: {:?}", echo.headers);
        ids[0].to_string()
    };
    let uuid = "0b5c3b3e-7d1f-4c33-9a53-2f0f0e9b6c1d";
    assert_eq!(seen(&[("X-Request-Id", uuid)]), uuid);
    let a = seen(&[]);
    let b = seen(&[]);
    assert_ne!(a, b);
    for id in [&a, &b] {
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert!(
            parts
                .iter()
                .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_hexdigit())),
            "{id}"
        );
    }
    let long = "x".repeat(129);
    for bad in [long.as_str(), "two words", "quote\"d"] {
        let got = seen(&[("X-Request-Id", bad)]);
        assert_ne!(got, bad);
        assert_eq!(got.split('-').count(), 3, "{got}");
    }
    let lines = wait_lines(&log, 6);
    let logged: Vec<String> = lines
        .iter()
        .map(|l| parse_line("json", l)["request_id"].clone())
        .collect();
    assert!(
        logged.contains(&uuid.to_string()) && logged.contains(&a) && logged.contains(&b),
        "{logged:?}"
    );
}

/// Every family is present from the first scrape and moves as traffic flows.
#[test]
fn every_metric_family_is_present_and_moves() {
    let backend = Backend::echo();
    let dead = refused_addr();
    let slow = Scripted::start(|_, _, _| Step {
        delay: Duration::from_secs(3),
        bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        close: false,
    });
    let cfg = format!(
        r#"
[server]
workers = 2
[[listener]]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
{}
[upstream.slow]
servers = ["{}"]
[[route]]
prefix = "/slow/"
upstream = "slow"
response_timeout = "300ms"
"#,
        app_ws_dead(backend.addr, ws_echo_server(), dead),
        slow.addr
    );
    let p = Ringway::start(&cfg);
    let admin = admin_addr(&p);
    let families = [
        ("ringway_requests_total", "counter"),
        ("ringway_request_duration_seconds", "histogram"),
        ("ringway_upstream_connect_errors_total", "counter"),
        ("ringway_upstream_timeouts_total", "counter"),
        ("ringway_upstream_healthy", "gauge"),
        ("ringway_upstream_in_flight_requests", "gauge"),
        ("ringway_upstream_idle_connections", "gauge"),
        ("ringway_open_connections", "gauge"),
        ("ringway_open_tunnels", "gauge"),
        ("ringway_tunnels_total", "counter"),
        ("ringway_client_received_bytes_total", "counter"),
        ("ringway_client_sent_bytes_total", "counter"),
        ("ringway_tunnel_idle_pipes", "gauge"),
    ];
    let (_, text) = admin_get(admin, "/metrics");
    for (name, kind) in families {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{text}"
        );
    }
    let before = scrape(admin);
    for (name, _) in families {
        assert!(before.docs.contains_key(name), "no HELP for {name}");
    }
    let app = [("route", "/app/")];
    assert_eq!(value(&before, "ringway_requests_total", &app), 0.0);
    assert_eq!(value(&before, "ringway_upstream_healthy", &[("upstream", "app")]), 1.0);

    let agent = agent();
    for _ in 0..5 {
        assert_eq!(http(&agent, "GET", &p.url("/app/m"), &[], None).status, 200);
    }
    assert_eq!(get(&p.url("/nowhere")).status, 404);
    assert_eq!(get(&p.url("/dead/x")).status, 502);
    assert_eq!(get(&p.url("/slow/x")).status, 504);
    let mut ws = ws_connect(p.addr(), "/ws");
    ws.send(Message::Binary(vec![7u8; 1000])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Binary(vec![7u8; 1000]));

    // Gauges sampled by the workers' one-second tick: wait for them.
    thread::sleep(Duration::from_millis(1300));
    let now = scrape(admin);
    let v = |name: &str, labels: &[(&str, &str)]| value(&now, name, labels);
    assert_eq!(
        v("ringway_requests_total", &[("route", "/app/"), ("class", "2xx")]),
        5.0
    );
    assert_eq!(v("ringway_requests_total", &[("route", "none"), ("class", "4xx")]), 1.0);
    assert_eq!(
        v("ringway_requests_total", &[("route", "/dead/"), ("class", "5xx")]),
        1.0
    );
    assert_eq!(
        v("ringway_requests_total", &[("route", "/slow/"), ("class", "5xx")]),
        1.0
    );
    assert_eq!(v("ringway_requests_total", &[("route", "/ws"), ("class", "1xx")]), 1.0);
    assert_eq!(v("ringway_request_duration_seconds_count", &app), 5.0);
    assert!(v("ringway_request_duration_seconds_sum", &app) > 0.0);
    assert_eq!(
        v("ringway_request_duration_seconds", &app),
        5.0,
        "the +Inf bucket counts all"
    );
    let slow_hist = v("ringway_request_duration_seconds_sum", &[("route", "/slow/")]);
    assert!(slow_hist >= 0.3, "the 504 took the response timeout: {slow_hist}");
    assert_eq!(v("ringway_upstream_connect_errors_total", &[("upstream", "dead")]), 1.0);
    assert_eq!(
        v(
            "ringway_upstream_timeouts_total",
            &[("upstream", "slow"), ("phase", "response")]
        ),
        1.0
    );
    assert_eq!(v("ringway_upstream_idle_connections", &[("upstream", "app")]), 1.0);
    assert_eq!(v("ringway_open_tunnels", &[]), 1.0);
    assert_eq!(v("ringway_tunnels_total", &[]), 1.0);
    assert!(
        v("ringway_open_connections", &[]) >= 2.0,
        "the agent's and the tunnel's"
    );
    let received = v("ringway_client_received_bytes_total", &[]);
    let sent = v("ringway_client_sent_bytes_total", &[]);
    assert!(received > 5.0 * 30.0 && sent > 5.0 * 100.0, "{received} {sent}");

    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(admin);
        let tunnels = value(&s, "ringway_open_tunnels", &[]);
        let bytes = value(&s, "ringway_client_received_bytes_total", &[]);
        if tunnels == 0.0 && bytes >= received + 1000.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tunnel not closed in metrics: {tunnels} {bytes}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = admin_get(admin, "/healthz");
    assert_eq!(status, 200);
}

/// A plain HTTP health endpoint that can be stopped and started again on the same port.
struct HealthServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl HealthServer {
    fn start(addr: &str) -> HealthServer {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            for c in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        HealthServer {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_status(admin: SocketAddr, path: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin_get(admin, path);
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {status} ({body}), want {want}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// /readyz: 200 while the only server passes its checks, 503 naming the upstream once it dies,
/// 200 again when it is back. /healthz stays 200 throughout.
#[test]
fn readyz_follows_the_only_upstream_server() {
    let mut server = HealthServer::start("127.0.0.1:0");
    let cfg = format!(
        r#"
[server]
workers = 2
[[listener]]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
[upstream.app]
servers = ["{}"]
[upstream.app.health]
path = "/health"
interval = "100ms"
timeout = "500ms"
rise = 1
fall = 1
[[route]]
upstream = "app"
"#,
        server.addr
    );
    let p = Ringway::start(&cfg);
    let admin = admin_addr(&p);
    assert_eq!(wait_status(admin, "/readyz", 200), "ready\n");
    let addr = server.addr;
    server.stop();
    let why = wait_status(admin, "/readyz", 503);
    assert!(why.contains("upstream app"), "{why}");
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    assert_eq!(
        value(&scrape(admin), "ringway_upstream_healthy", &[("upstream", "app")]),
        0.0
    );
    let _back = HealthServer::start(&addr.to_string());
    wait_status(admin, "/readyz", 200);
    assert_eq!(
        value(&scrape(admin), "ringway_upstream_healthy", &[("upstream", "app")]),
        1.0
    );
    assert_eq!(admin_get(admin, "/nope").0, 404);
}

/// The status page, loaded in a real browser: its script fetched /status.json and filled in the
/// listeners, the routes in match order, the upstream servers with health, and the counts.
#[test]
fn status_page_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        if std::env::var_os("RINGWAY_REQUIRE_CHROMIUM").is_some() {
            panic!("chromium not found (scripts/test.sh installs it)");
        }
        eprintln!("status_page_renders_in_headless_chromium: no chromium on PATH; skipped");
        return;
    };
    let backend = Backend::echo();
    let dead = refused_addr();
    let cfg = format!(
        r#"
[server]
workers = 2
[[listener]]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
[upstream.grafana]
servers = ["{}"]
[upstream.prometheus]
servers = ["{dead}"]
[upstream.prometheus.health]
path = "/-/ready"
interval = "100ms"
fall = 1
[[route]]
prefix = "/grafana/"
upstream = "grafana"
[[route]]
host = "metrics.example.com"
prefix = "/prometheus/"
upstream = "prometheus"
"#,
        backend.addr
    );
    let p = Ringway::start(&cfg);
    let admin = admin_addr(&p);
    for _ in 0..7 {
        assert_eq!(get(&p.url("/grafana/api/health")).status, 200);
    }
    wait_status(admin, "/readyz", 503);
    let dir = TempDir::new();
    let url = format!("http://{admin}/");
    let dom = run_chromium(&bin, &dir.path.join("profile"), &url, &["--dump-dom"]);
    let text_of = |id: &str| -> String {
        let start = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in DOM:\n{dom}"));
        let open = start + dom[start..].find('>').unwrap() + 1;
        let close = open + dom[open..].find("</").unwrap();
        dom[open..close].to_string()
    };
    assert_eq!(text_of("requests"), "7", "the counts come from status.json");
    assert_eq!(text_of("open-tunnels"), "0");
    assert_eq!(text_of("ready"), "not ready");
    assert!(!text_of("updated").contains("never") && !text_of("updated").contains("failed"));
    let listeners = &dom[dom.find("id=\"listeners\"").unwrap()..];
    assert!(listeners.contains(&format!("<td>{}</td>", p.addr())), "{dom}");
    let routes = &dom[dom.find("id=\"routes\"").unwrap()..];
    let g = routes.find("<td>/grafana/</td>").expect("grafana route row");
    let m = routes.find("<td>/prometheus/</td>").expect("prometheus route row");
    assert!(g < m, "routes in match order");
    assert!(routes.contains("<td>metrics.example.com</td>"));
    let ups = &dom[dom.find("id=\"upstreams\"").unwrap()..];
    assert!(ups.contains(&format!("<td>{}</td>", backend.addr)));
    assert!(
        ups.contains(&format!("<td>{dead}</td><td class=\"down\">down</td>")),
        "{ups}"
    );
    assert!(ups.contains("<td class=\"up\">up (unchecked)</td>"), "{ups}");

    // A screenshot for the README, when asked (RINGWAY_SCREENSHOT=path).
    if let Some(path) = std::env::var_os("RINGWAY_SCREENSHOT") {
        let shot = format!("--screenshot={}", Path::new(&path).display());
        run_chromium(
            &bin,
            &dir.path.join("profile2"),
            &url,
            &[&shot, "--window-size=1100,760"],
        );
        assert!(Path::new(&path).is_file());
    }
}

/// `[log] level` filters ringway's own events; the start-up lines stay whatever the level.
#[test]
fn log_level_filters_events_but_not_start_up_lines() {
    let dead = refused_addr();
    let cfg = |level: &str| {
        format!(
            "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\nlevel = \"{level}\"\n\
             [upstream.dead]\nservers = [\"{dead}\"]\n[[route]]\nupstream = \"dead\"\n"
        )
    };
    for (level, shown) in [("info", true), ("error", false)] {
        let p = Ringway::start(&cfg(level));
        assert_eq!(get(&p.url("/x")).status, 502);
        thread::sleep(Duration::from_millis(100));
        let err = p.stderr();
        assert!(
            err.contains("ringway: listening on ") && err.contains("ringway: ready"),
            "{err}"
        );
        assert_eq!(err.contains("refused the connection"), shown, "level {level}:\n{err}");
    }
}

/// Bad `[log]` and `[admin]` values are configuration errors naming the line and key.
#[test]
fn bad_log_and_admin_keys_are_config_errors() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.toml",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n\
         [log]\nformat = \"xml\"\nlevel = \"loud\"\n[admin]\nbind = \"localhost\"\n",
    );
    let out = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains(":8: log.format: `xml`"), "{err}");
    assert!(err.contains(":9: log.level: `loud`"), "{err}");
    assert!(err.contains(":11: admin.bind: `localhost`"), "{err}");
    let path = dir.write(
        "missing-dir.toml",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n\
         [log]\naccess = \"/nonexistent-dir/x/access.log\"\n",
    );
    let out = run_cli(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("cannot open access log /nonexistent-dir/x/access.log"));
}

/// `access = "stdout"`: whole lines on standard output, from every worker.
#[test]
fn access_log_to_stdout() {
    use std::io::BufRead;
    let backend = Backend::echo();
    let dir = TempDir::new();
    let cfg = dir.write(
        "r.toml",
        &format!(
            "[server]\nworkers = 2\n[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\naccess = \"stdout\"\nformat = \"json\"\n\
             [upstream.a]\nservers = [\"{}\"]\n[[route]]\nupstream = \"a\"\n",
            backend.addr
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["--config", cfg.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let mut addr = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("ringway: listening on ") {
            addr = Some(a.trim().parse::<SocketAddr>().unwrap());
        }
        if line.starts_with("ringway: ready") {
            break;
        }
    }
    let addr = addr.expect("listening line");
    for i in 0..20 {
        assert_eq!(get(&format!("http://{addr}/n{i}")).status, 200);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut targets = Vec::new();
    while targets.len() < 20 {
        let line = rx.recv_timeout(Duration::from_secs(5)).expect("20 log lines on stdout");
        targets.push(parse_line("json", &line)["target"].clone());
    }
    targets.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("/n{i}")).collect();
    want.sort();
    assert_eq!(targets, want);
}

/// Runs the binary with `args` until it prints `ringway: ready`; returns it and its stderr so
/// far (the rest is drained in the background).
fn spawn_ready(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("ringway: ready") {
            break;
        }
    }
    assert!(log.contains("ringway: ready"), "{log}");
    thread::spawn(move || lines.for_each(drop));
    (child, log)
}

/// A successor taking over (`--takeover`) binds the same admin port while the old process
/// drains, and answers on it once the old one is gone.
#[test]
fn admin_port_follows_a_takeover() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let control = dir.path.join("ctl.sock");
    let cfg = dir.write(
        "r.toml",
        &format!(
            "[server]\nworkers = 1\ncontrol_socket = \"{}\"\nshutdown_timeout = \"5s\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
             [admin]\nbind = \"{admin}\"\n[upstream.a]\nservers = [\"{}\"]\n[[route]]\nupstream = \"a\"\n",
            control.display(),
            backend.addr
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let (mut old, log) = spawn_ready(&["--config", cfg]);
    assert!(log.contains(&format!("ringway: admin on http://{admin}/")), "{log}");
    assert_eq!(admin_get(admin, "/readyz").0, 200);
    let (mut new, log) = spawn_ready(&["--config", cfg, "--takeover", control.to_str().unwrap()]);
    assert!(log.contains(&format!("ringway: admin on http://{admin}/")), "{log}");
    let status = old.wait().unwrap();
    assert!(status.success(), "the old process drains and exits 0: {status:?}");
    let (code, body) = admin_get(admin, "/status.json");
    assert_eq!(code, 200);
    assert!(body.contains("\"ready\":true"), "{body}");
    assert_eq!(admin_get(admin, "/readyz").0, 200);
    let _ = new.kill();
    let _ = new.wait();
}
