//! What an upstream's response head means: how its body is framed and whether the connection may
//! be reused. A head that could be read two ways is malformed (502), never guessed at.

use super::headers::{classify, ConnectionNames, Known};
use super::{parse_content_length, tokens, Framing};

pub struct ResponseFacts<'a> {
    pub status: u16,
    pub framing: Framing,
    /// The upstream allows another request on this connection.
    pub reusable: bool,
    pub connection_names: ConnectionNames<'a>,
    /// Content-Length as sent (kept for HEAD and 304, where the body is absent).
    pub content_length: Option<u64>,
}

/// `version` is httparse's minor version; `head_request` says the request was HEAD.
pub fn inspect<'a>(
    status: u16,
    version: u8,
    headers: &[httparse::Header<'a>],
    head_request: bool,
) -> Result<ResponseFacts<'a>, &'static str> {
    let mut content_length: Option<u64> = None;
    let mut te_present = false;
    let mut chunked_last = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut connection_names = ConnectionNames::default();
    for h in headers {
        match classify(h.name) {
            Known::ContentLength => {
                let n = parse_content_length(h.value).ok_or("the upstream sent an invalid Content-Length")?;
                if content_length.is_some_and(|p| p != n) {
                    return Err("the upstream sent differing Content-Length values");
                }
                content_length = Some(n);
            }
            Known::TransferEncoding => {
                for coding in tokens(h.value) {
                    te_present = true;
                    chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
            Known::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    } else if !t.eq_ignore_ascii_case(b"upgrade") && !connection_names.push(t) {
                        return Err("the upstream listed too many names in Connection");
                    }
                }
            }
            _ => {}
        }
    }
    if te_present && content_length.is_some() {
        return Err("the upstream sent both Content-Length and Transfer-Encoding");
    }
    let bodyless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodyless {
        Framing::None
    } else if te_present {
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match content_length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let persistent = if version == 1 { !close } else { keep_alive && !close };
    Ok(ResponseFacts {
        status,
        reusable: persistent && framing != Framing::UntilClose,
        framing,
        connection_names,
        content_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(raw: &str, head: bool) -> Result<(Framing, bool), &'static str> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(raw.as_bytes()).expect("parses");
        inspect(res.code.unwrap(), res.version.unwrap(), res.headers, head).map(|f| (f.framing, f.reusable))
    }

    #[test]
    fn response_framing_table() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                false,
                (Framing::Length(3), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                true,
                (Framing::None, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                (Framing::Chunked, true),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, (Framing::UntilClose, false)),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, (Framing::None, true)),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                (Framing::None, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
                (Framing::Length(1), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                (Framing::Length(1), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                (Framing::Length(1), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                (Framing::UntilClose, false),
            ),
        ];
        for (raw, head, want) in cases {
            assert_eq!(facts(raw, head), Ok(want), "{raw:?}");
        }
        assert!(facts(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .is_err());
        assert!(facts("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }
}
