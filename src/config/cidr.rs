//! CIDR lists for `allow`, `deny` and `trusted_proxies`: compiled once into sorted, merged
//! address ranges, so a lookup is one binary search whatever the list's length.
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a `[::]` listener sees) match IPv4 rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Default, Clone, Debug)]
pub struct CidrList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrList {
    /// Parses every entry; the error names the entry and what is wrong with it.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for e in entries {
            match parse_cidr(e)? {
                Cidr::V4(lo, hi) => v4.push((lo, hi)),
                Cidr::V6(lo, hi) => v6.push((lo, hi)),
            }
        }
        Ok(CidrList {
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// Address ranges after merging (for `ringway check`).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // First range starting after x; the one before it is the only candidate.
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && x <= ranges[i - 1].1
}

fn merge<T: Ord + Copy + num::Step>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        if let Some(last) = out.last_mut() {
            if lo <= last.1 || T::follows(last.1, lo) {
                last.1 = last.1.max(hi);
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

mod num {
    /// Adjacent ranges (`..=5` and `6..`) merge too.
    pub trait Step {
        fn follows(a: Self, b: Self) -> bool;
    }
    impl Step for u32 {
        fn follows(a: u32, b: u32) -> bool {
            a.checked_add(1) == Some(b)
        }
    }
    impl Step for u128 {
        fn follows(a: u128, b: u128) -> bool {
            a.checked_add(1) == Some(b)
        }
    }
}

enum Cidr {
    V4(u32, u32),
    V6(u128, u128),
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let t = text.trim();
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}` is not an address or CIDR block like 10.0.0.0/8 or fd00::/8"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        None => max,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("`{text}`: the prefix length must be 0 to {max}")),
        },
    };
    let check = |host_bits: bool| {
        if host_bits {
            Err(format!(
                "`{text}` has bits set after the first {len}; write the network address of the block"
            ))
        } else {
            Ok(())
        }
    };
    // A mapped block (`::ffff:10.0.0.0/104`) is an IPv4 block, as lookups see mapped peers.
    let (ip, len) = match ip {
        IpAddr::V6(a) if len >= 96 && a.to_ipv4_mapped().is_some() => (canonical(ip), len - 96),
        _ => (ip, len),
    };
    match ip {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            check(a & !mask != 0)?;
            Ok(Cidr::V4(a, a | !mask))
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            check(a & !mask != 0)?;
            Ok(Cidr::V6(a, a | !mask))
        }
    }
}

/// Parses an address as it appears in X-Forwarded-For: bare, `v4:port`, or `[v6]:port`.
pub fn parse_forwarded_addr(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(a, _)| a.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6);
    }
    s.rsplit_once(':')
        .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_v4_v6_and_mapped() {
        let l = CidrList::parse(["192.168.0.0/16", "::1/128", "10.1.2.3", "fd00::/8"]).unwrap();
        assert!(l.contains(ip("192.168.13.7")));
        assert!(!l.contains(ip("192.169.0.1")));
        assert!(l.contains(ip("::1")));
        assert!(!l.contains(ip("::2")));
        assert!(l.contains(ip("10.1.2.3")));
        assert!(!l.contains(ip("10.1.2.4")));
        assert!(l.contains(ip("::ffff:192.168.1.1")));
        assert!(l.contains(ip("fdab::1")));
        assert!(!CidrList::default().contains(ip("127.0.0.1")));
        assert!(CidrList::parse(["0.0.0.0/0"]).unwrap().contains(ip("8.8.8.8")));
        assert!(CidrList::parse(["::/0"]).unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let l = CidrList::parse(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/8", "10.0.0.5"]).unwrap();
        assert_eq!(l.v4.len(), 1);
        assert!(l.contains(ip("10.255.255.255")));
        assert!(!l.contains(ip("11.0.0.0")));
    }

    #[test]
    fn refuses_bad_entries() {
        assert!(CidrList::parse(["192.168.1.5/16"])
            .unwrap_err()
            .contains("network address"));
        assert!(CidrList::parse(["10.0.0.0/33"]).is_err());
        assert!(CidrList::parse(["example.com"]).is_err());
    }

    #[test]
    fn forwarded_addresses() {
        assert_eq!(parse_forwarded_addr(b" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_forwarded_addr(b"1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_forwarded_addr(b"[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_forwarded_addr(b"2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_forwarded_addr(b"unknown"), None);
    }
}
