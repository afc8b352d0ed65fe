//! Test harness for the black-box suite: starts the real `ringway` binary with a config written by
//! the test, real HTTP backends (tiny_http), scripted raw-TCP upstreams that record the exact bytes
//! they receive, and raw-socket clients for the cases a well-behaved HTTP library cannot produce.
//! Everything binds 127.0.0.1 port 0.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringway");

// ---------------------------------------------------------------------------------------------
// Temporary directories (no extra crate: a unique directory under the system temp dir).

pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ringway-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy process.

/// A child's stderr, copied by a thread for the child's whole life (so the child never blocks on
/// a full pipe): all of it into `log`, and each line onto `lines` for whoever waits for one.
pub struct StderrCopy {
    pub log: Arc<Mutex<String>>,
    pub lines: mpsc::Receiver<String>,
    /// The copying thread: it may still be behind when the process has exited.
    pub reader: JoinHandle<()>,
}

impl StderrCopy {
    /// Spawns `cmd` (stdin and stdout null, stderr copied).
    pub fn spawn(cmd: &mut Command) -> (Child, StderrCopy) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let reader = {
            let log = log.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(stderr);
                let mut line = String::new();
                while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                    log.lock().unwrap().push_str(&line);
                    let _ = tx.send(line.trim_end().to_string());
                    line.clear();
                }
            })
        };
        (child, StderrCopy { log, lines, reader })
    }

    /// Reads lines until `ringway: ready` (trailing detail such as "(2 workers, …)" tolerated),
    /// returning the addresses of the `listening on` lines before it; an error when no such line
    /// came `within` or the process closed stderr first.
    pub fn wait_ready(&self, within: Duration) -> Result<Vec<SocketAddr>, mpsc::RecvTimeoutError> {
        let deadline = Instant::now() + within;
        let mut addrs = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
            if let Some(a) = line.strip_prefix("ringway: listening on ") {
                let a = a.trim();
                addrs.push(a.parse().unwrap_or_else(|e| panic!("bad listening address {a:?}: {e}")));
            } else if line == "ringway: ready" || line.starts_with("ringway: ready ") {
                return Ok(addrs);
            }
        }
    }
}

pub struct Ringway {
    child: Child,
    pub addrs: Vec<SocketAddr>,
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: TempDir,
    /// The test stopped it on purpose (a signal) and saw it exit.
    exit_expected: bool,
}

impl Ringway {
    /// Writes `config_toml` to a temp file, runs `ringway --config FILE` and waits for
    /// `ringway: ready` on stderr (10 s), collecting the `listening on` addresses.
    pub fn start(config_toml: &str) -> Ringway {
        Ringway::start_with(config_toml, |_| {})
    }

    /// As [`Ringway::start`], with `adjust` applied to the command first (environment, a
    /// seccomp filter installed before exec).
    pub fn start_with(config_toml: &str, adjust: impl FnOnce(&mut Command)) -> Ringway {
        let dir = TempDir::new();
        let config_path = dir.write("ringway.toml", config_toml);
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&config_path);
        adjust(&mut cmd);
        let (mut child, stderr) = StderrCopy::spawn(&mut cmd);
        let addrs = match stderr.wait_ready(Duration::from_secs(10)) {
            Ok(addrs) => addrs,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok();
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "ringway did not become ready ({e:?}, exit {status:?}); config:\n{config_toml}\nstderr:\n{}",
                    stderr.log.lock().unwrap()
                );
            }
        };
        assert!(!addrs.is_empty(), "ringway is ready but printed no `listening on` line");
        Ringway {
            child,
            addrs,
            config_path,
            log: stderr.log,
            _dir: dir,
            exit_expected: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The admin address ringway printed (`ringway: admin on http://ADDR/`).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.stderr();
        let line = log
            .lines()
            .find_map(|l| l.strip_prefix("ringway: admin on http://"))
            .unwrap_or_else(|| panic!("no admin line in stderr:\n{log}"));
        line.trim_end_matches('/').parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Number of open file descriptors of the proxy process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Targets of the proxy's open fds (`socket:[123]`, `anon_inode:[io_uring]`, ...).
    pub fn fd_targets(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    v.push(t.to_string_lossy().into_owned());
                }
            }
        }
        v
    }

    /// Open sockets and pipe ends of the proxy: a connection leak shows in the first; the second
    /// includes the pipes a worker keeps pooled for splicing (bounded by its pool size, reused).
    pub fn sockets_and_pipes(&self) -> (usize, usize) {
        let t = self.fd_targets();
        let count = |kind: &str| t.iter().filter(|x| x.starts_with(kind)).count();
        (count("socket:"), count("pipe:"))
    }

    /// Waits until the proxy holds at most `limit` sockets (connections close asynchronously).
    pub fn wait_sockets_at_most(&self, limit: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = self.sockets_and_pipes().0;
            if n <= limit || Instant::now() >= deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the fd count is at most `limit` (connections are closed asynchronously).
    pub fn wait_fds_at_most(&self, limit: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = self.fd_count();
            if n <= limit || Instant::now() >= deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident set size in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Thread ids of the process.
    pub fn tasks(&self) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read task dir")
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The proxy must still be alive and must not have reported a panic.
    /// Whether ringway exited within `within` (after a signal the test sent): its exit is then
    /// expected, not a failure.
    pub fn exited_within(&mut self, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if !self.is_running() {
                self.exit_expected = true;
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn assert_healthy(&mut self) {
        let log = self.stderr();
        assert!(!log.contains("panicked"), "ringway panicked; stderr:\n{log}");
        assert!(self.is_running(), "ringway exited unexpectedly; stderr:\n{log}");
    }
}

impl Drop for Ringway {
    fn drop(&mut self) {
        let healthy = (
            !self.stderr().contains("panicked"),
            self.exit_expected || matches!(self.child.try_wait(), Ok(None)),
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            assert!(
                healthy.0,
                "ringway panicked during the test; stderr:\n{}",
                self.stderr()
            );
            assert!(healthy.1, "ringway died during the test; stderr:\n{}", self.stderr());
        }
    }
}

/// Runs the binary with `args` (for `check`, `route`, `--version` and config errors).
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_with(args, |_| {})
}

/// As [`run_cli`], with `adjust` applied to the command first.
pub fn run_cli_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(BIN);
    adjust(&mut cmd);
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    // A config error must end the process; a bug that makes it serve would hang the suite.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("collect output");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect output");
    panic!(
        "ringway {args:?} did not exit within 10 s; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A TOML `[upstream.NAME]` block.
pub fn upstream(name: &str, addr: SocketAddr) -> String {
    format!("[upstream.{name}]\nservers = [\"{addr}\"]\nconnect_timeout = \"2s\"\n\n")
}

/// An address on which nothing listens (bound once, then released).
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

// ---------------------------------------------------------------------------------------------
// Order-sensitive checksum shared by the echo backend and the tests.

#[derive(Clone, Copy, Debug)]
pub struct Checksum {
    h: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            h: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            npending: 0,
            len: 0,
        }
    }
}

impl Checksum {
    fn mix(&mut self, w: u64) {
        self.h = (self.h.rotate_left(5) ^ w).wrapping_mul(0x0100_0000_01b3);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while self.npending > 0 && !data.is_empty() {
            self.pending[self.npending] = data[0];
            self.npending += 1;
            data = &data[1..];
            if self.npending == 8 {
                let w = u64::from_le_bytes(self.pending);
                self.mix(w);
                self.npending = 0;
            }
        }
        let mut it = data.chunks_exact(8);
        for c in &mut it {
            self.mix(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in it.remainder() {
            self.pending[self.npending] = b;
            self.npending += 1;
        }
    }

    pub fn finish(&self) -> u64 {
        let mut c = *self;
        let mut last = [0u8; 8];
        last[..c.npending].copy_from_slice(&c.pending[..c.npending]);
        c.mix(u64::from_le_bytes(last));
        c.mix(c.len);
        c.h
    }

    pub fn of(data: &[u8]) -> u64 {
        let mut c = Checksum::default();
        c.update(data);
        c.finish()
    }
}

/// Deterministic, non-repeating-looking test data.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Real HTTP backend (tiny_http) that echoes requests as JSON or answers canned replies.

pub enum Reply {
    /// JSON echo of the request.
    Echo,
    /// Fixed answer.
    Fixed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Sleep, then echo.
    Delay(Duration),
    /// `len` bytes of `pattern(.., 7)`, streamed with Content-Length.
    Large(u64),
}

impl Reply {
    pub fn fixed(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Fixed {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }
}

type Router = dyn Fn(&str, &str) -> Reply + Send + Sync;

pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    handle: Option<JoinHandle<()>>,
}

/// A generator of `pattern`-like bytes for large streamed responses without holding them.
struct PatternReader {
    left: u64,
    block: Vec<u8>,
    pos: usize,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.block.len() - self.pos).min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

/// The bytes a `Reply::Large(len)` sends (for checking small ones).
pub fn large_body(len: usize) -> Vec<u8> {
    let block = pattern(65536, 7);
    block.iter().cycle().take(len).copied().collect()
}

impl Backend {
    /// Echoes every request.
    pub fn echo() -> Backend {
        Backend::with(|_, _| Reply::Echo)
    }

    /// `route(method, url)` decides each answer.
    pub fn with(route: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Backend {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("backend bind"));
        let addr = server.server_addr().to_ip().expect("ip address");
        let hits = Arc::new(AtomicUsize::new(0));
        let route: Arc<Router> = Arc::new(route);
        let handle = {
            let server = server.clone();
            let hits = hits.clone();
            thread::spawn(move || {
                while let Ok(req) = server.recv() {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let route = route.clone();
                    thread::spawn(move || serve_one(req, &*route));
                }
            })
        };
        Backend {
            addr,
            hits,
            server,
            handle: Some(handle),
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(mut req: tiny_http::Request, route: &Router) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string()))
        .collect();
    let version = format!("{}", req.http_version());
    let reply = route(&method, &url);
    // Always consume the body so keep-alive stays in sync.
    let mut sum = Checksum::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut body_ok = true;
    {
        let r = req.as_reader();
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => sum.update(&buf[..n]),
                Err(_) => {
                    body_ok = false;
                    break;
                }
            }
        }
    }
    let echo = |sum: &Checksum| {
        let hv: Vec<serde_json::Value> = headers.iter().map(|(n, v)| serde_json::json!([n, v])).collect();
        serde_json::json!({
            "method": method,
            "url": url,
            "version": version,
            "headers": hv,
            "body_len": sum.len,
            "body_sum": sum.finish().to_string(),
            "body_ok": body_ok,
        })
        .to_string()
    };
    let json_header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    let _ = match reply {
        Reply::Echo => req.respond(tiny_http::Response::from_string(echo(&sum)).with_header(json_header)),
        Reply::Delay(d) => {
            thread::sleep(d);
            req.respond(tiny_http::Response::from_string(echo(&sum)).with_header(json_header))
        }
        Reply::Fixed { status, headers, body } => {
            let hs: Vec<tiny_http::Header> = headers
                .iter()
                .map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).unwrap())
                .collect();
            let len = body.len();
            req.respond(tiny_http::Response::new(
                tiny_http::StatusCode(status),
                hs,
                std::io::Cursor::new(body),
                Some(len),
                None,
            ))
        }
        Reply::Large(len) => {
            let reader = PatternReader {
                left: len,
                block: pattern(65536, 7),
                pos: 0,
            };
            req.respond(tiny_http::Response::new(
                tiny_http::StatusCode(200),
                vec![],
                reader,
                Some(len as usize),
                None,
            ))
        }
    };
}

/// The JSON echo of one request as the backend received it.
#[derive(Debug, Clone)]
pub struct Echo {
    pub method: String,
    pub url: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sum: u64,
    pub body_ok: bool,
}

impl Echo {
    pub fn parse(body: &str) -> Echo {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("backend echo is not JSON ({e}): {body:?}"));
        let headers = v["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect();
        Echo {
            method: v["method"].as_str().unwrap().to_string(),
            url: v["url"].as_str().unwrap().to_string(),
            version: v["version"].as_str().unwrap_or("").to_string(),
            headers,
            body_len: v["body_len"].as_u64().unwrap(),
            body_sum: v["body_sum"].as_str().unwrap().parse().unwrap(),
            body_ok: v["body_ok"].as_bool().unwrap_or(false),
        }
    }

    /// All values of a header, any casing, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

// ---------------------------------------------------------------------------------------------
// A real HTTP client (ureq) for the ordinary cases.

#[derive(Debug)]
pub struct HttpResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What tests read from a response, whichever client fetched it (ureq or the raw socket).
pub trait ResponseView {
    fn status(&self) -> u16;
    fn headers(&self) -> &[(String, String)];
    fn body(&self) -> &[u8];

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    fn echo(&self) -> Echo {
        assert_eq!(
            self.status(),
            200,
            "expected an echo (200), got {}: {}",
            self.status(),
            self.text()
        );
        Echo::parse(&self.text())
    }
}

impl ResponseView for HttpResp {
    fn status(&self) -> u16 {
        self.status
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build()
}

pub fn http(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> HttpResp {
    let mut req = agent.request(method, url);
    for (n, v) in headers {
        req = req.set(n, v);
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let mut hs = Vec::new();
    let mut names = resp.headers_names();
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let mut seen: Vec<String> = Vec::new();
    for n in names {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&n)) {
            continue;
        }
        seen.push(n.clone());
        for v in resp.all(&n) {
            hs.push((n.clone(), v.to_string()));
        }
    }
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).expect("read body");
    HttpResp {
        status,
        headers: hs,
        body,
    }
}

pub fn get(url: &str) -> HttpResp {
    http(&agent(), "GET", url, &[], None)
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> HttpResp {
    http(&agent(), "GET", url, headers, None)
}

// ---------------------------------------------------------------------------------------------
// Raw-socket client.

#[derive(Debug, Clone)]
pub struct RawResp {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived with chunked framing.
    pub chunked: bool,
    /// The body was delimited by the connection closing.
    pub close_delimited: bool,
    /// Exact bytes of the head.
    pub raw_head: Vec<u8>,
}

impl ResponseView for RawResp {
    fn status(&self) -> u16 {
        self.status
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `Name: value` lines of a head (after the first line).
fn parse_header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect to ringway");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to ringway");
    }

    /// Sends, ignoring errors (the proxy may already have closed the connection).
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer. Ok(false) on EOF/reset.
    fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => Err(format!(
                "read error ({e}); buffered so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            )),
        }
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(format!(
                    "connection closed inside a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(format!("connection closed after {} of {n} body bytes", self.buf.len()));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one response (including 1xx ones). `head_request`: the request was HEAD.
    pub fn try_read_response(&mut self, head_request: bool) -> Result<RawResp, String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill()? {
                return Err(format!(
                    "connection closed before a complete response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let raw_head: Vec<u8> = self.buf.drain(..end).collect();
        let head = String::from_utf8_lossy(&raw_head).into_owned();
        let first = head.split("\r\n").next().unwrap_or("");
        let mut parts = first.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {first:?}"))?;
        let reason = parts.next().unwrap_or("").to_string();
        let headers = parse_header_lines(&head);
        let mut resp = RawResp {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            close_delimited: false,
            raw_head,
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp.all("transfer-encoding").join(",").to_ascii_lowercase();
        if te.contains("chunked") {
            resp.chunked = true;
            loop {
                let line = self.read_line()?;
                let line = String::from_utf8_lossy(&line).into_owned();
                let size_str = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        let t = self.read_line()?;
                        if t.is_empty() {
                            break;
                        }
                        let t = String::from_utf8_lossy(&t).into_owned();
                        if let Some((n, v)) = t.split_once(':') {
                            resp.headers.push((n.to_string(), v.trim().to_string()));
                        }
                    }
                    break;
                }
                let data = self.read_exact_body(size)?;
                resp.body.extend_from_slice(&data);
                let crlf = self.read_line()?;
                if !crlf.is_empty() {
                    return Err(format!(
                        "chunk data not followed by CRLF: {:?}",
                        String::from_utf8_lossy(&crlf)
                    ));
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl.trim().parse().map_err(|_| format!("bad Content-Length {cl:?}"))?;
            resp.body = self.read_exact_body(n)?;
        } else {
            resp.close_delimited = true;
            while self.fill()? {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    pub fn read_response(&mut self) -> RawResp {
        self.try_read_response(false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads responses, skipping interim 1xx ones.
    pub fn read_final(&mut self) -> RawResp {
        loop {
            let r = self.read_response();
            if r.status >= 200 {
                return r;
            }
        }
    }

    pub fn read_head_response(&mut self) -> RawResp {
        self.try_read_response(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// True if the peer closes the connection within `within` (any bytes before are kept).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.fill() {
                Ok(false) => return true,
                Ok(true) => continue,
                Err(_) => return false,
            }
        }
    }

    /// True if nothing at all arrives within `d` and the connection stays open.
    pub fn silent_for(&mut self, d: Duration) -> bool {
        self.stream.set_read_timeout(Some(d)).unwrap();
        let before = self.buf.len();
        let r = self.fill();
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        r.is_err() && self.buf.len() == before && !self.eof
    }
}

/// One request on a fresh connection; returns its (final) response.
pub fn raw_roundtrip(addr: SocketAddr, request: &[u8]) -> RawResp {
    let mut c = RawClient::connect(addr);
    c.send(request);
    c.read_final()
}

/// A GET request head with the given host and extra header lines.
pub fn get_req(path: &str, host: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Scripted raw-TCP upstream: records exactly what it receives and answers canned bytes.

/// What the scripted upstream does with one request.
pub struct Step {
    pub delay: Duration,
    pub bytes: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Step {
    pub fn reply(bytes: &[u8]) -> Step {
        Step {
            delay: Duration::ZERO,
            bytes: bytes.to_vec(),
            close: false,
        }
    }

    pub fn reply_close(bytes: &[u8]) -> Step {
        Step {
            delay: Duration::ZERO,
            bytes: bytes.to_vec(),
            close: true,
        }
    }
}

#[derive(Default, Debug, Clone)]
pub struct ConnLog {
    /// Every byte received on the connection.
    pub received: Vec<u8>,
    /// Each complete request (head + framed body) as received.
    pub requests: Vec<Vec<u8>>,
    /// The proxy closed its side (read returned 0).
    pub closed_by_peer: bool,
}

type Script = dyn Fn(usize, usize, &[u8]) -> Step + Send + Sync;

pub struct Scripted {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<ConnLog>>>,
    stop: Arc<AtomicBool>,
}

/// Length of a complete request (head + body) at the start of `buf`, if complete.
/// Body framing: chunked (parsed leniently) or Content-Length; none otherwise.
pub fn complete_request_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let headers = parse_header_lines(&head);
    let te = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if te {
        let mut pos = head_end;
        loop {
            let line_end = find(&buf[pos..], b"\r\n")? + pos;
            let line = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers.
                loop {
                    let e = find(&buf[pos..], b"\r\n")? + pos;
                    let empty = e == pos;
                    pos = e + 2;
                    if empty {
                        return Some(pos);
                    }
                }
            }
            pos += size + 2;
            if pos > buf.len() {
                return None;
            }
        }
    }
    let cl = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + cl).then_some(head_end + cl)
}

impl Scripted {
    /// `script(connection_index, request_index_on_connection, raw_request)` answers each request.
    pub fn start(script: impl Fn(usize, usize, &[u8]) -> Step + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("scripted bind");
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<ConnLog>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        {
            let conns = conns.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for s in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut s) = s else { continue };
                    let idx = {
                        let mut c = conns.lock().unwrap();
                        c.push(ConnLog::default());
                        c.len() - 1
                    };
                    let conns = conns.clone();
                    let script = script.clone();
                    thread::spawn(move || {
                        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
                        let mut pending: Vec<u8> = Vec::new();
                        let mut nreq = 0;
                        let mut tmp = vec![0u8; 65536];
                        loop {
                            if let Some(len) = complete_request_len(&pending) {
                                let req: Vec<u8> = pending.drain(..len).collect();
                                conns.lock().unwrap()[idx].requests.push(req.clone());
                                let step = script(idx, nreq, &req);
                                nreq += 1;
                                thread::sleep(step.delay);
                                if s.write_all(&step.bytes).is_err() {
                                    // the proxy closed (or reset) while we were still answering
                                    conns.lock().unwrap()[idx].closed_by_peer = true;
                                    break;
                                }
                                if step.close {
                                    let _ = s.shutdown(Shutdown::Both);
                                    break;
                                }
                                continue;
                            }
                            match s.read(&mut tmp) {
                                Ok(0) => {
                                    conns.lock().unwrap()[idx].closed_by_peer = true;
                                    break;
                                }
                                Ok(n) => {
                                    pending.extend_from_slice(&tmp[..n]);
                                    conns.lock().unwrap()[idx].received.extend_from_slice(&tmp[..n]);
                                }
                                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                                    conns.lock().unwrap()[idx].closed_by_peer = true;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    });
                }
            });
        }
        Scripted { addr, conns, stop }
    }

    /// Answers every request with the same bytes, keeping the connection open.
    pub fn always(bytes: &'static [u8]) -> Scripted {
        Scripted::start(move |_, _, _| Step::reply(bytes))
    }

    pub fn conns(&self) -> Vec<ConnLog> {
        self.conns.lock().unwrap().clone()
    }

    pub fn conn_count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Every byte received on every connection, concatenated.
    pub fn all_received(&self) -> Vec<u8> {
        self.conns().into_iter().flat_map(|c| c.received).collect()
    }

    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.conns().into_iter().flat_map(|c| c.requests).collect()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Waits until `cond` holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Path of the repository's `config/` directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Parses the header block of a raw request as a list of (name, value).
pub fn request_headers(raw: &[u8]) -> Vec<(String, String)> {
    let end = find(raw, b"\r\n\r\n").map(|i| i + 4).unwrap_or(raw.len());
    parse_header_lines(&String::from_utf8_lossy(&raw[..end]))
}

/// The request line of a raw request.
pub fn request_line(raw: &[u8]) -> String {
    let end = find(raw, b"\r\n").unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Body of a raw request or response (after the head), decoding chunked framing if present.
pub fn decoded_body(raw: &[u8]) -> Vec<u8> {
    let head_end = find(raw, b"\r\n\r\n").map(|i| i + 4).unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let chunked = parse_header_lines(&head)
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = raw[head_end..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(le) = find(&body[pos..], b"\r\n") {
            let line = String::from_utf8_lossy(&body[pos..pos + le]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            pos += le + 2;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&body[pos..pos + size]);
            pos += size + 2;
        }
        body = out;
    }
    body
}

// ---------------------------------------------------------------------------------------------
// WebSocket echo backend.

/// Accepts a WebSocket handshake on `stream` and echoes text and binary messages until the peer
/// goes; pongs and the close reply (queued by tungstenite) are flushed as they come.
pub fn ws_echo<S: Read + Write>(stream: S) {
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    while let Ok(msg) = ws.read() {
        if msg.is_binary() || msg.is_text() {
            if ws.send(msg).is_err() {
                return;
            }
        } else {
            let _ = ws.flush();
        }
    }
}

/// A plaintext WebSocket echo server on 127.0.0.1, a thread per connection.
pub fn ws_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || ws_echo(stream));
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium, for what a browser sees.

/// The Chromium binary on PATH, if any.
pub fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
pub fn run_chromium(bin: &std::path::Path, profile: &std::path::Path, url: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let out = cmd.output().expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
