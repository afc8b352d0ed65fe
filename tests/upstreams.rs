//! Upstream groups end to end: the real `ringway` binary in front of three real HTTP servers on
//! loopback, each answering with its own id. Weighted split, failover without losing a request,
//! rejoin after health checks, consistent hashing, and the per-server connection cap.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;
use common::Ringway;

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 backend that can be killed (listener closed, every connection shut down) and
// started again on the same port.

struct BackendState {
    stop: AtomicBool,
    /// What `/health` answers.
    healthy: AtomicBool,
    /// Delay before answering other paths.
    delay_ms: AtomicU64,
    hits: AtomicU64,
    /// Read each request, then close without a byte of response.
    hangup: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

struct Backend {
    id: String,
    port: u16,
    state: Arc<BackendState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(id: &str, port: u16) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(BackendState {
            stop: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            delay_ms: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            hangup: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let (st, name) = (state.clone(), id.to_string());
        let acceptor = std::thread::spawn(move || {
            while !st.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        st.conns.lock().unwrap().push(s.try_clone().unwrap());
                        let (st, name) = (st.clone(), name.clone());
                        std::thread::spawn(move || serve_backend(s, &st, &name));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            id: id.to_string(),
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes the listener and cuts every open connection, like a crashed process.
    fn kill(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve_backend(mut s: TcpStream, st: &BackendState, id: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        if st.stop.load(Ordering::SeqCst) || st.hangup.load(Ordering::SeqCst) {
            // A clone sits in `conns`: dropping this handle alone would not close the socket.
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (status, body) = if path == "/health" {
            if st.healthy.load(Ordering::SeqCst) {
                ("200 OK", "ok".to_string())
            } else {
                ("503 Service Unavailable", "sick".to_string())
            }
        } else {
            st.hits.fetch_add(1, Ordering::SeqCst);
            let d = st.delay_ms.load(Ordering::SeqCst);
            if d > 0 {
                std::thread::sleep(Duration::from_millis(d));
            }
            ("200 OK", id.to_string())
        };
        let close = head.contains("connection: close");
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Backend: {id}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test.

/// ringway with one upstream group `app` (its `servers` list and any further keys as given) that
/// serves every path.
fn start_proxy(workers: usize, servers: &str, group_keys: &str) -> Ringway {
    Ringway::start(&format!(
        r#"
[server]
workers = {workers}
[[listener]]
bind = "127.0.0.1:0"
[upstream.app]
servers = [{servers}]
{group_keys}
[[route]]
upstream = "app"
"#
    ))
}

/// The quoted addresses of `backends`, for a `servers` list.
fn quoted(backends: &[&Backend]) -> String {
    let addrs: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    addrs.join(", ")
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build()
}

/// (status, body) of a GET; transport errors become status 0 with the error as body.
fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent.get(url);
    for (n, v) in headers {
        req = req.set(n, v);
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------------------------

/// Smooth weighted round-robin over one keep-alive client connection (one worker): weights 1:2:3
/// over 600 requests give 100/200/300, within ±3 per server (a worker's cycle is exact).
#[test]
fn weights_split_the_traffic() {
    let b: Vec<Backend> = ["a", "b", "c"].iter().map(|id| Backend::start(id, 0)).collect();
    let servers = format!(
        r#""{}", {{ addr = "{}", weight = 2 }}, {{ addr = "{}", weight = 3 }}"#,
        b[0].addr(),
        b[1].addr(),
        b[2].addr()
    );
    let proxy = start_proxy(2, &servers, r#"balance = "round_robin""#);
    let agent = agent();
    let url = format!("http://{}/x", proxy.addr());
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut last = String::new();
    let mut longest_run = 0;
    let mut run = 0;
    for _ in 0..600 {
        let (status, body) = get(&agent, &url, &[]);
        assert_eq!(status, 200, "{body}");
        run = if body == last { run + 1 } else { 1 };
        longest_run = longest_run.max(run);
        last = body.clone();
        *counts.entry(body).or_default() += 1;
    }
    for (id, want) in [("a", 100), ("b", 200), ("c", 300)] {
        let got = counts.get(id).copied().unwrap_or(0);
        assert!(
            (got - want).abs() <= 3,
            "{id}: {got} of 600, want {want}±3 ({counts:?})"
        );
    }
    // Smooth: the heaviest server (half the weight) never gets more than 2 in a row.
    assert!(longest_run <= 2, "a burst of {longest_run} to one server");
}

/// Four clients send GETs without pause; one server is killed mid-stream: every request still
/// gets a 200 (connect failures move, idempotent requests cut before any byte are retried).
/// The server then comes back on its port and rejoins once its health checks pass.
#[test]
fn killing_a_server_loses_no_request_and_it_rejoins() {
    let mut b: Vec<Backend> = ["a", "b", "c"].iter().map(|id| Backend::start(id, 0)).collect();
    let proxy = start_proxy(
        2,
        &quoted(&[&b[0], &b[1], &b[2]]),
        r#"
retries = 1
[upstream.app.health]
path = "/health"
interval = "100ms"
timeout = "500ms"
rise = 2
fall = 2
[upstream.app.passive]
max_fails = 1
cooldown = "30s"
"#,
    );
    let url = format!("http://{}/stream", proxy.addr());
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen, failures, sent, url) =
                (stop.clone(), seen.clone(), failures.clone(), sent.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = get(&agent, &url, &[]);
                    if status == 200 {
                        *seen.lock().unwrap().entry(body).or_default() += 1;
                    } else {
                        failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let port = b[1].port;
    b[1].kill();
    let hits_at_kill = b[1].state.hits.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1200));
    // The dead server is out: the others carry everything.
    let before = seen.lock().unwrap().clone();
    std::thread::sleep(Duration::from_millis(300));
    let after = seen.lock().unwrap().clone();
    assert_eq!(
        before.get("b"),
        after.get("b"),
        "requests still answered by the dead server"
    );
    assert!(after["a"] > before["a"] && after["c"] > before["c"]);

    // Back on the same port: health checks pass twice, every worker takes it back.
    let revived = Backend::start("b", port);
    let rejoined = wait_until(Duration::from_secs(5), || {
        revived.state.hits.load(Ordering::SeqCst) > 20
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let seen = seen.lock().unwrap();
    let answered: u64 = seen.values().sum();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failures.len(),
        sent.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)],
        proxy.stderr()
    );
    assert_eq!(answered, sent.load(Ordering::SeqCst), "every request counted");
    assert!(hits_at_kill > 0, "b served before it was killed");
    assert!(rejoined, "b did not rejoin: {seen:?}\n{}", proxy.stderr());
    assert!(proxy.stderr().contains("is up"), "{}", proxy.stderr());
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{}\n{seen:?} sent {}", proxy.stderr(), sent.load(Ordering::SeqCst));
    }
}

/// `hash` on a cookie: a client stays on one server; when that server dies only its clients move,
/// every other client keeps its server.
#[test]
fn hash_is_sticky_and_consistent() {
    let mut b: Vec<Backend> = ["a", "b", "c"].iter().map(|id| Backend::start(id, 0)).collect();
    let proxy = start_proxy(
        2,
        &quoted(&[&b[0], &b[1], &b[2]]),
        "balance = \"hash\"\nhash_key = \"cookie:sid\"",
    );
    let url = format!("http://{}/h", proxy.addr());
    let agent = agent();
    let keys: Vec<String> = (0..90).map(|k| format!("sid=session-{k}")).collect();
    let mut home = HashMap::new();
    for k in &keys {
        for _ in 0..3 {
            let (status, body) = get(&agent, &url, &[("Cookie", k)]);
            assert_eq!(status, 200);
            let prev = home.entry(k.clone()).or_insert_with(|| body.clone());
            assert_eq!(*prev, body, "{k} moved between servers");
        }
    }
    for id in ["a", "b", "c"] {
        let n = home.values().filter(|h| *h == id).count();
        assert!(n >= 10, "server {id} got only {n} of 90 keys: the ring is lopsided");
    }
    b[1].kill();
    let mut moved = 0;
    for k in &keys {
        let (status, body) = get(&agent, &url, &[("Cookie", k)]);
        assert_eq!(status, 200, "{body}");
        if home[k] == "b" {
            assert_ne!(body, "b");
            moved += 1;
        } else {
            assert_eq!(body, home[k], "{k} moved although its server is alive");
        }
    }
    assert!(moved > 0);
}

/// One slot per server: a second request waits for the first (queue_timeout 3s), while with
/// queue_timeout 200ms the extra requests get 503 naming the cap.
#[test]
fn connection_cap_queues_then_answers_503() {
    let slow = Backend::start("slow", 0);
    slow.state.delay_ms.store(600, Ordering::SeqCst);
    let proxy = Ringway::start(&format!(
        r#"
[server]
workers = 1
[[listener]]
bind = "127.0.0.1:0"
[upstream.patient]
servers = ["{0}"]
max_connections_per_server = 1
queue_timeout = "3s"
[upstream.hasty]
servers = ["{0}"]
max_connections_per_server = 1
queue_timeout = "200ms"
[[route]]
prefix = "/patient/"
upstream = "patient"
[[route]]
prefix = "/hasty/"
upstream = "hasty"
"#,
        slow.addr()
    ));
    let concurrent = |path: &str, n: usize| -> Vec<(u16, String, Duration)> {
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, url) = (barrier.clone(), format!("http://{}{path}", proxy.addr()));
                std::thread::spawn(move || {
                    let agent = agent();
                    barrier.wait();
                    let t = Instant::now();
                    let (s, b) = get(&agent, &url, &[]);
                    (s, b, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };

    let r = concurrent("/patient/x", 2);
    assert!(r.iter().all(|(s, ..)| *s == 200), "{r:?}");
    let slowest = r.iter().map(|(.., t)| *t).max().unwrap();
    assert!(
        slowest >= Duration::from_millis(1100),
        "the second request did not queue: {r:?}"
    );

    let r = concurrent("/hasty/x", 3);
    let ok = r.iter().filter(|(s, ..)| *s == 200).count();
    let refused: Vec<_> = r.iter().filter(|(s, ..)| *s == 503).collect();
    assert_eq!((ok, refused.len()), (1, 2), "{r:?}");
    for (_, body, t) in refused {
        assert!(body.contains("max_connections_per_server"), "{body}");
        // It waited its queue_timeout (the 1-of-3 count above shows it did not get the slot).
        assert!(
            *t >= Duration::from_millis(180),
            "answered 503 before queue_timeout: {t:?}"
        );
    }
}

/// Every server failing its health check: 503 with a body that says so, and traffic returns when
/// the check passes again.
#[test]
fn no_healthy_server_answers_503() {
    let b = Backend::start("only", 0);
    b.state.healthy.store(false, Ordering::SeqCst);
    let proxy = start_proxy(
        2,
        &quoted(&[&b]),
        r#"
[upstream.app.health]
path = "/health"
interval = "50ms"
timeout = "500ms"
rise = 1
fall = 1
"#,
    );
    let url = format!("http://{}/", proxy.addr());
    let agent = agent();
    let mut last = (0, String::new());
    assert!(wait_until(Duration::from_secs(3), || {
        last = get(&agent, &url, &[]);
        last.0 == 503
    }));
    assert_eq!(last.1.trim_end(), "upstream app has no healthy server");
    b.state.healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(3), || get(&agent, &url, &[]) == (200, b.id.clone())));
}

/// A server that closes every connection before answering: GETs are retried on the other server
/// and all succeed; POSTs are not idempotent, so those sent to it get 502 instead of a replay.
#[test]
fn only_idempotent_requests_are_retried() {
    let bad = Backend::start("bad", 0);
    bad.state.hangup.store(true, Ordering::SeqCst);
    let good = Backend::start("good", 0);
    let proxy = start_proxy(1, &quoted(&[&bad, &good]), "retries = 1");
    let url = format!("http://{}/r", proxy.addr());
    let agent = agent();
    for _ in 0..10 {
        assert_eq!(get(&agent, &url, &[]), (200, "good".to_string()));
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let status = match agent.post(&url).send_string("form=1") {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        };
        statuses.push(status);
    }
    let failed = statuses.iter().filter(|s| **s == 502).count();
    assert_eq!(
        failed, 5,
        "round-robin sends half the POSTs to the bad server: {statuses:?}"
    );
    assert!(proxy.stderr().contains("retrying on another server"));
}

/// least_conn and p2c read live in-flight counts: with one server answering in 150 ms and one at
/// once, four busy clients end up mostly on the fast one (round-robin would split evenly).
#[test]
fn least_conn_and_p2c_favour_the_idle_server() {
    for balance in ["least_conn", "p2c"] {
        let slow = Backend::start("slow", 0);
        slow.state.delay_ms.store(150, Ordering::SeqCst);
        let fast = Backend::start("fast", 0);
        let proxy = start_proxy(1, &quoted(&[&slow, &fast]), &format!("balance = \"{balance}\""));
        let url = format!("http://{}/l", proxy.addr());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let agent = agent();
                    let end = Instant::now() + Duration::from_millis(800);
                    while Instant::now() < end {
                        assert_eq!(get(&agent, &url, &[]).0, 200);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (s, f) = (
            slow.state.hits.load(Ordering::SeqCst),
            fast.state.hits.load(Ordering::SeqCst),
        );
        assert!(f > 5 * s, "{balance}: slow {s}, fast {f}");
    }
}
