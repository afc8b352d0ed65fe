//! The request body, client to upstream: Content-Length bodies spliced between plain sockets
//! or copied in bounded buffers, chunked bodies decoded and re-framed (one chunk per piece, no
//! extensions, no trailers), `max_body` enforced as bytes arrive.

use crate::body::chunked::{write_chunk_header, ChunkedDecoder, Step, LAST_CHUNK};
use crate::body::splice::{plain_pair, splice_body, BodyError, SpliceClient, SPLICE_MIN_BODY};
use crate::config::RoutePlan;
use crate::exchange::client_side::BodyAbort;
use crate::exchange::{Reply, WorkerCtx};
use crate::io::owned::{read_into, write_out};
use crate::upstream::UpstreamConn;
use monoio::io::AsyncReadRent;

/// Decodes chunked input and appends it re-framed (one chunk per piece, no extensions, no
/// trailers). Returns the input bytes consumed; stops at the end of the body.
pub fn reframe_request(
    d: &mut ChunkedDecoder,
    input: &[u8],
    out: &mut Vec<u8>,
    decoded: &mut u64,
) -> Result<usize, &'static str> {
    let mut p = 0;
    while p < input.len() && !d.is_done() {
        match d.step(&input[p..]).map_err(|e| e.reason())? {
            Step::Data(n) => {
                write_chunk_header(out, n);
                out.extend_from_slice(&input[p..p + n]);
                out.extend_from_slice(b"\r\n");
                *decoded += n as u64;
                p += n;
            }
            Step::Skip(n) => p += n,
            Step::Done(n) => {
                p += n;
                out.extend_from_slice(LAST_CHUNK);
            }
        }
    }
    Ok(p)
}

/// Streams the rest of the request body from the client to the upstream.
#[allow(clippy::too_many_arguments)]
pub async fn stream_request_body<C: AsyncReadRent + SpliceClient>(
    ctx: &WorkerCtx,
    client: &mut C,
    upstream: &mut UpstreamConn,
    route: &RoutePlan,
    cbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    mut left: u64,
    decoder: Option<ChunkedDecoder>,
    mut decoded: u64,
) -> Result<(), BodyAbort> {
    let mut bbuf = ctx.bodies.get();
    let result = async {
        match decoder {
            None => {
                if left >= SPLICE_MIN_BODY {
                    if let Some((u, c)) = plain_pair(upstream, client) {
                        let res = splice_body(c, u, &ctx.pipes, Some(left), route.read_timeout, route.send_timeout);
                        match res.await {
                            Ok(n) => {
                                client.spliced(n, 0);
                                return Ok(());
                            }
                            // Nothing moved yet: the copy loop below relays the body.
                            Err(BodyError::NoPipe(_)) => {}
                            Err(BodyError::Read(_)) => return Err(BodyAbort::Client(None)),
                            Err(BodyError::Write(e)) => return Err(BodyAbort::Upstream(e)),
                        }
                    }
                }
                while left > 0 {
                    bbuf.clear();
                    let cap = bbuf.capacity();
                    let res = read_into(client, &mut bbuf, (left as usize).min(cap), cap, route.read_timeout).await;
                    match res {
                        Ok(0) | Err(_) => return Err(BodyAbort::Client(None)),
                        Ok(n) => left -= n as u64,
                    }
                    let res = write_out(upstream, &mut bbuf, 0, route.send_timeout).await;
                    res.map_err(BodyAbort::Upstream)?;
                }
            }
            Some(mut d) => {
                while !d.is_done() {
                    bbuf.clear();
                    let cap = bbuf.capacity();
                    let res = read_into(client, &mut bbuf, cap, cap, route.read_timeout).await;
                    match res {
                        Ok(0) | Err(_) => return Err(BodyAbort::Client(None)),
                        Ok(_) => {}
                    }
                    out.clear();
                    let used = reframe_request(&mut d, &bbuf, out, &mut decoded)
                        .map_err(|why| BodyAbort::Client(Some(Reply::text(400, why, true))))?;
                    if route.max_body.is_some_and(|max| decoded > max) {
                        return Err(BodyAbort::Client(Some(Reply::text(
                            413,
                            "request body larger than this route allows",
                            true,
                        ))));
                    }
                    if d.is_done() {
                        // Pipelined bytes after the body start the next request.
                        cbuf.extend_from_slice(&bbuf[used..]);
                    }
                    let res = write_out(upstream, out, 0, route.send_timeout).await;
                    res.map_err(BodyAbort::Upstream)?;
                }
            }
        }
        Ok(())
    }
    .await;
    ctx.bodies.put(bbuf);
    result
}
