//! Request ids: the client's `X-Request-Id` when it is a short, plain token (so it cannot break a
//! log line or smuggle anything upstream), otherwise one made here from a per-process nonce, the
//! worker's number and a per-worker counter: unique without a syscall or a shared counter.

use std::cell::Cell;
use std::sync::OnceLock;

/// Longest client-sent id that is kept.
pub const MAX_LEN: usize = 128;

/// One request's id, held inline (no allocation per request).
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            len: 0,
            bytes: [0; MAX_LEN],
        }
    }
}

/// "nonce-worker-": 12 hex digits, '-', up to 4 hex digits, '-'.
const PREFIX_CAP: usize = 18;

thread_local! {
    /// Requests numbered so far by the worker running on this thread.
    static NEXT: Cell<u64> = const { Cell::new(0) };
    /// The worker's "nonce-worker-" prefix, formatted once (length 0 until first needed).
    static PREFIX: Cell<([u8; PREFIX_CAP], u8)> = const { Cell::new(([0; PREFIX_CAP], 0)) };
}

static NONCE: OnceLock<u64> = OnceLock::new();

/// Distinguishes this process from earlier ones (restarts reuse worker numbers and counters).
fn nonce() -> u64 {
    *NONCE.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (t ^ ((std::process::id() as u64) << 40)) & 0xffff_ffff_ffff
    })
}

/// Called once on each worker thread before it serves requests.
pub fn init_worker(id: usize) {
    NEXT.with(|n| n.set(0));
    PREFIX.with(|p| p.set(prefix(id as u16)));
}

fn prefix(worker: u16) -> ([u8; PREFIX_CAP], u8) {
    let mut bytes = [0; PREFIX_CAP];
    let mut at = put_hex(&mut bytes, 0, nonce(), 12);
    bytes[at] = b'-';
    at = put_hex(&mut bytes, at + 1, worker as u64, 0);
    bytes[at] = b'-';
    (bytes, at as u8 + 1)
}

/// A byte a kept id may contain: RFC 9110 token characters plus `/ = : @`, which covers UUIDs,
/// base64 and the ids other proxies generate, and never needs quoting in a log line.
fn id_byte(b: u8) -> bool {
    crate::http::is_token_byte(b) || matches!(b, b'/' | b'=' | b':' | b'@')
}

pub fn is_acceptable(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|&b| id_byte(b))
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the client's first `X-Request-Id` when acceptable, otherwise generates one.
    /// Returns whether the client's id was kept.
    pub fn resolve(&mut self, headers: &[httparse::Header<'_>]) -> bool {
        let sent = headers.iter().find(|h| is_request_id_header(h.name));
        if let Some(h) = sent {
            let v = crate::http::trim(h.value);
            if is_acceptable(v) {
                self.bytes[..v.len()].copy_from_slice(v);
                self.len = v.len() as u8;
                return true;
            }
        }
        self.generate();
        false
    }

    /// `NONCE-WORKER-COUNTER` in hex, e.g. `3f2a9c1e0b7d-1-2a`.
    pub fn generate(&mut self) {
        let n = NEXT.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        let (bytes, len) = PREFIX.with(|p| {
            let mut kept = p.get();
            if kept.1 == 0 {
                // A thread that is not a worker (tests, the CLI) numbers as worker 0.
                kept = prefix(0);
                p.set(kept);
            }
            kept
        });
        let len = len as usize;
        self.bytes[..len].copy_from_slice(&bytes[..len]);
        self.len = put_hex(&mut self.bytes, len, n, 0) as u8;
    }
}

#[inline]
pub fn is_request_id_header(name: &str) -> bool {
    name.len() == 12 && name.eq_ignore_ascii_case("x-request-id")
}

/// Writes `v` in lower-case hex, zero-padded to `width` digits (0: no padding); returns the end.
fn put_hex(out: &mut [u8], at: usize, v: u64, width: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = ((64 - v.leading_zeros() as usize).div_ceil(4)).max(1).max(width);
    for i in 0..digits {
        out[at + digits - 1 - i] = DIGITS[((v >> (4 * i)) & 0xf) as usize];
    }
    at + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn keeps_plain_ids_and_replaces_the_rest() {
        let mut id = RequestId::default();
        assert!(id.resolve(&[header("X-Request-ID", b" abc-123/x= ")]));
        assert_eq!(id.as_bytes(), b"abc-123/x=");
        let long = [b'a'; MAX_LEN + 1];
        for bad in [
            &b""[..],
            b"has space",
            b"quote\"d",
            b"back\\slash",
            b"caf\xc3\xa9",
            &long[..],
        ] {
            assert!(!id.resolve(&[header("x-request-id", bad)]), "{bad:?}");
            assert!(is_acceptable(id.as_bytes()));
        }
        assert!(id.resolve(&[header("X-Request-Id", &long[..MAX_LEN])]));
    }

    #[test]
    fn generated_ids_are_distinct_and_shaped() {
        init_worker(3);
        let (mut a, mut b) = (RequestId::default(), RequestId::default());
        assert!(!a.resolve(&[]));
        b.generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        let text = std::str::from_utf8(a.as_bytes()).unwrap();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 3, "{text}");
        assert_eq!(parts[0].len(), 12);
        assert_eq!(parts[1], "3");
    }
}
