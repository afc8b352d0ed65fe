//! Plaintext relay: readiness from the runtime's driver (a PollAdd on io_uring, epoll otherwise),
//! bytes moved by `splice(2)` socket → pipe → socket without entering userspace. io_uring's own
//! splice opcode is avoided on purpose: it parks a kernel worker thread per pending splice.

use std::cell::Cell;
use std::io;
use std::pin::pin;

use monoio::net::TcpStream;

use super::pool::{LentPipe, PipePool};
use super::relay::{drive, Activity, Budget, Side};
use super::timer::SharedDeadline;
use super::{TunnelEnd, TunnelLimits, TunnelStats};
use crate::io::fd as sys;

/// Relays bytes both ways between two connected TCP sockets until both directions have ended,
/// either side fails, or a limit in `limits` is reached; then closes both sockets. A convenience
/// over [`splice_tunnel`] for callers that hand the sockets over.
///
/// Requires a runtime built with `enable_timer()`.
pub async fn splice_relay(
    client: TcpStream,
    upstream: TcpStream,
    pool: &PipePool,
    limits: &TunnelLimits,
) -> TunnelStats {
    splice_tunnel(&client, &upstream, pool, limits).await
}

/// The splice relay over borrowed sockets (the caller owns them and closes them afterwards), so
/// that a long-lived task stores each socket once: an async fn taking them by value keeps its own
/// copy of each for the whole tunnel (references cost 8 bytes each).
///
/// Idle cost: one pending readiness wait per direction and one entry in the worker's shared
/// timer; no pipe, no buffer, no thread. The sockets are switched to O_NONBLOCK (monoio under
/// io_uring leaves them blocking). Requires a runtime built with `enable_timer()`.
pub async fn splice_tunnel(
    client: &TcpStream,
    upstream: &TcpStream,
    pool: &PipePool,
    limits: &TunnelLimits,
) -> TunnelStats {
    let to_upstream = Cell::new(0);
    let to_client = Cell::new(0);
    // Built inline rather than in helper async fns: every async fn keeps its arguments in
    // its state, and this state is what an idle tunnel costs.
    let end = 'relay: {
        if let Err(e) = sys::set_nonblocking(sys::socket_fd(client)) {
            break 'relay TunnelEnd::ClientError(e);
        }
        if let Err(e) = sys::set_nonblocking(sys::socket_fd(upstream)) {
            break 'relay TunnelEnd::UpstreamError(e);
        }
        let activity = Activity::new();
        let c2u = pin!(Leg {
            from: client,
            to: upstream,
            from_side: Side::Client,
            moved: &to_upstream,
            activity: &activity,
        }
        .pump(pool));
        let u2c = pin!(Leg {
            from: upstream,
            to: client,
            from_side: Side::Upstream,
            moved: &to_client,
            activity: &activity,
        }
        .pump(pool));
        let timer = pin!(SharedDeadline::new(pool.timers()));
        drive(c2u, u2c, timer, limits, &activity).await
    };
    TunnelStats {
        client_to_upstream: to_upstream.get(),
        upstream_to_client: to_client.get(),
        end,
    }
}

/// One direction of the tunnel: bytes read from `from` (the side `from_side`) go to `to`.
struct Leg<'a> {
    from: &'a TcpStream,
    to: &'a TcpStream,
    from_side: Side,
    moved: &'a Cell<u64>,
    activity: &'a Activity,
}

impl Leg<'_> {
    fn read_failed(&self, e: io::Error) -> TunnelEnd {
        self.from_side.failed(e)
    }

    fn write_failed(&self, e: io::Error) -> TunnelEnd {
        self.from_side.other().failed(e)
    }

    /// States: Idle (awaiting readability, holding nothing) → Filling (pipe lent, socket → pipe)
    /// → Draining (pipe → peer, awaiting writability on EAGAIN) → Filling while the pipe came back
    /// full, else Idle with the empty pipe returned. End of stream → the peer's write side is shut
    /// down (half-close) and this direction is done; any other error ends the tunnel.
    async fn pump(self, pool: &PipePool) -> Result<(), TunnelEnd> {
        let mut budget = Budget::new();
        loop {
            // Non-relaxed: on epoll the driver's readiness flag may be stale after our own
            // splice drained the socket; the check re-polls and re-arms when it is.
            if let Err(e) = self.from.readable(false).await {
                return Err(self.read_failed(e));
            }
            let mut pipe = match pool.lend() {
                Ok(pipe) => pipe,
                Err(e) => {
                    let e = io::Error::new(e.kind(), format!("no pipe to relay: {e}"));
                    return Err(self.read_failed(e));
                }
            };
            loop {
                match sys::splice(sys::socket_fd(self.from), pipe.write_end(), pipe.capacity()) {
                    Ok(0) => {
                        drop(pipe);
                        return sys::shutdown_write(sys::socket_fd(self.to)).map_err(|e| self.write_failed(e));
                    }
                    Ok(n) => {
                        pipe.filled = n;
                        self.drain(&mut pipe).await?;
                        budget.spend().await;
                        // A partial fill means the socket is (almost surely) empty: skip the
                        // splice that would only say EAGAIN and go back to waiting.
                        if n < pipe.capacity() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(self.read_failed(e)),
                }
            }
        }
    }

    /// Empties the pipe into the peer. The pipe holds bytes here, so EAGAIN means the peer's
    /// send buffer is full.
    async fn drain(&self, pipe: &mut LentPipe<'_>) -> Result<(), TunnelEnd> {
        while pipe.filled > 0 {
            match sys::splice(pipe.read_end(), sys::socket_fd(self.to), pipe.filled) {
                Ok(0) => return Err(self.write_failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    pipe.filled -= n;
                    self.moved.set(self.moved.get() + n as u64);
                    self.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Boxed: this wait exists only while the peer is slow, and kept inline it
                    // would be part of every idle tunnel's state.
                    if let Err(e) = Box::pin(self.to.writable(false)).await {
                        return Err(self.write_failed(e));
                    }
                }
                Err(e) => return Err(self.write_failed(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle tunnel's cost is mostly this future: keep it from growing back (a monoio `Sleep`
    /// per tunnel, or futures stored twice, each add hundreds of bytes).
    #[test]
    fn relay_state_stays_small() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect_addr(listener.local_addr().unwrap()).await.unwrap();
            let (upstream, _) = listener.accept().await.unwrap();
            let pool = PipePool::default();
            let limits = TunnelLimits::default();
            let relay = splice_tunnel(&client, &upstream, &pool, &limits);
            let bytes = std::mem::size_of_val(&relay);
            eprintln!("splice_tunnel future: {bytes} bytes");
            assert!(bytes <= 768, "splice_tunnel future grew to {bytes} bytes");
        });
    }
}
