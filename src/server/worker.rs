//! One worker: a pinned thread running a monoio runtime that accepts on its own sockets and
//! serves each connection as a task. Accept errors from fd exhaustion back off instead of
//! spinning, so connections already open keep being served. Each connection runs contained: a
//! panic in it ends that connection only. On the supervisor's drain signal the worker stops
//! accepting (its copies of the listening sockets close; a successor holding the same sockets
//! keeps their queues), then ends once its last connection has.

use super::contain::Contained;
use super::driver::Driver;
use super::proxy_header;
use super::shutdown::DrainSignal;
use crate::client::h1::serve;
use crate::client::h2;
use crate::config::Plan;
use crate::exchange::WorkerCtx;
use crate::http::client_info::ClientInfo;
use crate::io::memory::{collect, Collector};
use crate::observe::metrics::{Global, ServerStat};
use crate::observe::{event, Level};
use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpListener;
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::Duration;

/// Serves until drained. `sockets` pairs each listening socket with its index in
/// `Plan::listeners` (after a takeover a worker may accept on several sockets of one listener).
#[allow(clippy::too_many_arguments)]
pub fn run(
    id: usize,
    core: Option<core_affinity::CoreId>,
    plan: Arc<Plan>,
    board: Arc<crate::upstream::Board>,
    shared: Arc<crate::observe::Shared>,
    purges: Arc<crate::cache::PurgeBoard>,
    sockets: Vec<(std::net::TcpListener, usize)>,
    ready: mpsc::Sender<io::Result<Driver>>,
    drain: DrainSignal,
) {
    if let Some(c) = core {
        core_affinity::set_for_current(c);
    }
    let (mut rt, driver) = match super::driver::build(plan.server.io_driver) {
        Ok(built) => built,
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(
                e.kind(),
                format!("worker {id}: cannot start the runtime: {e}"),
            )));
            return;
        }
    };
    let observe = match crate::observe::WorkerObserve::new(&shared, id) {
        Ok(o) => o,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let ctx = Rc::new(WorkerCtx::new(plan.clone(), board, observe, purges));
        let open = Rc::new(Cell::new(0usize));
        monoio::spawn(tick(ctx.clone(), open.clone()));
        monoio::spawn(sweep_idle(ctx.clone()));
        let per_worker_cap = match plan.server.max_connections {
            0 => usize::MAX,
            n => n.div_ceil(plan.server.workers),
        };
        let drain = match drain.register() {
            Ok(d) => d,
            Err(e) => {
                let _ = ready.send(Err(io::Error::new(e.kind(), format!("worker {id}: drain signal: {e}"))));
                return;
            }
        };
        let canceller = Canceller::new();
        let mut tasks = Vec::new();
        for (std_listener, index) in sockets {
            let listener = match TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            tasks.push(monoio::spawn(accept_loop(
                listener,
                index,
                ctx.clone(),
                open.clone(),
                per_worker_cap,
                canceller.handle(),
            )));
        }
        let parked = monoio::spawn(wake_parked(ctx.clone()));
        let _ = ready.send(Ok(driver));
        drain.wait().await;
        ctx.begin_drain();
        // Idle keep-alive connections stay open for their next request (answered with
        // `Connection: close`); those still idle shortly before shutdown_timeout are closed,
        // so the process ends on its own rather than by the supervisor's deadline.
        let limit = plan.server.shutdown_timeout;
        let close_idle_at = std::time::Instant::now() + limit.saturating_sub((limit / 10).min(Duration::from_secs(1)));
        // A cancelled accept that raced with a completed one still returns its connection,
        // which is then served: no accepted connection is dropped on the floor.
        let _ = canceller.cancel();
        for t in tasks {
            t.await;
        }
        // Connections finish on their own (idle ones after their next response, or shortly
        // before shutdown_timeout); the supervisor enforces
        // shutdown_timeout by ending the process.
        // The access log is written out as it goes, so a process ended at shutdown_timeout
        // loses at most the last few milliseconds of lines.
        while open.get() > 0 {
            if !ctx.drain.is_closing_idle() && std::time::Instant::now() >= close_idle_at {
                ctx.drain.close_idle();
            }
            ctx.observe.flush();
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        // None is left (each holds an open count). The park task must end before the runtime
        // does: its pending wait would keep the io_uring driver alive, and with it the
        // unsubmitted closes of this worker's sockets (its listeners', among them).
        ctx.park.stop();
        parked.await;
        ctx.observe.flush();
    });
}

/// Decrements the worker's open-connection count and gives back the connection's drain slot
/// when a connection task ends, however it ends.
struct OpenGuard {
    open: Rc<Cell<usize>>,
    ctx: Rc<WorkerCtx>,
    slot: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
        self.ctx.drain.leave(self.slot);
    }
}

async fn accept_loop(
    listener: TcpListener,
    index: usize,
    ctx: Rc<WorkerCtx>,
    open: Rc<Cell<usize>>,
    cap: usize,
    cancel: CancelHandle,
) {
    let tls = ctx.plan.listeners[index].tls.clone();
    let proxied = ctx.plan.listeners[index].proxy_protocol.is_some();
    let h2c = ctx.plan.listeners[index].h2c;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let accepted = listener.cancelable_accept(cancel.clone()).await;
        if accepted.is_err() && ctx.drain.is_draining() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if open.get() >= cap {
                    // Over max_connections: close at once rather than queue without bound.
                    drop(stream);
                    continue;
                }
                open.set(open.get() + 1);
                let slot = ctx.drain.join(stream.as_raw_fd());
                let guard = OpenGuard {
                    open: open.clone(),
                    ctx: ctx.clone(),
                    slot,
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                let mut info = ClientInfo::new(peer, local, tls.is_some());
                info.listener = index as u32;
                info.slot = slot;
                let ctx = ctx.clone();
                if tls.is_none() && !proxied && !h2c {
                    monoio::spawn(Contained::new(serve(ctx, stream, info, guard), peer));
                    continue;
                }
                // The PROXY header and the TLS handshake run in the connection's own task, under
                // header_timeout: a client stalling halfway delays nobody and is dropped.
                let tls = tls.clone();
                let conn = async move {
                    let timeout = ctx.plan.server.header_timeout;
                    if let Some(from) = &ctx.plan.listeners[index].proxy_protocol {
                        match Box::pin(proxy_header::accept(&stream, peer, from, timeout)).await {
                            Ok(header) => {
                                let (client, reached) = proxy_header::endpoints(&header, peer, local);
                                info = ClientInfo {
                                    listener: index as u32,
                                    slot: info.slot,
                                    ..ClientInfo::new(client, reached, tls.is_some())
                                };
                            }
                            Err(e) => {
                                ctx.observe.metrics.add_global(Global::ProxyProtocolRefused, 1);
                                event(Level::Info, format_args!("connection from {peer}: {e}; closed"));
                                return;
                            }
                        }
                    }
                    // The connection continues in a task of its own, so nothing of this one
                    // (the PROXY header's and the handshake's state) stays allocated with it.
                    match tls {
                        None if h2c && h2::opens_with_preface(&stream, timeout).await => {
                            monoio::spawn(Contained::new(Box::pin(h2::serve(ctx, stream, info, guard)), peer));
                        }
                        None => {
                            monoio::spawn(Contained::new(serve(ctx, stream, info, guard), peer));
                        }
                        Some(tls) => match Box::pin(tls.accept(stream, timeout)).await {
                            // ALPN chose the protocol (`h2` is offered unless `http2 = false`).
                            Ok(stream) if stream.alpn_protocol().as_deref() == Some(crate::tls::ALPN_H2) => {
                                monoio::spawn(Contained::new(Box::pin(h2::serve(ctx, stream, info, guard)), peer));
                            }
                            Ok(stream) => {
                                monoio::spawn(Contained::new(serve(ctx, stream, info, guard), peer));
                            }
                            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                                event(Level::Info, format_args!("TLS client {peer}: {e}; closed"))
                            }
                            Err(_) => {}
                        },
                    }
                };
                monoio::spawn(Contained::new(Box::pin(conn), peer));
            }
            Err(e) => {
                let exhausted = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if exhausted {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        event(
                            Level::Error,
                            format_args!(
                                "accept: {e}; backing off (open connections on this worker: {})",
                                open.get()
                            ),
                        );
                        last_warning = Some(std::time::Instant::now());
                    }
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Ends the waits of keep-alive connections idle past their timeout: one timer for the whole
/// worker instead of one per connection, so a timeout ends up to `SWEEP` late.
async fn sweep_idle(ctx: Rc<WorkerCtx>) {
    const SWEEP: Duration = Duration::from_millis(100);
    loop {
        monoio::time::sleep(SWEEP).await;
        ctx.drain.sweep(std::time::Instant::now());
    }
}

/// Continues parked connections (`io::park`) in new tasks when bytes arrive for them; the
/// set drops those hung up (at their deadline, at shutdown, or by the peer). Parking is enabled
/// only once this task watches the set.
async fn wake_parked(ctx: Rc<WorkerCtx>) {
    let watcher = match ctx.park.watch() {
        Ok(w) => w,
        Err(e) => {
            event(Level::Warn, format_args!("idle connections stay in their tasks: {e}"));
            return;
        }
    };
    loop {
        let ready = {
            let mut readable = pin!(watcher.readable(false));
            poll_fn(|cx| match ctx.park.poll_stopped(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => readable.as_mut().poll(cx).map(Some),
            })
            .await
        };
        match ready {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                event(
                    Level::Error,
                    format_args!("parked connections: {e}; closed, parking stopped"),
                );
                ctx.park.stop();
                return;
            }
        }
        for (fd, resume) in ctx.park.take_ready() {
            if let Some((peer, conn)) = resume(fd) {
                monoio::spawn(Contained::new(conn, peer));
            }
        }
    }
}

/// The worker's once-a-second chores: sample the gauges only the worker can see (in-flight
/// requests, pooled connections, idle pipes), reopen the log after SIGUSR1, flush it, and hand
/// memory back to the system once a burst of connections has closed, or has gone idle and been
/// parked (their tasks' memory is then free).
async fn tick(ctx: Rc<WorkerCtx>, open: Rc<Cell<usize>>) {
    let o = &ctx.observe;
    let mut closed = Collector::default();
    let mut parked = Collector::default();
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        let open = open.get();
        let in_tasks = open.saturating_sub(ctx.park.len());
        // Both note their count every second: `|`, not `||`.
        if closed.should_collect(open) | parked.should_collect(in_tasks) {
            collect();
        }
        let plan = &ctx.plan;
        for (u, up) in plan.upstreams.iter().enumerate() {
            for s in 0..up.servers.len() {
                let inflight = ctx.upstreams.inflight(u, s) as u64;
                o.metrics.set_server(u, s, ServerStat::InFlight, inflight);
                o.metrics
                    .set_server(u, s, ServerStat::IdlePooled, ctx.pool.idle_of(u, s) as u64);
            }
        }
        o.metrics.set_global(Global::IdlePipes, ctx.pipes.idle() as u64);
        o.metrics.set_global(Global::ParkedConnections, ctx.park.len() as u64);
        o.reopen_if_asked();
        o.flush();
    }
}
