//! One HTTP/2 stream's bytes both ways, under flow control.
//!
//! Response: a head goes out as HEADERS; the body, whatever its HTTP/1.1 framing upstream
//! (length, chunked, until the upstream closes), goes out as DATA frames. Each send waits for
//! flow-control window before it returns, so a reader that stops reading stalls the exchange,
//! whose route's `send_timeout` ends it; at most `max_send_buffer_size` bytes per stream wait in
//! h2's queue, nothing is buffered whole. A body cut short resets the stream. ringway's own
//! replies come through the same head and body calls (`side::reply`).
//!
//! Request: the body from DATA frames (window released as it is taken), chunked when the
//! upstream head says so (`request::Derived::chunked`), the last chunk only after a clean
//! END_STREAM: a body cut short, or longer or shorter than its `content-length` (which h2
//! checks), is an error, and the upstream never sees it complete.
//!
//! Response states: `Head` (nothing sent) → `Body` (HEADERS sent; its framing) → `Done`
//! (END_STREAM sent).

use crate::body::chunked::{write_chunk_header, ChunkedDecoder, Step};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use std::future::poll_fn;
use std::io;

enum Out {
    Head,
    Body(Framing),
    Done,
}

/// How the body of a response ends.
pub enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilEnd,
}

/// The exchange's client stream for one HTTP/2 stream.
pub struct StreamIo {
    recv: Option<RecvStream>,
    chunked: bool,
    pending: Bytes,
    /// Body bytes in `pending` (less its chunk framing).
    pending_payload: usize,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    out: Out,
    /// A HEAD request: the response has no body whatever its fields say.
    head_request: bool,
    received: u64,
    sent: u64,
}

fn h2_error(e: h2::Error) -> io::Error {
    match e.reason() {
        Some(Reason::CANCEL | Reason::NO_ERROR) if e.is_remote() => io::Error::new(io::ErrorKind::ConnectionReset, e),
        _ => io::Error::other(e),
    }
}

fn bad_head(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl StreamIo {
    pub fn new(recv: RecvStream, chunked: bool, respond: SendResponse<Bytes>, head_request: bool) -> Self {
        StreamIo {
            recv: (!recv.is_end_stream()).then_some(recv),
            chunked,
            pending: Bytes::new(),
            pending_payload: 0,
            respond,
            send: None,
            out: Out::Head,
            head_request,
            received: 0,
            sent: 0,
        }
    }

    /// Request and response body bytes (DATA payloads) received and sent.
    pub fn totals(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    /// Ends the stream after the exchange: a body whose end the upstream made clear was sent
    /// with END_STREAM already; one that runs until the upstream closed ends now; anything
    /// else was cut, and the stream is reset so the client cannot take it as complete.
    pub fn finish(&mut self) {
        match (&self.out, self.send.as_mut()) {
            (Out::Done, _) => {}
            (Out::Body(Framing::UntilEnd), Some(s)) => {
                let _ = s.send_data(Bytes::new(), true);
            }
            (Out::Body(_), Some(s)) => s.send_reset(Reason::INTERNAL_ERROR),
            _ => self.respond.send_reset(Reason::INTERNAL_ERROR),
        }
        self.out = Out::Done;
    }

    /// Whether the request has no body left to receive.
    pub fn request_done(&self) -> bool {
        self.recv.is_none() && self.pending.is_empty()
    }

    /// Takes the request body bytes [`Self::next_request_bytes`] made ready, and how many of them
    /// are body (the rest is chunk framing); `None` at the end of the body.
    pub fn take_request_bytes(&mut self) -> Option<(Bytes, usize)> {
        if self.pending.is_empty() {
            return None;
        }
        Some((
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.pending_payload),
        ))
    }

    /// Waits for the next request body bytes, as the upstream head frames them; none at the end.
    pub async fn next_request_bytes(&mut self) -> io::Result<()> {
        while self.pending.is_empty() {
            let Some(recv) = self.recv.as_mut() else {
                return Ok(());
            };
            match recv.data().await {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.received += data.len() as u64;
                    if data.is_empty() {
                        continue;
                    }
                    self.pending_payload = data.len();
                    self.pending = if self.chunked {
                        let mut framed = Vec::with_capacity(data.len() + 20);
                        write_chunk_header(&mut framed, data.len());
                        framed.extend_from_slice(&data);
                        framed.extend_from_slice(b"\r\n");
                        framed.into()
                    } else {
                        data
                    };
                }
                Some(Err(e)) => {
                    self.recv = None;
                    return Err(h2_error(e));
                }
                None => {
                    self.recv = None;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends a 1xx head (100 Continue, 103 Early Hints); the final head follows.
    pub fn informational(&mut self, status: u16) {
        let mut resp = http::Response::new(());
        if let Ok(s) = http::StatusCode::from_u16(status) {
            *resp.status_mut() = s;
            let _ = self.respond.send_informational(resp);
        }
    }

    /// Sends the final head as HEADERS; the body follows through [`Self::body`] in `framing`.
    pub fn respond(&mut self, resp: http::Response<()>, framing: Framing) -> io::Result<()> {
        let status = resp.status().as_u16();
        let no_body = self.head_request || status == 204 || status == 304 || matches!(framing, Framing::Length(0));
        let send = self.respond.send_response(resp, no_body).map_err(h2_error)?;
        self.send = Some(send);
        self.out = if no_body { Out::Done } else { Out::Body(framing) };
        Ok(())
    }

    /// Whether the response has been sent whole (END_STREAM).
    pub fn response_done(&self) -> bool {
        matches!(self.out, Out::Done)
    }

    /// Resets a response whose body was cut short (after the head went out), so the client
    /// cannot take it as complete; `finish` then has nothing left to do.
    pub fn cut(&mut self) {
        if let (Out::Body(_), Some(s)) = (&self.out, self.send.as_mut()) {
            s.send_reset(Reason::INTERNAL_ERROR);
            self.out = Out::Done;
        }
    }

    /// Ends a body that ran until the upstream closed.
    pub fn end_response(&mut self) {
        if let (Out::Body(Framing::UntilEnd), Some(s)) = (&self.out, self.send.as_mut()) {
            let _ = s.send_data(Bytes::new(), true);
            self.out = Out::Done;
        }
    }

    /// Part of a stored response's body (after [`Self::respond`] with its length); `end` with
    /// the last part.
    pub async fn stored_body(&mut self, data: Bytes, end: bool) -> io::Result<()> {
        let Some(send) = self.send.as_mut() else {
            return Ok(());
        };
        if !matches!(self.out, Out::Body(_)) {
            return Ok(());
        }
        let n = data.len() as u64;
        push_bytes(send, data, end).await?;
        self.sent += n;
        if end {
            self.out = Out::Done;
        }
        Ok(())
    }

    /// Body bytes of the response, framing undone, sent as DATA.
    pub async fn body(&mut self, mut data: &[u8]) -> io::Result<()> {
        let Some(send) = self.send.as_mut() else {
            return Ok(());
        };
        match &mut self.out {
            Out::Body(Framing::Length(left)) => {
                let n = (*left).min(data.len() as u64) as usize;
                *left -= n as u64;
                let end = *left == 0;
                push(send, &data[..n], end).await?;
                self.sent += n as u64;
                if end {
                    self.out = Out::Done;
                }
            }
            Out::Body(Framing::UntilEnd) => {
                push(send, data, false).await?;
                self.sent += data.len() as u64;
            }
            Out::Body(Framing::Chunked(decoder)) => {
                while !data.is_empty() {
                    match decoder.step(data).map_err(|e| bad_head(e.reason()))? {
                        Step::Data(n) => {
                            push(send, &data[..n], false).await?;
                            self.sent += n as u64;
                            data = &data[n..];
                        }
                        Step::Skip(n) => data = &data[n..],
                        Step::Done(_) => {
                            push(send, &[], true).await?;
                            self.out = Out::Done;
                            break;
                        }
                    }
                }
            }
            // The body of a HEAD, 204 or 304 response, or bytes past its end: not sent.
            Out::Head | Out::Done => {}
        }
        Ok(())
    }
}

/// Sends `data` as DATA frames as flow control allows; END_STREAM with the last one if `end`.
async fn push(send: &mut SendStream<Bytes>, data: &[u8], end: bool) -> io::Result<()> {
    push_bytes(send, Bytes::copy_from_slice(data), end).await
}

/// [`push`] for bytes already shared (a cached body): the frames take slices of them.
async fn push_bytes(send: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> io::Result<()> {
    loop {
        if data.is_empty() {
            if end {
                send.send_data(data, true).map_err(h2_error)?;
            }
            return Ok(());
        }
        send.reserve_capacity(data.len());
        let mut room = send.capacity();
        if room == 0 {
            room = match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(h2_error(e)),
                None => return Err(io::ErrorKind::ConnectionReset.into()),
            };
        }
        if room == 0 {
            continue;
        }
        let chunk = data.split_to(room.min(data.len()));
        send.send_data(chunk, end && data.is_empty()).map_err(h2_error)?;
        if data.is_empty() {
            return Ok(());
        }
    }
}
