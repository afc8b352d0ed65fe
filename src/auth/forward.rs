//! Forward auth (nginx `auth_request`, Traefik ForwardAuth; how oauth2-proxy and Authelia plug
//! in): before forwarding, ask the auth service with a GET carrying the original method, URI,
//! host and client address as X-Forwarded-* plus the client's Cookie and Authorization.
//! 2xx: continue, copying the listed response headers into the upstream request.
//! 401, 403, 3xx: the auth service's answer goes to the client unchanged (login redirects work).
//! Anything else, no answer, or no answer in time: 503. A request is never let through unasked.

use super::Request;
use crate::body::chunked::{ChunkedDecoder, Step};
use crate::config::{AccessPlan, ForwardAuth};
use crate::http::headers::{classify, Known};
use crate::http::reply::{Reply, ReplyBody};
use crate::http::write::header;
use crate::io::owned::{read_append, write_from};
use crate::observe::{event, Level};
use monoio::net::TcpStream;
use std::time::Instant;

/// The auth service's answer is read whole; an auth answer is a status and a few headers.
const MAX_ANSWER: usize = 64 * 1024;

/// A prepared subrequest: which auth table, and the request head to send.
pub struct Subrequest {
    pub auth: usize,
    pub head: Vec<u8>,
    pub is_head: bool,
    pub close: bool,
}

impl Subrequest {
    pub fn build(auth: usize, fa: &ForwardAuth, req: &Request<'_>) -> Self {
        let mut h = Vec::with_capacity(512);
        h.extend_from_slice(b"GET ");
        h.extend_from_slice(fa.path.as_bytes());
        h.extend_from_slice(b" HTTP/1.1\r\n");
        header(&mut h, b"Host", fa.authority.as_bytes());
        header(&mut h, b"X-Forwarded-Method", req.method.as_bytes());
        header(&mut h, b"X-Forwarded-Proto", req.scheme.as_bytes());
        if let Some(host) = req.host {
            header(&mut h, b"X-Forwarded-Host", host);
        }
        h.extend_from_slice(b"X-Forwarded-Uri: ");
        h.extend_from_slice(req.path);
        h.extend_from_slice(req.query);
        h.extend_from_slice(b"\r\n");
        if let Some(host) = req.host {
            // nginx's convention (Authelia reads it): the whole original URL.
            h.extend_from_slice(b"X-Original-URL: ");
            h.extend_from_slice(req.scheme.as_bytes());
            h.extend_from_slice(b"://");
            h.extend_from_slice(host);
            h.extend_from_slice(req.path);
            h.extend_from_slice(req.query);
            h.extend_from_slice(b"\r\n");
        }
        header(&mut h, b"X-Forwarded-For", req.client.to_string().as_bytes());
        let mut cookies = req.headers.iter().filter(|x| x.name.eq_ignore_ascii_case("cookie"));
        if let Some(first) = cookies.next() {
            h.extend_from_slice(b"Cookie: ");
            h.extend_from_slice(first.value);
            for c in cookies {
                h.extend_from_slice(b"; ");
                h.extend_from_slice(c.value);
            }
            h.extend_from_slice(b"\r\n");
        }
        if let Some(a) = req
            .headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case("authorization"))
        {
            header(&mut h, b"Authorization", a.value);
        }
        header(&mut h, b"Connection", b"close");
        h.extend_from_slice(b"\r\n");
        Subrequest {
            auth,
            head: h,
            is_head: req.is_head,
            close: req.close,
        }
    }
}

/// Runs the subrequest. On 2xx the copied headers are appended to the upstream head in `out`
/// and the request goes on (None); otherwise the client gets the returned answer.
pub async fn authorize(access: &AccessPlan, sub: &Subrequest, out: &mut Vec<u8>) -> Option<Reply> {
    let crate::config::AuthMethod::Forward(fa) = &access.auths[sub.auth].method else {
        unreachable!("a subrequest is only built for forward auth");
    };
    let deadline = Instant::now() + fa.timeout;
    let answer = match ask(fa, &sub.head, deadline).await {
        Ok(a) => a,
        Err(why) => {
            let name = &access.auths[sub.auth].name;
            event(Level::Warn, format_args!("auth {name} ({}): {why}", fa.url));
            return unavailable(fa, why, sub.close);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(&answer) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return unavailable(fa, "unparsable answer", sub.close),
    };
    let status = res.code.unwrap_or(0);
    match status {
        200..=299 => {
            // The head in `out` ends with the blank line: reopen it, add, close it again.
            out.truncate(out.len() - 2);
            for (from, to) in &fa.copy {
                if let Some(h) = res.headers.iter().find(|h| h.name.eq_ignore_ascii_case(from)) {
                    header(out, to.as_bytes(), h.value);
                }
            }
            out.extend_from_slice(b"\r\n");
            None
        }
        401 | 403 | 300..=399 => match relay(status, res.reason.unwrap_or(""), res.headers, &answer[head_len..], sub) {
            Some(a) => Some(a),
            None => unavailable(fa, "malformed body", sub.close),
        },
        _ => {
            let name = &access.auths[sub.auth].name;
            event(Level::Warn, format_args!("auth {name} ({}): answered {status}", fa.url));
            unavailable(fa, "unexpected status", sub.close)
        }
    }
}

fn unavailable(fa: &ForwardAuth, why: &str, close: bool) -> Option<Reply> {
    Some(Reply::text(
        503,
        format!("authentication service {} unavailable: {why}", fa.url),
        close,
    ))
}

/// Connects, sends, and reads the answer: the head of a 2xx, or the whole of anything else.
async fn ask(fa: &ForwardAuth, head: &[u8], deadline: Instant) -> Result<Vec<u8>, &'static str> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut s = match monoio::time::timeout(left(), TcpStream::connect_addr(fa.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err("connection refused"),
        Err(_) => return Err("connect timed out"),
    };
    let _ = s.set_nodelay(true);
    let (res, _) = write_from(&mut s, head.to_vec(), 0, left()).await;
    res.map_err(|_| "could not send the request")?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = read_append(&mut s, buf, MAX_ANSWER, 4096, left()).await;
        buf = b;
        let eof = match res {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err("no answer in time"),
            Err(_) => return Err("connection reset"),
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = r.code.unwrap_or(0);
                if (200..300).contains(&status) || eof {
                    return Ok(buf);
                }
                let length = r
                    .headers
                    .iter()
                    .find(|h| classify(h.name) == Known::ContentLength)
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
                if length.is_some_and(|l| buf.len() >= n + l) || status == 304 || status == 204 {
                    return Ok(buf);
                }
            }
            Ok(httparse::Status::Partial) if !eof => {}
            _ => return Err("unparsable answer"),
        }
        if buf.len() >= MAX_ANSWER {
            return Err("answer too large");
        }
    }
}

/// The client's copy of a 401/403/3xx: same status and headers, re-framed with Content-Length.
fn relay(status: u16, reason: &str, headers: &[httparse::Header<'_>], body: &[u8], sub: &Subrequest) -> Option<Reply> {
    let chunked = headers.iter().any(|h| classify(h.name) == Known::TransferEncoding);
    let length = headers
        .iter()
        .find(|h| classify(h.name) == Known::ContentLength)
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
    let mut plain = Vec::new();
    let body: &[u8] = if chunked {
        let mut d = ChunkedDecoder::new();
        let mut p = 0;
        while !d.is_done() {
            if p >= body.len() {
                return None;
            }
            match d.step(&body[p..]).ok()? {
                Step::Data(n) => {
                    plain.extend_from_slice(&body[p..p + n]);
                    p += n;
                }
                Step::Skip(n) | Step::Done(n) => p += n,
            }
        }
        &plain
    } else {
        &body[..length.unwrap_or(body.len()).min(body.len())]
    };
    let fields = headers
        .iter()
        .filter(|h| {
            let kind = classify(h.name);
            !kind.is_hop_by_hop() && kind != Known::ContentLength
        })
        .map(|h| (h.name.to_owned().into(), h.value.to_vec()))
        .collect();
    let body = if status == 304 {
        ReplyBody::None
    } else {
        ReplyBody::Bytes {
            data: body.to_vec(),
            send: !sub.is_head,
        }
    };
    Some(Reply {
        status,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        route: None,
        fields,
        body,
        close: sub.close,
    })
}
