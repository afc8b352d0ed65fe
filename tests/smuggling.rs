//! Request-smuggling corpus. For each hostile request the upstream records exactly the bytes it
//! received, and the case asserts one of two outcomes: refused (the status given, the client
//! connection closed, nothing at all at the upstream), or forwarded in one normalized form that
//! any reasonable HTTP/1.1 server reads the same way (a single Content-Length or a re-framed
//! chunked body, no obfuscation left). Each case uses a fresh upstream connection (`keepalive =
//! 0`), so the bytes of one case are one recorded connection.

mod common;
use common::*;
use std::time::Duration;

enum Want {
    /// Refused with this status; nothing reaches the upstream.
    Refused(u16),
    /// Forwarded: exactly these bytes reach the upstream (every request of the case, in order),
    /// and the client gets one 200 per forwarded request.
    Forwarded(&'static [u8]),
}
use Want::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// (name, bytes the client sends, expected outcome).
const CORPUS: &[(&str, &[u8], Want)] = &[
    // --- CL.TE and TE.CL: both framings in one request.
    (
        "CL.TE",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        Refused(400),
    ),
    (
        "TE.CL",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE.CL with CL 0",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    // --- TE.TE: obfuscated Transfer-Encoding.
    (
        "TE xchunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE chunked, identity",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE duplicated chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE chunked then identity header",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE identity alone",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\nabc",
        Refused(400),
    ),
    (
        "TE quoted",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE with vertical tab",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE with form feed",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0cchunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE name with space before colon",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE obs-folded",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "TE gzip, chunked (unsupported coding)",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Refused(501),
    ),
    (
        "TE in HTTP/1.0",
        b"POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    // Obfuscations every reader resolves to chunked: forwarded with a plain `chunked`.
    (
        "TE chunked with trailing space",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ),
    (
        "TE upper-case Chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ),
    (
        "TE with a tab before the value",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ),
    // --- Content-Length obfuscations.
    (
        "CL with plus sign",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL negative",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL hex",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL two numbers with a space",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL differing list",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
        Refused(400),
    ),
    (
        "CL differing headers",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        Refused(400),
    ),
    (
        "CL empty",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL overflowing u64",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL with space before colon",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
        Refused(400),
    ),
    (
        "CL identical list",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
    ),
    (
        "CL identical headers",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
    ),
    (
        "CL leading zeros",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
    ),
    (
        "CL body followed by a pipelined request",
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        Forwarded(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
    ),
    // --- Chunk framing.
    (
        "chunk size overflow",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "chunk size 16 digits",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "chunk size with 0x",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        // Whitespace before the line end is read as BWS before (absent) extensions; the upstream
        // gets a bare size, so no reader can take the space for part of the number.
        "chunk size with a space before CRLF",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ),
    (
        "chunk extension with bare LF",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nGET /smuggled HTTP/1.1\r\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "chunk extension with NUL",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "chunk size line with bare LF",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "chunk data not followed by CRLF",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
        Refused(400),
    ),
    (
        "last chunk with bare LF",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n",
        Refused(400),
    ),
    (
        "chunks with extensions, leading zeros and a trailer",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0003;a=b;c=\"d e\"\r\nabc\r\n2\r\nde\r\n0;x=y\r\nX-Trailer: smuggle\r\n\r\n",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
    ),
    (
        "chunked body followed by a pipelined request",
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        Forwarded(b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
    ),
    // --- Control bytes and line endings in the head.
    (
        "NUL in a header value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
        Refused(400),
    ),
    (
        "NUL in the target",
        b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "NUL in a header name",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-\x00A: 1\r\n\r\n",
        Refused(400),
    ),
    (
        "control byte in a header value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
        Refused(400),
    ),
    (
        "DEL in a header value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n",
        Refused(400),
    ),
    (
        "escape byte in a header name",
        b"GET / HTTP/1.1\r\nHost: h\r\nX\x1bA: 1\r\n\r\n",
        Refused(400),
    ),
    (
        "bare LF ending a header line",
        b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n",
        Refused(400),
    ),
    (
        "bare CR inside a header line",
        b"GET / HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n",
        Refused(400),
    ),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: h\n\n", Refused(400)),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n",
        Refused(400),
    ),
    (
        "header name with space before colon",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n",
        Refused(400),
    ),
    (
        "header line without colon",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A 1\r\n\r\n",
        Refused(400),
    ),
    (
        "empty header name",
        b"GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n",
        Refused(400),
    ),
    (
        "whitespace line before the first header",
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        Refused(400),
    ),
    // --- Request line: methods, versions, spacing.
    ("invalid method", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("method with NUL", b"GE\x00T / HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("empty method", b" / HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", Refused(400)),
    ("HTTP/2.0 in HTTP/1 framing", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", Refused(400)),
    ("HTTP/0.9 request line", b"GET /\r\nHost: h\r\n\r\n", Refused(400)),
    ("lower-case version", b"GET / http/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("version with extra digits", b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", Refused(400)),
    ("two spaces after the method", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("two spaces before the version", b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("trailing space after the version", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", Refused(400)),
    ("tab as separator", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("space inside the target", b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    ("CONNECT", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", Refused(405)),
    // --- Host and absolute-form tricks.
    (
        "two Host headers",
        b"GET / HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n",
        Refused(400),
    ),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", Refused(400)),
    (
        "Host with a path",
        b"GET / HTTP/1.1\r\nHost: h/evil\r\n\r\n",
        Refused(400),
    ),
    (
        "Host with userinfo",
        b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n",
        Refused(400),
    ),
    (
        "absolute-form with userinfo",
        b"GET http://user@evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "absolute-form with another scheme",
        b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "absolute-form without authority",
        b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    ("asterisk-form on GET", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", Refused(400)),
    (
        "target with a fragment",
        b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "dot-dot path",
        b"GET /public/../admin HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "encoded dot-dot path",
        b"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: h\r\n\r\n",
        Refused(400),
    ),
    (
        "absolute-form overrides the Host header",
        b"GET http://real.test/x?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n",
        Forwarded(b"GET /x?q=1 HTTP/1.1\r\nHost: real.test\r\n\r\n"),
    ),
    (
        "absolute-form with upper-case scheme and no path",
        b"GET HTTP://real.test HTTP/1.1\r\nHost: other.test\r\n\r\n",
        Forwarded(b"GET / HTTP/1.1\r\nHost: real.test\r\n\r\n"),
    ),
    // --- Hop-by-hop and connection-level headers the upstream must not see.
    (
        "Connection naming an end-to-end header",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
        Forwarded(b"GET / HTTP/1.1\r\nHost: h\r\nX-Kept: 2\r\n\r\n"),
    ),
    (
        "Upgrade the route does not allow",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        Forwarded(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ),
    (
        "HTTP/1.0 with a body and keep-alive",
        b"POST / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        Forwarded(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"),
    ),
    (
        "leading empty lines before the request",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        Forwarded(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ),
    (
        "header value surrounded by whitespace",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \t v  \r\n\r\n",
        Forwarded(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: v\r\n\r\n"),
    ),
];

fn proxy(up: std::net::SocketAddr) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
[upstream.app]\nservers = [\"{up}\"]\nkeepalive = 0\n\n\
[[route]]\nupstream = \"app\"\nresponse_timeout = \"5s\"\n\n\
[route.forwarding]\nx_forwarded_for = false\nx_forwarded_proto = false\nx_forwarded_host = false\n\
x_forwarded_port = false\nx_real_ip = false\nx_forwarded_prefix = false\n"
    );
    Ringway::start(&cfg)
}

/// Requests in `bytes` the upstream should see, counted by request lines (for the reply count).
fn request_count(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while let Some(len) = complete_request_len(rest) {
        n += 1;
        rest = &rest[len..];
        if len == 0 {
            break;
        }
    }
    n
}

/// The upstream bytes without the `X-Request-Id` line ringway adds to every request (its value
/// is generated, so the corpus cannot spell it), and how many such lines there were.
fn without_request_ids(bytes: &[u8]) -> (Vec<u8>, usize) {
    const LINE: &[u8] = b"\r\nX-Request-Id: ";
    let (mut out, mut n, mut rest) = (Vec::new(), 0, bytes);
    while let Some(i) = rest.windows(LINE.len()).position(|w| w == LINE) {
        let end = i
            + 2
            + rest[i + 2..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(rest.len() - i - 2);
        out.extend_from_slice(&rest[..i]);
        rest = &rest[end..];
        n += 1;
    }
    out.extend_from_slice(rest);
    (out, n)
}

fn split_requests(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(len) = complete_request_len(bytes).filter(|&n| n > 0) {
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

fn head_of(request: &[u8]) -> &[u8] {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |i| i + 4);
    &request[..end]
}

#[test]
fn smuggling_corpus_is_refused_or_forwarded_in_one_normalized_form() {
    let up = Scripted::always(OK);
    let mut p = proxy(up.addr);
    let mut failures = Vec::new();
    for (name, req, want) in CORPUS {
        let conns_before = up.conn_count();
        let mut c = RawClient::connect(p.addr());
        c.set_timeout(Duration::from_secs(3));
        c.send(req);
        match want {
            Refused(status) => {
                match c.try_read_response(false) {
                    Ok(r) if r.status == *status => {
                        // The connection ends with the refusal: whatever followed is never read
                        // as another request.
                        if !c.closed_within(Duration::from_secs(2)) {
                            failures.push(format!("{name}: connection left open after {status}"));
                        }
                    }
                    Ok(r) => failures.push(format!("{name}: got {} {:?}, want {status}", r.status, r.text())),
                    Err(e) => failures.push(format!("{name}: no response ({e})")),
                }
                std::thread::sleep(Duration::from_millis(20));
                if up.conn_count() != conns_before {
                    let got = up.conns()[conns_before..]
                        .iter()
                        .flat_map(|c| c.received.clone())
                        .collect::<Vec<u8>>();
                    failures.push(format!(
                        "{name}: refused case reached the upstream with {:?}",
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
            Forwarded(exact) => {
                for i in 0..request_count(exact) {
                    match c.try_read_response(false) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures.push(format!("{name}: response {i} was {} {:?}", r.status, r.text())),
                        Err(e) => failures.push(format!("{name}: response {i} missing ({e})")),
                    }
                }
                let got: Vec<u8> = up.conns()[conns_before..]
                    .iter()
                    .flat_map(|c| c.received.clone())
                    .collect();
                let (got, ids) = without_request_ids(&got);
                if ids != request_count(exact) {
                    failures.push(format!(
                        "{name}: {ids} X-Request-Id lines upstream, want one per request"
                    ));
                }
                if got != *exact {
                    failures.push(format!(
                        "{name}: upstream received\n    {:?}\n  want\n    {:?}",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(exact)
                    ));
                }
            }
        }
    }
    p.assert_healthy();
    assert!(
        failures.is_empty(),
        "{} of {} smuggling cases failed:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

/// The same corpus sent byte by byte: a head or chunk split anywhere must be judged the same as
/// when it arrives whole (state carried across reads, no decision made on a partial line).
#[test]
fn smuggling_corpus_split_into_single_bytes_gets_the_same_verdicts() {
    let up = Scripted::always(OK);
    let p = proxy(up.addr);
    let mut failures = Vec::new();
    for (name, req, want) in CORPUS {
        let conns_before = up.conn_count();
        let mut c = RawClient::connect(p.addr());
        c.set_timeout(Duration::from_secs(3));
        for b in req.iter() {
            if !c.try_send(std::slice::from_ref(b)) {
                break;
            }
        }
        let first = c.try_read_response(false);
        match (want, first) {
            (Refused(s), Ok(r)) if r.status == *s => {}
            (Forwarded(_), Ok(r)) if r.status == 200 => {}
            (_, Ok(r)) => failures.push(format!("{name}: got {}", r.status)),
            (_, Err(e)) => failures.push(format!("{name}: no response ({e})")),
        }
        if let Forwarded(exact) = want {
            for _ in 1..request_count(exact) {
                let _ = c.try_read_response(false);
            }
            // Chunk boundaries follow the reads (one chunk per piece received), so compare each
            // request's head byte for byte and its decoded body.
            let got: Vec<Vec<u8>> = up.conns()[conns_before..]
                .iter()
                .flat_map(|c| c.requests.clone())
                .map(|r| without_request_ids(&r).0)
                .collect();
            let want = split_requests(exact);
            let same = got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| head_of(g) == head_of(w) && decoded_body(g) == decoded_body(w));
            if !same {
                failures.push(format!("{name}: upstream received {got:?}"));
            }
        } else {
            // Streaming: a head that arrived complete may already be on its way upstream when a
            // later byte of its body turns out malformed. Then the upstream gets at most the
            // normalized head and the valid chunks before the error, never a complete request,
            // and the connection is closed under it.
            let settled = wait_until(Duration::from_secs(3), || {
                up.conns()[conns_before..].iter().all(|c| c.closed_by_peer)
            });
            let new_conns = up.conns()[conns_before..].to_vec();
            if !settled {
                failures.push(format!("{name}: upstream connection left open after the refusal"));
            }
            for conn in new_conns {
                if !conn.requests.is_empty() {
                    failures.push(format!(
                        "{name}: upstream received a complete request: {:?}",
                        String::from_utf8_lossy(&conn.received)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "byte-split corpus failed:\n{}",
        failures.join("\n")
    );
}
