//! A client stream that counts the bytes read from and written to it: the access log's and the
//! metrics' byte figures, without a hook at every read and write of the exchange. Bodies the
//! kernel splices past userspace are added by the splice call sites (`SpliceClient::spliced`).

use crate::body::splice::SpliceClient;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::cell::Cell;

pub struct Counted<C> {
    inner: C,
    read: Cell<u64>,
    written: Cell<u64>,
}

impl<C> Counted<C> {
    pub fn new(inner: C) -> Self {
        Counted {
            inner,
            read: Cell::new(0),
            written: Cell::new(0),
        }
    }

    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// A non-blocking read into `buf`'s spare capacity, counted like the others.
    pub fn try_fill(&self, buf: &mut Vec<u8>) -> std::io::Result<usize>
    where
        C: crate::client::h1::ClientStream,
    {
        let n = self.inner.try_fill(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }

    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Bytes received from and sent to the client so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.read.get(), self.written.get())
    }
}

fn count<T>(total: &Cell<u64>, r: BufResult<usize, T>) -> BufResult<usize, T> {
    if let Ok(n) = &r.0 {
        total.set(total.get() + *n as u64);
    }
    r
}

impl<C: SpliceClient> SpliceClient for Counted<C> {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        self.inner.plain_tcp()
    }

    fn spliced(&self, received: u64, sent: u64) {
        self.read.set(self.read.get() + received);
        self.written.set(self.written.get() + sent);
    }
}

impl<C: AsyncReadRent> AsyncReadRent for Counted<C> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.inner.read(buf).await;
        count(&self.read, r)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.inner.readv(buf).await;
        count(&self.read, r)
    }
}

impl<C: AsyncWriteRent> AsyncWriteRent for Counted<C> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.inner.write(buf).await;
        count(&self.written, r)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.inner.writev(buf).await;
        count(&self.written, r)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.inner.shutdown().await
    }
}
