//! What operators see of a running proxy: the access log (`access_log`), counters for
//! Prometheus (`metrics`), request ids (`request_id`), and the per-request [`Record`] the
//! connection fills as the request walks its steps and hands to its worker's [`WorkerObserve`]
//! at the end. Nothing here takes a lock or makes a syscall per request; the admin server
//! (`crate::admin`) reads the shared parts when someone asks.

pub mod access_log;
mod compress_metrics;
mod driver;
pub mod metrics;
pub mod request_id;

pub use driver::DriverReport;
pub use request_id::RequestId;

pub use crate::config::Level;
use crate::config::Plan;
use crate::http::client_info::ClientInfo;
use access_log::{AccessLog, Entry, Kind};
use metrics::{Block, Global, Registry, ServerStat};
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether an upstream server is up, as the health checks see it (the upstream's health board
/// answers; observe only reads it for `/metrics`, `/readyz` and the status page).
pub trait Health: Send + Sync {
    fn is_up(&self, upstream: usize, server: usize) -> bool;
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

impl Level {
    pub fn enabled(self) -> bool {
        self as u8 <= LEVEL.load(Ordering::Relaxed)
    }
}

/// Prints `ringway: MESSAGE` on stderr when `level` is enabled by `[log] level`.
pub fn event(level: Level, message: fmt::Arguments<'_>) {
    if level.enabled() {
        eprintln!("ringway: {message}");
    }
}

/// Process-wide state the admin server reads: the plan, the health board, every worker's
/// counters, the bound listeners and whether the proxy is ready.
pub struct Shared {
    pub plan: Arc<Plan>,
    pub board: Arc<dyn Health>,
    pub metrics: Registry,
    listeners: Mutex<Vec<SocketAddr>>,
    ready: AtomicBool,
    /// One SIGUSR1 flag per worker: each worker reopens its own log file.
    reopen: Vec<Arc<AtomicBool>>,
    pub started: Instant,
    /// The workers' I/O drivers, set once they all run.
    pub drivers: std::sync::OnceLock<DriverReport>,
}

impl Shared {
    pub fn new(plan: Arc<Plan>, board: Arc<dyn Health>) -> std::io::Result<Arc<Shared>> {
        LEVEL.store(plan.log.level as u8, Ordering::Relaxed);
        let workers = plan.server.workers;
        // Fail at start-up, not in each worker, when the log file cannot be opened.
        drop(AccessLog::open(&plan.log.access, plan.log.format)?);
        let reopen: Vec<Arc<AtomicBool>> = (0..workers).map(|_| Arc::new(AtomicBool::new(false))).collect();
        // Registered whatever the target, so a stray SIGUSR1 (logrotate's postrotate) never
        // kills the proxy.
        for flag in &reopen {
            signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag.clone())?;
        }
        Ok(Arc::new(Shared {
            metrics: Registry::new(&plan, workers),
            plan,
            board,
            listeners: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            reopen,
            started: Instant::now(),
            drivers: std::sync::OnceLock::new(),
        }))
    }

    pub fn add_listener(&self, addr: SocketAddr) {
        if let Ok(mut l) = self.listeners.lock() {
            l.push(addr);
        }
    }

    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.listeners.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every listener is bound and every worker accepts: `/readyz` may say yes. Also the seam
    /// for a draining shutdown to say no again.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.listeners().len() == self.plan.listeners.len()
    }

    /// Upstreams with no server up on the health board (empty when ready to serve).
    pub fn unhealthy_upstreams(&self) -> Vec<&str> {
        self.plan
            .upstreams
            .iter()
            .enumerate()
            .filter(|(u, up)| !(0..up.servers.len()).any(|s| self.board.is_up(*u, s)))
            .map(|(_, up)| up.name.as_str())
            .collect()
    }
}

/// One worker's view: its counter block and its access log.
pub struct WorkerObserve {
    pub id: usize,
    pub metrics: Arc<Block>,
    log: RefCell<Option<AccessLog>>,
    reopen: Arc<AtomicBool>,
    route_labels: Vec<String>,
}

impl WorkerObserve {
    pub fn new(shared: &Shared, id: usize) -> std::io::Result<Self> {
        request_id::init_worker(id);
        let plan = &shared.plan;
        Ok(WorkerObserve {
            id,
            metrics: shared.metrics.block(id),
            log: RefCell::new(AccessLog::open(&plan.log.access, plan.log.format)?),
            reopen: shared.reopen[id].clone(),
            route_labels: (0..plan.routes.len()).map(|r| metrics::route_label(plan, r)).collect(),
        })
    }

    /// Whether request lines should be kept for the log.
    pub fn logging(&self) -> bool {
        self.log.borrow().is_some()
    }

    /// The end of one request: count it, and log it when the log is on.
    /// A request ended; `totals` are the connection's bytes read and written so far.
    pub fn finish(&self, plan: &Plan, rec: &mut Record, info: &ClientInfo, totals: (u64, u64)) {
        let elapsed = crate::io::clock::now().saturating_duration_since(rec.start);
        let (read, written) = totals;
        let (bytes_in, bytes_out) = (read - rec.marks.0, written - rec.marks.1);
        rec.marks = (read, written);
        self.metrics.request(rec.route, rec.status, elapsed.as_micros() as u64);
        self.metrics.add_global(Global::ReceivedBytes, bytes_in);
        self.metrics.add_global(Global::SentBytes, bytes_out);
        self.log(plan, rec, info, Kind::Http, bytes_in, bytes_out, elapsed, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        plan: &Plan,
        rec: &Record,
        info: &ClientInfo,
        kind: Kind,
        bytes_in: u64,
        bytes_out: u64,
        duration: Duration,
        end: Option<&str>,
    ) {
        let mut log = self.log.borrow_mut();
        let Some(log) = log.as_mut() else { return };
        let upstream = rec.route.map(|r| &plan.upstreams[plan.routes[r].upstream]);
        log.write(&Entry {
            kind,
            client_ip: &info.peer_ip,
            request_line: &rec.line,
            referer: &rec.referer,
            user_agent: &rec.user_agent,
            route: rec.route.map(|r| self.route_labels[r].as_str()),
            upstream: upstream.map(|u| u.name.as_str()),
            server: upstream.zip(rec.server).map(|(u, s)| u.servers[s].authority.as_str()),
            status: rec.status,
            bytes_in,
            bytes_out,
            duration,
            upstream_time: rec.upstream_time,
            request_id: rec.request_id.as_bytes(),
            end,
        });
    }

    /// A failed attempt on an upstream server (connect or response), for the error counters;
    /// `None` for failures no counter tracks.
    pub fn upstream_failed(&self, upstream: usize, server: usize, stat: Option<ServerStat>) {
        if let Some(stat) = stat {
            self.metrics.server(upstream, server, stat, 1);
        }
    }

    /// A connection became a tunnel: counted open until the returned watch is dropped.
    pub fn tunnel_opened(&self, gauge: ConnGauge, line: Option<Box<(Record, ClientInfo)>>) -> TunnelWatch {
        self.metrics.add_global(Global::OpenTunnels, 1);
        self.metrics.add_global(Global::Tunnels, 1);
        TunnelWatch {
            _gauge: gauge,
            line,
            since: Instant::now(),
        }
    }

    /// A tunnel ended: its bytes, and its own log line (duration since the 101, bytes each way,
    /// why it ended) when `line` holds the request it came from (kept only while the log is on).
    fn tunnel_closed(&self, plan: &Plan, line: Option<&(Record, ClientInfo)>, end: &TunnelEnded<'_>, since: Instant) {
        self.metrics.add_global(Global::ReceivedBytes, end.received);
        self.metrics.add_global(Global::SentBytes, end.sent);
        if let Some((rec, info)) = line {
            let why = end.why.to_string();
            self.log(
                plan,
                rec,
                info,
                Kind::Tunnel,
                end.received,
                end.sent,
                since.elapsed(),
                Some(&why),
            );
        }
    }

    pub fn flush(&self) {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.flush();
        }
    }

    /// Reopens the log file if SIGUSR1 arrived since the last look.
    pub fn reopen_if_asked(&self) {
        if !self.reopen.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Some(log) = self.log.borrow_mut().as_mut() {
            let path = log.path().map(|p| p.display().to_string()).unwrap_or_default();
            match log.reopen() {
                Ok(()) if self.id == 0 && !path.is_empty() => {
                    event(Level::Info, format_args!("SIGUSR1: reopened access log {path}"))
                }
                Ok(()) => {}
                Err(e) => event(
                    Level::Error,
                    format_args!("SIGUSR1: cannot reopen access log {path}: {e}; still writing to the old file"),
                ),
            }
        }
    }
}

/// How a tunnel ended, for its counters and log line: bytes from the client (`received`) and
/// to it (`sent`), and why it ended.
pub struct TunnelEnded<'a> {
    pub received: u64,
    pub sent: u64,
    pub why: &'a dyn fmt::Display,
}

/// What a tunnel's task carries for the operator: the open-connection and open-tunnel counts
/// (released on drop, however the task ends) and, with the log on, the request it came from.
pub struct TunnelWatch {
    _gauge: ConnGauge,
    line: Option<Box<(Record, ClientInfo)>>,
    since: Instant,
}

impl TunnelWatch {
    pub fn closed(self, observe: &WorkerObserve, plan: &Plan, end: &TunnelEnded<'_>) {
        observe.tunnel_closed(plan, self.line.as_deref(), end, self.since);
    }
}

impl Drop for TunnelWatch {
    fn drop(&mut self) {
        self._gauge.0.sub_global(Global::OpenTunnels, 1);
    }
}

/// Counts a client connection open for as long as it lives (a tunnel included).
pub struct ConnGauge(Arc<Block>);

impl ConnGauge {
    pub fn new(o: &WorkerObserve) -> Self {
        o.metrics.add_global(Global::OpenConnections, 1);
        ConnGauge(o.metrics.clone())
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.sub_global(Global::OpenConnections, 1);
    }
}

/// One request, filled along its steps: started when its head is complete, route and status
/// from the decision, server, upstream time and status from the exchange. Lives as long as the
/// connection and is reused, so its buffers are allocated once per connection (and only when the
/// access log is on).
pub struct Record {
    pub start: Instant,
    pub route: Option<usize>,
    /// The server of the last attempt, in the route's upstream.
    pub server: Option<usize>,
    pub status: u16,
    /// From asking for a server to a complete response head.
    pub upstream_time: Option<Duration>,
    pub request_id: RequestId,
    capture: bool,
    line: Vec<u8>,
    referer: Vec<u8>,
    user_agent: Vec<u8>,
    /// The connection's byte counts at the end of the previous request.
    marks: (u64, u64),
}

impl Record {
    pub fn new(capture: bool) -> Self {
        Record {
            start: crate::io::clock::now(),
            route: None,
            server: None,
            status: 0,
            upstream_time: None,
            request_id: RequestId::default(),
            capture,
            line: Vec::new(),
            referer: Vec::new(),
            user_agent: Vec::new(),
            marks: (0, 0),
        }
    }

    /// Starts counting this request's bytes from the connection's `totals` so far (a record made
    /// for each request of a keep-alive connection).
    pub fn mark(&mut self, totals: (u64, u64)) {
        self.marks = totals;
    }

    /// A new request whose head (complete or not) is `head`.
    pub fn begin(&mut self, head: &[u8]) {
        self.start = crate::io::clock::now();
        self.route = None;
        self.server = None;
        self.status = 0;
        self.upstream_time = None;
        self.request_id.clear();
        if self.capture {
            self.capture_head(head);
        }
    }

    /// Keeps the request line, Referer and User-Agent for the log (bounded copies).
    fn capture_head(&mut self, head: &[u8]) {
        const MAX: usize = 2048;
        self.line.clear();
        self.referer.clear();
        self.user_agent.clear();
        let first_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
        let first = &head[..first_end];
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        self.line.extend_from_slice(&first[..first.len().min(MAX)]);
        let mut start = first_end + 1;
        while start < head.len() {
            let end = memchr::memchr(b'\n', &head[start..]).map_or(head.len(), |i| start + i);
            let l = &head[start..end];
            start = end + 1;
            // Only two names matter: skip every other line on its first byte.
            let (dest, name_len) = match l.first() {
                Some(b'r' | b'R') if l.len() > 8 && l[..8].eq_ignore_ascii_case(b"referer:") => (&mut self.referer, 8),
                Some(b'u' | b'U') if l.len() > 11 && l[..11].eq_ignore_ascii_case(b"user-agent:") => {
                    (&mut self.user_agent, 11)
                }
                _ => continue,
            };
            if dest.is_empty() {
                let v = &l[name_len..];
                let v = crate::http::trim(v.strip_suffix(b"\r").unwrap_or(v));
                dest.extend_from_slice(&v[..v.len().min(MAX)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Record;

    #[test]
    fn capture_keeps_the_request_line_referer_and_user_agent() {
        let mut r = Record::new(true);
        r.begin(
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nUSER-AGENT:  curl/8 \r\nReferer: http://r/\r\nreferer: second\r\n\r\n",
        );
        assert_eq!(r.line, b"GET /a?b HTTP/1.1");
        assert_eq!(r.user_agent, b"curl/8");
        assert_eq!(r.referer, b"http://r/");
        r.begin(b"GET /cut");
        assert_eq!((r.line.as_slice(), r.referer.is_empty()), (&b"GET /cut"[..], true));
        let mut off = Record::new(false);
        off.begin(b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n");
        assert!(off.line.is_empty() && off.user_agent.is_empty());
    }
}
