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
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
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
    fn classifies_any_casing() {
        assert_eq!(classify("HOST"), Known::Host);
        assert_eq!(classify("Transfer-Encoding"), Known::TransferEncoding);
        assert_eq!(classify("x-FORWARDED-prefix"), Known::XForwardedPrefix);
        assert_eq!(classify("X-Forwarded-Fox"), Known::Other);
        assert!(Known::Upgrade.is_hop_by_hop());
        assert!(!Known::Host.is_hop_by_hop());
    }
}
