//! Readiness copy relay, for tunnels with TLS on either side (splice cannot see plaintext).
//! Each direction waits for readability on the raw socket holding nothing, borrows a buffer from
//! the worker's pool only while bytes are in flight, and returns it before waiting again: the
//! same idle-cost rule as the splice relay. TLS state lives in the streams (rustls' own buffers);
//! both directions share a stream through short synchronous borrows, never across an `.await`.

use std::cell::Cell;
use std::io::{self, IoSlice};

use monoio::net::TcpStream;

use super::pool::PipePool;
use super::relay::{drive, Activity, Budget};
use super::timer::SharedDeadline;
use super::{TunnelEnd, TunnelLimits, TunnelStats};
use crate::io::fd as sys;
use crate::io::owned::BufPool;
use crate::tls::{Session, TlsStream};

/// A stream the readiness relay can drive with non-blocking steps. `WouldBlock` from a `try_`
/// method means: wait for readiness on [`RelayEnd::socket`] and call again.
pub trait RelayEnd {
    fn socket(&self) -> &TcpStream;
    /// Prepares the socket for non-blocking steps (O_NONBLOCK).
    fn prepare(&self) -> io::Result<()> {
        sys::set_nonblocking(sys::socket_fd(self.socket()))
    }
    /// Bytes already received and waiting in userspace (a TLS stream's decrypted records).
    fn buffered(&self) -> bool {
        false
    }
    /// Appends bytes to `buf` (within its capacity); `Ok(0)` is end of stream.
    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
    /// Takes some of `data`; `Ok(n)` with `n > 0`, or `WouldBlock`.
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
    /// Sends anything still queued in userspace.
    fn try_flush(&self) -> io::Result<()> {
        Ok(())
    }
    /// Ends this side's sending direction (TLS: close_notify first); safe to call again after
    /// `WouldBlock`.
    fn try_close_write(&self) -> io::Result<()>;
}

impl RelayEnd for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        crate::io::socket::recv_into_spare(sys::socket_fd(self), buf)
    }

    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        crate::io::socket::send_vectored(sys::socket_fd(self), &[IoSlice::new(data)])
    }

    fn try_close_write(&self) -> io::Result<()> {
        sys::shutdown_write(sys::socket_fd(self))
    }
}

impl<C: Session> RelayEnd for TlsStream<C> {
    fn socket(&self) -> &TcpStream {
        self.tcp()
    }

    fn buffered(&self) -> bool {
        self.has_plaintext()
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        self.try_read_with(|data| {
            let n = data.len().min(room);
            buf.extend_from_slice(&data[..n]);
            n
        })
    }

    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        TlsStream::try_write(self, data)
    }

    fn try_flush(&self) -> io::Result<()> {
        TlsStream::try_flush(self)
    }

    fn try_close_write(&self) -> io::Result<()> {
        self.try_close()
    }
}

/// Relays both ways between `client` and `upstream` until both directions ended, either side
/// failed, or a limit was reached; then drops (closes) both. Buffers come from `pool`; the
/// idle/lifetime deadline lives in the worker's shared timer (held by `pipes`, no pipe is used).
pub async fn ready_relay<C: RelayEnd, U: RelayEnd>(
    client: C,
    upstream: U,
    pool: &BufPool,
    pipes: &PipePool,
    limits: &TunnelLimits,
) -> TunnelStats {
    let to_upstream = Cell::new(0);
    let to_client = Cell::new(0);
    let end = match (client.prepare(), upstream.prepare()) {
        (Err(e), _) => TunnelEnd::ClientError(e),
        (_, Err(e)) => TunnelEnd::UpstreamError(e),
        _ => {
            let activity = Activity::new();
            let c2u = Leg {
                from: &client,
                to: &upstream,
                from_failed: TunnelEnd::ClientError,
                to_failed: TunnelEnd::UpstreamError,
                moved: &to_upstream,
                activity: &activity,
            };
            let u2c = Leg {
                from: &upstream,
                to: &client,
                from_failed: TunnelEnd::UpstreamError,
                to_failed: TunnelEnd::ClientError,
                moved: &to_client,
                activity: &activity,
            };
            let c2u = std::pin::pin!(c2u.pump(pool));
            let u2c = std::pin::pin!(u2c.pump(pool));
            let timer = std::pin::pin!(SharedDeadline::new(pipes.timers()));
            drive(c2u, u2c, timer, limits, &activity).await
        }
    };
    TunnelStats {
        client_to_upstream: to_upstream.get(),
        upstream_to_client: to_client.get(),
        end,
    }
}

struct Leg<'a, F, T> {
    from: &'a F,
    to: &'a T,
    from_failed: fn(io::Error) -> TunnelEnd,
    to_failed: fn(io::Error) -> TunnelEnd,
    moved: &'a Cell<u64>,
    activity: &'a Activity,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl<F: RelayEnd, T: RelayEnd> Leg<'_, F, T> {
    /// States: Idle (awaiting readability, no buffer) → Moving (buffer borrowed: read, then write
    /// it all, awaiting writability on EAGAIN) → Idle once a read would block (buffer returned).
    /// End of stream → the peer's sending side is closed (half-close) and this direction is done.
    async fn pump(self, pool: &BufPool) -> Result<(), TunnelEnd> {
        let mut budget = Budget::new();
        loop {
            if !self.from.buffered() {
                self.from.socket().readable(false).await.map_err(self.from_failed)?;
            }
            let mut buf = pool.get();
            let ended = loop {
                buf.clear();
                match self.from.try_read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        // Boxed: the write state exists only while bytes are in flight.
                        Box::pin(self.deliver(&buf)).await?;
                        self.moved.set(self.moved.get() + n as u64);
                        self.activity.touch();
                        budget.spend().await;
                    }
                    Err(e) if would_block(&e) => break false,
                    Err(e) => return Err((self.from_failed)(e)),
                }
            };
            pool.put(buf);
            if ended {
                loop {
                    match self.to.try_close_write() {
                        Ok(()) => return Ok(()),
                        Err(e) if would_block(&e) => self.to.socket().writable(false).await.map_err(self.to_failed)?,
                        Err(e) => return Err((self.to_failed)(e)),
                    }
                }
            }
        }
    }

    async fn deliver(&self, mut data: &[u8]) -> Result<(), TunnelEnd> {
        while !data.is_empty() {
            match self.to.try_write(data) {
                Ok(0) => return Err((self.to_failed)(io::ErrorKind::WriteZero.into())),
                Ok(n) => data = &data[n..],
                Err(e) if would_block(&e) => self.to.socket().writable(false).await.map_err(self.to_failed)?,
                Err(e) => return Err((self.to_failed)(e)),
            }
        }
        loop {
            match self.to.try_flush() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => self.to.socket().writable(false).await.map_err(self.to_failed)?,
                Err(e) => return Err((self.to_failed)(e)),
            }
        }
    }
}
