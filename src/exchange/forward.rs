//! The upstream exchange for one request: take a pooled connection (or connect), send the head
//! and body, read the response head, rewrite it for the client, and relay the body, streaming
//! every body in bounded buffers. Steps: send → (100-continue) → stream request body →
//! response head → response body → return the connection to the pool when both ends are clean.
//!
//! The server is chosen here, not in `decide`: a failed connect moves to another server (nothing
//! was sent), and an idempotent request that failed before any response byte is retried up to
//! the upstream's `retries`, but only while the whole request is still in hand (never once a body
//! was streamed from the client).

use crate::body::chunked::{write_chunk_header, ChunkedDecoder, Step, LAST_CHUNK};
use crate::body::splice::{plain_pair, splice_body, BodyError, SpliceClient, SPLICE_MIN_BODY};
use crate::client::h1::{reply, Reply, WorkerCtx};
use crate::config::{Plan, RoutePlan};
use crate::exchange::rewrite::{map_cookie_path, map_location};
use crate::http::headers::{classify, Known};
use crate::http::response::inspect as inspect_response;
use crate::http::write::{header, header_u64, RawLines};
use crate::http::Framing;
use crate::io::owned::{read_into, write_out, write_static};
use crate::observe::{event, Level, Record};
use crate::tunnel::PipePool;
use crate::upstream::{connect, FailureKind, Lease, Tried, UpstreamConn, UpstreamError};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

/// A request that passed every check, with its upstream head already written.
pub struct Outgoing {
    pub route: usize,
    pub upstream: usize,
    /// The server of the current attempt, chosen in the exchange.
    pub server: usize,
    /// Hash key for `balance = "hash"`.
    pub affinity: Option<u64>,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send again.
    pub idempotent: bool,
    /// Where the Host value naming the server sits in the upstream head (`preserve_host = false`).
    pub host_at: Option<(usize, usize)>,
    pub framing: Framing,
    pub expect_continue: bool,
    pub is_head: bool,
    pub client_keep_alive: bool,
    pub client_http10: bool,
    /// The client's Host, kept only when responses need their Location mapped back.
    pub request_host: Option<String>,
    /// Header lines the access step adds to the client's response (CORS); usually empty.
    pub response_headers: Vec<u8>,
    /// The request asked for an allowed protocol upgrade and carries Upgrade upstream.
    pub upgrade: bool,
    /// The listener that accepted the client (its `hsts` applies to the response).
    pub listener: usize,
}

/// What the client connection does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// The upstream answered 101: relay bytes both ways from now on.
    Tunnel(UpstreamConn),
}

/// How an exchange ended early.
enum Abort {
    /// Tell the client (nothing was written to it yet), then close unless the request was whole.
    Upstream(UpstreamError),
    /// The client sent a bad body or vanished: reply if possible, then close.
    Client(Option<Reply>),
    /// The response had started: the only honest signal left is closing the connection.
    Close,
}

/// Runs one exchange; returns whether the client connection may serve another request, and the
/// client buffer holding any bytes already received after this request.
pub async fn exchange<C: AsyncReadRent + AsyncWriteRent + SpliceClient>(
    ctx: &WorkerCtx,
    client: &mut C,
    mut cbuf: Vec<u8>,
    head_len: usize,
    mut out: Vec<u8>,
    mut o: Outgoing,
    rec: &mut Record,
) -> (Next, Vec<u8>) {
    let plan = &*ctx.plan;
    let route = &plan.routes[o.route];

    // Body bytes that arrived with the head go out in the same write as the head.
    let mut pos = head_len;
    let mut body_left = 0u64;
    let mut decoder: Option<ChunkedDecoder> = None;
    let mut decoded = 0u64;
    match o.framing {
        Framing::Length(n) => {
            let avail = ((cbuf.len() - pos) as u64).min(n) as usize;
            out.extend_from_slice(&cbuf[pos..pos + avail]);
            pos += avail;
            body_left = n - avail as u64;
        }
        Framing::Chunked => {
            let mut d = ChunkedDecoder::new();
            match reframe_request(&mut d, &cbuf[pos..], &mut out, &mut decoded) {
                Ok(used) => pos += used,
                Err(why) => return refuse_body(ctx, client, cbuf, out, rec, 400, why).await,
            }
            decoder = Some(d);
        }
        Framing::None | Framing::UntilClose => {}
    }
    if route.max_body.is_some_and(|max| decoded > max) {
        return refuse_body(
            ctx,
            client,
            cbuf,
            out,
            rec,
            413,
            "request body larger than this route allows",
        )
        .await;
    }
    let body_done = body_left == 0 && decoder.as_ref().is_none_or(|d| d.is_done());
    // Everything not yet consumed from the client buffer belongs to the next request.
    if body_done {
        cbuf.drain(..pos);
    } else {
        cbuf.clear();
    }

    let mut rbuf = ctx.bodies.get();
    let mut resp_out = ctx.heads.get();
    let result = run(
        ctx,
        client,
        &mut o,
        route,
        &mut cbuf,
        &mut out,
        &mut rbuf,
        &mut resp_out,
        body_done,
        body_left,
        decoder,
        decoded,
        rec,
    )
    .await;
    ctx.bodies.put(rbuf);
    ctx.heads.put(resp_out);
    ctx.heads.put(out);
    match result {
        Ok(Done::Tunnel(upstream)) => (Next::Tunnel(upstream), cbuf),
        Ok(Done::Http {
            keep,
            upstream,
            reusable,
        }) => {
            // A draining worker keeps no idle upstream connections (see WorkerCtx::begin_drain).
            if reusable && !ctx.drain.is_draining() {
                ctx.pool.put(plan, o.upstream, o.server, upstream);
            }
            (if keep { Next::KeepAlive } else { Next::Close }, cbuf)
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
                    let r = Reply {
                        status: e.status(),
                        route: None,
                        location: None,
                        body: e.to_string().into(),
                        close,
                    };
                    reply(client, r, route.send_timeout).await.is_ok() && !close
                }
                Abort::Client(Some(r)) => {
                    let _ = reply(client, r, route.send_timeout).await;
                    false
                }
                Abort::Client(None) | Abort::Close => false,
            };
            (if keep { Next::KeepAlive } else { Next::Close }, cbuf)
        }
    }
}

fn route_label(route: &RoutePlan) -> String {
    format!("route #{} ({})", route.number, route.prefix)
}

async fn refuse_body<C: AsyncWriteRent>(
    ctx: &WorkerCtx,
    client: &mut C,
    cbuf: Vec<u8>,
    out: Vec<u8>,
    rec: &mut Record,
    status: u16,
    why: &'static str,
) -> (Next, Vec<u8>) {
    ctx.heads.put(out);
    rec.status = status;
    let r = Reply {
        status,
        route: None,
        location: None,
        body: why.into(),
        close: true,
    };
    let _ = reply(client, r, Duration::from_secs(10)).await;
    (Next::Close, cbuf)
}

/// Decodes chunked input and appends it re-framed (one chunk per piece, no extensions, no
/// trailers). Returns the input bytes consumed; stops at the end of the body.
fn reframe_request(
    d: &mut ChunkedDecoder,
    input: &[u8],
    out: &mut Vec<u8>,
    decoded: &mut u64,
) -> Result<usize, &'static str> {
    let mut p = 0;
    while p < input.len() && !d.is_done() {
        match d.step(&input[p..]).map_err(|e| e.reason())? {
            Step::Data(n) => {
                write_chunk_header(out, n);
                out.extend_from_slice(&input[p..p + n]);
                out.extend_from_slice(b"\r\n");
                *decoded += n as u64;
                p += n;
            }
            Step::Skip(n) => p += n,
            Step::Done(n) => {
                p += n;
                out.extend_from_slice(LAST_CHUNK);
            }
        }
    }
    Ok(p)
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
async fn run<C: AsyncReadRent + AsyncWriteRent + SpliceClient>(
    ctx: &WorkerCtx,
    client: &mut C,
    o: &mut Outgoing,
    route: &RoutePlan,
    cbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    rbuf: &mut Vec<u8>,
    resp_out: &mut Vec<u8>,
    body_done: bool,
    body_left: u64,
    decoder: Option<ChunkedDecoder>,
    decoded: u64,
    rec: &mut Record,
) -> Result<Done, Failed> {
    let started = crate::io::clock::now();
    let plan = &*ctx.plan;
    let up = &plan.upstreams[o.upstream];
    let mut decoder = decoder;
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
            None => match Box::pin(connect(up, o.server)).await {
                Ok(s) => s,
                Err(e) => {
                    // Nothing was sent: any request may move to another server.
                    ctx.observe.upstream_failed(o.upstream, o.server, &e.kind);
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
                write_static(client, b"HTTP/1.1 100 Continue\r\n\r\n", route.send_timeout)
                    .await
                    .map_err(|_| (Abort::Close, false))?;
            }
            Box::pin(stream_request_body(
                ctx,
                client,
                &mut stream,
                route,
                cbuf,
                out,
                body_left,
                decoder.take(),
                decoded,
            ))
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
        resp_out.clear();
        let mut any_byte = false;
        match read_response_head(&mut stream, rbuf, resp_out, plan, route, o, &mut any_byte).await {
            Ok(resp) => {
                ctx.upstreams.answered(o.upstream, o.server);
                let resp = match ctx.drain.is_draining() {
                    true => last_response_head(rbuf, resp_out, plan, route, o, resp),
                    false => resp,
                };
                rec.status = resp.status;
                rec.upstream_time = Some(crate::io::clock::now().saturating_duration_since(started));
                break (stream, resp);
            }
            // The server may have read the request before closing: only a request that is safe
            // to repeat goes out again (the pool already skips connections closed while idle).
            Err(FailureKind::ClosedEarly) if reused && resendable && o.idempotent => fresh_only = true,
            Err(kind) => {
                ctx.observe.upstream_failed(o.upstream, o.server, &kind);
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
        // Switch only now that the upstream really agreed: bytes it sent after the 101 head go
        // to the client with the head, bytes the client sent early go to the upstream.
        resp_out.extend_from_slice(&rbuf[resp.head_len..]);
        let res = write_out(client, resp_out, 0, route.send_timeout).await;
        res.map_err(|_| (Abort::Close, request_whole))?;
        if !cbuf.is_empty() {
            let res = write_out(&mut upstream, cbuf, 0, route.send_timeout).await;
            res.map_err(|_| (Abort::Close, request_whole))?;
            cbuf.clear();
        }
        return Ok(Done::Tunnel(upstream));
    }
    // The client's response head is in `resp_out`; relay it with the body.
    let complete = relay_response_body(client, &mut upstream, rbuf, resp_out, &resp, route, &ctx.pipes)
        .await
        .map_err(|a| (a, request_whole))?;
    let keep = o.client_keep_alive && !resp.close_client;
    drop(failover);
    Ok(Done::Http {
        keep,
        upstream,
        reusable: complete && resp.reusable && request_whole,
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

enum BodyAbort {
    Upstream(io::Error),
    Client(Option<Reply>),
}

/// Streams the rest of the request body from the client to the upstream.
#[allow(clippy::too_many_arguments)]
async fn stream_request_body<C: AsyncReadRent + SpliceClient>(
    ctx: &WorkerCtx,
    client: &mut C,
    upstream: &mut UpstreamConn,
    route: &RoutePlan,
    cbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    mut left: u64,
    decoder: Option<ChunkedDecoder>,
    mut decoded: u64,
) -> Result<(), BodyAbort> {
    let mut bbuf = ctx.bodies.get();
    let result = async {
        match decoder {
            None => {
                if left >= SPLICE_MIN_BODY {
                    if let Some((u, c)) = plain_pair(upstream, client) {
                        let res = splice_body(c, u, &ctx.pipes, Some(left), route.read_timeout, route.send_timeout);
                        match res.await {
                            Ok(n) => {
                                client.spliced(n, 0);
                                return Ok(());
                            }
                            // Nothing moved yet: the copy loop below relays the body.
                            Err(BodyError::NoPipe(_)) => {}
                            Err(BodyError::Read(_)) => return Err(BodyAbort::Client(None)),
                            Err(BodyError::Write(e)) => return Err(BodyAbort::Upstream(e)),
                        }
                    }
                }
                while left > 0 {
                    bbuf.clear();
                    let cap = bbuf.capacity();
                    let res = read_into(client, &mut bbuf, (left as usize).min(cap), cap, route.read_timeout).await;
                    match res {
                        Ok(0) | Err(_) => return Err(BodyAbort::Client(None)),
                        Ok(n) => left -= n as u64,
                    }
                    let res = write_out(upstream, &mut bbuf, 0, route.send_timeout).await;
                    res.map_err(BodyAbort::Upstream)?;
                }
            }
            Some(mut d) => {
                while !d.is_done() {
                    bbuf.clear();
                    let cap = bbuf.capacity();
                    let res = read_into(client, &mut bbuf, cap, cap, route.read_timeout).await;
                    match res {
                        Ok(0) | Err(_) => return Err(BodyAbort::Client(None)),
                        Ok(_) => {}
                    }
                    out.clear();
                    let used = reframe_request(&mut d, &bbuf, out, &mut decoded).map_err(|why| {
                        BodyAbort::Client(Some(Reply {
                            status: 400,
                            route: None,
                            location: None,
                            body: why.into(),
                            close: true,
                        }))
                    })?;
                    if route.max_body.is_some_and(|max| decoded > max) {
                        return Err(BodyAbort::Client(Some(Reply {
                            status: 413,
                            route: None,
                            location: None,
                            body: "request body larger than this route allows".into(),
                            close: true,
                        })));
                    }
                    if d.is_done() {
                        // Pipelined bytes after the body start the next request.
                        cbuf.extend_from_slice(&bbuf[used..]);
                    }
                    let res = write_out(upstream, out, 0, route.send_timeout).await;
                    res.map_err(BodyAbort::Upstream)?;
                }
            }
        }
        Ok(())
    }
    .await;
    ctx.bodies.put(bbuf);
    result
}

/// What the client will get, decided from the upstream's response head.
pub struct ResponsePlan {
    pub status: u16,
    pub framing: Framing,
    pub reusable: bool,
    /// Bytes of `rbuf` taken by the head.
    pub head_len: usize,
    /// Re-frame the body as chunked for the client (close-delimited upstream body, 1.1 client).
    pub chunk_for_client: bool,
    /// Pass a chunked upstream body through verbatim (1.1 client) or decode it (1.0 client).
    pub pass_chunked: bool,
    pub close_client: bool,
}

async fn read_response_head(
    upstream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    plan: &Plan,
    route: &RoutePlan,
    o: &Outgoing,
    any_byte: &mut bool,
) -> Result<ResponsePlan, FailureKind> {
    let deadline = crate::io::clock::now() + route.response_timeout;
    loop {
        let cap = rbuf.capacity();
        if rbuf.len() == cap {
            return Err(FailureKind::BadResponse("response head too large"));
        }
        let wait = deadline.saturating_duration_since(crate::io::clock::now());
        let res = read_into(upstream, rbuf, cap - rbuf.len(), 0, wait).await;
        match res {
            Ok(0) => {
                return Err(if rbuf.is_empty() {
                    FailureKind::ClosedEarly
                } else {
                    FailureKind::BadResponse("connection closed inside the response head")
                })
            }
            Ok(_) => *any_byte = true,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(FailureKind::ResponseTimeout(route.response_timeout))
            }
            Err(e)
                if rbuf.is_empty()
                    && matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
            {
                return Err(FailureKind::ClosedEarly)
            }
            Err(e) => return Err(FailureKind::Io(e)),
        }
        loop {
            match build_response_head(rbuf, out, plan, route, o)? {
                HeadParse::Partial => break,
                HeadParse::Interim(n) => {
                    // 1xx before the final response: ringway already answered 100-continue itself.
                    rbuf.drain(..n);
                    if rbuf.is_empty() {
                        break;
                    }
                }
                HeadParse::Final(plan) => return Ok(plan),
            }
        }
    }
}

/// The worker started draining while this response was on its way: the client's head says
/// `Connection: close`, so the client sends its next request elsewhere instead of onto a
/// connection about to close.
fn last_response_head(
    rbuf: &[u8],
    out: &mut Vec<u8>,
    plan: &Plan,
    route: &RoutePlan,
    o: &mut Outgoing,
    resp: ResponsePlan,
) -> ResponsePlan {
    if resp.close_client || !o.client_keep_alive || resp.status == 101 {
        return resp;
    }
    o.client_keep_alive = false;
    let mut head = Vec::with_capacity(out.len() + 24);
    match build_response_head(rbuf, &mut head, plan, route, o) {
        Ok(HeadParse::Final(r)) => {
            *out = head;
            r
        }
        _ => {
            o.client_keep_alive = true;
            resp
        }
    }
}

pub enum HeadParse {
    Partial,
    Interim(usize),
    Final(ResponsePlan),
}

/// Parses the upstream response head and writes the client's version of it into `out`.
pub fn build_response_head(
    rbuf: &[u8],
    out: &mut Vec<u8>,
    plan: &Plan,
    route: &RoutePlan,
    o: &Outgoing,
) -> Result<HeadParse, FailureKind> {
    // Uninitialised slots, as for request heads (`proxy::decide`).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let mut res = httparse::Response::new(&mut []);
    let head_len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, rbuf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(HeadParse::Partial),
            Err(_) => return Err(FailureKind::BadResponse("unparsable response head")),
        };
    let status = res.code.unwrap_or(0);
    if status == 101 {
        if !o.upgrade {
            return Err(FailureKind::BadResponse(
                "101 Switching Protocols to a request that did not ask to upgrade",
            ));
        }
        return Ok(HeadParse::Final(switching_head(&res, head_len, route, out)));
    }
    if (100..200).contains(&status) {
        return Ok(HeadParse::Interim(head_len));
    }
    if !(200..600).contains(&status) {
        return Err(FailureKind::BadResponse("status code out of range"));
    }
    let facts =
        inspect_response(status, res.version.unwrap_or(1), res.headers, o.is_head).map_err(FailureKind::BadResponse)?;
    let authority = plan.upstreams[o.upstream].servers[o.server].authority.as_str();

    let mut close_client = !o.client_keep_alive;
    let (chunk_for_client, pass_chunked) = match facts.framing {
        Framing::Chunked => (false, !o.client_http10),
        Framing::UntilClose => (!o.client_http10, false),
        _ => (false, false),
    };
    if o.client_http10 && matches!(facts.framing, Framing::Chunked | Framing::UntilClose) {
        close_client = true;
    }

    out.extend_from_slice(b"HTTP/1.1 ");
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let rules = &route.response_headers;
    let hsts = plan.listeners.get(o.listener).and_then(|l| l.hsts.as_deref());
    let mut lines = RawLines::new(rbuf);
    for h in res.headers.iter() {
        let kind = classify(h.name);
        if kind.is_hop_by_hop()
            || kind == Known::ContentLength
            || facts.connection_names.contains(h.name)
            || rules.drops(h.name.as_bytes())
            || (route.access.cors.is_some() && crate::auth::cors::is_cors_header(h.name.as_bytes()))
            || (hsts.is_some() && h.name.eq_ignore_ascii_case("strict-transport-security"))
        {
            continue;
        }
        let mapped = match kind {
            Known::Location | Known::ContentLocation => std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| map_location(route, v, authority, o.request_host.as_deref())),
            Known::SetCookie => std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| map_cookie_path(route, v)),
            _ => None,
        };
        match mapped {
            Some(value) => lines.header(out, h.name.as_bytes(), value.as_bytes()),
            None => lines.keep(out, h),
        }
    }
    lines.flush(out);
    for rule in rules.set.iter().chain(&rules.add) {
        header(out, rule.name.as_bytes(), rule.value.as_bytes());
    }
    out.extend_from_slice(&o.response_headers);
    if let Some(value) = hsts {
        header(out, b"Strict-Transport-Security", value.as_bytes());
    }
    match facts.framing {
        Framing::Length(len) => header_u64(out, b"Content-Length", len),
        Framing::None => {
            if let Some(len) = facts.content_length {
                header_u64(out, b"Content-Length", len);
            } else if status != 204 && status != 304 && !o.is_head {
                header(out, b"Content-Length", b"0");
            }
        }
        Framing::Chunked | Framing::UntilClose if !o.client_http10 => header(out, b"Transfer-Encoding", b"chunked"),
        Framing::Chunked | Framing::UntilClose => {}
    }
    if close_client {
        header(out, b"Connection", b"close");
    } else if o.client_http10 {
        header(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    Ok(HeadParse::Final(ResponsePlan {
        status,
        framing: facts.framing,
        reusable: facts.reusable,
        head_len,
        chunk_for_client,
        pass_chunked,
        close_client,
    }))
}

/// The client's copy of a `101 Switching Protocols` head: Upgrade kept, Connection: upgrade.
fn switching_head(
    res: &httparse::Response<'_, '_>,
    head_len: usize,
    route: &RoutePlan,
    out: &mut Vec<u8>,
) -> ResponsePlan {
    out.extend_from_slice(b"HTTP/1.1 101 ");
    out.extend_from_slice(res.reason.unwrap_or("Switching Protocols").as_bytes());
    out.extend_from_slice(b"\r\n");
    let rules = &route.response_headers;
    for h in res.headers.iter() {
        let kind = classify(h.name);
        if (kind.is_hop_by_hop() && kind != Known::Upgrade)
            || kind == Known::ContentLength
            || rules.drops(h.name.as_bytes())
        {
            continue;
        }
        header(out, h.name.as_bytes(), h.value);
    }
    for rule in rules.set.iter().chain(&rules.add) {
        header(out, rule.name.as_bytes(), rule.value.as_bytes());
    }
    header(out, b"Connection", b"upgrade");
    out.extend_from_slice(b"\r\n");
    ResponsePlan {
        status: 101,
        framing: Framing::None,
        reusable: false,
        head_len,
        chunk_for_client: false,
        pass_chunked: false,
        close_client: false,
    }
}

/// Relays the response body; Ok(true) when the upstream message ended cleanly (the connection is
/// reusable as far as framing goes). A body cut short closes the client connection (Abort::Close),
/// so the client never takes a truncated body for a complete one.
async fn relay_response_body<C: AsyncWriteRent + SpliceClient>(
    client: &mut C,
    upstream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    resp: &ResponsePlan,
    route: &RoutePlan,
    pipes: &PipePool,
) -> Result<bool, Abort> {
    let t_send = route.send_timeout;
    let t_read = route.read_timeout;
    let mut pos = resp.head_len;
    let client_err = |_| Abort::Close;
    match resp.framing {
        Framing::None => {
            let res = write_out(client, out, 0, t_send).await;
            res.map_err(client_err)?;
            Ok(rbuf.len() == pos)
        }
        Framing::Length(n) => {
            let avail = ((rbuf.len() - pos) as u64).min(n) as usize;
            out.extend_from_slice(&rbuf[pos..pos + avail]);
            let extra = rbuf.len() > pos + avail;
            let mut left = n - avail as u64;
            let res = write_out(client, out, 0, t_send).await;
            res.map_err(client_err)?;
            if left >= SPLICE_MIN_BODY {
                if let Some((u, c)) = plain_pair(upstream, client) {
                    match Box::pin(splice_body(u, c, pipes, Some(left), t_read, t_send)).await {
                        Ok(n) => {
                            client.spliced(0, n);
                            return Ok(!extra);
                        }
                        Err(BodyError::NoPipe(_)) => {}
                        Err(_) => return Err(Abort::Close),
                    }
                }
            }
            while left > 0 {
                rbuf.clear();
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, (left as usize).min(cap), cap, t_read).await;
                match res {
                    Ok(0) | Err(_) => return Err(Abort::Close),
                    Ok(got) => left -= got as u64,
                }
                let res = write_out(client, rbuf, 0, t_send).await;
                res.map_err(client_err)?;
            }
            Ok(!extra)
        }
        Framing::Chunked => {
            let mut d = ChunkedDecoder::new();
            loop {
                while pos < rbuf.len() && !d.is_done() {
                    let step = d.step(&rbuf[pos..]).map_err(|_| Abort::Close)?;
                    let (n, data) = match step {
                        Step::Data(n) => (n, true),
                        Step::Skip(n) | Step::Done(n) => (n, false),
                    };
                    // 1.1 clients get the (validated) framing verbatim; 1.0 clients only the data.
                    if resp.pass_chunked || data {
                        out.extend_from_slice(&rbuf[pos..pos + n]);
                    }
                    pos += n;
                }
                let res = write_out(client, out, 0, t_send).await;
                res.map_err(client_err)?;
                if d.is_done() {
                    return Ok(pos == rbuf.len());
                }
                out.clear();
                rbuf.clear();
                pos = 0;
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, cap, cap, t_read).await;
                match res {
                    Ok(0) | Err(_) => return Err(Abort::Close),
                    Ok(_) => {}
                }
            }
        }
        Framing::UntilClose => {
            // Passed on unchanged between plain sockets: everything after the first write splices.
            let splice = !resp.chunk_for_client && plain_pair(upstream, client).is_some();
            loop {
                if pos < rbuf.len() {
                    if resp.chunk_for_client {
                        write_chunk_header(out, rbuf.len() - pos);
                        out.extend_from_slice(&rbuf[pos..]);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&rbuf[pos..]);
                    }
                }
                let res = write_out(client, out, 0, t_send).await;
                res.map_err(client_err)?;
                if let Some((u, c)) = plain_pair(upstream, client).filter(|_| splice) {
                    match Box::pin(splice_body(u, c, pipes, None, t_read, t_send)).await {
                        Ok(n) => {
                            client.spliced(0, n);
                            break;
                        }
                        Err(BodyError::NoPipe(_)) => {}
                        Err(_) => return Err(Abort::Close),
                    }
                }
                out.clear();
                rbuf.clear();
                pos = 0;
                let cap = rbuf.capacity();
                let res = read_into(upstream, rbuf, cap, cap, t_read).await;
                match res {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(Abort::Close),
                }
            }
            if resp.chunk_for_client {
                write_static(client, LAST_CHUNK, t_send).await.map_err(client_err)?;
            }
            Ok(false)
        }
    }
}
