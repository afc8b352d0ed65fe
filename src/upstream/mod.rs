//! Upstream side of the proxy: choosing a server, connecting with a deadline, and the per-worker
//! keep-alive pool. Errors say which upstream and server failed and how.

mod conn;
mod pool;

pub use conn::UpstreamConn;
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
    /// The TLS handshake failed: certificate verification, protocol mismatch, or the server left.
    Tls(io::Error),
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
            FailureKind::Tls(e) => write!(f, "is not usable over TLS: {e}"),
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

/// Opens a new connection to one server of `up`; for `https://` servers the TLS handshake
/// (verification, SNI = the server's host name) is part of it, within the same `connect_timeout`.
pub async fn connect(up: &UpstreamPlan, server: usize) -> Result<UpstreamConn, UpstreamError> {
    let plan = &up.servers[server];
    let attempt = async {
        let tcp = TcpStream::connect_addr(plan.addr).await.map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::Refused,
            _ => FailureKind::Unreachable(e),
        })?;
        let _ = tcp.set_nodelay(true);
        match (&up.tls, plan.tls) {
            (Some(tls), true) => tls
                .connect(tcp, &plan.host)
                .await
                .map(|s| UpstreamConn::Tls(Box::new(s)))
                .map_err(FailureKind::Tls),
            _ => Ok(UpstreamConn::Plain(tcp)),
        }
    };
    match monoio::time::timeout(up.connect_timeout, attempt).await {
        Err(_) => Err(UpstreamError::new(
            up,
            server,
            FailureKind::ConnectTimeout(up.connect_timeout),
        )),
        Ok(Err(kind)) => Err(UpstreamError::new(up, server, kind)),
        Ok(Ok(conn)) => Ok(conn),
    }
}
