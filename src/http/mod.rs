//! HTTP/1.1 wire handling: request and response heads (parsed by httparse, then checked for the
//! framing ambiguities that enable request smuggling), body framing, and head writing.

pub mod client_info;
pub mod headers;
mod host;
pub mod reply;
pub mod request;
pub mod response;
pub mod write;

pub use host::normalize_host;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the upstream closes.
    UntilClose,
}

/// A request refused before anything was sent upstream; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    Malformed(&'static str),
    HeadTooLarge,
    UriTooLong,
    Connect,
    BodyTooLarge,
    UnsupportedExpectation,
    UnsupportedTransferCoding,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::Connect => 405,
            RequestError::BodyTooLarge => 413,
            RequestError::UnsupportedExpectation => 417,
            RequestError::UnsupportedTransferCoding => 501,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            RequestError::Malformed(why) => why,
            RequestError::HeadTooLarge => "request header fields too large",
            RequestError::UriTooLong => "request URI too long",
            RequestError::Connect => "CONNECT is not supported: ringway is not a forward proxy",
            RequestError::BodyTooLarge => "request body larger than this route allows",
            RequestError::UnsupportedExpectation => "only Expect: 100-continue is supported",
            RequestError::UnsupportedTransferCoding => "only the chunked transfer coding is supported",
        }
    }
}

/// Where the blank line that ends a head ("\r\n\r\n") starts. Found through its line feeds
/// (a vectorised byte search per line): heads are short, and `memmem::find` sets up a substring
/// searcher on every call, which cost more than the search itself.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|i| (i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n").then(|| i - 3))
}

/// Checks line endings of a complete head: every LF preceded by CR, every CR followed by LF.
/// httparse tolerates bare LF; a proxy must not, or it reads a head differently than its upstream.
pub fn has_bare_cr_or_lf(head: &[u8]) -> bool {
    // Every LF must follow a CR; then any CR beyond the LFs' count stands alone. Two single-byte
    // scans: a scan for either byte restarts at every hit, twice per line.
    let mut lines = 0;
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return true;
        }
        lines += 1;
    }
    memchr::memchr_iter(b'\r', head).count() != lines
}

/// Strict decimal Content-Length (no sign, no spaces, no empty), with a list of identical values
/// allowed ("5, 5") as RFC 9110 permits.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |acc, &d| acc * 10 + (d - b'0') as u64);
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// RFC 9110 `tchar`: the alphabet of header names, methods, codings and extension names.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty RFC 9110 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A header field as httparse hands it over, for unit tests that build heads by hand.
#[cfg(test)]
pub fn test_header<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
    httparse::Header {
        name,
        value: value.as_bytes(),
    }
}

/// Iterates the comma-separated tokens of a header value, trimmed, skipping empty ones.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// The `name=value` pairs of one `Cookie:` field (`a=1; b=2`), trimmed; a piece without `=`
/// is no pair and is skipped.
pub fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|&b| b == b';').filter_map(|pair| {
        let eq = memchr::memchr(b'=', pair)?;
        Some((trim(&pair[..eq]), trim(&pair[eq + 1..])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_pairs_split_on_semicolons() {
        let pairs: Vec<_> = cookie_pairs(b"a=1; grafana_session=x=y ;flag; b=").collect();
        let want: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"grafana_session", b"x=y"), (b"b", b"")];
        assert_eq!(pairs, want);
        assert_eq!(cookie_pairs(b"").count(), 0);
    }

    #[test]
    fn head_end_is_the_first_blank_line() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Some(23)),
            (b"GET / HTTP/1.1\r\n\r\nbody\r\n\r\n", Some(14)),
            (b"\r\n\r\n", Some(0)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", None),
            (b"GET / HTTP/1.1\r\nHost: a\n\n", None),
            (b"\n\r\n", None),
            (b"", None),
        ];
        for (buf, want) in cases {
            assert_eq!(find_head_end(buf), *want, "{:?}", String::from_utf8_lossy(buf));
            assert_eq!(find_head_end(buf), memchr::memmem::find(buf, b"\r\n\r\n"));
        }
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"5, 5"), Some(5));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"",
            b"5 5",
            b"0x10",
            b"5, 6",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bare_line_endings() {
        assert!(!has_bare_cr_or_lf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(has_bare_cr_or_lf(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(has_bare_cr_or_lf(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"));
        assert!(has_bare_cr_or_lf(b"\nGET / HTTP/1.1\r\n\r\n"));
        assert!(has_bare_cr_or_lf(b"GET / HTTP/1.1\r\n\r\n\r"));
        assert!(has_bare_cr_or_lf(b"GET / HTTP/1.1\r\r\n\r\n"));
        assert!(!has_bare_cr_or_lf(b"partial head without line ends"));
    }
}
