//! Facts about the client connection, the same for every protocol it speaks: formatted once at
//! accept and read by the exchange (forwarding headers, access rules) and the access log.

use crate::io::drain::NO_SLOT;
use std::net::SocketAddr;

/// Facts about the client connection, formatted once at accept.
pub struct ClientInfo {
    pub peer: SocketAddr,
    /// Boxed strings (not `String`): kept for the connection's whole life, they need no capacity.
    pub peer_ip: Box<str>,
    /// The address the client reached (from a PROXY header: the balancer's), when known.
    pub local: Option<SocketAddr>,
    pub local_port: Box<str>,
    /// Whether the connection is TLS (`scheme`).
    pub tls: bool,
    /// Index of the listener (in `Plan::listeners`) that accepted the connection (`u32`: this
    /// record lives as long as the connection, idle or not).
    pub listener: u32,
    /// The connection's slot in the worker's drain registry (`io::drain`) (idle ones are closed when draining).
    pub slot: usize,
}

impl ClientInfo {
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, tls: bool) -> Self {
        ClientInfo {
            peer,
            peer_ip: peer.ip().to_string().into(),
            local,
            local_port: local.map(|l| l.port().to_string()).unwrap_or_default().into(),
            tls,
            listener: 0,
            slot: NO_SLOT,
        }
    }

    /// The scheme the client used: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}
