//! Header names the proxy acts on, recognised without allocating.

/// The headers that change what the proxy does; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Te,
    Trailer,
    ProxyConnection,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XForwardedPort,
    XForwardedPrefix,
    XRealIp,
    Location,
    ContentLocation,
    SetCookie,
    Other,
}

pub fn classify(name: &str) -> Known {
    let n = name.as_bytes();
    // Every known name is ASCII letters and '-'; the length picks at most three candidates, so
    // one case-folded comparison (eight bytes at a time) settles it. Called for every header of
    // every request and response: the byte-at-a-time comparison cost ~120 instructions a call.
    let is = |s: &str| eq_lowercase(n, s.as_bytes());
    match n.len() {
        2 if is("te") => Known::Te,
        4 if is("host") => Known::Host,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::Trailer,
        8 if is("location") => Known::Location,
        9 if is("x-real-ip") => Known::XRealIp,
        10 if is("connection") => Known::Connection,
        10 if is("keep-alive") => Known::KeepAlive,
        10 if is("set-cookie") => Known::SetCookie,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-forwarded-for") => Known::XForwardedFor,
        16 if is("proxy-connection") => Known::ProxyConnection,
        16 if is("x-forwarded-host") => Known::XForwardedHost,
        16 if is("x-forwarded-port") => Known::XForwardedPort,
        16 if is("content-location") => Known::ContentLocation,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        17 if is("x-forwarded-proto") => Known::XForwardedProto,
        18 if is("x-forwarded-prefix") => Known::XForwardedPrefix,
        _ => Known::Other,
    }
}

/// `name` equals `lower` (already lower case, same length) ignoring ASCII case. Names of eight
/// bytes or more are compared a word at a time, the last word overlapping the one before.
fn eq_lowercase(name: &[u8], lower: &[u8]) -> bool {
    let len = name.len();
    if len != lower.len() {
        return false;
    }
    if len < 8 {
        return name.eq_ignore_ascii_case(lower);
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    loop {
        if fold_word(word(name, at)) != Some(word(lower, at)) {
            return false;
        }
        if at + 8 == len {
            return true;
        }
        at = (at + 8).min(len - 8);
    }
}

/// Eight bytes with 'A'..='Z' turned to lower case; None if any byte is not ASCII (no known
/// name has one, and the arithmetic below needs bytes under 0x80 to keep them from carrying).
fn fold_word(w: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    if w & HIGH != 0 {
        return None;
    }
    // Per byte: the high bit of (b + 0x3f) is set for b >= 'A', of (b + 0x25) for b > 'Z'.
    let upper = (w + ONES * 0x3f) & !(w + ONES * 0x25) & HIGH;
    Some(w | (upper >> 2))
}

impl Known {
    /// Hop-by-hop: meaningful for one connection only, never forwarded as received.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Connection
                | Known::KeepAlive
                | Known::Te
                | Known::Trailer
                | Known::ProxyConnection
                | Known::Upgrade
                | Known::TransferEncoding
        )
    }
}

/// Up to a few extra header names listed in `Connection` (beyond close/keep-alive/upgrade), which
/// are hop-by-hop too. More than fits is refused by the caller: real clients send one or two.
#[derive(Default)]
pub struct ConnectionNames<'a> {
    names: [&'a [u8]; 8],
    len: usize,
}

impl<'a> ConnectionNames<'a> {
    /// Returns false when full.
    pub fn push(&mut self, name: &'a [u8]) -> bool {
        if self.len == self.names.len() {
            return false;
        }
        self.names[self.len] = name;
        self.len += 1;
        true
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names[..self.len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_folding_matches_byte_folding_for_every_byte() {
        // Each byte value in each lane: the word result must equal the byte-wise lower case.
        for b in 0u8..=255 {
            for lane in 0..8 {
                let mut bytes = *b"Ab-Zz@[`";
                bytes[lane] = b;
                let folded = fold_word(u64::from_le_bytes(bytes));
                if bytes.is_ascii() {
                    assert_eq!(
                        folded,
                        Some(u64::from_le_bytes(bytes.map(|c| c.to_ascii_lowercase()))),
                        "{bytes:?}"
                    );
                } else {
                    assert_eq!(folded, None);
                }
            }
        }
    }

    #[test]
    fn word_comparison_agrees_with_std_on_every_known_length() {
        let names = [
            "Transfer-Encoding",
            "X-FORWARDED-PREFIX",
            "content-length",
            "Keep-Alive",
            "x-real-ip",
        ];
        for name in names {
            let lower = name.to_ascii_lowercase();
            assert!(eq_lowercase(name.as_bytes(), lower.as_bytes()));
            for i in 0..name.len() {
                let mut other = name.as_bytes().to_vec();
                other[i] ^= 0x01;
                assert_eq!(
                    eq_lowercase(&other, lower.as_bytes()),
                    other.eq_ignore_ascii_case(lower.as_bytes()),
                    "{}",
                    String::from_utf8_lossy(&other)
                );
            }
        }
    }

    #[test]
    fn classifies_any_casing() {
        assert_eq!(classify("HOST"), Known::Host);
        assert_eq!(classify("Transfer-Encoding"), Known::TransferEncoding);
        assert_eq!(classify("x-FORWARDED-prefix"), Known::XForwardedPrefix);
        assert_eq!(classify("X-Forwarded-Fox"), Known::Other);
        assert_eq!(classify("CONTENT-LENGTH"), Known::ContentLength);
        assert_eq!(classify("content-lengti"), Known::Other);
        assert_eq!(classify("X-Forwarded-Proto"), Known::XForwardedProto);
        assert_eq!(classify("x-forwarded-protO"), Known::XForwardedProto);
        assert_eq!(classify("x-forwarded-prot0"), Known::Other);
        assert!(Known::Upgrade.is_hop_by_hop());
        assert!(!Known::Host.is_hop_by_hop());
    }
}
