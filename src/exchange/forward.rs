//! The upstream exchange for one request: take a pooled connection (or connect), send the head
//! and body, read the response head, rewrite it for the client, and relay the body, streaming
//! every body in bounded buffers. Steps: send → (100-continue) → stream request body →
//! response head → response body → return the connection to the pool when both ends are clean.
//!
//! The server is chosen here, not in `decide`: a failed connect moves to another server (nothing
//! was sent), and an idempotent request that failed before any response byte is retried up to
//! the upstream's `retries`, but only while the whole request is still in hand (never once a body
//! was streamed from the client).

use super::cached::{self, After, Before, Pass, Tap};
use super::client_side::{BodyAbort, ClientSide, Cut, HeadSink};
use super::outgoing::Outgoing;
use super::reply::Reply;
use super::response_head::{last_response_head, read_response_head, ResponsePlan};
use super::worker::WorkerCtx;
use crate::config::RoutePlan;
use crate::io::owned::write_out;
use crate::observe::{event, Level, Record};
use crate::upstream::{connect, FailureKind, Lease, Tried, UpstreamConn, UpstreamError};

/// What the client connection does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// The upstream answered 101: relay bytes both ways from now on.
    Tunnel(UpstreamConn),
}

/// How an exchange ended early.
pub enum Abort {
    /// Tell the client (nothing was written to it yet), then close unless the request was whole.
    Upstream(UpstreamError),
    /// The client sent a bad body or vanished: reply if possible, then close.
    Client(Option<Reply>),
    /// The response had started: the only honest signal left is closing the connection.
    Close,
}

/// Runs one exchange for a request that passed `decide` (`out` holds its upstream head, and
/// the body bytes the client sent with it); returns what the client connection does next.
pub async fn forward<S: ClientSide>(
    ctx: &WorkerCtx,
    side: &mut S,
    mut o: Outgoing,
    mut out: Vec<u8>,
    rec: &mut Record,
) -> Next {
    let plan = &*ctx.plan;
    let route = &plan.routes[o.route];
    let mut pass = None;
    if let Some(req) = o.cache.take() {
        match Box::pin(cached::before(ctx, side, &o, &req, &mut out, rec)).await {
            Before::Served(keep) => {
                ctx.heads.put(out);
                return if keep { Next::KeepAlive } else { Next::Close };
            }
            Before::Forward(p) => pass = p,
        }
    }
    let mut rbuf = ctx.bodies.get();
    let result = run(ctx, side, &mut o, route, &mut out, &mut rbuf, rec, pass).await;
    ctx.bodies.put(rbuf);
    ctx.heads.put(out);
    match result {
        Ok(Done::Tunnel(upstream)) => Next::Tunnel(upstream),
        Ok(Done::Http {
            keep,
            upstream,
            reusable,
        }) => {
            // A draining worker keeps no idle upstream connections (see WorkerCtx::begin_drain).
            if reusable && !ctx.drain.is_draining() {
                ctx.pool.put(plan, o.upstream, o.server, upstream);
            }
            if keep {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
        Err((abort, request_whole)) => {
            rec.status = match &abort {
                Abort::Upstream(e) => e.status(),
                Abort::Client(Some(r)) => r.status,
                // The client left (or the response was cut): nginx's "client closed request"
                // unless a response status was already sent.
                Abort::Client(None) | Abort::Close if rec.status == 0 => 499,
                Abort::Client(None) | Abort::Close => rec.status,
            };
            let keep = match abort {
                Abort::Upstream(e) => {
                    event(Level::Warn, format_args!("{} {}", route_label(route), e));
                    let close = !(request_whole && o.client_keep_alive);
                    let r = Reply::text(e.status(), e.to_string(), close);
                    side.send_reply(r, route.send_timeout).await.is_ok() && !close
                }
                Abort::Client(Some(r)) => {
                    let _ = side.send_reply(r, route.send_timeout).await;
                    false
                }
                Abort::Client(None) | Abort::Close => false,
            };
            if keep {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
    }
}

fn route_label(route: &RoutePlan) -> String {
    format!("route #{} ({})", route.number, route.prefix)
}

type Failed = (Abort, bool);

enum Done {
    Http {
        keep: bool,
        upstream: UpstreamConn,
        reusable: bool,
    },
    Tunnel(UpstreamConn),
}

#[allow(clippy::too_many_arguments)]
async fn run<S: ClientSide>(
    ctx: &WorkerCtx,
    side: &mut S,
    o: &mut Outgoing,
    route: &RoutePlan,
    out: &mut Vec<u8>,
    rbuf: &mut Vec<u8>,
    rec: &mut Record,
    mut pass: Option<Box<Pass<'_>>>,
) -> Result<Done, Failed> {
    let started = crate::io::clock::now();
    let plan = &*ctx.plan;
    let up = &plan.upstreams[o.upstream];
    let body_done = side.body_done();
    let mut request_whole = body_done;

    // Choose a server, send, read the response head. A stale pooled connection is retried once
    // on a fresh one to the same server; other failures move on to another server when allowed.
    let mut failover = Failover {
        tried: Tried::default(),
        retries_left: up.retries,
        last_err: None,
        lease: None,
    };
    let mut fresh_only = false;
    let (mut upstream, resp) = loop {
        if failover.lease.is_none() {
            let l = match ctx
                .upstreams
                .acquire(plan, o.upstream, o.affinity, &failover.tried)
                .await
            {
                Ok(l) => l,
                // Every server failed this request: the last failure says more than "none left".
                Err(e) => {
                    let e = match (failover.last_err.take(), &e.kind) {
                        (Some(last), FailureKind::NoHealthyServer) => last,
                        _ => e,
                    };
                    return Err((Abort::Upstream(e), body_done));
                }
            };
            o.server = l.server;
            rec.server = Some(l.server);
            retarget_host(out, o, &up.servers[l.server].authority);
            failover.lease = Some(l);
            fresh_only = false;
        }
        let pooled = if fresh_only {
            None
        } else {
            // A request that could not be sent again must not land on a connection the server
            // already closed; an idempotent one with its body at hand is simply retried.
            let must_be_alive = !(o.idempotent && body_done);
            ctx.pool.take(plan, o.upstream, o.server, must_be_alive)
        };
        let reused = pooled.is_some();
        let mut stream = match pooled {
            Some(s) => s,
            // Boxed, like every wait below that most requests never reach: a future is as large
            // as its largest await, and this one is moved into a fresh box per request.
            None => match Box::pin(connect(up, o.server, o.proxy_header)).await {
                Ok(s) => s,
                Err(e) => {
                    // Nothing was sent: any request may move to another server.
                    ctx.observe.upstream_failed(o.upstream, o.server, e.kind.stat());
                    ctx.upstreams.failed(plan, o.upstream, o.server);
                    failover.give_up(route, o.server, e, "trying another server");
                    continue;
                }
            },
        };
        let res = write_out(&mut stream, out, 0, route.send_timeout).await;
        // The request can be sent again only while all of it is still in `out` (a write that
        // timed out loses its buffer).
        let resendable = body_done && !out.is_empty();
        if let Err(e) = res {
            if reused && resendable {
                fresh_only = true;
                continue;
            }
            let e = UpstreamError::new(up, o.server, FailureKind::Io(e));
            if resendable && o.idempotent && failover.take_retry() {
                failover.give_up(route, o.server, e, "retrying on another server");
                continue;
            }
            return Err((Abort::Upstream(e), body_done));
        }
        if !body_done {
            if o.expect_continue {
                side.send_continue(route.send_timeout)
                    .await
                    .map_err(|_| (Abort::Close, false))?;
            }
            Box::pin(side.send_request_body(ctx, &mut stream, route))
                .await
                .map_err(|a| {
                    let a = match a {
                        BodyAbort::Upstream(e) => Abort::Upstream(UpstreamError::new(up, o.server, FailureKind::Io(e))),
                        BodyAbort::Client(r) => Abort::Client(r),
                    };
                    (a, false)
                })?;
            request_whole = true;
        }
        if rbuf.capacity() == 0 {
            // A timed-out read kept its buffer; take a fresh one for the next attempt.
            *rbuf = ctx.bodies.get();
        }
        rbuf.clear();
        let mut any_byte = false;
        let got = match pass.as_deref_mut() {
            // On a caching route the head is also kept for the cache and gets Cache-Status.
            Some(p) => {
                let mut tap = Tap::new(side.head(), Some(p));
                response_head(ctx, &mut stream, rbuf, &mut tap, route, o, &mut any_byte).await
            }
            // Elsewhere the head goes straight to the client's, not through the tap per line.
            None => response_head(ctx, &mut stream, rbuf, side.head(), route, o, &mut any_byte).await,
        };
        match got {
            Ok(resp) => {
                ctx.upstreams.answered(o.upstream, o.server);
                rec.status = resp.status;
                rec.upstream_time = Some(crate::io::clock::now().saturating_duration_since(started));
                break (stream, resp);
            }
            // The server may have read the request before closing: only a request that is safe
            // to repeat goes out again (the pool already skips connections closed while idle).
            Err(FailureKind::ClosedEarly) if reused && resendable && o.idempotent => fresh_only = true,
            Err(kind) => {
                ctx.observe.upstream_failed(o.upstream, o.server, kind.stat());
                if kind.counts_against_server() {
                    ctx.upstreams.failed(plan, o.upstream, o.server);
                }
                let e = UpstreamError::new(up, o.server, kind);
                if resendable && !any_byte && o.idempotent && failover.take_retry() {
                    failover.give_up(route, o.server, e, "retrying on another server");
                    continue;
                }
                return Err((Abort::Upstream(e), request_whole));
            }
        }
    };

    if resp.status == 101 {
        // Switch only now that the upstream really agreed.
        let res = side.switch(&mut upstream, rbuf, &resp, route).await;
        res.map_err(|_| (Abort::Close, request_whole))?;
        return Ok(Done::Tunnel(upstream));
    }
    let mut fill = None;
    if let Some(p) = pass.as_deref_mut() {
        match Box::pin(cached::after_head(ctx, side, p, o, out, rbuf, &resp, rec)).await {
            // A 304 refreshed the stale entry, which went to the client instead.
            After::Served(keep) => {
                return Ok(Done::Http {
                    keep,
                    upstream,
                    reusable: resp.reusable && rbuf.len() == resp.head_len && request_whole,
                })
            }
            After::Relay(f) => fill = f,
        }
    }
    let complete = side
        .send_response(ctx, &mut upstream, rbuf, &resp, route, fill.as_mut())
        .await
        .map_err(|Cut| (Abort::Close, request_whole))?;
    if let (Some(p), Some(f)) = (pass, fill) {
        cached::commit(ctx, p, f, true);
    }
    let keep = o.client_keep_alive && !resp.close_client;
    drop(failover);
    Ok(Done::Http {
        keep,
        upstream,
        reusable: complete && resp.reusable && request_whole,
    })
}

/// Reads the upstream's response head into `head`, the client's version of it; built again
/// with `Connection: close` when the worker started draining meanwhile.
async fn response_head<H: HeadSink>(
    ctx: &WorkerCtx,
    stream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    head: &mut H,
    route: &RoutePlan,
    o: &mut Outgoing,
    any_byte: &mut bool,
) -> Result<ResponsePlan, FailureKind> {
    let plan = &*ctx.plan;
    let resp = read_response_head(stream, rbuf, head, plan, route, o, any_byte).await?;
    Ok(match ctx.drain.is_draining() {
        true => last_response_head(rbuf, head, plan, route, o, resp),
        false => resp,
    })
}

/// The attempts of one request: the servers it gave up on, the lease on the current one, the
/// failure to report if none is left, and how many retries the upstream still allows.
struct Failover<'a> {
    tried: Tried,
    lease: Option<Lease<'a>>,
    last_err: Option<UpstreamError>,
    retries_left: u32,
}

impl Failover<'_> {
    /// Counts one retry against the upstream's `retries`; false when none is left.
    fn take_retry(&mut self) -> bool {
        let left = self.retries_left > 0;
        self.retries_left = self.retries_left.saturating_sub(1);
        left
    }

    /// Gives up on `server` for this request: logs why, releases its lease and keeps the error,
    /// so the next turn of the loop picks another server (or reports this failure).
    fn give_up(&mut self, route: &RoutePlan, server: usize, e: UpstreamError, next: &str) {
        event(Level::Warn, format_args!("{} {}; {}", route_label(route), e, next));
        self.tried.add(server);
        self.lease = None;
        self.last_err = Some(e);
    }
}

/// With `preserve_host = false` the Host header names the server: make it the chosen one.
fn retarget_host(out: &mut Vec<u8>, o: &mut Outgoing, authority: &str) {
    if let Some((a, b)) = o.host_at {
        if b <= out.len() && &out[a..b] != authority.as_bytes() {
            out.splice(a..b, authority.bytes());
            o.host_at = Some((a, a + authority.len()));
        }
    }
}
