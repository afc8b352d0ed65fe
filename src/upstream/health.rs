//! Active health checks: one prober thread per checked server per process (never per worker, so
//! checks do not multiply by the core count). Probers write each server's state into atomics on
//! the shared [`Board`]; workers read them with plain loads, no lock on the request path.
//!
//! Prober states per server: `Up` --(`fall` failed checks in a row)--> `Down`
//! --(`rise` passed checks in a row)--> `Up`. Servers start `Up`, so traffic flows at start-up.

use crate::config::{HealthPlan, Plan, ServerPlan};
use crate::observe::{event, Level};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Process-wide health of one server.
pub struct ServerHealth {
    up: AtomicBool,
    /// Count of passed checks: a worker that ejected the server passively takes it back as soon
    /// as this moves past the value it saw at ejection.
    passes: AtomicU64,
}

/// Health of every server of every upstream, shared by the probers and all workers.
pub struct Board {
    /// `servers[upstream][server]`.
    servers: Vec<Vec<ServerHealth>>,
}

impl Board {
    pub fn new(plan: &Plan) -> Self {
        Board {
            servers: plan
                .upstreams
                .iter()
                .map(|u| {
                    u.servers
                        .iter()
                        .map(|_| ServerHealth {
                            up: AtomicBool::new(true),
                            passes: AtomicU64::new(0),
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[inline]
    pub fn is_up(&self, upstream: usize, server: usize) -> bool {
        self.servers[upstream][server].up.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn passes(&self, upstream: usize, server: usize) -> u64 {
        self.servers[upstream][server].passes.load(Ordering::Relaxed)
    }
}

/// Starts one prober thread for every server of every upstream with a `[upstream.X.health]`.
pub fn start(plan: &Arc<Plan>, board: &Arc<Board>) -> std::io::Result<()> {
    for (u, up) in plan.upstreams.iter().enumerate() {
        if up.health.is_none() {
            continue;
        }
        for s in 0..up.servers.len() {
            let (plan, board) = (plan.clone(), board.clone());
            std::thread::Builder::new()
                .name(format!("ringway-hc-{}-{s}", up.name))
                .spawn(move || prober(&plan, &board, u, s))?;
        }
    }
    Ok(())
}

fn prober(plan: &Plan, board: &Board, u: usize, s: usize) {
    let up = &plan.upstreams[u];
    let Some(check) = up.health.as_ref() else { return };
    let server = &up.servers[s];
    let state = &board.servers[u][s];
    let (mut passed, mut failed) = (0u32, 0u32);
    // Spread the first checks of many servers over one interval instead of a burst.
    let n = up.servers.len().max(1) as u32;
    std::thread::sleep(check.interval / n * s as u32);
    loop {
        let started = Instant::now();
        match probe(server, check) {
            Ok(()) => {
                failed = 0;
                passed = passed.saturating_add(1);
                state.passes.fetch_add(1, Ordering::Relaxed);
                if !state.up.load(Ordering::Relaxed) && passed >= check.rise {
                    state.up.store(true, Ordering::Relaxed);
                    event(
                        Level::Info,
                        format_args!(
                            "upstream {} ({}) is up: {} health checks passed",
                            up.name, server.authority, passed
                        ),
                    );
                }
            }
            Err(why) => {
                passed = 0;
                failed = failed.saturating_add(1);
                if state.up.load(Ordering::Relaxed) && failed >= check.fall {
                    state.up.store(false, Ordering::Relaxed);
                    event(
                        Level::Warn,
                        format_args!(
                            "upstream {} ({}) is down: {} health checks failed, last: {why}",
                            up.name, server.authority, failed
                        ),
                    );
                }
            }
        }
        std::thread::sleep(check.interval.saturating_sub(started.elapsed()));
    }
}

/// One check: `GET path` on a fresh connection, pass when the status is in the expected range.
/// Blocking I/O with deadlines: this thread does nothing else.
pub fn probe(server: &ServerPlan, check: &HealthPlan) -> Result<(), String> {
    let deadline = Instant::now() + check.timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut conn = TcpStream::connect_timeout(&server.addr, check.timeout).map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-health-check\r\nConnection: close\r\n\r\n",
        check.path, server.authority
    );
    conn.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
    conn.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        conn.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
        let n = match conn.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("no answer within {:?}", check.timeout))
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        if n == 0 {
            return Err("connection closed before a status line".into());
        }
        len += n;
        if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..end]);
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad status line `{}`", line.trim()))?;
            let (lo, hi) = check.expect;
            return if (lo..=hi).contains(&status) {
                Ok(())
            } else {
                Err(format!("status {status}, expected {lo}-{hi}"))
            };
        }
        if len == buf.len() {
            return Err("status line too long".into());
        }
    }
}

impl crate::observe::Health for Board {
    fn is_up(&self, upstream: usize, server: usize) -> bool {
        Board::is_up(self, upstream, server)
    }
}
