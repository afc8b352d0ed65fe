//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a layer-4 balancer puts in front of
//! a relayed TCP stream to say who the client was. This module owns the wire format only: an
//! incremental parser fed whatever bytes have arrived, and the encoders for sending the header to
//! an upstream. Reading sockets, deadlines and which sources may send a header belong to the
//! listener that uses it.
//!
//! Parsing is stateless: the caller keeps the bytes read so far and calls [`parse`] again with
//! more. Both versions are bounded ([`V1_MAX_LEN`], [`V2_MAX_LEN`]), so a reader never needs a
//! bigger buffer than [`MAX_LEN`], and every byte that cannot start a valid header is refused as
//! soon as it is seen, without waiting for the rest.

mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;

/// A v1 header is one text line of at most 107 bytes, CRLF included (the spec's worst case,
/// `PROXY TCP6` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// The v2 length field can say 65,535; real balancers send the 16-byte fixed part, the
/// addresses (at most 216 bytes, for UNIX) and a few TLVs (AWS, Azure and GCP ids, ALPN, SNI,
/// SSL details). 4 KiB of addresses and TLVs holds all of those with room to spare, and keeps
/// a connection that has not yet said who it is from pinning 64 KiB.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// The longest v2 header accepted: the fixed part and [`V2_MAX_PAYLOAD`].
pub const V2_MAX_LEN: usize = v2::FIXED_LEN + V2_MAX_PAYLOAD;
/// The most bytes [`parse`] ever needs to see to decide.
pub const MAX_LEN: usize = V2_MAX_LEN;

/// Which version of the protocol a header used, or should use when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line `PROXY TCP4 …\r\n`.
    V1,
    /// The binary form with the 12-byte signature.
    V2,
}

/// The two endpoints of the client's original connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client: what the connection's peer address would have been without the balancer.
    pub source: SocketAddr,
    /// The address the client connected to (the balancer's public address).
    pub destination: SocketAddr,
}

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// v2 LOCAL: the balancer's own connection (its health checks). The connection is served
    /// with its real endpoints.
    Local,
    /// The stream was relayed for a client. `None` when the sender did not know or could not
    /// express the client's address (v1 `UNKNOWN`, v2 `UNSPEC` or `UNIX`): the spec says the
    /// receiver then uses the connection's own endpoints.
    Proxy(Option<Addresses>),
}

impl Header {
    /// The client address the header carries, if any.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::Proxy(Some(a)) => Some(a.source),
            _ => None,
        }
    }
}

/// The outcome of looking at the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A whole header: the first `len` bytes of the buffer are it; what follows is the
    /// client's own stream (an HTTP request or a TLS ClientHello).
    Complete {
        header: Header,
        version: Version,
        len: usize,
    },
    /// Every byte so far can start a valid header: read more and call [`parse`] again.
    Incomplete,
}

/// Why bytes are not a PROXY protocol header. Every variant is final: more bytes cannot make
/// the header valid, so the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The first bytes are neither `PROXY ` nor the v2 signature (a client that connected
    /// directly, bypassing the balancer, or a balancer not configured to send the header).
    NotProxyProtocol,
    /// No CRLF within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// A v1 line that does not follow the grammar; the text says which part.
    V1Malformed(&'static str),
    /// The v2 version nibble is not 2.
    V2Version(u8),
    /// The v2 command nibble is neither LOCAL (0) nor PROXY (1).
    V2Command(u8),
    /// The v2 address family or transport byte holds an undefined value.
    V2Family(u8),
    /// The v2 length field is over [`V2_MAX_PAYLOAD`].
    V2TooLong(usize),
    /// The v2 length is shorter than the addresses of the family it names.
    V2ShortAddresses { family: u8, need: usize, have: usize },
    /// A TLV runs past the end of the header.
    V2Tlv,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProxyProtocol => f.write_str("no PROXY protocol header (neither `PROXY ` nor the v2 signature)"),
            Error::V1TooLong => write!(f, "PROXY v1 header without CRLF in its first {V1_MAX_LEN} bytes"),
            Error::V1Malformed(what) => write!(f, "malformed PROXY v1 header: {what}"),
            Error::V2Version(v) => write!(f, "PROXY v2 header with version {v} (expected 2)"),
            Error::V2Command(c) => write!(f, "PROXY v2 header with unknown command {c} (expected LOCAL or PROXY)"),
            Error::V2Family(b) => write!(
                f,
                "PROXY v2 header with undefined address family/protocol byte 0x{b:02x}"
            ),
            Error::V2TooLong(n) => {
                write!(
                    f,
                    "PROXY v2 header announces {n} bytes of addresses and TLVs (at most {V2_MAX_PAYLOAD} accepted)"
                )
            }
            Error::V2ShortAddresses { family, need, have } => write!(
                f,
                "PROXY v2 header too short for its address family 0x{family:02x}: {have} bytes, {need} needed"
            ),
            Error::V2Tlv => f.write_str("PROXY v2 header with a TLV running past its end"),
        }
    }
}

impl std::error::Error for Error {}

/// Looks for a PROXY protocol header (either version) at the start of `buf`, the bytes read from
/// the connection so far.
pub fn parse(buf: &[u8]) -> Result<Parse, Error> {
    match buf.first() {
        None => Ok(Parse::Incomplete),
        Some(b'P') => v1::parse(buf),
        Some(&b) if b == v2::SIGNATURE[0] => v2::parse(buf),
        Some(_) => Err(Error::NotProxyProtocol),
    }
}

/// Appends the header for `header` in `version` to `out`. A v1 header cannot say LOCAL: it is
/// sent as `UNKNOWN`, which the receiver also serves with the connection's own endpoints. When
/// the two addresses are of different families, the IPv4 one is sent IPv4-mapped in IPv6.
pub fn encode(version: Version, header: &Header, out: &mut Vec<u8>) {
    match version {
        Version::V1 => v1::encode(header, out),
        Version::V2 => v2::encode(header, out),
    }
}

/// Both addresses in one family: unchanged when they already agree, else both as IPv6.
fn same_family(a: &Addresses) -> (SocketAddr, SocketAddr) {
    match (a.source, a.destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (a.source, a.destination),
        (s, d) => (to_v6(s), to_v6(d)),
    }
}

fn to_v6(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}
