//! Version 1, the text form: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`,
//! `PROXY TCP6 …`, or `PROXY UNKNOWN …\r\n`; single spaces, at most 107 bytes with the CRLF.
//!
//! Strict on purpose: decimal ports without leading zeros or signs, addresses in the family the
//! line names, printable ASCII only. A header is written by a balancer, never by a person, so
//! anything else is a client pretending to be one.

use super::{same_family, Addresses, Error, Header, Parse, Version, V1_MAX_LEN};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const PREFIX: &[u8] = b"PROXY ";
/// What may follow the prefix; `UNKNOWN` is then followed by a space or the CR.
const PROTOCOLS: [&[u8]; 3] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN"];

pub(super) fn parse(buf: &[u8]) -> Result<Parse, Error> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        check_start(window, false)?;
        if buf.len() >= V1_MAX_LEN {
            return Err(Error::V1TooLong);
        }
        return Ok(Parse::Incomplete);
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::V1Malformed("LF without CR"));
    }
    let line = &window[..lf - 1];
    check_start(line, true)?;
    Ok(Parse::Complete {
        header: parse_line(line)?,
        version: Version::V1,
        len: lf + 1,
    })
}

/// The checks that can be made on any prefix of a line, so garbage is refused at its first
/// byte: the `PROXY ` prefix, a known protocol and printable characters. A CR may end a
/// partial line (its LF has not arrived); a whole `line`, its CRLF cut off, has none.
fn check_start(bytes: &[u8], line: bool) -> Result<(), Error> {
    let n = bytes.len().min(PREFIX.len());
    if bytes[..n] != PREFIX[..n] {
        return Err(Error::NotProxyProtocol);
    }
    let rest = &bytes[n..];
    let known = PROTOCOLS.iter().any(|p| {
        let m = rest.len().min(p.len());
        rest[..m] == p[..m]
    });
    if !known {
        return Err(Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN"));
    }
    if rest.starts_with(b"UNKNOWN") && !matches!(rest.get(7), None | Some(b' ' | b'\r')) {
        return Err(Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN"));
    }
    let body = if line {
        bytes
    } else {
        bytes.strip_suffix(b"\r").unwrap_or(bytes)
    };
    if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(Error::V1Malformed("a byte that is not printable ASCII"));
    }
    Ok(())
}

/// A whole line without its CRLF, already through [`check_start`].
fn parse_line(line: &[u8]) -> Result<Header, Error> {
    // Printable ASCII was checked, so this cannot fail.
    let text = std::str::from_utf8(line).map_err(|_| Error::V1Malformed("not ASCII"))?;
    let mut parts = text.split(' ');
    parts.next(); // "PROXY"
    let v6 = match parts.next() {
        Some("UNKNOWN") => return Ok(Header::Proxy(None)),
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = |what| parts.next().filter(|p| !p.is_empty()).ok_or(Error::V1Malformed(what));
    let src = ip(next("missing source address")?, v6)?;
    let dst = ip(next("missing destination address")?, v6)?;
    let sport = port(next("missing source port")?)?;
    let dport = port(next("missing destination port")?)?;
    if parts.next().is_some() {
        return Err(Error::V1Malformed("more fields than addresses and ports"));
    }
    Ok(Header::Proxy(Some(Addresses {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })))
}

fn ip(text: &str, v6: bool) -> Result<IpAddr, Error> {
    let parsed = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    parsed.map_err(|_| {
        Error::V1Malformed(if v6 {
            "not an IPv6 address"
        } else {
            "not an IPv4 address"
        })
    })
}

fn port(text: &str) -> Result<u16, Error> {
    let digits = text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(Error::V1Malformed("port is not a decimal number without leading zeros"));
    }
    text.parse().map_err(|_| Error::V1Malformed("port above 65535"))
}

pub(super) fn encode(header: &Header, out: &mut Vec<u8>) {
    let Header::Proxy(Some(addrs)) = header else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    let (src, dst) = same_family(addrs);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    );
}
