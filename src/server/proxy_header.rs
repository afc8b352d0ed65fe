//! The PROXY protocol on a listener with `proxy_protocol = true`: before TLS or HTTP, take the
//! header a layer-4 balancer put in front of the stream and learn who the client was.
//!
//! The header is taken off the socket exactly, never a byte of what follows it (the TLS
//! ClientHello or the HTTP request stays in the kernel for the next reader): waiting bytes are
//! peeked, and only the header's own bytes are then read. Bytes of an incomplete header are
//! all header bytes, so they are read at once and the next wait sees only new data.

use crate::config::cidr::CidrList;
use crate::io::fd::socket_fd;
use crate::io::socket::{peek, recv};
use crate::proxy_protocol::{self, Header, Parse};
use monoio::net::TcpStream;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a connection was closed before its header was complete.
#[derive(Debug)]
pub enum Refused {
    /// The peer is not in `proxy_protocol_from`.
    Untrusted,
    /// The bytes are not a valid header (a client bypassing the balancer, a balancer sending
    /// nothing or the other version's garbage).
    Invalid(proxy_protocol::Error),
    /// No complete header within `header_timeout`.
    TimedOut,
    /// The peer closed, or the socket failed, before a complete header.
    Closed,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Untrusted => f.write_str("not in proxy_protocol_from"),
            Refused::Invalid(e) => write!(f, "{e}"),
            Refused::TimedOut => f.write_str("no complete PROXY protocol header within header_timeout"),
            Refused::Closed => f.write_str("closed before a complete PROXY protocol header"),
        }
    }
}

/// Checks the peer against `from` (empty: any peer), then reads the header under `timeout`.
pub async fn accept(
    stream: &TcpStream,
    peer: SocketAddr,
    from: &CidrList,
    timeout: Duration,
) -> Result<Header, Refused> {
    if !from.is_empty() && !from.contains(peer.ip()) {
        return Err(Refused::Untrusted);
    }
    match monoio::time::timeout(timeout, read(stream)).await {
        Ok(r) => r,
        Err(_) => Err(Refused::TimedOut),
    }
}

/// The client address a header gives, and the local address it says the client reached.
pub fn endpoints(header: &Header, peer: SocketAddr, local: Option<SocketAddr>) -> (SocketAddr, Option<SocketAddr>) {
    match header {
        Header::Proxy(Some(a)) => (a.source, Some(a.destination)),
        // LOCAL (the balancer's own health check) and UNKNOWN: the connection's own endpoints.
        _ => (peer, local),
    }
}

async fn read(stream: &TcpStream) -> Result<Header, Refused> {
    let fd = socket_fd(stream);
    // Most headers fit in 256 bytes (v2 TCP6 is 52 plus a few TLVs); the buffer grows to the
    // protocol's bound only for a header that needs it.
    let mut buf = vec![0u8; 256];
    let mut have = 0;
    loop {
        let n = match peek(fd, &mut buf[have..]) {
            Ok(0) => return Err(Refused::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.readable(false).await.map_err(|_| Refused::Closed)?;
                continue;
            }
            Err(_) => return Err(Refused::Closed),
        };
        match proxy_protocol::parse(&buf[..have + n]) {
            Ok(Parse::Complete { header, len, .. }) => {
                take(fd, &mut buf[have..len])?;
                return Ok(header);
            }
            Ok(Parse::Incomplete) => {
                take(fd, &mut buf[have..have + n])?;
                have += n;
                if have == buf.len() {
                    if buf.len() >= proxy_protocol::MAX_LEN {
                        // parse decides within MAX_LEN bytes; this is only a guard.
                        return Err(Refused::Closed);
                    }
                    buf.resize(proxy_protocol::MAX_LEN, 0);
                }
            }
            Err(e) => return Err(Refused::Invalid(e)),
        }
    }
}

/// Reads exactly `into.len()` bytes already seen waiting by a peek.
fn take(fd: std::os::fd::BorrowedFd<'_>, into: &mut [u8]) -> Result<(), Refused> {
    let mut done = 0;
    while done < into.len() {
        match recv(fd, &mut into[done..]) {
            Ok(0) | Err(_) => return Err(Refused::Closed),
            Ok(n) => done += n,
        }
    }
    Ok(())
}
