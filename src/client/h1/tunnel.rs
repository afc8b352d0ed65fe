//! An HTTP/1.1 connection whose upstream answered `101 Switching Protocols` becomes a byte
//! tunnel in a task of its own: spliced between plain sockets, copied where TLS is involved.

use crate::body::splice::SpliceClient;
use crate::exchange::WorkerCtx;
use crate::observe::{TunnelEnded, TunnelWatch};
use crate::tls::{Session, TlsStream};
use crate::tunnel::{ready_relay, splice_tunnel, RelayEnd, TunnelStats};
use crate::upstream::UpstreamConn;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// A client connection that can become a tunnel: plain TCP to plain TCP splices; anything with
/// TLS on either side goes through the readiness copy relay (a pooled buffer only while bytes are
/// in flight).
///
/// The relay runs as a task of its own, so that an idle tunnel does not keep the (much larger)
/// HTTP state machine allocated for hours. That task is what an idle tunnel costs, so it owns
/// each piece exactly once: the sockets, the connection guard, the worker context; the limits
/// are read through the context (`route` indexes the plan's routes).
pub trait ClientStream: AsyncReadRent + AsyncWriteRent + SpliceClient + RelayEnd + Sized {
    /// Waits until a read would find bytes (or the end of the stream) without lending the
    /// stream a buffer: how an idle keep-alive connection waits.
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>>;

    /// Appends what can be read now, without waiting, within `buf`'s capacity: right after
    /// [`ClientStream::wait_readable`] this takes the request without one more operation
    /// through the runtime. `Ok(0)` is end of stream, `WouldBlock` nothing yet.
    fn try_fill(&self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        RelayEnd::try_read(self, buf)
    }

    /// Whether an idle connection of this kind can be parked outside its task
    /// ([`ClientStream::park`]); TLS connections cannot (their session state is in the stream).
    const PARKS: bool = false;

    /// Gives up the runtime's socket for a plain fd to park (`io::park`); `Err` keeps it.
    fn park(self) -> Result<OwnedFd, Self> {
        Err(self)
    }

    /// The runtime's socket again for a parked fd.
    fn unpark(fd: OwnedFd) -> std::io::Result<Self> {
        drop(fd);
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn spawn_tunnel<G: 'static>(
        self,
        upstream: UpstreamConn,
        ctx: Rc<WorkerCtx>,
        route: usize,
        guard: (G, TunnelWatch),
    );
}

impl ClientStream for TcpStream {
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> {
        self.readable(false)
    }

    const PARKS: bool = true;

    /// A duplicate of the socket's fd; the runtime's socket is then dropped. Not the fd
    /// itself: on io_uring a cancelled readiness wait keeps a reference to the runtime's socket
    /// until its cancellation completes, so the fd cannot be taken out of it synchronously.
    fn park(self) -> Result<OwnedFd, Self> {
        match crate::io::fd::socket_fd(&self).try_clone_to_owned() {
            Ok(fd) => Ok(fd),
            Err(_) => Err(self),
        }
    }

    fn unpark(fd: OwnedFd) -> std::io::Result<Self> {
        TcpStream::from_std(std::net::TcpStream::from(fd))
    }

    fn spawn_tunnel<G: 'static>(
        self,
        upstream: UpstreamConn,
        ctx: Rc<WorkerCtx>,
        route: usize,
        (guard, watch): (G, TunnelWatch),
    ) {
        match upstream {
            UpstreamConn::Plain(upstream) => {
                monoio::spawn(async move {
                    let _guard = guard;
                    let limits = &ctx.plan.routes[route].tunnel;
                    let stats = splice_tunnel(&self, &upstream, &ctx.pipes, limits).await;
                    closed(watch, &ctx, &stats);
                });
            }
            tls => spawn_copy_tunnel(self, tls, ctx, route, (guard, watch)),
        }
    }
}

/// A tunnel where either side is TLS: the copy relay, a buffer only while bytes are in flight.
fn spawn_copy_tunnel<C: RelayEnd + 'static, U: RelayEnd + 'static, G: 'static>(
    client: C,
    upstream: U,
    ctx: Rc<WorkerCtx>,
    route: usize,
    (guard, watch): (G, TunnelWatch),
) {
    monoio::spawn(async move {
        let _guard = guard;
        let limits = &ctx.plan.routes[route].tunnel;
        let stats = ready_relay(client, upstream, &ctx.bodies, &ctx.pipes, limits).await;
        closed(watch, &ctx, &stats);
    });
}

impl<S: Session + 'static> ClientStream for TlsStream<S> {
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> {
        TlsStream::wait_readable(self)
    }

    fn spawn_tunnel<G: 'static>(
        self,
        upstream: UpstreamConn,
        ctx: Rc<WorkerCtx>,
        route: usize,
        guard: (G, TunnelWatch),
    ) {
        spawn_copy_tunnel(self, upstream, ctx, route, guard);
    }
}

/// Counts and logs a tunnel that ended.
fn closed(watch: TunnelWatch, ctx: &WorkerCtx, stats: &TunnelStats) {
    let end = TunnelEnded {
        received: stats.client_to_upstream,
        sent: stats.upstream_to_client,
        why: &stats.end,
    };
    watch.closed(&ctx.observe, &ctx.plan, &end);
}
