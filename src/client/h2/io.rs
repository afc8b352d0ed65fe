//! tokio's `AsyncRead`/`AsyncWrite` (what the h2 crate speaks) over ringway's client streams,
//! with no tokio runtime: each poll tries the non-blocking syscall first (plain sockets: recv /
//! sendmsg; TLS: rustls over them, the `tls::stream` way), and on EAGAIN waits for readiness
//! through monoio (`readable` / `writable`, one ring poll per wait). The pending wait is a boxed
//! future kept between polls; it owns an `Rc` of the stream, so no borrow outlives a poll.
//!
//! Chosen over monoio's `poll-io` (`into_poll_io`), which would need a TLS adapter of its own and
//! a switch of the socket's driver registration after the handshake: readiness + non-blocking
//! calls reuse what the TLS stream and the splice relay already do for both kinds of stream.

use crate::io::fd::{set_nonblocking, shutdown_write, socket_fd};
use crate::io::socket as sys;
use crate::tls::ServerStream;
use monoio::net::TcpStream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client stream that can be read and written without blocking.
pub trait NonBlocking: 'static {
    fn tcp(&self) -> &TcpStream;
    /// Fills part of `buf`'s unfilled space. `WouldBlock`: wait for readability. `Ok(0)`: end
    /// of stream.
    fn try_read(&self, buf: &mut ReadBuf<'_>) -> io::Result<usize>;
    /// `WouldBlock` only when nothing was taken.
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
    /// Sends what is queued inside the stream (TLS records); `WouldBlock` when the socket is full.
    fn try_flush(&self) -> io::Result<()>;
    fn try_shutdown(&self) -> io::Result<()>;
}

impl NonBlocking for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn try_read(&self, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        let n = sys::recv(socket_fd(self), buf.initialize_unfilled())?;
        buf.advance(n);
        Ok(n)
    }

    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        sys::send_vectored(socket_fd(self), &[io::IoSlice::new(data)])
    }

    fn try_flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn try_shutdown(&self) -> io::Result<()> {
        shutdown_write(socket_fd(self))
    }
}

impl NonBlocking for ServerStream {
    fn tcp(&self) -> &TcpStream {
        ServerStream::tcp(self)
    }

    /// Copied into the uninitialised space as is: zeroing h2's whole read buffer first would
    /// touch (and keep resident) pages an idle connection never uses.
    fn try_read(&self, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        self.try_read_with(|data| {
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            n
        })
    }

    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        ServerStream::try_write(self, data)
    }

    fn try_flush(&self) -> io::Result<()> {
        ServerStream::try_flush(self)
    }

    fn try_shutdown(&self) -> io::Result<()> {
        self.try_close()
    }
}

type Wait = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A client stream as h2 wants it.
pub struct PollIo<S> {
    stream: Rc<S>,
    read_wait: Option<Wait>,
    write_wait: Option<Wait>,
}

impl<S: NonBlocking> PollIo<S> {
    pub fn new(stream: S) -> io::Result<Self> {
        set_nonblocking(socket_fd(stream.tcp()))?;
        Ok(PollIo {
            stream: Rc::new(stream),
            read_wait: None,
            write_wait: None,
        })
    }

    /// Repeats `op` until it does not say `WouldBlock`, waiting for readiness in between.
    fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: bool,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            let slot = if write {
                &mut self.write_wait
            } else {
                &mut self.read_wait
            };
            if let Some(wait) = slot {
                let res = ready!(wait.as_mut().poll(cx));
                *slot = None;
                res?;
            }
            match op(&self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let s = self.stream.clone();
                    *slot = Some(if write {
                        Box::pin(async move { s.tcp().writable(false).await })
                    } else {
                        Box::pin(async move { s.tcp().readable(false).await })
                    });
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<S: NonBlocking> AsyncRead for PollIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_op(cx, false, |s| s.try_read(buf)))?;
        Poll::Ready(Ok(()))
    }
}

impl<S: NonBlocking> AsyncWrite for PollIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_op(cx, true, |s| s.try_write(data))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_op(cx, true, |s| s.try_flush())
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_op(cx, true, |s| s.try_shutdown())
    }
}
