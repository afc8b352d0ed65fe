//! Reading one request head off an HTTP/1.1 connection: the idle wait for a first byte, then
//! the rest under `header_timeout`, with the size limits and the bare CR/LF check applied as
//! bytes arrive.

use crate::http::{has_bare_cr_or_lf, RequestError};
use crate::io::drain::Drain;
use crate::io::owned::read_into;
use monoio::io::AsyncReadRent;
use std::time::Duration;

pub enum HeadRead {
    Complete(usize),
    Closed,
    TimedOut,
    Refused(RequestError),
}

/// Collects one request head: waits up to `idle` for its first byte, then `header_timeout` for
/// the rest. Bytes after the head (body, pipelined requests) stay in the buffer. With `drain`,
/// the wait for a first byte is marked idle in the worker's drain state, so that the end of a
/// drain ends it (the read sees end-of-stream: `Closed`).
pub async fn read_head<C: AsyncReadRent>(
    client: &mut C,
    mut buf: Vec<u8>,
    idle: Duration,
    header_timeout: Duration,
    max_head: usize,
    max_uri: usize,
    drain: Option<(&Drain, usize)>,
) -> (HeadRead, Vec<u8>) {
    let mut deadline = None;
    let mut scanned: usize = 0;
    loop {
        // Leading CRLFs between pipelined requests are allowed (RFC 9112 §2.2).
        let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if skip > 0 {
            buf.drain(..skip);
            scanned = 0;
        }
        if !buf.is_empty() {
            if let Some(end) = crate::http::find_head_end(&buf[scanned.saturating_sub(3)..]) {
                return (HeadRead::Complete(scanned.saturating_sub(3) + end + 4), buf);
            }
            let settled = if buf.last() == Some(&b'\r') {
                buf.len() - 1
            } else {
                buf.len()
            };
            if has_bare_cr_or_lf(&buf[..settled]) {
                return (
                    HeadRead::Refused(RequestError::Malformed("bare CR or LF in the request head")),
                    buf,
                );
            }
            if buf.len() >= max_head {
                let in_request_line = memchr::memchr(b'\n', &buf).is_none();
                let e = if in_request_line && buf.len() > max_uri {
                    RequestError::UriTooLong
                } else {
                    RequestError::HeadTooLarge
                };
                return (HeadRead::Refused(e), buf);
            }
            scanned = buf.len();
        }
        let wait = match deadline {
            None if buf.is_empty() => idle,
            None => {
                deadline = Some(crate::io::clock::now() + header_timeout);
                header_timeout
            }
            Some(d) => d.saturating_duration_since(crate::io::clock::now()),
        };
        let room = max_head - buf.len();
        let idle = drain.filter(|_| buf.is_empty() && deadline.is_none());
        let res = match idle {
            None => read_into(client, &mut buf, room, 4096.min(room), wait).await,
            Some((d, _)) if d.is_closing_idle() => return (HeadRead::Closed, buf),
            Some((d, slot)) => {
                d.set_idle(slot, true);
                let r = read_into(client, &mut buf, room, 4096.min(room), wait).await;
                d.set_idle(slot, false);
                r
            }
        };
        match res {
            Ok(0) => return (HeadRead::Closed, buf),
            Ok(_) => {
                if deadline.is_none() {
                    deadline = Some(crate::io::clock::now() + header_timeout);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return (
                    if buf.is_empty() && deadline.is_none() {
                        HeadRead::Closed
                    } else {
                        HeadRead::TimedOut
                    },
                    buf,
                );
            }
            Err(_) => return (HeadRead::Closed, buf),
        }
    }
}
