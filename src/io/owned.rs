//! Owned-buffer I/O with deadlines, the shape every step of the proxy uses.
//!
//! monoio reads and writes take the buffer and hand it back. When a deadline fires, the pending
//! operation is cancelled and keeps its buffer, so these helpers return an empty Vec then: callers
//! treat a timeout as the end of the exchange anyway. Deadlines run on the client connection's
//! timer (`deadline`), so an operation does not insert and remove a timer of its own.

use crate::io::deadline::timeout;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use std::io;
use std::pin::pin;
use std::time::Duration;

pub fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Appends up to `limit` bytes to `buf` (growing it by `grow` when full). Ok(0) is end of stream.
/// The caller's Vec is lent to the read and put back (empty after a timeout).
pub async fn read_into<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    grow: usize,
    t: Duration,
) -> io::Result<usize> {
    let len = buf.len();
    if buf.capacity() == len {
        buf.reserve(grow.max(1));
    }
    let end = buf.capacity().min(len.saturating_add(limit.max(1)));
    let lent = std::mem::take(buf).slice_mut(len..end);
    match timeout(t, pin!(s.read(lent))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res
        }
        Err(_) => Err(timed_out()),
    }
}

/// Writes `buf[from..]` completely; the caller's Vec is lent to the write and put back (empty
/// after a timeout).
pub async fn write_out<S: AsyncWriteRent>(s: &mut S, buf: &mut Vec<u8>, from: usize, t: Duration) -> io::Result<()> {
    if from >= buf.len() {
        return Ok(());
    }
    let lent = std::mem::take(buf).slice(from..);
    match timeout(t, pin!(s.write_all(lent))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ())
        }
        Err(_) => Err(timed_out()),
    }
}

/// [`read_into`] on a buffer passed by value and handed back.
pub async fn read_append<S: AsyncReadRent>(
    s: &mut S,
    mut buf: Vec<u8>,
    limit: usize,
    grow: usize,
    t: Duration,
) -> (io::Result<usize>, Vec<u8>) {
    let res = read_into(s, &mut buf, limit, grow, t).await;
    (res, buf)
}

/// [`write_out`] on a buffer passed by value and handed back.
pub async fn write_from<S: AsyncWriteRent>(
    s: &mut S,
    mut buf: Vec<u8>,
    from: usize,
    t: Duration,
) -> (io::Result<()>, Vec<u8>) {
    let res = write_out(s, &mut buf, from, t).await;
    (res, buf)
}

pub async fn write_static<S: AsyncWriteRent>(s: &mut S, bytes: &'static [u8], t: Duration) -> io::Result<()> {
    match timeout(t, pin!(s.write_all(bytes))).await {
        Ok((res, _)) => res.map(|_| ()),
        Err(_) => Err(timed_out()),
    }
}

/// Writes shared bytes (a cached body) whole; the bytes are not copied.
pub async fn write_bytes<S: AsyncWriteRent>(s: &mut S, bytes: bytes::Bytes, t: Duration) -> io::Result<()> {
    match timeout(t, pin!(s.write_all(bytes))).await {
        Ok((res, _)) => res.map(|_| ()),
        Err(_) => Err(timed_out()),
    }
}

/// A small per-worker free list of I/O buffers, so a request borrows its upstream and body
/// buffers instead of allocating them, and an idle keep-alive connection holds none.
pub struct BufPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
    size: usize,
    max_kept: usize,
    keep: usize,
}

impl BufPool {
    /// Buffers start at `size` bytes; up to `keep` of them, grown to at most `max_kept`, are kept.
    pub fn new(size: usize, max_kept: usize, keep: usize) -> Self {
        BufPool {
            free: Default::default(),
            size,
            max_kept,
            keep,
        }
    }

    pub fn get(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    pub fn put(&self, mut buf: Vec<u8>) {
        // Buffers lost to a timeout come back empty; those grown too large are freed.
        if buf.capacity() < self.size || buf.capacity() > self.max_kept {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            buf.clear();
            free.push(buf);
        }
    }
}
