//! Upstream side of the proxy: choosing a server, connecting with a deadline, and the per-worker
//! keep-alive pool. Errors say which upstream and server failed and how.

mod pool;

pub use pool::ConnPool;

use crate::config::{Plan, UpstreamPlan};
use monoio::net::TcpStream;
use std::cell::Cell;
use std::fmt;
use std::io;
use std::time::Duration;

/// How talking to an upstream failed; the status the client sees follows from the kind.
#[derive(Debug)]
pub enum FailureKind {
    Refused,
    Unreachable(io::Error),
    ConnectTimeout(Duration),
    ResponseTimeout(Duration),
    ReadTimeout(Duration),
    /// The connection closed or reset before a complete response head arrived.
    ClosedEarly,
    BadResponse(&'static str),
    Io(io::Error),
}

#[derive(Debug)]
pub struct UpstreamError {
    pub upstream: String,
    pub server: String,
    pub kind: FailureKind,
}

impl UpstreamError {
    pub fn new(up: &UpstreamPlan, server: usize, kind: FailureKind) -> Self {
        UpstreamError {
            upstream: up.name.clone(),
            server: up.servers[server].authority.clone(),
            kind,
        }
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            FailureKind::ConnectTimeout(_) | FailureKind::ResponseTimeout(_) | FailureKind::ReadTimeout(_) => 504,
            _ => 502,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::config::units::format_duration as d;
        write!(f, "upstream {} ({}) ", self.upstream, self.server)?;
        match &self.kind {
            FailureKind::Refused => write!(f, "refused the connection"),
            FailureKind::Unreachable(e) => write!(f, "is unreachable: {e}"),
            FailureKind::ConnectTimeout(t) => write!(f, "did not accept the connection within {}", d(*t)),
            FailureKind::ResponseTimeout(t) => write!(f, "did not answer within {}", d(*t)),
            FailureKind::ReadTimeout(t) => write!(f, "stalled for {} while sending the response", d(*t)),
            FailureKind::ClosedEarly => write!(f, "closed the connection before answering"),
            FailureKind::BadResponse(why) => write!(f, "sent a malformed response: {why}"),
            FailureKind::Io(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Per-worker choice of server within each upstream: plain round-robin over the servers.
pub struct Balancer {
    next: Vec<Cell<usize>>,
}

impl Balancer {
    pub fn new(plan: &Plan) -> Self {
        Balancer {
            next: plan.upstreams.iter().map(|_| Cell::new(0)).collect(),
        }
    }

    pub fn pick(&self, plan: &Plan, upstream: usize) -> usize {
        let n = plan.upstreams[upstream].servers.len();
        let c = &self.next[upstream];
        let i = c.get() % n.max(1);
        c.set(i.wrapping_add(1));
        i
    }
}

/// Opens a new connection to one server of `up`.
pub async fn connect(up: &UpstreamPlan, server: usize) -> Result<TcpStream, UpstreamError> {
    let addr = up.servers[server].addr;
    match monoio::time::timeout(up.connect_timeout, TcpStream::connect_addr(addr)).await {
        Err(_) => Err(UpstreamError::new(
            up,
            server,
            FailureKind::ConnectTimeout(up.connect_timeout),
        )),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(UpstreamError::new(up, server, FailureKind::Refused))
        }
        Ok(Err(e)) => Err(UpstreamError::new(up, server, FailureKind::Unreachable(e))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}
