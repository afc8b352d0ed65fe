//! Who the client is: the socket peer, or — only when the peer is a trusted proxy — the
//! right-most X-Forwarded-For address that is not itself a trusted proxy. Walking from the right
//! means a client cannot spoof its address by sending its own X-Forwarded-For: entries left of
//! the first untrusted hop are whatever that hop claimed and are never believed.

use super::ip::{canonical, parse_forwarded_addr, CidrList};
use crate::http::headers::{classify, Known};
use std::net::IpAddr;

pub fn resolve(trusted: &CidrList, peer: IpAddr, headers: &[httparse::Header<'_>]) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    // Several X-Forwarded-For lines form one list in order; walk it from the end.
    for h in headers
        .iter()
        .rev()
        .filter(|h| classify(h.name) == Known::XForwardedFor)
    {
        for entry in h.value.rsplit(|&b| b == b',') {
            if entry.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match parse_forwarded_addr(entry) {
                Some(ip) => {
                    client = canonical(ip);
                    if !trusted.contains(client) {
                        return client;
                    }
                }
                // Garbage from a trusted hop: stop at the last address we could read.
                None => return client,
            }
        }
    }
    client
}

/// Whether the client's own X-Forwarded-For may be passed on: only from a trusted peer when a
/// trusted list is configured (without a list, the core behaviour of appending is kept).
pub fn forwards_client_list(trusted: &CidrList, peer: IpAddr) -> bool {
    trusted.is_empty() || trusted.contains(canonical(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_header as h;

    #[test]
    fn table() {
        let trusted = CidrList::parse(["10.0.0.0/8", "::1"]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            // Untrusted peer: its header is ignored.
            ("192.0.2.1", &[("X-Forwarded-For", "1.1.1.1")], "192.0.2.1"),
            // Trusted peer: right-most untrusted entry.
            (
                "10.0.0.1",
                &[("X-Forwarded-For", "6.6.6.6, 1.1.1.1, 10.2.2.2")],
                "1.1.1.1",
            ),
            (
                "10.0.0.1",
                &[("x-forwarded-for", "6.6.6.6"), ("X-FORWARDED-FOR", "2.2.2.2")],
                "2.2.2.2",
            ),
            // No header: the peer itself.
            ("10.0.0.1", &[], "10.0.0.1"),
            // All trusted: the left-most one.
            ("10.0.0.1", &[("X-Forwarded-For", "10.9.9.9, 10.8.8.8")], "10.9.9.9"),
            // Garbage stops the walk.
            (
                "10.0.0.1",
                &[("X-Forwarded-For", "1.1.1.1, junk, 10.3.3.3")],
                "10.3.3.3",
            ),
            ("::1", &[("X-Forwarded-For", "[2001:db8::5]:443")], "2001:db8::5"),
            ("::ffff:10.0.0.7", &[("X-Forwarded-For", "3.3.3.3")], "3.3.3.3"),
        ];
        for (peer, headers, want) in cases {
            let hs: Vec<_> = headers.iter().map(|(n, v)| h(n, v)).collect();
            assert_eq!(resolve(&trusted, ip(peer), &hs), ip(want), "peer {peer} {headers:?}");
        }
        assert_eq!(
            resolve(&CidrList::default(), ip("10.0.0.1"), &[h("X-Forwarded-For", "1.1.1.1")]),
            ip("10.0.0.1")
        );
    }
}
