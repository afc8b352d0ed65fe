//! Process lifecycle through the built binary: graceful shutdown on SIGTERM/SIGINT, the
//! shutdown_timeout deadline, systemd readiness (sd_notify), and zero-downtime restart by
//! handing the listening sockets to a successor (`--takeover`) under continuous load.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{Backend, RawClient, Reply, ResponseView, StderrCopy, TempDir, BIN};

/// A ringway process this test starts, signals and waits for (the shared `Ringway` harness
/// treats an exit as a failure; here exiting is the point).
struct Proc {
    child: Child,
    stderr: StderrCopy,
    addrs: Vec<SocketAddr>,
}

impl Proc {
    fn spawn(config: &Path, extra: &[&str], env: &[(&str, &OsString)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, stderr) = StderrCopy::spawn(&mut cmd);
        Proc {
            child,
            stderr,
            addrs: Vec::new(),
        }
    }

    /// Starts and waits for `ringway: ready`, collecting the `listening on` addresses.
    fn start(config: &Path, extra: &[&str]) -> Proc {
        let mut p = Proc::spawn(config, extra, &[]);
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        match self.stderr.wait_ready(Duration::from_secs(15)) {
            Ok(addrs) => self.addrs.extend(addrs),
            Err(_) => panic!("ringway did not become ready; stderr:\n{}", self.log()),
        }
    }

    fn log(&self) -> String {
        self.stderr.log.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid this test spawned and has not reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit; panics (with its stderr) if it is still running.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exited() {
                // Let the stderr copy catch up, so `log()` holds all the process wrote (bounded:
                // a detached successor may hold the same pipe open).
                let caught_up = Instant::now() + Duration::from_secs(2);
                while !self.stderr.reader.is_finished() && Instant::now() < caught_up {
                    thread::sleep(Duration::from_millis(5));
                }
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "ringway pid {} still running after {within:?}; stderr:\n{}",
                    self.pid(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn assert_exits_0(&mut self, within: Duration) {
        let status = self.wait_exit(within);
        assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", self.log());
        assert!(!self.log().contains("panicked"), "stderr:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &TempDir, body: &str) -> PathBuf {
    dir.write("ringway.toml", body)
}

/// A port for a test that must bind the same address again (restart after a crash, takeover of a
/// configured port). Taken below the kernel's ephemeral range (32768+ here): a port 0 picked and
/// released could be handed out again at once as the source port of one of the thousands of
/// connections other tests open, and the restart would then find it in use.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + (seed + n * 97) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

fn basic(backend: SocketAddr, server_extra: &str, bind: &str) -> String {
    format!(
        "[server]\nworkers = 2\n{server_extra}\n\
         [[listener]]\nbind = \"{bind}\"\n\
         [upstream.app]\nservers = [\"{backend}\"]\n\
         [[route]]\nprefix = \"/\"\nupstream = \"app\"\n"
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").into_bytes()
}

/// A connection attempt is refused (nobody listens any more).
fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

fn slow_backend() -> Backend {
    Backend::with(|_, url| match url {
        u if u.starts_with("/slow") => Reply::Delay(Duration::from_millis(1500)),
        u if u.starts_with("/stuck") => Reply::Delay(Duration::from_secs(30)),
        _ => Reply::fixed(200, &[], "ok"),
    })
}

#[test]
fn sigterm_lets_a_slow_response_finish_refuses_new_connections_and_exits_0() {
    let backend = slow_backend();
    let dir = TempDir::new();
    let mut p = Proc::start(&config(&dir, &basic(backend.addr, "", "127.0.0.1:0")), &[]);
    let addr = p.addrs[0];

    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let done = done.clone();
        thread::spawn(move || {
            let mut c = RawClient::connect(addr);
            c.send(&get("/slow"));
            let r = c.try_read_response(false);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let until = Instant::now() + Duration::from_secs(5);
    while backend.hits() == 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(backend.hits(), 1, "the slow request reached the backend");
    p.signal(libc::SIGTERM);

    // New connections are refused while the slow response is still on its way.
    let until = Instant::now() + Duration::from_secs(1);
    while !refused(addr) {
        assert!(
            Instant::now() < until,
            "still accepting after SIGTERM; stderr:\n{}",
            p.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !done.load(Ordering::SeqCst),
        "the slow response was meant to be still in flight"
    );
    assert!(p.exited().is_none(), "exited before the in-flight response finished");

    let r = client.join().unwrap().expect("the in-flight response completes");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "drained while waiting: the last response"
    );
    assert!(String::from_utf8_lossy(&r.body).contains("/slow"), "echo body");
    p.assert_exits_0(Duration::from_secs(5));
    let log = p.log();
    assert!(
        log.contains("SIGTERM: draining") && log.contains("drained; exiting"),
        "{log}"
    );
}

#[test]
fn draining_answers_the_next_request_of_every_keep_alive_connection_with_close() {
    let backend = slow_backend();
    let dir = TempDir::new();
    let server = "shutdown_timeout = \"3s\"";
    let mut p = Proc::start(&config(&dir, &basic(backend.addr, server, "127.0.0.1:0")), &[]);
    let addr = p.addrs[0];

    let mut idle = RawClient::connect(addr);
    idle.send(&get("/a"));
    assert_eq!(idle.read_response().status, 200);
    let mut silent = RawClient::connect(addr);
    silent.send(&get("/a"));
    assert_eq!(silent.read_response().status, 200);
    let mut busy = RawClient::connect(addr);
    busy.send(&get("/b"));
    assert_eq!(busy.read_response().status, 200);
    // The next request is on its way: half its head is in.
    busy.send(b"GET /slow HTTP/1.1\r\nHost: app\r\n");
    thread::sleep(Duration::from_millis(100));

    let t = Instant::now();
    p.signal(libc::SIGTERM);
    // An idle keep-alive connection is not cut under a request its client may be sending.
    assert!(
        idle.silent_for(Duration::from_millis(500)),
        "the idle connection stays open"
    );
    idle.send(&get("/next"));
    let r = idle.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"), "its next response is its last");
    assert!(idle.closed_within(Duration::from_secs(2)), "closed after that response");

    busy.send(b"\r\n");
    let r = busy.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"), "the last response says so");
    assert!(
        busy.closed_within(Duration::from_secs(2)),
        "closed after its last response"
    );
    // A connection that stays idle is closed shortly before shutdown_timeout (3 s - 300 ms).
    assert!(
        silent.closed_within(Duration::from_secs(5)),
        "the silent one is closed in the end"
    );
    let closed_after = t.elapsed();
    assert!(
        closed_after >= Duration::from_millis(2500) && closed_after < Duration::from_millis(3000),
        "closed {closed_after:?} after SIGTERM"
    );
    p.assert_exits_0(Duration::from_secs(5));
    assert!(!p.log().contains("shutdown_timeout (3s) reached"), "{}", p.log());
}

/// A backend that serves one connection at a time, with keep-alive (like a server with a single
/// worker thread, or a thread pool that is full): a second connection waits in the accept queue
/// until the first one closes. `/slow` is answered after 300 ms. Counts the responses it sent.
/// Its thread stays blocked in accept until the test binary ends.
fn one_connection_at_a_time_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let (mut buf, mut tmp) = (Vec::new(), [0u8; 4096]);
            'requests: loop {
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => break 'requests,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let slow = buf.starts_with(b"GET /slow ");
                buf.drain(..end);
                if slow {
                    thread::sleep(Duration::from_millis(300));
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                    break;
                }
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, served)
}

/// A draining process must not sit on idle upstream keep-alive connections: a server that serves
/// a bounded number of connections may be keeping a request (here one of ours) waiting for one
/// of them to close, and the drain would then last until shutdown_timeout.
#[test]
fn draining_closes_idle_upstream_connections_so_a_request_queued_behind_them_finishes() {
    let (backend, served) = one_connection_at_a_time_backend();
    let dir = TempDir::new();
    let cfg = basic(backend, "shutdown_timeout = \"10s\"", "127.0.0.1:0").replace("workers = 2", "workers = 1");
    let mut p = Proc::start(&config(&dir, &cfg), &[]);
    let addr = p.addrs[0];

    // A holds the backend's one connection; B, sent meanwhile, gets a second upstream connection,
    // which the backend leaves in its accept queue.
    let mut a = RawClient::connect(addr);
    a.send(&get("/slow"));
    thread::sleep(Duration::from_millis(100));
    let mut b = RawClient::connect(addr);
    b.set_timeout(Duration::from_secs(15));
    b.send(&get("/b"));
    assert_eq!(a.read_response().status, 200);
    // A's client goes away (an idle client connection would keep the drain open until it
    // sends again or shutdown_timeout nears).
    drop(a);
    // A's upstream connection is now idle in ringway's pool, and B still waits behind it.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "B is queued behind the pooled connection"
    );

    let t = Instant::now();
    p.signal(libc::SIGTERM);
    let r = b.read_response();
    assert_eq!(
        r.status, 200,
        "B is answered once the draining process lets the pooled one go"
    );
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "drained while waiting: the last response"
    );
    p.assert_exits_0(Duration::from_secs(3));
    assert!(t.elapsed() < Duration::from_secs(2), "drain took {:?}", t.elapsed());
    let log = p.log();
    assert!(
        log.contains("drained; exiting") && !log.contains("shutdown_timeout"),
        "{log}"
    );
}

/// An idle keep-alive client connection is closed shortly before shutdown_timeout (here 1 s).
#[test]
fn sigint_on_an_idle_proxy_exits_0_by_shutdown_timeout() {
    let backend = slow_backend();
    let dir = TempDir::new();
    let server = "shutdown_timeout = \"1s\"";
    let mut p = Proc::start(&config(&dir, &basic(backend.addr, server, "127.0.0.1:0")), &[]);
    let mut c = RawClient::connect(p.addrs[0]);
    c.send(&get("/x"));
    assert_eq!(c.read_response().status, 200);
    let t = Instant::now();
    p.signal(libc::SIGINT);
    p.assert_exits_0(Duration::from_secs(2));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert!(c.closed_within(Duration::from_secs(1)));
    assert!(!p.log().contains("shutdown_timeout (1s) reached"), "{}", p.log());
    assert!(p.log().contains("SIGINT: draining"), "{}", p.log());
}

#[test]
fn shutdown_timeout_cuts_a_stuck_request_and_a_tunnel_and_still_exits_0() {
    let backend = slow_backend();
    let ws = common::ws_echo_server();
    let dir = TempDir::new();
    let cfg = format!(
        "{}[upstream.ws]\nservers = [\"{ws}\"]\n[[route]]\nprefix = \"/ws\"\nupstream = \"ws\"\n",
        basic(backend.addr, "shutdown_timeout = \"1s\"", "127.0.0.1:0")
    );
    let mut p = Proc::start(&config(&dir, &cfg), &[]);
    let addr = p.addrs[0];

    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut socket, resp) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    socket.send(tungstenite::Message::Text("before".into())).unwrap();
    assert_eq!(socket.read().unwrap().into_text().unwrap(), "before");

    let mut stuck = RawClient::connect(addr);
    stuck.send(&get("/stuck"));
    let until = Instant::now() + Duration::from_secs(5);
    while backend.hits() == 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }

    let t = Instant::now();
    p.signal(libc::SIGTERM);
    // The tunnel keeps working while the deadline has not passed.
    thread::sleep(Duration::from_millis(300));
    socket.send(tungstenite::Message::Text("during".into())).unwrap();
    assert_eq!(socket.read().unwrap().into_text().unwrap(), "during");

    p.assert_exits_0(Duration::from_secs(4));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exit after {took:?}, expected about the 1s shutdown_timeout"
    );
    assert!(stuck.try_read_response(false).is_err(), "the stuck request was cut");
    assert!(socket.read().is_err(), "the tunnel was closed");
    assert!(p.log().contains("shutdown_timeout (1s) reached"), "{}", p.log());
}

#[test]
fn ready_is_notified_to_notify_socket_after_the_listeners_are_bound() {
    let backend = slow_backend();
    let dir = TempDir::new();
    let sock_path = dir.path.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let cfg = config(&dir, &basic(backend.addr, "", "127.0.0.1:0"));
    let mut p = Proc::spawn(&cfg, &[], &[("NOTIFY_SOCKET", &sock_path.clone().into_os_string())]);

    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1");
    // By then the listening line was printed (our copy of stderr may lag behind a little) and
    // the port accepts and serves.
    let copied = Instant::now() + Duration::from_secs(2);
    while !p.log().contains("ringway: listening on ") && Instant::now() < copied {
        thread::sleep(Duration::from_millis(5));
    }
    let log = p.log();
    let addr: SocketAddr = log
        .lines()
        .find_map(|l| l.strip_prefix("ringway: listening on "))
        .unwrap_or_else(|| panic!("no listening line before READY=1:\n{log}"))
        .trim()
        .parse()
        .unwrap();
    let mut c = RawClient::connect(addr);
    c.send(&get("/ready"));
    assert_eq!(c.read_response().status, 200);
    drop(c);

    p.signal(libc::SIGTERM);
    let n = notify.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
    p.assert_exits_0(Duration::from_secs(5));
}

/// Continuous load: keep-alive clients and new-connection-per-request clients. A request on a
/// reused keep-alive connection that the server closed before answering is sent again on a new
/// connection, as HTTP clients do (RFC 9112 §9.3.1); anything else that is not a 200 fails.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    retried: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

fn read_ok(s: &mut TcpStream) -> Result<bool, (bool, String)> {
    // Returns whether the server keeps the connection; Err((nothing_received, why)).
    let mut buf = Vec::with_capacity(512);
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp) {
            Ok(0) => return Err((buf.is_empty(), "closed before a response".into())),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err((buf.is_empty(), format!("read: {e}"))),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Err((false, format!("status line {:?}", head.lines().next())));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or((false, "no content-length".to_string()))?;
    while buf.len() < head_end + len {
        match s.read(&mut tmp) {
            Ok(0) => return Err((false, "closed inside the body".into())),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err((false, format!("body read: {e}"))),
        }
    }
    if &buf[head_end..head_end + len] != b"ok" {
        return Err((false, "wrong body".into()));
    }
    Ok(!head.contains("connection: close"))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl Load {
    fn start(addr: SocketAddr, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let retried = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..keep_alive + fresh {
            let reuse = i < keep_alive;
            let (stop, ok, retried, failures) = (stop.clone(), ok.clone(), retried.clone(), failures.clone());
            threads.push(thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                let fail = |why: String| failures.lock().unwrap().push(why);
                while !stop.load(Ordering::Relaxed) {
                    let req: &[u8] = if reuse {
                        b"GET /load HTTP/1.1\r\nHost: app\r\n\r\n"
                    } else {
                        b"GET /load HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
                    };
                    let reused = conn.is_some();
                    let mut s = match conn.take() {
                        Some(s) => s,
                        None => match connect(addr) {
                            Ok(s) => s,
                            Err(e) => {
                                fail(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let outcome = match s.write_all(req) {
                        Ok(()) => read_ok(&mut s),
                        Err(e) => Err((true, format!("write: {e}"))),
                    };
                    match outcome {
                        Ok(keep) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if reuse && keep {
                                conn = Some(s);
                            }
                        }
                        // The server closed a kept connection before reading the request:
                        // the request was not processed, send it again on a new connection.
                        Err((true, _)) if reused => {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        Err((_, why)) => fail(format!("{why} (reused connection: {reused})")),
                    }
                }
            }));
        }
        Load {
            stop,
            ok,
            retried,
            failures,
            threads,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            failures,
        )
    }
}

fn wait_for_more(load: &Load, n: usize) {
    let target = load.ok() + n;
    let until = Instant::now() + Duration::from_secs(10);
    while load.ok() < target {
        assert!(Instant::now() < until, "load stalled at {} responses", load.ok());
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn three_takeovers_under_continuous_load_fail_no_request() {
    let backend = Backend::with(|_, _| Reply::fixed(200, &[], "ok"));
    let dir = TempDir::new();
    let control = dir.path.join("ringway.sock");
    let bind = format!("127.0.0.1:{}", free_port());
    let server = format!("shutdown_timeout = \"10s\"\ncontrol_socket = \"{}\"", control.display());
    let cfg = config(&dir, &basic(backend.addr, &server, &bind));
    let takeover = ["--takeover", control.to_str().unwrap()];

    // The backend (tiny_http) serves each connection on a pool thread for the connection's
    // whole life and can leave a new one queued until another closes: each old process must
    // let its pooled upstream connections go when it drains, or that drain lasts until
    // shutdown_timeout (see draining_closes_idle_upstream_connections_...).
    let mut current = Proc::start(&cfg, &[]);
    let addr = current.addrs[0];
    let load = Load::start(addr, 32, 3);
    wait_for_more(&load, 200);
    let mut pids = vec![current.pid()];
    for round in 0..3 {
        let next = Proc::start(&cfg, &takeover);
        assert_eq!(next.addrs, vec![addr], "round {round}: the same listener");
        assert!(
            next.log().contains(&format!("took over from pid {}", current.pid())),
            "{}",
            next.log()
        );
        current.assert_exits_0(Duration::from_secs(10));
        assert!(
            current
                .log()
                .contains(&format!("pid {} took over the listeners", next.pid())),
            "{}",
            current.log()
        );
        pids.push(next.pid());
        current = next;
        wait_for_more(&load, 200);
    }
    let (ok, retried, failures) = load.finish();
    eprintln!(
        "takeover under load: {ok} responses, {retried} requests re-sent after a keep-alive close, pids {pids:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(retried, 0, "no keep-alive connection was closed under a request");
    assert!(ok >= 800, "{ok} responses");
    assert!(control.exists(), "the last process serves the control socket");
    current.signal(libc::SIGTERM);
    current.assert_exits_0(Duration::from_secs(10));
    assert!(!control.exists(), "a stopped ringway removes its control socket");
}

#[test]
fn a_takeover_adds_a_listener_and_changes_the_worker_count() {
    let backend = Backend::with(|_, _| Reply::fixed(200, &[], "ok"));
    let dir = TempDir::new();
    let control = dir.path.join("ctl.sock");
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let server = format!("control_socket = \"{}\"", control.display());
    let cfg = config(&dir, &basic(backend.addr, &server, &a));
    let mut old = Proc::start(&cfg, &[]);

    let second = dir.write(
        "second.toml",
        &format!(
            "{}[route.response_headers]\nset = {{ \"X-Generation\" = \"2\" }}\n[[listener]]\nbind = \"{b}\"\n",
            basic(backend.addr, &server, &a).replace("workers = 2", "workers = 1")
        ),
    );
    let mut new = Proc::start(&second, &["--takeover", control.to_str().unwrap()]);
    assert_eq!(new.addrs.len(), 2);
    assert_eq!(new.addrs[0].to_string(), a);
    assert_eq!(new.addrs[1].to_string(), b);
    let log = new.log();
    assert!(log.contains(&format!("took over {a} (2 sockets)")), "{log}");
    assert!(log.contains("ran 2 workers, this one runs 1"), "{log}");
    old.assert_exits_0(Duration::from_secs(10));
    // One worker accepts on both inherited sockets of the first listener: every new connection
    // is served whichever queue the kernel puts it in.
    for addr in &new.addrs {
        for _ in 0..20 {
            let mut c = RawClient::connect(*addr);
            c.set_timeout(Duration::from_secs(3));
            c.send(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
            let r = c.read_response();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-generation"), Some("2"), "served with the new configuration");
        }
    }
    new.signal(libc::SIGTERM);
    new.assert_exits_0(Duration::from_secs(5));
}

#[test]
fn takeover_errors_are_clear() {
    let backend = Backend::with(|_, _| Reply::fixed(200, &[], "ok"));
    let dir = TempDir::new();
    let control = dir.path.join("ctl.sock");
    let server = format!("control_socket = \"{}\"", control.display());
    let cfg = config(
        &dir,
        &basic(backend.addr, &server, &format!("127.0.0.1:{}", free_port())),
    );

    // Nobody to take over from.
    let mut p = Proc::spawn(&cfg, &["--takeover", control.to_str().unwrap()], &[]);
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert!(p.log().contains("no ringway answers on"), "{}", p.log());

    // A second ringway without --takeover: the port in use is still an error, the running one
    // is untouched.
    let mut running = Proc::start(&cfg, &[]);
    let mut second = Proc::spawn(&cfg, &[], &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(10)).code(), Some(2));
    assert!(second.log().contains("already in use"), "{}", second.log());
    // A successor whose configuration cannot bind leaves the running one serving.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = dir.write(
        "bad.toml",
        &format!(
            "{}[[listener]]\nbind = \"{}\"\n",
            basic(backend.addr, &server, &running.addrs[0].to_string()),
            taken.local_addr().unwrap()
        ),
    );
    let mut failed = Proc::spawn(&bad, &["--takeover", control.to_str().unwrap()], &[]);
    assert_eq!(failed.wait_exit(Duration::from_secs(10)).code(), Some(2));
    assert!(failed.log().contains("already in use"), "{}", failed.log());
    let until = Instant::now() + Duration::from_secs(5);
    while !running.log().contains("takeover attempt failed, still serving") {
        assert!(Instant::now() < until, "{}", running.log());
        thread::sleep(Duration::from_millis(20));
    }
    let mut c = RawClient::connect(running.addrs[0]);
    c.send(&get("/still"));
    assert_eq!(c.read_response().status, 200);
    drop(c);
    assert!(running.exited().is_none());
    // And the running one can still be taken over afterwards.
    let mut next = Proc::start(&cfg, &["--takeover", control.to_str().unwrap()]);
    running.assert_exits_0(Duration::from_secs(10));
    // After a crash (SIGKILL) with a client still connected, a plain start works at once: the
    // control socket file left behind is replaced, and the port's leftover connection
    // (FIN-WAIT-2) is not mistaken for another server.
    let mut held = RawClient::connect(next.addrs[0]);
    held.send(&get("/held"));
    assert_eq!(held.read_response().status, 200);
    next.signal(libc::SIGKILL);
    next.wait_exit(Duration::from_secs(5));
    assert!(control.exists(), "SIGKILL leaves the socket file behind");
    let mut fresh = Proc::start(&cfg, &[]);
    let mut c = RawClient::connect(fresh.addrs[0]);
    c.send(&get("/fresh"));
    assert_eq!(c.read_response().status, 200);
    drop(c);
    fresh.signal(libc::SIGTERM);
    fresh.assert_exits_0(Duration::from_secs(5));
    drop(held);
}

/// What systemd's ExecReload runs: `--detach` returns once the successor serves, and the
/// successor reports itself as the service's main process before READY=1.
#[test]
fn reload_command_detaches_and_names_the_new_main_pid() {
    // Become the subreaper, so the detached successor (orphaned when the reload command exits)
    // is reparented here and its exit status can be checked.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and touches no memory.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let backend = Backend::with(|_, _| Reply::fixed(200, &[], "ok"));
    let dir = TempDir::new();
    let control = dir.path.join("ctl.sock");
    let server = format!("control_socket = \"{}\"", control.display());
    let cfg = config(
        &dir,
        &basic(backend.addr, &server, &format!("127.0.0.1:{}", free_port())),
    );
    let mut old = Proc::start(&cfg, &[]);
    let addr = old.addrs[0];

    let notify_path = dir.path.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let log_path = dir.path.join("reload.log");
    let status = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--takeover", control.to_str().unwrap(), "--detach"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .status()
        .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "reload command failed:\n{log}");
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("MAINPID notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let pid: i32 = msg
        .strip_prefix("MAINPID=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected MAINPID=, got {msg:?}"));
    let n = notify.recv(&mut buf).expect("READY notification");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(log.contains(&format!("pid {pid} is serving")), "{log}");
    old.assert_exits_0(Duration::from_secs(10));

    let mut c = RawClient::connect(addr);
    c.send(&get("/after"));
    assert_eq!(c.read_response().status, 200, "the detached successor serves");
    // SAFETY: kill(2) on the successor's pid, which this process will reap below.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut status = 0;
    // SAFETY: waitpid writes one int; the successor is our child now (subreaper).
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "the successor was reparented to the subreaper");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
}
