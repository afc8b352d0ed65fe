//! One HTTP/1.1 client connection, start to end. Each request: read the head (`head`), parse
//! it into the protocol-neutral request (`request`), run the exchange's steps (route, access,
//! rewrite, forward, response, log), then keep the connection for the next request, become a
//! tunnel (`tunnel`, after `101 Switching Protocols`), or close.
//!
//! Connection states: `Idle` (waiting for readability, keep-alive timeout, holding no buffer) →
//! `Head` (a buffer from the worker's pool; collecting a head under `header_timeout`) →
//! `Exchange` (request and response streaming) → back to `Idle` when both sides allow
//! keep-alive, otherwise closed. Bytes of a pipelined next request skip `Idle`: its buffer is
//! kept. While idle the connection's future holds only its identity and the timeout; the
//! requests of an active period, and their buffer, live in a boxed future of their own
//! (`serve_active`), one allocation however many requests it serves. A plain connection idle
//! for a second after a request goes further: `Parked` (`park`), its task ended, its socket
//! and identity held by the worker's park set until bytes arrive, then resumed in a new task
//! at `Head`.

mod exchange;
mod head;
mod park;
mod reply;
mod request;
mod request_body;
mod response_body;
pub mod response_head;
mod tunnel;

pub use request::{decide_bytes, decide_head};
pub use tunnel::ClientStream;

use super::counted::Counted;
use crate::exchange::forward::Next;
use crate::exchange::{access, Decision, Reply, WorkerCtx};
use crate::http::client_info::ClientInfo;
use crate::io::box_future;
use crate::io::drain::Drain;
use crate::observe::{ConnGauge, Record};
use crate::upstream::UpstreamConn;
use head::{read_head, HeadRead};
use reply::reply;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

/// Serves one client connection. `guard` lives as long as the connection, including a tunnel it
/// may become (it counts open connections for `max_connections`).
pub fn serve<C: ClientStream + 'static, G: 'static>(
    ctx: Rc<WorkerCtx>,
    client: C,
    info: ClientInfo,
    guard: G,
) -> impl Future<Output = ()> {
    let gauge = ConnGauge::new(&ctx.observe);
    // One timer for every read and write deadline of this connection (see `deadline`).
    crate::io::deadline::scoped(serve_requests(ctx, Counted::new(client), info, (guard, gauge), None))
}

/// The connection between requests. Its future is what an idle connection costs, so it holds
/// only what outlives a request: the arguments (identity, socket, guards) and the idle timeout
/// (none before the first request). Everything a request needs, the read buffer included, lives in
/// the boxed future of an active period (`serve_active`), made when bytes arrive and dropped
/// when the connection has nothing left to read.
/// A plain function returning an `async move` block, not an `async fn`: an async fn's future
/// keeps its arguments twice (as passed, and moved into the body's bindings), the block only
/// once.
fn serve_requests<C: ClientStream + 'static, G: 'static>(
    ctx: Rc<WorkerCtx>,
    client: Counted<C>,
    info: ClientInfo,
    guards: (G, ConnGauge),
    resumed: Option<Duration>,
) -> impl Future<Output = ()> {
    let mut client = client;
    async move {
        // The wait for the next request: `None` before the first one (header_timeout), then the
        // route's idle timeout. While draining, every connection gets its next request answered,
        // with `Connection: close`; only connections still idle near the end of shutdown_timeout
        // are closed (the first request's wait is not idle in that sense). A connection resumed
        // from the park set (`resumed`) is readable already: it skips the first wait.
        let mut idle: Option<Duration> = resumed;
        let mut waited = resumed.is_some();
        loop {
            if !std::mem::take(&mut waited) {
                // Plain connections that already served a request wait here for a second, then
                // park outside the task (`park`); busy clients never get that far.
                let parks = C::PARKS && idle.is_some() && ctx.park.accepts();
                if !begin_idle(&ctx, info.slot, idle, !parks) {
                    return;
                }
                // Waits holding no buffer: the drain registry's sweep shuts the socket down at
                // the deadline, which ends this wait like a close.
                let ready = match idle {
                    Some(idle) if parks => {
                        let wait =
                            crate::io::deadline::timeout(park::PARK_AFTER, pin!(client.get_ref().wait_readable()))
                                .await;
                        match wait {
                            Ok(ready) => ready,
                            Err(_) => return park::park_idle(ctx, client, info, guards, idle),
                        }
                    }
                    _ => client.get_ref().wait_readable().await,
                };
                ctx.drain.end_wait(info.slot);
                if ready.is_err() {
                    return;
                }
            }
            // Boxed: the per-request state (buffer, head read, decision, the exchange, the
            // record) exists only while the connection is active, not while it waits.
            match box_future(|| serve_active(&ctx, &mut client, &info, idle)).await {
                Step::Next(timeout) => idle = timeout,
                Step::Close => return,
                Step::Tunnel(upstream, route, mut rec) => {
                    ctx.observe.finish(&ctx.plan, &mut rec, &info, client.totals());
                    // The connection is no longer HTTP: from here on, bytes only, in a task of
                    // their own; this one ends and frees the HTTP state (buffers, strings).
                    // The request's record goes along only when the tunnel gets a log line.
                    let line = ctx.observe.logging().then(|| Box::new((*rec, info)));
                    let (guard, gauge) = guards;
                    let watch = ctx.observe.tunnel_opened(gauge, line);
                    client
                        .into_inner()
                        .spawn_tunnel(upstream, ctx.clone(), route, (guard, watch));
                    return;
                }
            }
        }
    }
}

/// Marks the connection as waiting for a request until `idle` from now (`None`: the first
/// request, under header_timeout), in the worker's drain registry, whose sweep ends the wait at
/// that deadline and frees the connection's timer if the wait lasts. `false`: a drain is closing
/// idle connections, so this one closes instead.
fn begin_idle(ctx: &WorkerCtx, slot: usize, idle: Option<Duration>, lend_timer: bool) -> bool {
    let d = &ctx.drain;
    let served = idle.is_some();
    if served && d.is_closing_idle() {
        return false;
    }
    let idle = idle.unwrap_or(ctx.plan.server.header_timeout);
    // A timer is kept through a short pause (the next request of a busy client), freed after;
    // not lent when the wait itself is timed (before parking).
    let timer = lend_timer
        .then(crate::io::deadline::current_timer)
        .flatten()
        .map(|t| (TIMER_KEPT, t));
    d.begin_wait(slot, crate::io::clock::now(), idle, served, timer);
    true
}

/// How long an idle connection keeps its timer before the sweep frees it.
const TIMER_KEPT: Duration = Duration::from_secs(1);

/// One active period of a connection that became readable: takes a buffer from the worker's
/// pool, serves requests while their bytes are already buffered (pipelining), and gives the
/// buffer back once it is empty (`Step::Next`: the connection goes idle) or the connection ends.
async fn serve_active<C: ClientStream>(
    ctx: &WorkerCtx,
    client: &mut Counted<C>,
    info: &ClientInfo,
    idle: Option<Duration>,
) -> Step {
    let mut served = idle.is_some();
    let mut idle = idle.unwrap_or(ctx.plan.server.header_timeout);
    let mut pending = ctx.requests.get();
    // The read below fills the buffer's capacity: never more than a head may be.
    let max_head = ctx.plan.server.max_head_size;
    if pending.capacity() > max_head {
        ctx.requests
            .put(std::mem::replace(&mut pending, Vec::with_capacity(max_head)));
    }
    // The request's own byte counts start here (bytes taken after the wait are its bytes).
    let mut marks = client.totals();
    match client.try_fill(&mut pending) {
        Ok(0) => {
            ctx.requests.put(pending);
            return Step::Close;
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => {
            ctx.requests.put(pending);
            return Step::Close;
        }
    }
    loop {
        let drain = served.then_some((&ctx.drain, info.slot));
        let (step, buf) = serve_one(ctx, client, info, pending, (idle, drain), marks).await;
        served = true;
        marks = client.totals();
        pending = buf;
        match step {
            Step::Next(timeout) if !pending.is_empty() => idle = timeout.unwrap_or(idle),
            // Nothing buffered: the connection goes idle, holding no buffer.
            Step::Next(timeout) => {
                ctx.requests.put(pending);
                return Step::Next(Some(timeout.unwrap_or(idle)));
            }
            step => {
                ctx.requests.put(pending);
                return step;
            }
        }
    }
}

/// What the connection does after one request.
enum Step {
    /// Keep the connection; wait for the next request up to the route's idle timeout (`None`:
    /// ringway answered itself, the connection keeps its current one).
    Next(Option<Duration>),
    Close,
    /// The upstream answered 101 on this route: become a tunnel (its record finished by the
    /// tunnel's end).
    Tunnel(UpstreamConn, usize, Box<Record>),
}

/// Serves one request whose first bytes are in `cbuf`: reads the rest of its head, runs the
/// exchange's steps, writes the response. Hands back the buffer with any bytes received after
/// this request (pipelined ones). The request's record is made and finished here, unless the
/// connection becomes a tunnel.
async fn serve_one<C: ClientStream>(
    ctx: &WorkerCtx,
    client: &mut Counted<C>,
    info: &ClientInfo,
    cbuf: Vec<u8>,
    (idle, drain): (Duration, Option<(&Drain, usize)>),
    marks: (u64, u64),
) -> (Step, Vec<u8>) {
    let plan = &ctx.plan;
    let mut rec = Record::new(ctx.observe.logging());
    rec.mark(marks);
    let limits = &plan.server;
    let (head, mut cbuf) = read_head(
        client,
        cbuf,
        idle,
        limits.header_timeout,
        limits.max_head_size,
        limits.max_uri_size,
        drain,
    )
    .await;
    let head_len = match head {
        HeadRead::Complete(n) => n,
        HeadRead::Closed => return (Step::Close, cbuf),
        HeadRead::Refused(e) => {
            rec.begin(&cbuf);
            let r = Reply::refused(e);
            rec.status = r.status;
            let _ = reply(client, r, limits.header_timeout).await;
            ctx.observe.finish(plan, &mut rec, info, client.totals());
            return (Step::Close, cbuf);
        }
        HeadRead::TimedOut => {
            let r = Reply::text(408, "request head not received in time", true);
            rec.begin(&cbuf);
            rec.status = 408;
            let _ = reply(client, r, limits.header_timeout).await;
            ctx.observe.finish(plan, &mut rec, info, client.totals());
            return (Step::Close, cbuf);
        }
    };
    rec.begin(&cbuf[..head_len]);
    let mut out = ctx.heads.get();
    let decision = decide_head(plan, &ctx.access, info, &cbuf[..head_len], &mut out, &mut rec);
    // Access step with I/O: forward auth asks its service before anything goes upstream.
    let decision = match decision {
        Decision::Authorize(outgoing, sub) => match Box::pin(access::authorize(plan, &sub, &mut out)).await {
            Ok(()) => Decision::Forward(outgoing),
            Err(answer) => Decision::Answer(answer),
        },
        d => d,
    };
    let decision = if ctx.drain.is_draining() {
        decision.last_response()
    } else {
        decision
    };
    let mut next = Step::Next(None);
    let keep = match decision {
        Decision::Authorize(..) => unreachable!("resolved above"),
        Decision::Reply(r) | Decision::Answer(r) => {
            ctx.heads.put(out);
            let close = r.close;
            rec.status = r.status;
            if reply(client, r, limits.header_timeout).await.is_err() || close {
                false
            } else {
                cbuf.drain(..head_len);
                true
            }
        }
        Decision::Forward(outgoing) => {
            let route = outgoing.route;
            next = Step::Next(Some(plan.routes[route].idle_timeout));
            // Boxed on its own: while a head is still arriving (slow clients, floods of partial
            // heads), the active period's box holds no room for the exchange's state.
            let exchange = box_future(|| exchange::exchange(ctx, client, cbuf, head_len, out, outgoing, &mut rec));
            let (upshot, buf) = exchange.await;
            cbuf = buf;
            match upshot {
                Next::KeepAlive => true,
                Next::Close => false,
                Next::Tunnel(upstream) => return (Step::Tunnel(upstream, route, Box::new(rec)), cbuf),
            }
        }
    };
    ctx.observe.finish(plan, &mut rec, info, client.totals());
    if !keep {
        return (Step::Close, cbuf);
    }
    (next, cbuf)
}
