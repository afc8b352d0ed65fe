//! One HTTP/1.1 client connection, start to end. Each request: read the head (`head`), parse
//! it into the protocol-neutral request (`request`), run the exchange's steps (route, access,
//! rewrite, forward, response, log), then keep the connection for the next request, become a
//! tunnel (`tunnel`, after `101 Switching Protocols`), or close.
//!
//! Connection states: `Idle` (waiting for readability, keep-alive timeout, holding no buffer) →
//! `Head` (a buffer from the worker's pool; collecting a head under `header_timeout`) →
//! `Exchange` (request and response streaming) → back to `Idle` when both sides allow
//! keep-alive, otherwise closed. Bytes of a pipelined next request skip `Idle`: its buffer is
//! kept. Between requests the connection's future holds only its identity, the record and the
//! timeout; each request's state lives in a boxed future of its own (`serve_one`).

mod exchange;
mod head;
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
use crate::io::owned::write_from;
use crate::observe::{ConnGauge, Record};
use crate::upstream::UpstreamConn;
use head::{read_head, HeadRead};
use reply::reply;
use std::future::Future;
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
    crate::io::deadline::scoped(serve_requests(ctx, Counted::new(client), info, (guard, gauge)))
}

/// The connection between requests. Its future is what an idle connection costs, so it holds
/// only what outlives a request: the arguments (identity, socket, guards), the bytes of a
/// pipelined next request and the idle timeout.
/// A plain function returning an `async move` block, not an `async fn`: an async fn's future
/// keeps its arguments twice (as passed, and moved into the body's bindings), the block only
/// once.
fn serve_requests<C: ClientStream + 'static, G: 'static>(
    ctx: Rc<WorkerCtx>,
    client: Counted<C>,
    info: ClientInfo,
    guards: (G, ConnGauge),
) -> impl Future<Output = ()> {
    let mut client = client;
    async move {
        // Bytes of the next request(s) already received (pipelining). Between requests it is empty
        // and has no capacity: an idle connection waits for readability holding no buffer, and takes
        // one from the worker's pool when bytes arrive.
        let mut pending: Vec<u8> = Vec::new();
        // Before the first request the client gets header_timeout; later, the route's idle timeout.
        let mut idle = ctx.plan.server.header_timeout;
        // While draining, every connection gets its next request answered, with `Connection:
        // close`; only connections still idle near the end of shutdown_timeout are closed (the
        // first request's wait is not idle in that sense).
        let mut served = false;
        // The connection's byte counts when the previous request was finished: where the next
        // request's own counts start (bytes taken while it was idle are its bytes).
        let mut marks = (0, 0);
        loop {
            if pending.is_empty() {
                ctx.requests.put(std::mem::take(&mut pending));
                if !wait_idle(&ctx, &client, info.slot, idle, served).await {
                    return;
                }
                pending = ctx.requests.get();
                // The read below fills the buffer's capacity: never more than a head may be.
                let max_head = ctx.plan.server.max_head_size;
                if pending.capacity() > max_head {
                    ctx.requests
                        .put(std::mem::replace(&mut pending, Vec::with_capacity(max_head)));
                }
                match client.try_fill(&mut pending) {
                    Ok(0) => {
                        ctx.requests.put(pending);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        ctx.requests.put(pending);
                        return;
                    }
                }
            }
            let drain = served.then_some((&ctx.drain, info.slot));
            // Boxed: the per-request state (head read, decision, replies, the exchange, the record)
            // exists only while a request is in hand, not in the connection's future between requests.
            let one = box_future(|| serve_one(&ctx, &mut client, &info, pending, (idle, drain), marks));
            let (step, buf) = one.await;
            served = true;
            marks = client.totals();
            pending = buf;
            match step {
                Step::Next(timeout) => idle = timeout.unwrap_or(idle),
                Step::Close => {
                    ctx.requests.put(pending);
                    return;
                }
                Step::Tunnel(upstream, route, mut rec) => {
                    ctx.requests.put(pending);
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

/// Waits, holding no buffer and no timer, until the client sends something (or closes). The
/// deadline is kept in the worker's drain registry, whose sweep shuts the socket down when it
/// passes; the wait then ends like a close. `false`: the socket failed, or a drain is closing
/// idle connections.
async fn wait_idle<C: ClientStream>(
    ctx: &WorkerCtx,
    client: &Counted<C>,
    slot: usize,
    idle: Duration,
    served: bool,
) -> bool {
    let d = &ctx.drain;
    if served && d.is_closing_idle() {
        return false;
    }
    let now = crate::io::clock::now();
    d.set_wait_until(slot, Some(now + idle));
    if let Some(timer) = crate::io::deadline::current_timer() {
        // Kept through a short pause (the next request of a busy client), freed after.
        d.release_timer_at(slot, now + TIMER_KEPT, timer);
    }
    d.set_idle(slot, served);
    let ready = client.get_ref().wait_readable().await;
    d.set_idle(slot, false);
    d.set_wait_until(slot, None);
    ready.is_ok()
}

/// How long an idle connection keeps its timer before the sweep frees it.
const TIMER_KEPT: Duration = Duration::from_secs(1);

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
            let r = Reply {
                status: 408,
                route: None,
                location: None,
                body: "request head not received in time".into(),
                close: true,
            };
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
        Decision::Answer(a) => {
            ctx.heads.put(out);
            rec.status = a.status;
            let (res, _) = write_from(client, a.bytes, 0, limits.header_timeout).await;
            if res.is_err() || a.close || ctx.drain.is_draining() {
                false
            } else {
                cbuf.drain(..head_len);
                true
            }
        }
        Decision::Authorize(..) => unreachable!("resolved above"),
        Decision::Reply(r) => {
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
            // Boxed: a connection that becomes a long-lived tunnel should not carry the
            // exchange's (large) state machine in its task for the tunnel's whole life.
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
