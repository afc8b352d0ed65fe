//! The exchange's [`ClientSide`] for one HTTP/2 stream: the response head arrives field by field
//! (`H2Head`, a `HeadSink`) and goes out as one HEADERS frame; the upstream's body, whatever its
//! HTTP/1.1 framing (length, chunked, until close), goes out as DATA frames under flow control
//! (`body::StreamIo`), compressed first when the response head says so (`DataOut`, a
//! `compress::CompressedSink`); the request body streams from DATA frames to the upstream,
//! chunked when it has no `content-length`. No upgrade exists on HTTP/2: an upstream's 101
//! becomes a 502.

use super::body::{Framing, StreamIo};
use crate::body::chunked::ChunkedDecoder;
use crate::cache::Fill;
use crate::config::RoutePlan;
use crate::exchange::client_side::{stored_slices, BodyAbort, BodyLength, ClientSide, Cut, HeadSink};
use crate::exchange::compressed::relay_compressed;
use crate::exchange::reply::{hand_head, Reply, ReplyBody};
use crate::exchange::response_head::ResponsePlan;
use crate::exchange::WorkerCtx;
use crate::http::Framing as Wire;
use crate::io::deadline::timeout;
use crate::io::owned::{read_into, write_out};
use crate::upstream::UpstreamConn;
use bytes::Bytes;
use std::io;
use std::time::Duration;

/// Header fields that HTTP/2 forbids in a response (RFC 9113 §8.2.2).
fn connection_specific(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// The client's response head, built for one HEADERS frame.
#[derive(Default)]
pub struct H2Head {
    status: u16,
    fields: http::HeaderMap,
    length: Option<BodyLength>,
    /// A field that HTTP/2 cannot carry (a name or value it refuses): the head is not sent.
    bad: bool,
}

impl H2Head {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        if connection_specific(name) {
            return;
        }
        match (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
            (Ok(n), Ok(v)) => {
                self.fields.append(n, v);
            }
            _ => self.bad = true,
        }
    }

    /// The head as h2 sends it.
    fn response(&mut self) -> Option<http::Response<()>> {
        if self.bad {
            return None;
        }
        if let Some(BodyLength::Exactly(n)) = self.length {
            self.fields.insert(http::header::CONTENT_LENGTH, n.into());
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::from_u16(self.status).ok()?;
        *resp.headers_mut() = std::mem::take(&mut self.fields);
        Some(resp)
    }
}

impl HeadSink for H2Head {
    fn start(&mut self, status: u16, _reason: &str) {
        *self = H2Head {
            status,
            ..H2Head::default()
        };
    }

    fn keep(&mut self, _raw: &[u8], h: &httparse::Header<'_>) {
        self.add(h.name.as_bytes(), h.value);
    }

    fn field(&mut self, _raw: &[u8], name: &[u8], value: &[u8]) {
        self.add(name, value);
    }

    fn finish(&mut self, _raw: &[u8], length: BodyLength, _close: bool) {
        self.length = Some(length);
    }
}

/// Sends a response ringway writes itself: its head as one HEADERS frame, built by `H2Head`
/// as for a proxied response (no connection fields), then its body as DATA.
pub async fn reply(io: &mut StreamIo, r: Reply, t: Duration) -> io::Result<()> {
    let mut head = H2Head::default();
    hand_head(&r, &mut head);
    let resp = head
        .response()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "reply field not valid in HTTP/2"))?;
    let (body, tail) = r.body_parts();
    let len = (body.len() + tail.len()) as u64;
    let length = match r.body {
        ReplyBody::None => 0,
        // A HEAD request's answer states the body's length but sends none (`respond` knows).
        ReplyBody::Bytes { ref data, send: false } => data.len() as u64,
        _ => len,
    };
    io.respond(resp, Framing::Length(length))?;
    if len == 0 {
        return Ok(());
    }
    let mut data = Vec::with_capacity(body.len() + tail.len());
    data.extend_from_slice(body);
    data.extend_from_slice(tail);
    match timeout(t, Box::pin(io.stored_body(data.into(), true))).await {
        Ok(res) => res,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// One stream during its exchange.
pub struct H2Side<'s> {
    pub io: &'s mut StreamIo,
    pub head: H2Head,
    /// Request body bytes decoded so far (for the route's `max_body`).
    received: u64,
}

impl<'s> H2Side<'s> {
    pub fn new(io: &'s mut StreamIo) -> Self {
        H2Side {
            io,
            head: H2Head::default(),
            received: 0,
        }
    }
}

fn reply_413() -> BodyAbort {
    BodyAbort::Client(Some(Reply::text(
        413,
        "request body larger than this route allows",
        true,
    )))
}

impl ClientSide for H2Side<'_> {
    type Head = H2Head;

    fn head(&mut self) -> &mut H2Head {
        &mut self.head
    }

    fn body_done(&self) -> bool {
        self.io.request_done()
    }

    async fn send_continue(&mut self, _t: Duration) -> io::Result<()> {
        self.io.informational(100);
        Ok(())
    }

    async fn send_request_body(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        route: &RoutePlan,
    ) -> Result<(), BodyAbort> {
        let mut buf = ctx.bodies.get();
        let res = async {
            loop {
                // A client that sends nothing more for read_timeout is given up on.
                match timeout(route.read_timeout, Box::pin(self.io.next_request_bytes())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return Err(BodyAbort::Client(None)),
                }
                let Some((framed, payload)) = self.io.take_request_bytes() else {
                    return Ok(());
                };
                self.received += payload as u64;
                if route.max_body.is_some_and(|max| self.received > max) {
                    return Err(reply_413());
                }
                buf.clear();
                buf.extend_from_slice(&framed);
                write_out(upstream, &mut buf, 0, route.send_timeout)
                    .await
                    .map_err(BodyAbort::Upstream)?;
                if buf.capacity() == 0 {
                    buf = ctx.bodies.get();
                }
            }
        }
        .await;
        ctx.bodies.put(buf);
        res
    }

    async fn send_response(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        rbuf: &mut Vec<u8>,
        resp: &ResponsePlan,
        route: &RoutePlan,
        fill: Option<&mut Fill>,
    ) -> Result<bool, Cut> {
        let res = self.relay(ctx, upstream, rbuf, resp, route, fill).await;
        if res.is_err() {
            // Reset rather than END_STREAM: a body that runs until its end must not look whole.
            self.io.cut();
        }
        res
    }

    async fn send_stored(&mut self, body: &Bytes, with_body: bool, t: Duration) -> io::Result<()> {
        let head = self
            .head
            .response()
            .ok_or_else(|| io::Error::other("stored head not valid in HTTP/2"))?;
        let framing = Framing::Length(if with_body { body.len() as u64 } else { 0 });
        self.io.respond(head, framing)?;
        if with_body && !body.is_empty() {
            // The send timeout bounds each stall (a reader that stops), not the whole body.
            for (slice, last) in stored_slices(body) {
                let res = timeout(t, Box::pin(self.io.stored_body(slice, last))).await;
                res.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
        }
        Ok(())
    }

    async fn switch(
        &mut self,
        _upstream: &mut UpstreamConn,
        _rbuf: &[u8],
        _resp: &ResponsePlan,
        route: &RoutePlan,
    ) -> io::Result<()> {
        // Nothing asked for it: no Upgrade goes upstream from an HTTP/2 request.
        let r = Reply::text(502, "the upstream switched protocols unasked", true);
        self.send_reply(r, route.send_timeout).await?;
        Err(io::Error::other("101 from the upstream on an HTTP/2 stream"))
    }

    async fn send_reply(&mut self, r: Reply, t: Duration) -> io::Result<()> {
        reply(self.io, r, t).await
    }
}

impl H2Side<'_> {
    /// The body as DATA frames: as the upstream framed it, or compressed.
    async fn relay(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        rbuf: &mut Vec<u8>,
        resp: &ResponsePlan,
        route: &RoutePlan,
        mut fill: Option<&mut Fill>,
    ) -> Result<bool, Cut> {
        let head = self.head.response().ok_or(Cut)?;
        if let Some(encoding) = resp.compress {
            self.io.respond(head, Framing::UntilEnd).map_err(|_| Cut)?;
            let mut sink = DataOut {
                io: self.io,
                t_send: route.send_timeout,
            };
            return relay_compressed(ctx, upstream, rbuf, resp, route, encoding, &mut sink, fill).await;
        }
        let framing = match resp.framing {
            Wire::Length(n) => Framing::Length(n),
            Wire::Chunked => Framing::Chunked(ChunkedDecoder::new()),
            Wire::UntilClose => Framing::UntilEnd,
            Wire::None => Framing::Length(0),
        };
        self.io.respond(head, framing).map_err(|_| Cut)?;
        let first = rbuf.len().min(resp.head_len);
        if let Some(f) = fill.as_deref_mut() {
            f.feed(&rbuf[first..]);
        }
        let res = timeout(route.send_timeout, Box::pin(self.io.body(&rbuf[first..]))).await;
        res.map_err(|_| Cut)?.map_err(|_| Cut)?;
        while !self.io.response_done() {
            rbuf.clear();
            let cap = rbuf.capacity().max(16 * 1024);
            match read_into(upstream, rbuf, cap, cap, route.read_timeout).await {
                Ok(0) if matches!(resp.framing, Wire::UntilClose) => {
                    self.io.end_response();
                    return Ok(false);
                }
                Ok(0) | Err(_) => return Err(Cut),
                Ok(_) => {}
            }
            if let Some(f) = fill.as_deref_mut() {
                f.feed(rbuf);
            }
            let res = timeout(route.send_timeout, Box::pin(self.io.body(rbuf))).await;
            res.map_err(|_| Cut)?.map_err(|_| Cut)?;
        }
        Ok(true)
    }
}

/// A compressed body as DATA frames, each send bounded by the route's `send_timeout`.
struct DataOut<'a> {
    io: &'a mut StreamIo,
    t_send: Duration,
}

impl crate::compress::CompressedSink for DataOut<'_> {
    async fn send(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        if !data.is_empty() {
            match timeout(self.t_send, Box::pin(self.io.body(data))).await {
                Ok(res) => res?,
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        if last {
            self.io.end_response();
        }
        Ok(())
    }
}
