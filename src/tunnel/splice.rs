//! Plaintext relay: readiness from the runtime's driver (a PollAdd on io_uring, epoll otherwise),
//! bytes moved by `splice(2)` socket → pipe → socket without entering userspace. io_uring's own
//! splice opcode is avoided on purpose: it parks a kernel worker thread per pending splice.

use std::cell::Cell;
use std::io;

use monoio::net::TcpStream;

use super::pool::{LentPipe, PipePool};
use super::relay::{run_both, Activity, Budget};
use super::{sys, TunnelEnd, TunnelLimits, TunnelStats};

/// Relays bytes both ways between two connected TCP sockets until both directions have ended,
/// either side fails, or a limit in `limits` is reached; then closes both sockets.
///
/// Idle cost: two fds and one pending readiness wait per direction; no pipe, no buffer, no
/// thread. The sockets are switched to O_NONBLOCK (monoio under io_uring leaves them blocking),
/// which is why they are consumed. Requires a runtime built with `enable_timer()`.
pub async fn splice_relay(
    client: TcpStream,
    upstream: TcpStream,
    pool: &PipePool,
    limits: &TunnelLimits,
) -> TunnelStats {
    let to_upstream = Cell::new(0);
    let to_client = Cell::new(0);
    let end = relay(&client, &upstream, pool, limits, &to_upstream, &to_client).await;
    TunnelStats {
        client_to_upstream: to_upstream.get(),
        upstream_to_client: to_client.get(),
        end,
    }
}

async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    pool: &PipePool,
    limits: &TunnelLimits,
    to_upstream: &Cell<u64>,
    to_client: &Cell<u64>,
) -> TunnelEnd {
    if let Err(e) = sys::set_nonblocking(sys::socket_fd(client)) {
        return TunnelEnd::ClientError(e);
    }
    if let Err(e) = sys::set_nonblocking(sys::socket_fd(upstream)) {
        return TunnelEnd::UpstreamError(e);
    }
    let activity = Activity::new();
    let c2u = Leg {
        from: client,
        to: upstream,
        from_failed: TunnelEnd::ClientError,
        to_failed: TunnelEnd::UpstreamError,
        moved: to_upstream,
        activity: &activity,
    };
    let u2c = Leg {
        from: upstream,
        to: client,
        from_failed: TunnelEnd::UpstreamError,
        to_failed: TunnelEnd::ClientError,
        moved: to_client,
        activity: &activity,
    };
    let c2u = std::pin::pin!(c2u.pump(pool));
    let u2c = std::pin::pin!(u2c.pump(pool));
    run_both(c2u, u2c, limits, &activity).await
}

/// One direction of the tunnel, and which side to blame when a syscall on either end fails.
struct Leg<'a> {
    from: &'a TcpStream,
    to: &'a TcpStream,
    from_failed: fn(io::Error) -> TunnelEnd,
    to_failed: fn(io::Error) -> TunnelEnd,
    moved: &'a Cell<u64>,
    activity: &'a Activity,
}

impl Leg<'_> {
    /// States: Idle (awaiting readability, holding nothing) → Filling (pipe lent, socket → pipe)
    /// → Draining (pipe → peer, awaiting writability on EAGAIN) → Filling while the pipe came back
    /// full, else Idle with the empty pipe returned. End of stream → the peer's write side is shut
    /// down (half-close) and this direction is done; any other error ends the tunnel.
    async fn pump(self, pool: &PipePool) -> Result<(), TunnelEnd> {
        let from = sys::socket_fd(self.from);
        let mut budget = Budget::new();
        loop {
            // Non-relaxed: on epoll the driver's readiness flag may be stale after our own
            // splice drained the socket; the check re-polls and re-arms when it is.
            self.from.readable(false).await.map_err(self.from_failed)?;
            let mut pipe = pool
                .lend()
                .map_err(|e| (self.from_failed)(io::Error::new(e.kind(), format!("no pipe to relay: {e}"))))?;
            loop {
                match sys::splice(from, pipe.write_end(), pipe.capacity()) {
                    Ok(0) => {
                        drop(pipe);
                        sys::shutdown_write(sys::socket_fd(self.to)).map_err(self.to_failed)?;
                        return Ok(());
                    }
                    Ok(n) => {
                        pipe.filled = n;
                        // Boxed: the drain state exists only while bytes are in flight, so an
                        // idle tunnel's task stays small (its future is held for hours).
                        Box::pin(self.drain(&mut pipe)).await?;
                        budget.spend().await;
                        // A partial fill means the socket is (almost surely) empty: skip the
                        // splice that would only say EAGAIN and go back to waiting.
                        if n < pipe.capacity() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err((self.from_failed)(e)),
                }
            }
        }
    }

    /// Empties the pipe into the peer. The pipe holds bytes here, so EAGAIN means the peer's
    /// send buffer is full.
    async fn drain(&self, pipe: &mut LentPipe<'_>) -> Result<(), TunnelEnd> {
        let to = sys::socket_fd(self.to);
        while pipe.filled > 0 {
            match sys::splice(pipe.read_end(), to, pipe.filled) {
                Ok(0) => return Err((self.to_failed)(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    pipe.filled -= n;
                    self.moved.set(self.moved.get() + n as u64);
                    self.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.to.writable(false).await.map_err(self.to_failed)?;
                }
                Err(e) => return Err((self.to_failed)(e)),
            }
        }
        Ok(())
    }
}
