//! One HTTP/1.1 client connection, start to end. Each request: read the head (`head`), parse
//! it into the protocol-neutral request (`request`), run the exchange's steps (route, access,
//! rewrite, forward, response, log), then keep the connection for the next request, become a
//! tunnel (`tunnel`, after `101 Switching Protocols`), or close.
//!
//! Connection states: `Idle` (waiting for a first byte, keep-alive timeout) → `Head` (collecting
//! a head under `header_timeout`) → `Exchange` (request and response streaming) → back to `Idle`
//! when both sides allow keep-alive, otherwise closed.

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
use crate::io::owned::write_from;
use crate::observe::{ConnGauge, Record};
use head::{read_head, HeadRead};
use reply::reply;
use std::future::Future;
use std::rc::Rc;

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
    let plan = ctx.plan.clone();
    let limits = &plan.server;
    let gauge = ConnGauge::new(&ctx.observe);
    let mut client = Counted::new(client);
    let mut rec = Record::new(ctx.observe.logging());
    let mut cbuf: Vec<u8> = Vec::with_capacity(4096);
    // Before the first request the client gets header_timeout; later, the route's idle timeout.
    let mut idle = limits.header_timeout;
    // While draining, every connection gets its next request answered, with `Connection:
    // close`; only connections still idle near the end of shutdown_timeout are closed.
    let mut drain = None;
    loop {
        let (head, buf) = read_head(
            &mut client,
            cbuf,
            idle,
            limits.header_timeout,
            limits.max_head_size,
            limits.max_uri_size,
            drain,
        )
        .await;
        drain = Some((&ctx.drain, info.slot));
        cbuf = buf;
        let head_len = match head {
            HeadRead::Complete(n) => n,
            HeadRead::Closed => return,
            HeadRead::Refused(e) => {
                rec.begin(&cbuf);
                let r = Reply::refused(e);
                rec.status = r.status;
                let _ = reply(&mut client, r, limits.header_timeout).await;
                ctx.observe.finish(&plan, &mut rec, &info, client.totals());
                return;
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
                let _ = reply(&mut client, r, limits.header_timeout).await;
                ctx.observe.finish(&plan, &mut rec, &info, client.totals());
                return;
            }
        };
        rec.begin(&cbuf[..head_len]);
        let mut out = ctx.heads.get();
        let decision = decide_head(&plan, &ctx.access, &info, &cbuf[..head_len], &mut out, &mut rec);
        // Access step with I/O: forward auth asks its service before anything goes upstream.
        let decision = match decision {
            Decision::Authorize(outgoing, sub) => match Box::pin(access::authorize(&plan, &sub, &mut out)).await {
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
        let keep = match decision {
            Decision::Answer(a) => {
                ctx.heads.put(out);
                rec.status = a.status;
                let (res, _) = write_from(&mut client, a.bytes, 0, limits.header_timeout).await;
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
                if reply(&mut client, r, limits.header_timeout).await.is_err() || close {
                    false
                } else {
                    cbuf.drain(..head_len);
                    true
                }
            }
            Decision::Forward(outgoing) => {
                let outgoing_route = outgoing.route;
                let route = &plan.routes[outgoing_route];
                idle = route.idle_timeout;
                // Boxed: a connection that becomes a long-lived tunnel should not carry the
                // exchange's (large) state machine in its task for the tunnel's whole life.
                let exchange = exchange::exchange(&ctx, &mut client, cbuf, head_len, out, outgoing, &mut rec);
                let (next, buf) = Box::pin(exchange).await;
                cbuf = buf;
                match next {
                    Next::KeepAlive => true,
                    Next::Close => false,
                    Next::Tunnel(upstream) => {
                        ctx.observe.finish(&plan, &mut rec, &info, client.totals());
                        // The connection is no longer HTTP: from here on, bytes only, in a task of
                        // their own; this one ends and frees the HTTP state (buffers, strings).
                        // The request's record goes along only when the tunnel gets a log line.
                        let line = ctx.observe.logging().then(|| Box::new((rec, info)));
                        let watch = ctx.observe.tunnel_opened(gauge, line);
                        client
                            .into_inner()
                            .spawn_tunnel(upstream, ctx.clone(), outgoing_route, (guard, watch));
                        return;
                    }
                }
            }
        };
        ctx.observe.finish(&plan, &mut rec, &info, client.totals());
        if !keep {
            return;
        }
        if cbuf.capacity() > 64 * 1024 {
            cbuf.shrink_to(4096.max(cbuf.len()));
        }
    }
}
