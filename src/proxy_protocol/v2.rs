//! Version 2, the binary form: a 12-byte signature, version and command, address family and
//! transport, a big-endian length, then the addresses and optional TLVs.
//!
//! TLVs (ALPN, SNI, cloud endpoint ids, SSL details) are walked only to check that each fits
//! inside the announced length, then skipped: nothing in them decides who the client is.

use super::{same_family, Addresses, Error, Header, Parse, Version, V2_MAX_PAYLOAD};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

pub(super) const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport, length.
pub(super) const FIXED_LEN: usize = 16;

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const UNSPEC: u8 = 0x00;
const TCP4: u8 = 0x11;
const UDP4: u8 = 0x12;
const TCP6: u8 = 0x21;
const UDP6: u8 = 0x22;
const UNIX_STREAM: u8 = 0x31;
const UNIX_DGRAM: u8 = 0x32;
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;

pub(super) fn parse(buf: &[u8]) -> Result<Parse, Error> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        return Err(Error::NotProxyProtocol);
    }
    // Each fixed byte is checked as soon as it arrives.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parse::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        CMD_LOCAL => true,
        CMD_PROXY => false,
        other => return Err(Error::V2Command(other)),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(Parse::Incomplete);
    };
    // A LOCAL header's address block is discarded whole, family included (the spec's rule).
    let need = if local { 0 } else { address_len(family)? };
    let Some(len_bytes) = buf.get(14..FIXED_LEN) else {
        return Ok(Parse::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if len > V2_MAX_PAYLOAD {
        return Err(Error::V2TooLong(len));
    }
    if len < need {
        return Err(Error::V2ShortAddresses {
            family,
            need,
            have: len,
        });
    }
    let Some(payload) = buf.get(FIXED_LEN..FIXED_LEN + len) else {
        return Ok(Parse::Incomplete);
    };
    let header = if local {
        Header::Local
    } else {
        if family != UNSPEC {
            check_tlvs(&payload[need..])?;
        }
        Header::Proxy(addresses(family, payload))
    };
    Ok(Parse::Complete {
        header,
        version: Version::V2,
        len: FIXED_LEN + len,
    })
}

/// Bytes of addresses the family announces; the values the spec does not define are refused.
fn address_len(family: u8) -> Result<usize, Error> {
    match family {
        UNSPEC => Ok(0),
        TCP4 | UDP4 => Ok(INET_LEN),
        TCP6 | UDP6 => Ok(INET6_LEN),
        UNIX_STREAM | UNIX_DGRAM => Ok(UNIX_LEN),
        other => Err(Error::V2Family(other)),
    }
}

/// The client's addresses for the IP families; UNSPEC and UNIX carry none a TCP peer could have.
fn addresses(family: u8, p: &[u8]) -> Option<Addresses> {
    let port = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let (source, destination) = match family {
        TCP4 | UDP4 => {
            let ip = |i: usize| Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]);
            (
                SocketAddr::new(ip(0).into(), port(8)),
                SocketAddr::new(ip(4).into(), port(10)),
            )
        }
        TCP6 | UDP6 => {
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&p[i..i + 16]);
                Ipv6Addr::from(octets)
            };
            (
                SocketAddr::new(ip(0).into(), port(32)),
                SocketAddr::new(ip(16).into(), port(34)),
            )
        }
        _ => return None,
    };
    Some(Addresses { source, destination })
}

/// Every TLV (type, 16-bit length, value) must end inside the header.
fn check_tlvs(mut rest: &[u8]) -> Result<(), Error> {
    while !rest.is_empty() {
        let Some(head) = rest.get(..3) else {
            return Err(Error::V2Tlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([head[1], head[2]]));
        rest = rest.get(end..).ok_or(Error::V2Tlv)?;
    }
    Ok(())
}

pub(super) fn encode(header: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&SIGNATURE);
    let addrs = match header {
        Header::Local => {
            out.extend_from_slice(&[0x20 | CMD_LOCAL, UNSPEC, 0, 0]);
            return;
        }
        Header::Proxy(None) => {
            out.extend_from_slice(&[0x20 | CMD_PROXY, UNSPEC, 0, 0]);
            return;
        }
        Header::Proxy(Some(a)) => a,
    };
    match same_family(addrs) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend_from_slice(&[0x20 | CMD_PROXY, TCP4, 0, INET_LEN as u8]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V6(a) => a.ip().octets(),
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
            };
            out.extend_from_slice(&[0x20 | CMD_PROXY, TCP6, 0, INET6_LEN as u8]);
            out.extend_from_slice(&v6(s));
            out.extend_from_slice(&v6(d));
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
}
