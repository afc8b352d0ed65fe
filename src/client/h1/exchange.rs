//! One HTTP/1.1 request's exchange, as the connection loop runs it: the body bytes that came
//! with the head are framed for the upstream (Content-Length counted, chunked re-framed), then
//! the protocol-neutral forward step drives [`H1Side`], which frames everything the client gets
//! as HTTP/1.1 and relays bodies with splice where both ends are plain sockets.

use super::reply::reply;
use super::request_body::{reframe_request, stream_request_body};
use super::response_body::{relay_response_body, ChunkedOut};
use super::response_head::H1Head;
use crate::body::chunked::ChunkedDecoder;
use crate::body::splice::SpliceClient;
use crate::cache::Fill;
use crate::config::RoutePlan;
use crate::exchange::client_side::{stored_slices, BodyAbort, ClientSide, Cut};
use crate::exchange::compressed::relay_compressed;
use crate::exchange::forward::{forward, Next};
use crate::exchange::outgoing::Outgoing;
use crate::exchange::response_head::ResponsePlan;
use crate::exchange::{Reply, WorkerCtx};
use crate::http::Framing;
use crate::io::owned::{write_bytes, write_out, write_static};
use crate::observe::Record;
use crate::upstream::UpstreamConn;
use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use std::io;
use std::time::Duration;

/// Runs one exchange; returns what the connection does next, and the client buffer holding any
/// bytes already received after this request.
pub async fn exchange<C: AsyncReadRent + AsyncWriteRent + SpliceClient>(
    ctx: &WorkerCtx,
    client: &mut C,
    mut cbuf: Vec<u8>,
    head_len: usize,
    mut out: Vec<u8>,
    o: Outgoing,
    rec: &mut Record,
) -> (Next, Vec<u8>) {
    let route = &ctx.plan.routes[o.route];

    // Body bytes that arrived with the head go out in the same write as the head.
    let mut pos = head_len;
    let mut body_left = 0u64;
    let mut decoder: Option<ChunkedDecoder> = None;
    let mut decoded = 0u64;
    match o.framing {
        Framing::Length(n) => {
            let avail = ((cbuf.len() - pos) as u64).min(n) as usize;
            out.extend_from_slice(&cbuf[pos..pos + avail]);
            pos += avail;
            body_left = n - avail as u64;
        }
        Framing::Chunked => {
            let mut d = ChunkedDecoder::new();
            match reframe_request(&mut d, &cbuf[pos..], &mut out, &mut decoded) {
                Ok(used) => pos += used,
                Err(why) => return refuse_body(ctx, client, cbuf, out, rec, 400, why).await,
            }
            decoder = Some(d);
        }
        Framing::None | Framing::UntilClose => {}
    }
    if route.max_body.is_some_and(|max| decoded > max) {
        let why = "request body larger than this route allows";
        return refuse_body(ctx, client, cbuf, out, rec, 413, why).await;
    }
    let body_done = body_left == 0 && decoder.as_ref().is_none_or(|d| d.is_done());
    // Everything not yet consumed from the client buffer belongs to the next request.
    if body_done {
        cbuf.drain(..pos);
    } else {
        cbuf.clear();
    }
    let mut side = H1Side {
        client,
        cbuf,
        head: H1Head::new(ctx.heads.get(), o.client_http10),
        body_done,
        body_left,
        decoder,
        decoded,
    };
    let next = forward(ctx, &mut side, o, out, rec).await;
    ctx.heads.put(side.head.out);
    (next, side.cbuf)
}

async fn refuse_body<C: AsyncWriteRent>(
    ctx: &WorkerCtx,
    client: &mut C,
    cbuf: Vec<u8>,
    out: Vec<u8>,
    rec: &mut Record,
    status: u16,
    why: &'static str,
) -> (Next, Vec<u8>) {
    ctx.heads.put(out);
    rec.status = status;
    let r = Reply::text(status, why, true);
    let _ = reply(client, r, Duration::from_secs(10)).await;
    (Next::Close, cbuf)
}

/// Stored bodies up to this size are copied behind the head and sent in one write.
const STORED_INLINE: usize = 16 * 1024;

/// The HTTP/1.1 client connection during one exchange.
struct H1Side<'c, C> {
    client: &'c mut C,
    /// Bytes received from the client and not yet used: early bytes of an upgraded stream, or
    /// the next pipelined request.
    cbuf: Vec<u8>,
    head: H1Head,
    body_done: bool,
    /// Content-Length bytes still to come from the client.
    body_left: u64,
    /// A chunked request body still being decoded.
    decoder: Option<ChunkedDecoder>,
    decoded: u64,
}

impl<C: AsyncReadRent + AsyncWriteRent + SpliceClient> ClientSide for H1Side<'_, C> {
    type Head = H1Head;

    fn head(&mut self) -> &mut H1Head {
        &mut self.head
    }

    fn body_done(&self) -> bool {
        self.body_done
    }

    async fn send_continue(&mut self, t: Duration) -> io::Result<()> {
        write_static(self.client, b"HTTP/1.1 100 Continue\r\n\r\n", t).await
    }

    async fn send_request_body(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        route: &RoutePlan,
    ) -> Result<(), BodyAbort> {
        let mut out = ctx.heads.get();
        let res = stream_request_body(
            ctx,
            self.client,
            upstream,
            route,
            &mut self.cbuf,
            &mut out,
            self.body_left,
            self.decoder.take(),
            self.decoded,
        )
        .await;
        ctx.heads.put(out);
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
        let out = &mut self.head.out;
        if let Some(encoding) = resp.compress {
            let t_send = route.send_timeout;
            let mut sink = ChunkedOut {
                client: self.client,
                out,
                t_send,
            };
            return relay_compressed(ctx, upstream, rbuf, resp, route, encoding, &mut sink, fill).await;
        }
        relay_response_body(self.client, upstream, rbuf, out, resp, route, &ctx.pipes, fill).await
    }

    async fn send_stored(&mut self, body: &Bytes, with_body: bool, t: Duration) -> io::Result<()> {
        let out = &mut self.head.out;
        // A small body goes out in the same write as the head.
        if with_body && body.len() <= STORED_INLINE {
            out.extend_from_slice(body);
        }
        write_out(self.client, out, 0, t).await?;
        if with_body && body.len() > STORED_INLINE {
            // The send timeout bounds each stall, not the whole body: a slice at a time.
            for (slice, _) in stored_slices(body) {
                write_bytes(self.client, slice, t).await?;
            }
        }
        Ok(())
    }

    async fn switch(
        &mut self,
        upstream: &mut UpstreamConn,
        rbuf: &[u8],
        resp: &ResponsePlan,
        route: &RoutePlan,
    ) -> io::Result<()> {
        // Bytes the upstream sent after the 101 head go to the client with the head; bytes the
        // client sent early go to the upstream.
        let out = &mut self.head.out;
        out.extend_from_slice(&rbuf[resp.head_len..]);
        write_out(self.client, out, 0, route.send_timeout).await?;
        if !self.cbuf.is_empty() {
            write_out(upstream, &mut self.cbuf, 0, route.send_timeout).await?;
            self.cbuf.clear();
        }
        Ok(())
    }

    async fn send_reply(&mut self, r: Reply, t: Duration) -> io::Result<()> {
        reply(self.client, r, t).await
    }
}
