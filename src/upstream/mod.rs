//! Upstream side of the proxy: choosing a server (`balance` algorithms, `select` per-worker
//! eligibility and connection caps, `health` active probes, `passive` ejection), connecting with
//! a deadline, and the per-worker keep-alive pool. Errors say which upstream and server failed
//! and how.

pub mod balance;
mod conn;
pub mod health;
pub mod passive;
mod pool;
pub mod select;

pub use conn::UpstreamConn;
pub use health::Board;
pub use pool::ConnPool;
pub use select::{Lease, Tried, Unavailable, Upstreams};

use crate::config::{HashKey, ProxyVersion, UpstreamPlan};
use crate::observe::metrics::ServerStat;
use crate::proxy_protocol::{Addresses, Header, Version};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
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
    /// Every server is down or already failed this request: 503.
    NoHealthyServer,
    /// Every eligible server stayed at `max_connections_per_server` (the cap) for `queue_timeout`: 503.
    Saturated(u32, Duration),
}

impl FailureKind {
    /// The per-server error counter this failure counts in, if any.
    pub fn stat(&self) -> Option<ServerStat> {
        match self {
            FailureKind::ConnectTimeout(_) => Some(ServerStat::ConnectTimeouts),
            FailureKind::ResponseTimeout(_) => Some(ServerStat::ResponseTimeouts),
            FailureKind::Refused | FailureKind::Unreachable(_) | FailureKind::Tls(_) => Some(ServerStat::ConnectErrors),
            _ => None,
        }
    }

    /// Failures that say the server itself is unwell (not this request): they count towards
    /// passive ejection.
    pub fn counts_against_server(&self) -> bool {
        matches!(
            self,
            FailureKind::Refused
                | FailureKind::Unreachable(_)
                | FailureKind::ConnectTimeout(_)
                | FailureKind::ResponseTimeout(_)
        )
    }
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

    /// A failure of the group as a whole, not of one server.
    pub fn group(up: &UpstreamPlan, kind: FailureKind) -> Self {
        UpstreamError {
            upstream: up.name.clone(),
            server: String::new(),
            kind,
        }
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            FailureKind::NoHealthyServer | FailureKind::Saturated(..) => 503,
            FailureKind::ConnectTimeout(_) | FailureKind::ResponseTimeout(_) | FailureKind::ReadTimeout(_) => 504,
            _ => 502,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::config::units::format_duration as d;
        match &self.kind {
            FailureKind::NoHealthyServer => {
                return write!(f, "upstream {} has no healthy server", self.upstream);
            }
            FailureKind::Saturated(cap, t) => {
                return write!(
                    f,
                    "upstream {}: every server is at max_connections_per_server ({cap}); no slot freed within {}",
                    self.upstream,
                    d(*t)
                );
            }
            _ => {}
        }
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
            FailureKind::NoHealthyServer | FailureKind::Saturated(..) => Ok(()),
        }
    }
}

/// The request's key for `balance = "hash"` (None for the other algorithms). A missing header or
/// cookie falls back to the client address, so such clients still stick to one server.
///
/// `client_ip` is the socket peer: the seam where `trusted_proxies` (access-control issue) will
/// substitute the address taken from X-Forwarded-For.
pub fn affinity(up: &UpstreamPlan, client_ip: IpAddr, headers: &[httparse::Header<'_>]) -> Option<u64> {
    let crate::config::Balance::Hash(key) = &up.balance else {
        return None;
    };
    let found = match key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| crate::http::trim(h.value)),
        HashKey::Cookie(name) => headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .find_map(|h| cookie_value(h.value, name.as_bytes())),
    };
    Some(match found {
        Some(v) if !v.is_empty() => balance::hash64(v),
        _ => match client_ip {
            IpAddr::V4(a) => balance::hash64(&a.octets()),
            IpAddr::V6(a) => balance::hash64(&a.octets()),
        },
    })
}

/// The value of cookie `name` in one `Cookie:` header (`a=1; b=2`).
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    crate::http::cookie_pairs(header).find_map(|(n, v)| (n == name).then_some(v))
}

#[cfg(test)]
#[test]
fn cookie_lookup() {
    assert_eq!(
        cookie_value(b"a=1; grafana_session=xyz ;b=2", b"grafana_session"),
        Some(&b"xyz"[..])
    );
    assert_eq!(cookie_value(b"grafana_session_expiry=5", b"grafana_session"), None);
}

/// Opens a new connection to one server of `up`; for `https://` servers the TLS handshake
/// (verification, SNI = the server's host name) is part of it, within the same `connect_timeout`.
///
/// With `send_proxy_protocol`, the PROXY header for `client` (its address, and the one it
/// reached) is the first thing written, before any TLS: it belongs to this connection only.
pub async fn connect(
    up: &UpstreamPlan,
    server: usize,
    client: Option<(SocketAddr, SocketAddr)>,
) -> Result<UpstreamConn, UpstreamError> {
    let plan = &up.servers[server];
    let attempt = async {
        let mut tcp = TcpStream::connect_addr(plan.addr).await.map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::Refused,
            _ => FailureKind::Unreachable(e),
        })?;
        let _ = tcp.set_nodelay(true);
        if let Some(version) = up.send_proxy {
            let header = match client {
                Some((source, destination)) => Header::Proxy(Some(Addresses { source, destination })),
                None => Header::Local,
            };
            let version = match version {
                ProxyVersion::V1 => Version::V1,
                ProxyVersion::V2 => Version::V2,
            };
            let mut bytes = Vec::with_capacity(64);
            crate::proxy_protocol::encode(version, &header, &mut bytes);
            let (res, _) = tcp.write_all(bytes).await;
            res.map_err(FailureKind::Unreachable)?;
        }
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
