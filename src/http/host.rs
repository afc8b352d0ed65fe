//! Host header normalisation for route lookup: lower case, no port, no trailing dot.

/// Lower-cases a Host value and drops its port and a trailing dot, into `buf`.
/// Returns None for an empty or over-long host (it then matches only host-less routes).
pub fn normalize_host<'b>(raw: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let host = if raw.first() == Some(&b'[') {
        // IPv6 literal: keep the brackets, drop the port.
        match memchr::memchr(b']', raw) {
            Some(i) => &raw[..=i],
            None => raw,
        }
    } else {
        match memchr::memrchr(b':', raw) {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > buf.len() {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host);
    out.make_ascii_lowercase();
    Some(out)
}
