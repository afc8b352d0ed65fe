//! Our own TLS stream: a monoio `TcpStream` (switched to O_NONBLOCK) and a rustls connection,
//! driven the way the splice relay drives sockets: wait for readiness through the runtime
//! (`readable(false)` / `writable(false)`), then plain non-blocking recv/send into and out of
//! rustls. No kernel operation ever owns a buffer of ours, so dropping any pending future (a
//! timeout, a `select!` arm) leaves the stream consistent and usable: cancellation safety by
//! construction. Replaces monoio-rustls, which panicked ("buffer mut expected") in exactly those
//! cases.
//!
//! States: `Handshaking` (flush what rustls wants to send, read what it wants to read, under the
//! caller's deadline) → `Open` (read: decrypted bytes from rustls, else recv + `process_new_packets`,
//! else wait readable — first, when the last recv left the socket empty; write: encrypt into rustls, send until its queue is empty, waiting writable
//! on EAGAIN) → `Closed` (`shutdown`: close_notify, flush, SHUT_WR; or end of stream from the peer,
//! which reads as `Ok(0)` with or without close_notify).
//!
//! Idle cost: nothing of ours is held while waiting. rustls keeps its own receive buffer (4 KiB
//! after small records, shrunk by rustls on the next read once empty) and frees its send chunks as
//! they are written.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::ops::DerefMut;
use std::os::fd::BorrowedFd;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, SideData};

use crate::io::fd::{set_nonblocking, shutdown_write, socket_fd};
use crate::io::socket as sys;

/// A TLS connection over a monoio TCP socket; `C` is `rustls::ServerConnection` or
/// `rustls::ClientConnection`. The rustls state sits in a `RefCell` so that the two directions of
/// a relay can share one stream: every borrow is synchronous (never held across an `.await`).
pub struct TlsStream<C: Session> {
    tcp: TcpStream,
    conn: RefCell<C>,
    /// close_notify was queued (`shutdown()` or the relay's half-close).
    closed: Cell<bool>,
    /// The last receive got less than it asked for: the socket was empty then, so the next
    /// `read` waits for readiness first instead of a receive that would only say EAGAIN (on a
    /// keep-alive connection that was one wasted system call per request).
    drained: Cell<bool>,
}

/// Adapter so rustls reads from and writes to the raw socket without blocking.
struct Fd<'a>(BorrowedFd<'a>);

/// [`Fd`] for receiving, noting whether the socket was left empty.
struct Recv<'a> {
    fd: BorrowedFd<'a>,
    drained: &'a Cell<bool>,
}

impl Read for Recv<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = sys::recv(self.fd, buf)?;
        // 0 is the end of the stream, not an empty socket.
        self.drained.set(n > 0 && n < buf.len());
        Ok(n)
    }
}

impl Read for Fd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.0, buf)
    }
}

impl Write for Fd<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The two rustls connection types a [`TlsStream`] can carry.
pub trait Session: DerefMut<Target = ConnectionCommon<Self::Data>> {
    type Data: SideData;
}

impl Session for rustls::ServerConnection {
    type Data = rustls::server::ServerConnectionData;
}

impl Session for rustls::ClientConnection {
    type Data = rustls::client::ClientConnectionData;
}

impl<C: Session> TlsStream<C> {
    /// Wraps a connected socket and a fresh rustls connection; call [`handshake`] next.
    ///
    /// [`handshake`]: TlsStream::handshake
    pub fn new(tcp: TcpStream, conn: C) -> io::Result<Self> {
        set_nonblocking(socket_fd(&tcp))?;
        Ok(TlsStream {
            tcp,
            conn: RefCell::new(conn),
            closed: Cell::new(false),
            drained: Cell::new(false),
        })
    }

    /// Runs the handshake to completion. No deadline here: callers wrap it in one (dropping the
    /// future at any point is safe; the stream is then simply not usable for data).
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_all().await?;
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            match self.pull() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => self.tcp.readable(false).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The protocol agreed through ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The underlying socket (readiness waits, addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads ciphertext from the socket once and decrypts what is complete. `Ok(0)`: the peer
    /// closed the socket. A TLS error queues an alert, which is sent if the socket takes it.
    fn pull(&self) -> io::Result<usize> {
        let fd = socket_fd(&self.tcp);
        let mut conn = self.conn.borrow_mut();
        let n = conn.read_tls(&mut Recv {
            fd,
            drained: &self.drained,
        })?;
        if let Err(e) = conn.process_new_packets() {
            let _ = conn.write_tls(&mut Fd(fd));
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n)
    }

    /// Non-blocking read of plaintext: hands up to what `take` accepts to `take`, which returns
    /// how much it consumed. `Ok(0)`: end of stream. `WouldBlock`: wait for readability.
    pub(crate) fn try_read_with(&self, mut take: impl FnMut(&[u8]) -> usize) -> io::Result<usize> {
        loop {
            {
                let mut conn = self.conn.borrow_mut();
                let mut reader = conn.reader();
                match reader.fill_buf() {
                    Ok([]) => return Ok(0),
                    Ok(data) => {
                        let n = take(data);
                        reader.consume(n);
                        return Ok(n);
                    }
                    Err(e) if would_block(&e) => {}
                    // The peer closed the socket without close_notify: HTTP framing (or the
                    // tunnel's own protocol) decides whether anything was cut short.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            self.pull()?;
            // Records may have queued replies (key updates, alerts): send what the socket takes
            // now, the rest goes out with the next write.
            let _ = self.try_flush();
        }
    }

    /// Whether decrypted bytes are waiting (a read would not need the socket).
    pub(crate) fn has_plaintext(&self) -> bool {
        let mut conn = self.conn.borrow_mut();
        let mut reader = conn.reader();
        matches!(reader.fill_buf(), Ok(d) if !d.is_empty())
    }

    /// Waits until a read would find something, holding no buffer: decrypted bytes rustls
    /// already has (they would never make the socket readable again), else ciphertext on the
    /// socket. Readability may still decrypt to nothing (a partial record, a key update); the
    /// read that follows then waits as usual.
    pub async fn wait_readable(&self) -> io::Result<()> {
        if self.has_plaintext() {
            return Ok(());
        }
        self.tcp.readable(false).await?;
        // The socket has bytes: the next read receives at once.
        self.drained.set(false);
        Ok(())
    }

    /// Encrypts as much of `data` as rustls' send queue takes, then sends what the socket takes.
    /// `WouldBlock` only when nothing could be accepted.
    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self.try_flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        let n = self.conn.borrow_mut().writer().write(data)?;
        match self.try_flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) && n > 0 => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends queued ciphertext until rustls' queue is empty; `WouldBlock` when the socket is full.
    pub(crate) fn try_flush(&self) -> io::Result<()> {
        let fd = socket_fd(&self.tcp);
        let mut conn = self.conn.borrow_mut();
        while conn.wants_write() {
            if conn.write_tls(&mut Fd(fd))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Queues close_notify and half-closes the socket once it is sent.
    pub(crate) fn try_close(&self) -> io::Result<()> {
        self.queue_close_notify();
        self.try_flush()?;
        shutdown_write(socket_fd(&self.tcp))
    }

    fn queue_close_notify(&self) {
        if !self.closed.replace(true) {
            self.conn.borrow_mut().send_close_notify();
        }
    }

    async fn flush_all(&self) -> io::Result<()> {
        loop {
            match self.try_flush() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => self.tcp.writable(false).await?,
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_with(&self, mut take: impl FnMut(&[u8]) -> usize) -> io::Result<usize> {
        if self.drained.get() && !self.has_plaintext() {
            self.tcp.readable(false).await?;
            self.drained.set(false);
        }
        loop {
            match self.try_read_with(&mut take) {
                Err(e) if would_block(&e) => self.tcp.readable(false).await?,
                other => return other,
            }
        }
    }

    async fn write_slice(&self, data: &[u8]) -> io::Result<usize> {
        // Earlier ciphertext first (a cancelled write may have left some), then this write's,
        // completely: callers rely on `write` meaning "on its way", not "queued in rustls".
        self.flush_all().await?;
        let n = self.conn.borrow_mut().writer().write(data)?;
        self.flush_all().await?;
        Ok(n)
    }
}

impl<C: Session> AsyncReadRent for TlsStream<C> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if buf.bytes_total() == 0 {
            return (Ok(0), buf);
        }
        let res = self.read_with(|data| sys::fill(&mut buf, data)).await;
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let res = self.read_with(|data| sys::fill_vectored(&mut buf, data)).await;
        (res, buf)
    }
}

impl<C: Session> AsyncWriteRent for TlsStream<C> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let res = self.write_slice(sys::init_bytes(&buf)).await;
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let res = self.write_slice(sys::first_iovec(&buf)).await;
        (res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_all().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.queue_close_notify();
        self.flush_all().await?;
        shutdown_write(socket_fd(&self.tcp))
    }
}

impl<C: Session> Drop for TlsStream<C> {
    /// Best effort close_notify (one non-blocking send), so a peer can tell our close from a
    /// truncation; the socket closes right after anyway.
    fn drop(&mut self) {
        if self.closed.get() {
            return;
        }
        let conn = self.conn.get_mut();
        if conn.is_handshaking() {
            return;
        }
        conn.send_close_notify();
        let _ = conn.write_tls(&mut Fd(socket_fd(&self.tcp)));
    }
}
