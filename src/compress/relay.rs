//! The body of a compressed response, upstream to client: the upstream's framing decoded
//! (Content-Length, chunked, or until close), each piece compressed as it arrives and handed to
//! a [`CompressedSink`], which frames it for the client's protocol (HTTP/1.1: one chunk per
//! piece; HTTP/2: DATA frames). Memory per stream is one read buffer, the encoder and the
//! compressed output of one read. The sink is told `last` only after the upstream body ended
//! cleanly, so a cut body is never passed on as complete.

use super::encoder::Encoder;
use crate::body::chunked::{ChunkedDecoder, Step};
use crate::http::Framing;
use crate::io::owned::read_into;
use monoio::io::AsyncReadRent;
use std::io;
use std::time::Duration;

/// Where the compressed bytes go: the client connection, framed its own way. Bounding the wait
/// for a slow client (`send_timeout`) is the sink's part.
#[allow(async_fn_in_trait)] // the futures run on their worker's thread only: no Send bound
pub trait CompressedSink {
    /// Sends the next compressed bytes (possibly none: the first call also sends whatever the
    /// sink holds, such as the response head); `last` ends the body.
    async fn send(&mut self, data: &[u8], last: bool) -> io::Result<()>;
}

/// Why a compressed body could not be relayed whole; the client connection must close.
#[derive(Debug)]
pub enum RelayError {
    /// The upstream closed, timed out or broke its framing before the body ended.
    Upstream,
    Client,
    Encoder,
}

/// Bytes of body read from the upstream and compressed bytes sent (framing excluded).
#[derive(Default, Clone, Copy, Debug)]
pub struct Totals {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The upstream body as it is framed, consumed piece by piece.
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl Body {
    /// Feeds the body data at the start of `buf` to the encoder; returns the bytes consumed
    /// (data and framing) and whether the body ended.
    fn feed(&mut self, buf: &[u8], enc: &mut Encoder, totals: &mut Totals) -> Result<(usize, bool), RelayError> {
        match self {
            Body::Length(left) => {
                let take = (*left).min(buf.len() as u64) as usize;
                enc.push(&buf[..take]).map_err(|_| RelayError::Encoder)?;
                totals.bytes_in += take as u64;
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            Body::Chunked(d) => {
                let mut pos = 0;
                while pos < buf.len() && !d.is_done() {
                    let n = match d.step(&buf[pos..]).map_err(|_| RelayError::Upstream)? {
                        Step::Data(n) => {
                            enc.push(&buf[pos..pos + n]).map_err(|_| RelayError::Encoder)?;
                            totals.bytes_in += n as u64;
                            n
                        }
                        Step::Skip(n) | Step::Done(n) => n,
                    };
                    pos += n;
                }
                Ok((pos, d.is_done()))
            }
            Body::UntilClose => {
                enc.push(buf).map_err(|_| RelayError::Encoder)?;
                totals.bytes_in += buf.len() as u64;
                Ok((buf.len(), false))
            }
        }
    }
}

/// Relays the body that starts at `rbuf[body_at..]`, compressed by `enc`, to `sink`. Ok(true)
/// when the upstream message ended cleanly with nothing after it (the upstream connection is
/// reusable as far as framing goes).
#[allow(clippy::too_many_arguments)]
pub async fn relay<U: AsyncReadRent, S: CompressedSink>(
    upstream: &mut U,
    rbuf: &mut Vec<u8>,
    body_at: usize,
    framing: Framing,
    enc: &mut Encoder,
    t_read: Duration,
    totals: &mut Totals,
    sink: &mut S,
) -> Result<bool, RelayError> {
    let mut body = match framing {
        Framing::Length(n) => Body::Length(n),
        Framing::Chunked => Body::Chunked(ChunkedDecoder::new()),
        Framing::UntilClose => Body::UntilClose,
        Framing::None => Body::Length(0),
    };
    let mut pos = body_at;
    // The bytes that came with the head go out at once, like any read that drained the socket.
    let mut drained = true;
    let mut closed = false;
    loop {
        let (used, ended) = body.feed(&rbuf[pos..], enc, totals)?;
        pos += used;
        let done = ended || closed;
        if done {
            enc.finish().map_err(|_| RelayError::Encoder)?;
        } else if drained {
            // Nothing more was waiting upstream: let what arrived reach the client now.
            enc.flush().map_err(|_| RelayError::Encoder)?;
        }
        let produced = enc.output();
        totals.bytes_out += produced.len() as u64;
        sink.send(produced, done).await.map_err(|_| RelayError::Client)?;
        produced.clear();
        if done {
            return Ok(ended && pos == rbuf.len());
        }
        rbuf.clear();
        pos = 0;
        let cap = rbuf.capacity();
        let limit = match body {
            Body::Length(left) => (left as usize).min(cap),
            _ => cap,
        };
        match read_into(upstream, rbuf, limit, cap, t_read).await {
            Ok(0) if matches!(body, Body::UntilClose) => closed = true,
            Ok(0) | Err(_) => return Err(RelayError::Upstream),
            Ok(n) => drained = n < limit,
        }
    }
}
