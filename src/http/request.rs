//! What a parsed request head means for the proxy: target form, framing, persistence, and the
//! refusals that keep ringway and its upstreams reading the same message boundaries.

use super::headers::{classify, ConnectionNames, Known};
use super::{parse_content_length, tokens, Framing, RequestError};

/// The request target, split; `query` keeps its leading `?` and is forwarded byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Authority of an absolute-form target (`GET http://host/...`), which overrides Host.
    pub authority: Option<&'a [u8]>,
    pub path: &'a [u8],
    pub query: &'a [u8],
}

pub struct RequestFacts<'a> {
    pub target: Target<'a>,
    /// The host to route by: the absolute-form authority, else the Host header.
    pub host: Option<&'a [u8]>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Header names listed in Connection, which are dropped like other hop-by-hop headers.
    pub connection_names: ConnectionNames<'a>,
    /// The Upgrade value when Connection also lists `upgrade`.
    pub upgrade: Option<&'a [u8]>,
    pub is_head: bool,
}

pub fn split_target<'a>(method: &str, target: &'a [u8]) -> Result<Target<'a>, RequestError> {
    if method == "CONNECT" {
        return Err(RequestError::Connect);
    }
    let (authority, rest) = if target.first() == Some(&b'/') {
        (None, target)
    } else {
        let lower_scheme = |s: &[u8]| target.len() > s.len() && target[..s.len()].eq_ignore_ascii_case(s);
        let after = if lower_scheme(b"http://") {
            &target[7..]
        } else if lower_scheme(b"https://") {
            &target[8..]
        } else {
            return Err(RequestError::Malformed(
                "the request target must be a path or an http(s) URL",
            ));
        };
        let end = after
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(after.len());
        let authority = &after[..end];
        if authority.is_empty() || authority.contains(&b'@') {
            return Err(RequestError::Malformed("the request target has an invalid authority"));
        }
        (Some(authority), &after[end..])
    };
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(i) => rest.split_at(i),
        None => (rest, &b""[..]),
    };
    let path = if path.is_empty() { &b"/"[..] } else { path };
    if path.contains(&b'#') {
        return Err(RequestError::Malformed("the request target contains a fragment"));
    }
    Ok(Target { authority, path, query })
}

/// Checks a parsed head; `version` is httparse's minor version (0 or 1).
pub fn inspect<'a>(
    method: &'a str,
    target: &'a [u8],
    version: u8,
    headers: &[httparse::Header<'a>],
) -> Result<RequestFacts<'a>, RequestError> {
    let target = split_target(method, target)?;
    let mut host: Option<&[u8]> = None;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_value: Option<&[u8]> = None;
    let mut expect_continue = false;
    let mut connection_names = ConnectionNames::default();

    for h in headers {
        match classify(h.name) {
            Known::Host => {
                if host.is_some() {
                    return Err(RequestError::Malformed("more than one Host header"));
                }
                host = Some(h.value);
            }
            Known::ContentLength => {
                let n = parse_content_length(h.value).ok_or(RequestError::Malformed("invalid Content-Length"))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(RequestError::Malformed("differing Content-Length values"));
                }
                content_length = Some(n);
            }
            Known::TransferEncoding => {
                // Every coding is listed in order across all TE headers; chunked must be the last
                // and appear once. Anything after a chunked is a smuggling attempt.
                for coding in tokens(h.value) {
                    if chunked {
                        return Err(RequestError::Malformed("Transfer-Encoding has a coding after chunked"));
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else if coding.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') && !coding.is_empty() {
                        te_seen = true;
                    } else {
                        return Err(RequestError::Malformed("invalid Transfer-Encoding"));
                    }
                }
                te_seen |= !chunked;
            }
            Known::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_token = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        upgrade_token = true;
                    } else if !connection_names.push(t) {
                        return Err(RequestError::Malformed("too many names in Connection"));
                    }
                }
            }
            Known::Upgrade => upgrade_value = Some(h.value),
            Known::Expect => {
                if super::trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(RequestError::UnsupportedExpectation);
                }
            }
            _ => {}
        }
    }

    let framing = match (chunked, te_seen, content_length) {
        (true, _, Some(_)) | (_, true, Some(_)) => {
            return Err(RequestError::Malformed("both Content-Length and Transfer-Encoding"));
        }
        (false, true, None) => {
            return Err(RequestError::Malformed("Transfer-Encoding must end with chunked"));
        }
        (true, true, None) => return Err(RequestError::UnsupportedTransferCoding),
        (true, false, None) => {
            if version == 0 {
                return Err(RequestError::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
            }
            Framing::Chunked
        }
        (false, false, Some(0)) | (false, false, None) => Framing::None,
        (false, false, Some(n)) => Framing::Length(n),
    };
    if version == 1 && host.is_none() && target.authority.is_none() {
        return Err(RequestError::Malformed("HTTP/1.1 request without Host"));
    }
    if host.is_some_and(|h| h.is_empty() || h.iter().any(|&b| b == b' ' || b == b'\t' || b == b'/' || b == b'@')) {
        return Err(RequestError::Malformed("invalid Host header"));
    }
    let keep_alive = if version == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    let upgrade = if upgrade_token { upgrade_value } else { None };
    Ok(RequestFacts {
        host: target.authority.or(host),
        target,
        framing,
        keep_alive,
        expect_continue,
        connection_names,
        upgrade,
        is_head: method == "HEAD",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(raw: &str) -> Result<Framing, RequestError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).expect("parses");
        inspect(
            req.method.unwrap(),
            req.path.unwrap().as_bytes(),
            req.version.unwrap(),
            req.headers,
        )
        .map(|f| f.framing)
    }

    #[test]
    fn framing_table() {
        let ok = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::None),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Framing::Chunked,
            ),
        ];
        for (raw, want) in ok {
            assert_eq!(facts(raw), Ok(want), "{raw:?}");
        }
        let refused = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in refused {
            assert!(facts(raw).is_err(), "{raw:?} must be refused");
        }
        assert_eq!(
            facts("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(RequestError::UnsupportedTransferCoding)
        );
        assert_eq!(
            facts("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(RequestError::Connect)
        );
    }

    #[test]
    fn targets() {
        let t = split_target("GET", b"http://Example.com:8080/a/b?x=%20y").unwrap();
        assert_eq!(t.authority, Some(&b"Example.com:8080"[..]));
        assert_eq!(t.path, b"/a/b");
        assert_eq!(t.query, b"?x=%20y");
        let t = split_target("GET", b"http://example.com").unwrap();
        assert_eq!(t.path, b"/");
        assert!(split_target("GET", b"*").is_err());
        assert!(split_target("GET", b"http://user@evil/").is_err());
    }
}
