//! The response body, upstream to client, in bounded buffers: Content-Length bodies spliced
//! between plain sockets or copied, chunked bodies validated and passed on (decoded for
//! HTTP/1.0 clients), close-delimited bodies spliced or re-framed as chunked. A body cut short
//! closes the client connection, so no client takes a truncated body for a complete one.

use crate::body::chunked::{write_chunk_header, ChunkedDecoder, Step, LAST_CHUNK};
use crate::body::splice::{plain_pair, splice_body, BodyError, SpliceClient, SPLICE_MIN_BODY};
use crate::config::RoutePlan;
use crate::exchange::client_side::Cut;
use crate::exchange::response_head::ResponsePlan;
use crate::http::Framing;
use crate::io::owned::{read_into, write_out, write_static};
use crate::tunnel::PipePool;
use crate::upstream::UpstreamConn;
use monoio::io::AsyncWriteRent;

/// Relays the response body; Ok(true) when the upstream message ended cleanly (the connection is
/// reusable as far as framing goes). A body cut short closes the client connection ([`Cut`]),
/// so the client never takes a truncated body for a complete one.
pub async fn relay_response_body<C: AsyncWriteRent + SpliceClient>(
    client: &mut C,
    upstream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    resp: &ResponsePlan,
    route: &RoutePlan,
    pipes: &PipePool,
) -> Result<bool, Cut> {
    let t_send = route.send_timeout;
    let t_read = route.read_timeout;
    let mut pos = resp.head_len;
    let client_err = |_| Cut;
    match resp.framing {
        Framing::None => {
            let res = write_out(client, out, 0, t_send).await;
            res.map_err(client_err)?;
            Ok(rbuf.len() == pos)
        }
        Framing::Length(n) => {
            let avail = ((rbuf.len() - pos) as u64).min(n) as usize;
            out.extend_from_slice(&rbuf[pos..pos + avail]);
            let extra = rbuf.len() > pos + avail;
            let mut left = n - avail as u64;
            let res = write_out(client, out, 0, t_send).await;
            res.map_err(client_err)?;
            if left >= SPLICE_MIN_BODY {
                if let Some((u, c)) = plain_pair(upstream, client) {
                    match Box::pin(splice_body(u, c, pipes, Some(left), t_read, t_send)).await {
                        Ok(n) => {
                            client.spliced(0, n);
                            return Ok(!extra);
                        }
                        Err(BodyError::NoPipe(_)) => {}
                        Err(_) => return Err(Cut),
                    }
                }
            }
            while left > 0 {
                rbuf.clear();
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, (left as usize).min(cap), cap, t_read).await;
                match res {
                    Ok(0) | Err(_) => return Err(Cut),
                    Ok(got) => left -= got as u64,
                }
                let res = write_out(client, rbuf, 0, t_send).await;
                res.map_err(client_err)?;
            }
            Ok(!extra)
        }
        Framing::Chunked => {
            let mut d = ChunkedDecoder::new();
            loop {
                while pos < rbuf.len() && !d.is_done() {
                    let step = d.step(&rbuf[pos..]).map_err(|_| Cut)?;
                    let (n, data) = match step {
                        Step::Data(n) => (n, true),
                        Step::Skip(n) | Step::Done(n) => (n, false),
                    };
                    // 1.1 clients get the (validated) framing verbatim; 1.0 clients only the data.
                    if resp.pass_chunked || data {
                        out.extend_from_slice(&rbuf[pos..pos + n]);
                    }
                    pos += n;
                }
                let res = write_out(client, out, 0, t_send).await;
                res.map_err(client_err)?;
                if d.is_done() {
                    return Ok(pos == rbuf.len());
                }
                out.clear();
                rbuf.clear();
                pos = 0;
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, cap, cap, t_read).await;
                match res {
                    Ok(0) | Err(_) => return Err(Cut),
                    Ok(_) => {}
                }
            }
        }
        Framing::UntilClose => {
            // Passed on unchanged between plain sockets: everything after the first write splices.
            let splice = !resp.chunk_for_client && plain_pair(upstream, client).is_some();
            loop {
                if pos < rbuf.len() {
                    if resp.chunk_for_client {
                        write_chunk_header(out, rbuf.len() - pos);
                        out.extend_from_slice(&rbuf[pos..]);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&rbuf[pos..]);
                    }
                }
                let res = write_out(client, out, 0, t_send).await;
                res.map_err(client_err)?;
                if let Some((u, c)) = plain_pair(upstream, client).filter(|_| splice) {
                    match Box::pin(splice_body(u, c, pipes, None, t_read, t_send)).await {
                        Ok(n) => {
                            client.spliced(0, n);
                            break;
                        }
                        Err(BodyError::NoPipe(_)) => {}
                        Err(_) => return Err(Cut),
                    }
                }
                out.clear();
                rbuf.clear();
                pos = 0;
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, cap, cap, t_read).await;
                match res {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(Cut),
                }
            }
            if resp.chunk_for_client {
                write_static(client, LAST_CHUNK, t_send).await.map_err(client_err)?;
            }
            Ok(false)
        }
    }
}
