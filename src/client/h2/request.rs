//! An HTTP/2 request turned into the protocol-neutral [`RequestHead`] (RFC 9113 §8.2-8.3): the
//! h2 crate has already refused malformed frames, uppercase names and pseudo-header misuse; here
//! `:authority` becomes `Host` (what routes match, and what goes upstream), cookie crumbs are
//! joined with `; `, connection-specific fields are refused, and a body with no
//! `content-length` is marked chunked so the upstream (HTTP/1.1) sees where it ends.

use crate::exchange::RequestHead;
use http::request::Parts;

/// Fields the head holds that the client did not send as such: made once per stream, borrowed
/// by the header list.
pub struct Derived {
    host: Option<String>,
    cookie: Option<Vec<u8>>,
    /// The body is forwarded chunked (it follows the head and has no `content-length`).
    pub chunked: bool,
}

/// Checks a request's fields; the error names what RFC 9113 forbids (a stream error).
pub fn derive(parts: &Parts, body_follows: bool) -> Result<Derived, &'static str> {
    let mut cookie: Option<Vec<u8>> = None;
    let mut length = false;
    for (name, value) in &parts.headers {
        match name.as_str() {
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" => {
                return Err("connection-specific header field in an HTTP/2 request")
            }
            "te" if value.as_bytes() != b"trailers" => return Err("TE other than \"trailers\" in an HTTP/2 request"),
            "cookie" => match &mut cookie {
                None => cookie = Some(value.as_bytes().to_vec()),
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(value.as_bytes());
                }
            },
            "content-length" => length = true,
            _ => {}
        }
    }
    Ok(Derived {
        host: parts.uri.authority().map(|a| a.as_str().to_owned()),
        cookie,
        chunked: body_follows && !length,
    })
}

/// The header list of the neutral head: `Host` first, then the client's fields in order (less
/// `te`, a `host` that `:authority` replaces, and the cookie crumbs, joined into one field).
pub fn fields<'a>(parts: &'a Parts, d: &'a Derived, out: &mut Vec<httparse::Header<'a>>) {
    if let Some(h) = &d.host {
        out.push(httparse::Header {
            name: "host",
            value: h.as_bytes(),
        });
    }
    for (name, value) in &parts.headers {
        let name = name.as_str();
        match name {
            "te" | "cookie" => continue,
            "host" if d.host.is_some() => continue,
            _ => {}
        }
        out.push(httparse::Header {
            name,
            value: value.as_bytes(),
        });
    }
    if let Some(c) = &d.cookie {
        out.push(httparse::Header {
            name: "cookie",
            value: c,
        });
    }
    if d.chunked {
        out.push(httparse::Header {
            name: "transfer-encoding",
            value: b"chunked",
        });
    }
}

/// The neutral head over `fields`' list. HTTP/2 has HTTP/1.1's semantics (`version` 1).
pub fn head<'a>(parts: &'a Parts, headers: &'a [httparse::Header<'a>]) -> RequestHead<'a> {
    let target = match parts.uri.path_and_query() {
        Some(p) => p.as_str().as_bytes(),
        // CONNECT names an authority only; the exchange refuses the method.
        None => parts.uri.authority().map_or(&b""[..], |a| a.as_str().as_bytes()),
    };
    RequestHead {
        method: parts.method.as_str(),
        target,
        version: 1,
        headers,
        raw: &[],
    }
}

/// What the access log keeps of the request: its line with `HTTP/2.0`, Referer and User-Agent,
/// in the text form `observe::Record::begin` reads.
pub fn log_head(parts: &Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(p) => out.extend_from_slice(p.as_str().as_bytes()),
        None => out.extend_from_slice(parts.uri.authority().map_or("", |a| a.as_str()).as_bytes()),
    }
    out.extend_from_slice(b" HTTP/2.0\r\n");
    for name in ["referer", "user-agent"] {
        if let Some(v) = parts.headers.get(name) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_becomes_host_and_cookies_join() {
        let p = parts(
            http::Request::get("https://app.example:8443/a?b=1")
                .header("host", "other")
                .header("cookie", "a=1")
                .header("x-y", "z")
                .header("cookie", "b=2")
                .header("te", "trailers"),
        );
        let d = derive(&p, false).unwrap();
        let mut list = Vec::new();
        fields(&p, &d, &mut list);
        let got: Vec<(&str, &[u8])> = list.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(
            got,
            vec![
                ("host", &b"app.example:8443"[..]),
                ("x-y", b"z"),
                ("cookie", b"a=1; b=2")
            ]
        );
        let h = head(&p, &list);
        assert_eq!((h.method, h.target, h.version), ("GET", &b"/a?b=1"[..], 1));
    }

    #[test]
    fn connection_specific_fields_are_refused() {
        for (name, value) in [
            ("connection", "close"),
            ("keep-alive", "1"),
            ("proxy-connection", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            let p = parts(http::Request::post("https://a/").header(name, value));
            assert!(derive(&p, true).is_err(), "{name}");
        }
    }

    #[test]
    fn a_body_without_length_goes_chunked() {
        let p = parts(http::Request::post("https://a/"));
        assert!(derive(&p, true).unwrap().chunked);
        assert!(!derive(&p, false).unwrap().chunked);
        let p = parts(http::Request::post("https://a/").header("content-length", "3"));
        assert!(!derive(&p, true).unwrap().chunked);
    }
}
