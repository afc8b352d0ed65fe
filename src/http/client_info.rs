//! Facts about the client connection, the same for every protocol it speaks: formatted once at
//! accept and read by the exchange (forwarding headers, access rules) and the access log.

use crate::io::drain::NO_SLOT;
use std::net::SocketAddr;

/// Facts about the client connection, formatted once at accept.
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub peer_ip: String,
    /// The address the client reached (from a PROXY header: the balancer's), when known.
    pub local: Option<SocketAddr>,
    pub local_port: String,
    pub scheme: &'static str,
    /// Index of the listener (in `Plan::listeners`) that accepted the connection.
    pub listener: usize,
    /// The connection's slot in the worker's drain registry (`io::drain`) (idle ones are closed when draining).
    pub slot: usize,
}

impl ClientInfo {
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, tls: bool) -> Self {
        ClientInfo {
            peer,
            peer_ip: peer.ip().to_string(),
            local,
            local_port: local.map(|l| l.port().to_string()).unwrap_or_default(),
            scheme: if tls { "https" } else { "http" },
            listener: 0,
            slot: NO_SLOT,
        }
    }
}
