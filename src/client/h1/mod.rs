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

mod head;
mod request;
mod tunnel;

pub use request::{decide_bytes, decide_head};
pub use tunnel::ClientStream;

use super::counted::Counted;
use crate::exchange::forward::Next;
use crate::exchange::{self, access, reply, Decision, Reply, WorkerCtx};
use crate::http::client_info::ClientInfo;
use crate::io::deadline::timeout;
use crate::io::drain::Drain;
use crate::io::owned::write_from;
use crate::observe::{ConnGauge, Record};
use crate::upstream::UpstreamConn;
use head::{read_head, HeadRead};
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
    // One timer for every read and write deadline of this connection (see `deadline`).
    crate::io::deadline::scoped(serve_requests(ctx, client, info, guard))
}

async fn serve_requests<C: ClientStream + 'static, G: 'static>(
    ctx: Rc<WorkerCtx>,
    client: C,
    info: ClientInfo,
    guard: G,
) {
    let gauge = ConnGauge::new(&ctx.observe);
    let mut client = Counted::new(client);
    let mut rec = Record::new(ctx.observe.logging());
    // Bytes of the next request(s) already received (pipelining). Between requests it is empty
    // and has no capacity: an idle connection waits for readability holding no buffer, and takes
    // one from the worker's pool when bytes arrive.
    let mut pending: Vec<u8> = Vec::new();
    // Before the first request the client gets header_timeout; later, the route's idle timeout.
    let mut idle = ctx.plan.server.header_timeout;
    // While draining, every connection gets its next request answered, with `Connection:
    // close`; only connections still idle near the end of shutdown_timeout are closed.
    let mut drain = None;
    loop {
        if pending.is_empty() {
            ctx.requests.put(std::mem::take(&mut pending));
            if !wait_idle(&client, idle, drain).await {
                return;
            }
            pending = ctx.requests.get();
        }
        // Boxed: the per-request state (head read, decision, replies, the exchange) exists only
        // while a request is in hand, not in the connection's future between requests.
        let one = serve_one(&ctx, &mut client, &info, pending, (idle, drain), &mut rec);
        let (step, buf) = Box::pin(one).await;
        drain = Some((&ctx.drain, info.slot));
        pending = buf;
        match step {
            Step::Next(timeout) => idle = timeout.unwrap_or(idle),
            Step::Close => {
                ctx.requests.put(pending);
                return;
            }
            Step::Tunnel(upstream, route) => {
                ctx.requests.put(pending);
                ctx.observe.finish(&ctx.plan, &mut rec, &info, client.totals());
                // The connection is no longer HTTP: from here on, bytes only, in a task of
                // their own; this one ends and frees the HTTP state (buffers, strings).
                // The request's record goes along only when the tunnel gets a log line.
                let line = ctx.observe.logging().then(|| Box::new((rec, info)));
                let watch = ctx.observe.tunnel_opened(gauge, line);
                client
                    .into_inner()
                    .spawn_tunnel(upstream, ctx.clone(), route, (guard, watch));
                return;
            }
        }
    }
}

/// Waits, holding no buffer, until the client sends something (or closes). `false`: the idle
/// timeout passed, the socket failed, or a drain is closing idle connections.
async fn wait_idle<C: ClientStream>(client: &Counted<C>, idle: Duration, drain: Option<(&Drain, usize)>) -> bool {
    let ready = async { timeout(idle, pin!(client.get_ref().wait_readable())).await };
    let res = match drain {
        None => ready.await,
        Some((d, _)) if d.is_closing_idle() => return false,
        Some((d, slot)) => {
            d.set_idle(slot, true);
            let r = ready.await;
            d.set_idle(slot, false);
            r
        }
    };
    matches!(res, Ok(Ok(())))
}

/// What the connection does after one request.
enum Step {
    /// Keep the connection; wait for the next request up to the route's idle timeout (`None`:
    /// ringway answered itself, the connection keeps its current one).
    Next(Option<Duration>),
    Close,
    /// The upstream answered 101 on this route: become a tunnel.
    Tunnel(UpstreamConn, usize),
}

/// Serves one request whose first bytes are in `cbuf`: reads the rest of its head, runs the
/// exchange's steps, writes the response. Hands back the buffer with any bytes received after
/// this request (pipelined ones). The record is finished here unless the connection becomes a
/// tunnel (the tunnel's end finishes it).
async fn serve_one<C: ClientStream>(
    ctx: &WorkerCtx,
    client: &mut Counted<C>,
    info: &ClientInfo,
    cbuf: Vec<u8>,
    (idle, drain): (Duration, Option<(&Drain, usize)>),
    rec: &mut Record,
) -> (Step, Vec<u8>) {
    let plan = &ctx.plan;
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
            ctx.observe.finish(plan, rec, info, client.totals());
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
            ctx.observe.finish(plan, rec, info, client.totals());
            return (Step::Close, cbuf);
        }
    };
    rec.begin(&cbuf[..head_len]);
    let mut out = ctx.heads.get();
    let decision = decide_head(plan, &ctx.access, info, &cbuf[..head_len], &mut out, rec);
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
            let exchange = exchange::forward::exchange(ctx, client, cbuf, head_len, out, outgoing, rec);
            let (upshot, buf) = Box::pin(exchange).await;
            cbuf = buf;
            match upshot {
                Next::KeepAlive => true,
                Next::Close => false,
                Next::Tunnel(upstream) => return (Step::Tunnel(upstream, route), cbuf),
            }
        }
    };
    ctx.observe.finish(plan, rec, info, client.totals());
    if !keep {
        return (Step::Close, cbuf);
    }
    (next, cbuf)
}
