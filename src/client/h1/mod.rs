//! One client connection, start to end. Each request walks the same named steps:
//! read head → decide (route, check, rewrite into the upstream head) → forward (see `forward`)
//! → keep the connection for the next request, or close it.
//!
//! Connection states: `Idle` (waiting for a first byte, keep-alive timeout) → `Head` (collecting
//! a head under `header_timeout`) → `Exchange` (request and response streaming) → back to `Idle`
//! when both sides allow keep-alive, otherwise closed.

use crate::auth::{self, WorkerAccess};
use crate::body::splice::SpliceClient;
use crate::config::{Plan, RoutePlan};
use crate::exchange::forward::{self, Next, Outgoing};
use crate::exchange::rewrite::{check_path, upstream_path};
use crate::http::headers::{classify, Known};
use crate::http::normalize_host;
use crate::http::request::{inspect, RequestFacts};
use crate::http::write::{header, header_u64, simple_response, RawLines};
use crate::http::{has_bare_cr_or_lf, Framing, RequestError};
use crate::io::owned::{read_into, write_from, write_out, BufPool};
use crate::observe::{ConnGauge, Counted, Record, RequestId, TunnelWatch, WorkerObserve};
use crate::server::Drain;
use crate::tls::{Session, TlsStream};
use crate::tunnel::{ready_relay, splice_tunnel, PipePool, RelayEnd, DEFAULT_MAX_IDLE_PIPES, DEFAULT_PIPE_SIZE};
use crate::upstream::{affinity, Board, ConnPool, UpstreamConn, Upstreams};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use std::borrow::Cow;
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Everything a worker's connections share: the plan and this worker's own pools.
pub struct WorkerCtx {
    pub plan: Arc<Plan>,
    pub pool: ConnPool,
    /// Server choice: this worker's balancing state over the process-wide health board.
    pub upstreams: Upstreams,
    /// Head-sized buffers: the upstream request head (with a small body) and the client's
    /// response head (with the start of the body).
    pub heads: BufPool,
    /// Body-sized buffers for reading the upstream response and streaming request bodies.
    pub bodies: BufPool,
    /// Pipes lent to splice tunnels while bytes are in flight.
    pub pipes: PipePool,
    /// This worker's access state: rate-limit buckets, remembered logins.
    pub access: WorkerAccess,
    /// Draining state (shutdown or takeover) and each connection's slot: keep-alive then ends.
    pub drain: Drain,
    /// This worker's counters and access log.
    pub observe: WorkerObserve,
}

impl WorkerCtx {
    pub fn new(plan: Arc<Plan>, board: Arc<Board>, observe: WorkerObserve) -> Self {
        WorkerCtx {
            observe,
            pool: ConnPool::new(&plan),
            upstreams: Upstreams::new(&plan, board),
            heads: BufPool::new(16 * 1024, 128 * 1024, 32),
            bodies: BufPool::new(64 * 1024, 64 * 1024, 16),
            pipes: PipePool::new(DEFAULT_PIPE_SIZE, DEFAULT_MAX_IDLE_PIPES),
            access: WorkerAccess::new(&plan),
            drain: Drain::default(),
            plan,
        }
    }

    /// Starts draining: idle keep-alive clients are closed, and so are idle upstream connections
    /// (none are pooled from now on). The successor opens its own; a draining process holding
    /// them would only keep the servers' slots (or threads) busy until it exits, which can stall
    /// a server that serves connections from a bounded set of workers.
    pub fn begin_drain(&self) {
        self.drain.begin();
        self.pool.clear();
    }
}

/// Facts about the client connection, formatted once at accept.
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub peer_ip: String,
    pub local_port: String,
    pub scheme: &'static str,
    /// Index of the listener (in `Plan::listeners`) that accepted the connection.
    pub listener: usize,
    /// The connection's slot in the worker's [`Drain`] (idle ones are closed when draining).
    pub slot: usize,
}

impl ClientInfo {
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, tls: bool) -> Self {
        ClientInfo {
            peer,
            peer_ip: peer.ip().to_string(),
            local_port: local.map(|l| l.port().to_string()).unwrap_or_default(),
            scheme: if tls { "https" } else { "http" },
            listener: 0,
            slot: crate::server::NO_SLOT,
        }
    }
}

/// A response ringway writes itself.
pub struct Reply {
    pub status: u16,
    /// The route that produced it, if any (redirects), for `ringway route`.
    pub route: Option<usize>,
    pub location: Option<Vec<u8>>,
    pub body: Cow<'static, str>,
    pub close: bool,
}

impl Reply {
    fn refused(e: RequestError) -> Self {
        Reply {
            status: e.status(),
            route: None,
            location: None,
            body: Cow::Borrowed(e.reason()),
            close: true,
        }
    }
}

pub enum Decision {
    Forward(Outgoing),
    Reply(Reply),
    /// A complete response from the access step (401, 403, 429, CORS preflight, auth relay).
    Answer(auth::Answer),
    /// Forward once the auth service agrees (see `auth::forward::authorize`).
    Authorize(Outgoing, auth::forward::Subrequest),
}

const MAX_HEADERS: usize = 128;

/// A client connection that can become a tunnel: plain TCP to plain TCP splices; anything with
/// TLS on either side goes through the readiness copy relay (a pooled buffer only while bytes are
/// in flight).
///
/// The relay runs as a task of its own, so that an idle tunnel does not keep the (much larger)
/// HTTP state machine allocated for hours. That task is what an idle tunnel costs, so it owns
/// each piece exactly once: the sockets, the connection guard, the worker context; the limits
/// are read through the context (`route` indexes the plan's routes).
pub trait ClientStream: AsyncReadRent + AsyncWriteRent + SpliceClient + Sized {
    fn spawn_tunnel<G: 'static>(
        self,
        upstream: UpstreamConn,
        ctx: Rc<WorkerCtx>,
        route: usize,
        guard: (G, TunnelWatch),
    );
}

impl ClientStream for TcpStream {
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
                    watch.closed(&ctx, &stats);
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
        watch.closed(&ctx, &stats);
    });
}

impl<S: Session + 'static> ClientStream for TlsStream<S> {
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
    // A fresh connection gets its first request served even while draining (its client has no
    // reason to retry); an idle keep-alive connection is closed as soon as draining starts.
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
                ctx.observe.finish(&plan, &mut rec, &info, &client);
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
                ctx.observe.finish(&plan, &mut rec, &info, &client);
                return;
            }
        };
        rec.begin(&cbuf[..head_len]);
        let mut out = ctx.heads.get();
        let decision = decide_with(&plan, &ctx.access, &info, &cbuf[..head_len], &mut out, &mut rec);
        // Access step with I/O: forward auth asks its service before anything goes upstream.
        let decision = match decision {
            Decision::Authorize(outgoing, sub) => {
                Box::pin(auth::forward::authorize(&ctx, outgoing, sub, &mut out)).await
            }
            d => d,
        };
        let decision = if ctx.drain.is_draining() {
            last_response(decision)
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
                let exchange = forward::exchange(&ctx, &mut client, cbuf, head_len, out, outgoing, &mut rec);
                let (next, buf) = Box::pin(exchange).await;
                cbuf = buf;
                match next {
                    Next::KeepAlive => true,
                    Next::Close => false,
                    Next::Tunnel(upstream) => {
                        ctx.observe.finish(&plan, &mut rec, &info, &client);
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
        ctx.observe.finish(&plan, &mut rec, &info, &client);
        if !keep {
            return;
        }
        if cbuf.capacity() > 64 * 1024 {
            cbuf.shrink_to(4096.max(cbuf.len()));
        }
    }
}

/// While draining, the response in progress is the connection's last: `Connection: close`.
fn last_response(decision: Decision) -> Decision {
    match decision {
        Decision::Forward(mut o) => {
            o.client_keep_alive = false;
            Decision::Forward(o)
        }
        Decision::Authorize(mut o, sub) => {
            o.client_keep_alive = false;
            Decision::Authorize(o, sub)
        }
        Decision::Reply(mut r) => {
            r.close = true;
            Decision::Reply(r)
        }
        d => d,
    }
}

enum HeadRead {
    Complete(usize),
    Closed,
    TimedOut,
    Refused(RequestError),
}

/// Collects one request head: waits up to `idle` for its first byte, then `header_timeout` for
/// the rest. Bytes after the head (body, pipelined requests) stay in the buffer. With `drain`,
/// the wait for a first byte is marked idle in the worker's drain state, so that draining
/// ends it (the read sees end-of-stream: `Closed`).
async fn read_head<C: AsyncReadRent>(
    client: &mut C,
    mut buf: Vec<u8>,
    idle: Duration,
    header_timeout: Duration,
    max_head: usize,
    max_uri: usize,
    drain: Option<(&Drain, usize)>,
) -> (HeadRead, Vec<u8>) {
    let mut deadline = None;
    let mut scanned: usize = 0;
    loop {
        // Leading CRLFs between pipelined requests are allowed (RFC 9112 §2.2).
        let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if skip > 0 {
            buf.drain(..skip);
            scanned = 0;
        }
        if !buf.is_empty() {
            if let Some(end) = crate::http::find_head_end(&buf[scanned.saturating_sub(3)..]) {
                return (HeadRead::Complete(scanned.saturating_sub(3) + end + 4), buf);
            }
            let settled = if buf.last() == Some(&b'\r') {
                buf.len() - 1
            } else {
                buf.len()
            };
            if has_bare_cr_or_lf(&buf[..settled]) {
                return (
                    HeadRead::Refused(RequestError::Malformed("bare CR or LF in the request head")),
                    buf,
                );
            }
            if buf.len() >= max_head {
                let in_request_line = memchr::memchr(b'\n', &buf).is_none();
                let e = if in_request_line && buf.len() > max_uri {
                    RequestError::UriTooLong
                } else {
                    RequestError::HeadTooLarge
                };
                return (HeadRead::Refused(e), buf);
            }
            scanned = buf.len();
        }
        let wait = match deadline {
            None if buf.is_empty() => idle,
            None => {
                deadline = Some(crate::io::clock::now() + header_timeout);
                header_timeout
            }
            Some(d) => d.saturating_duration_since(crate::io::clock::now()),
        };
        let room = max_head - buf.len();
        let idle = drain.filter(|_| buf.is_empty() && deadline.is_none());
        let res = match idle {
            None => read_into(client, &mut buf, room, 4096.min(room), wait).await,
            Some((d, _)) if d.is_draining() => return (HeadRead::Closed, buf),
            Some((d, slot)) => {
                d.set_idle(slot, true);
                let r = read_into(client, &mut buf, room, 4096.min(room), wait).await;
                d.set_idle(slot, false);
                r
            }
        };
        match res {
            Ok(0) => return (HeadRead::Closed, buf),
            Ok(_) => {
                if deadline.is_none() {
                    deadline = Some(crate::io::clock::now() + header_timeout);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return (
                    if buf.is_empty() && deadline.is_none() {
                        HeadRead::Closed
                    } else {
                        HeadRead::TimedOut
                    },
                    buf,
                );
            }
            Err(_) => return (HeadRead::Closed, buf),
        }
    }
}

pub async fn reply<C: AsyncWriteRent>(client: &mut C, r: Reply, t: Duration) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    let loc: Vec<(&str, &[u8])> = r.location.as_deref().map(|l| ("Location", l)).into_iter().collect();
    simple_response(&mut out, r.status, &loc, &r.body, r.close);
    write_out(client, &mut out, 0, t).await
}

/// Parses and checks a complete head, picks the route, and writes the upstream request head into
/// `out`. Pure computation: everything that can be refused is refused here, before any I/O. The
/// server is chosen later, in the exchange, so a failed attempt can move to another one.
pub fn decide(plan: &Plan, access: &WorkerAccess, info: &ClientInfo, head: &[u8], out: &mut Vec<u8>) -> Decision {
    decide_with(plan, access, info, head, out, &mut Record::new(false))
}

/// [`decide`], noting in the request's record its route and request id.
pub fn decide_with(
    plan: &Plan,
    access: &WorkerAccess,
    info: &ClientInfo,
    head: &[u8],
    out: &mut Vec<u8>,
    rec: &mut Record,
) -> Decision {
    // Left uninitialised: zeroing 128 header slots on every request costs more than parsing a
    // typical head; httparse writes each slot it hands back.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Decision::Reply(Reply::refused(RequestError::Malformed("incomplete request head")))
        }
        Err(httparse::Error::TooManyHeaders) => return Decision::Reply(Reply::refused(RequestError::HeadTooLarge)),
        Err(httparse::Error::Version) => {
            return Decision::Reply(Reply::refused(RequestError::Malformed("unsupported HTTP version")))
        }
        Err(_) => return Decision::Reply(Reply::refused(RequestError::Malformed("malformed request head"))),
    }
    rec.request_id.resolve(req.headers);
    if has_bare_cr_or_lf(head) {
        return Decision::Reply(Reply::refused(RequestError::Malformed(
            "bare CR or LF in the request head",
        )));
    }
    let (method, target, version) = (
        req.method.unwrap_or(""),
        req.path.unwrap_or("").as_bytes(),
        req.version.unwrap_or(1),
    );
    if target.len() > plan.server.max_uri_size {
        return Decision::Reply(Reply::refused(RequestError::UriTooLong));
    }
    if let Some(base) = &plan
        .listeners
        .get(info.listener)
        .and_then(|l| l.redirect_https.as_ref())
    {
        return Decision::Reply(redirect_to_https(
            base,
            target,
            version == 1 && request_keeps_alive(req.headers),
        ));
    }
    let facts = match inspect(method, target, version, req.headers) {
        Ok(f) => f,
        Err(e) => return Decision::Reply(Reply::refused(e)),
    };
    let path = match check_path(facts.target.path) {
        Ok(p) => p,
        Err(e) => return Decision::Reply(Reply::refused(RequestError::Malformed(e.reason()))),
    };
    let mut host_buf = [0u8; 256];
    let host = facts.host.and_then(|h| normalize_host(h, &mut host_buf));
    let has_body = facts.framing != Framing::None;
    let Some(hit) = plan.table.lookup(&plan.routes, host, &path) else {
        return Decision::Reply(Reply {
            status: 404,
            route: None,
            location: None,
            body: "no route matches this request".into(),
            close: has_body || !facts.keep_alive,
        });
    };
    rec.route = Some(hit.route);
    let route = &plan.routes[hit.route];
    if hit.bare_prefix {
        let mut loc = Vec::with_capacity(path.len() + 1 + facts.target.query.len());
        loc.extend_from_slice(&path);
        loc.push(b'/');
        loc.extend_from_slice(facts.target.query);
        return Decision::Reply(Reply {
            status: 301,
            route: Some(hit.route),
            location: Some(loc),
            body: Cow::Borrowed(""),
            close: has_body || !facts.keep_alive,
        });
    }
    if let (Some(max), Framing::Length(n)) = (route.max_body, facts.framing) {
        if n > max {
            return Decision::Reply(Reply::refused(RequestError::BodyTooLarge));
        }
    }
    // Access step: address rules, rate limit, CORS preflight, authentication.
    let client = auth::client_addr::resolve(&plan.access.trusted_proxies, info.peer.ip(), req.headers);
    let access_req = auth::Request {
        method,
        path: facts.target.path,
        query: facts.target.query,
        host: facts.host,
        headers: req.headers,
        client,
        scheme: info.scheme,
        close: has_body || !facts.keep_alive,
        is_head: facts.is_head,
    };
    let (granted, subrequest) = match auth::check(plan, hit.route, access, &access_req) {
        auth::Verdict::Allow(g) => (g, None),
        auth::Verdict::Authorize(g, s) => (g, Some(s)),
        auth::Verdict::Reply(a) => return Decision::Answer(a),
    };
    let client_ip: Cow<str> = if client == info.peer.ip() {
        Cow::Borrowed(&info.peer_ip)
    } else {
        Cow::Owned(client.to_string())
    };
    // Upgrade is forwarded only for protocols the route allows, and never for HTTP/1.0.
    let upgrade = facts.upgrade.filter(|u| version == 1 && route.allows_upgrade(u));
    let host_at = write_upstream_head(
        plan,
        hit.route,
        &granted,
        &client_ip,
        info,
        method,
        &facts,
        upgrade,
        &path,
        hit.matched,
        head,
        req.headers,
        &rec.request_id,
        out,
    );
    let request_host = (route.rewrites_path())
        .then(|| facts.host.map(|h| String::from_utf8_lossy(h).into_owned()))
        .flatten();
    let outgoing = Outgoing {
        route: hit.route,
        upstream: route.upstream,
        server: 0,
        affinity: affinity(&plan.upstreams[route.upstream], client, req.headers),
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        host_at,
        framing: facts.framing,
        expect_continue: facts.expect_continue,
        is_head: facts.is_head,
        client_keep_alive: facts.keep_alive,
        client_http10: version == 0,
        request_host,
        upgrade: upgrade.is_some(),
        response_headers: auth::response_headers(plan, hit.route, &granted),
        listener: info.listener,
    };
    match subrequest {
        None => Decision::Forward(outgoing),
        Some(s) => Decision::Authorize(outgoing, s),
    }
}

/// `redirect_https`: 308 (method and body kept by the client) to the same path and query. The
/// request body, if any, is not read, so such a connection is closed after the reply.
fn redirect_to_https(base: &str, target: &[u8], keep_alive: bool) -> Reply {
    let mut loc = Vec::with_capacity(base.len() + target.len());
    loc.extend_from_slice(base.as_bytes());
    if target.first() == Some(&b'/') {
        loc.extend_from_slice(target);
    } else {
        // absolute-form or `*`: keep only the path and query of an absolute URI.
        let after_scheme = target
            .windows(3)
            .position(|w| w == b"://")
            .map(|i| &target[i + 3..])
            .unwrap_or(b"");
        match after_scheme.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) if after_scheme[i] == b'/' => loc.extend_from_slice(&after_scheme[i..]),
            Some(i) => {
                loc.push(b'/');
                loc.extend_from_slice(&after_scheme[i..]);
            }
            None => loc.push(b'/'),
        }
    }
    Reply {
        status: 308,
        route: None,
        location: Some(loc),
        body: Cow::Borrowed(""),
        close: !keep_alive,
    }
}

/// A bodiless HTTP/1.1 request without `Connection: close` (the redirect may keep the connection).
fn request_keeps_alive(headers: &[httparse::Header<'_>]) -> bool {
    let mut keep = true;
    for h in headers {
        match classify(h.name) {
            Known::ContentLength | Known::TransferEncoding => return false,
            Known::Connection if h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close")) => keep = false,
            _ => {}
        }
    }
    keep
}

/// Writes the upstream request head; returns where the Host value sits when it names the server
/// (a route with `preserve_host = false`), so the exchange can put in the server it chose.
#[allow(clippy::too_many_arguments)]
fn write_upstream_head(
    plan: &Plan,
    route_id: usize,
    granted: &auth::Granted<'_>,
    client_ip: &str,
    info: &ClientInfo,
    method: &str,
    facts: &RequestFacts<'_>,
    upgrade: Option<&[u8]>,
    path: &[u8],
    matched: usize,
    head: &[u8],
    headers: &[httparse::Header<'_>],
    request_id: &RequestId,
    out: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    let route: &RoutePlan = &plan.routes[route_id];
    let fwd = route.forwarding;
    let upstream = &plan.upstreams[route.upstream];
    // Behind trusted_proxies, an untrusted peer's own X-Forwarded-For is not passed on.
    let pass_client_xff = auth::client_addr::forwards_client_list(&plan.access.trusted_proxies, info.peer.ip());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    upstream_path(route, path, matched, out);
    out.extend_from_slice(facts.target.query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (host_value, names_server): (&[u8], bool) = match facts.host {
        Some(h) if route.preserve_host => (h, false),
        _ => (upstream.servers[0].authority.as_bytes(), true),
    };
    let host_start = out.len() + b"Host: ".len();
    header(out, b"Host", host_value);
    let host_at = names_server.then_some((host_start, host_start + host_value.len()));

    let mut client_xff = false;
    let prefix_header = fwd.x_forwarded_prefix && route.rewrites_path();
    let mut lines = RawLines::new(head);
    for h in headers {
        let kind = classify(h.name);
        let skip = match kind {
            Known::Host | Known::ContentLength | Known::Expect => true,
            k if k.is_hop_by_hop() => true,
            Known::XForwardedFor if fwd.x_forwarded_for => {
                client_xff = pass_client_xff;
                true
            }
            Known::XForwardedProto => fwd.x_forwarded_proto,
            Known::XForwardedHost => fwd.x_forwarded_host,
            Known::XForwardedPort => fwd.x_forwarded_port,
            Known::XRealIp => fwd.x_real_ip,
            Known::XForwardedPrefix => prefix_header,
            _ => false,
        };
        if skip
            || crate::observe::request_id::is_request_id_header(h.name)
            || facts.connection_names.contains(h.name)
            || route.request_headers.drops(h.name.as_bytes())
            || plan.access.is_identity_header(h.name)
        {
            continue;
        }
        lines.keep(out, h);
    }
    lines.flush(out);
    for rule in route.request_headers.set.iter().chain(&route.request_headers.add) {
        header(out, rule.name.as_bytes(), rule.value.as_bytes());
    }
    auth::write_identity(out, plan, route_id, granted);
    header(out, b"X-Request-Id", request_id.as_bytes());
    if fwd.x_forwarded_for {
        out.extend_from_slice(b"X-Forwarded-For: ");
        if client_xff {
            for h in headers.iter().filter(|h| classify(h.name) == Known::XForwardedFor) {
                out.extend_from_slice(crate::http::trim(h.value));
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(info.peer_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if fwd.x_real_ip {
        header(out, b"X-Real-IP", client_ip.as_bytes());
    }
    if fwd.x_forwarded_proto {
        header(out, b"X-Forwarded-Proto", info.scheme.as_bytes());
    }
    if fwd.x_forwarded_host {
        if let Some(h) = facts.host {
            header(out, b"X-Forwarded-Host", h);
        }
    }
    if fwd.x_forwarded_port && !info.local_port.is_empty() {
        header(out, b"X-Forwarded-Port", info.local_port.as_bytes());
    }
    if prefix_header {
        let public = if route.key.is_empty() { "/" } else { route.key.as_str() };
        header(out, b"X-Forwarded-Prefix", public.as_bytes());
    }
    if let Some(protocol) = upgrade {
        header(out, b"Connection", b"upgrade");
        header(out, b"Upgrade", protocol);
    }
    match facts.framing {
        Framing::Length(n) => header_u64(out, b"Content-Length", n),
        Framing::Chunked => header(out, b"Transfer-Encoding", b"chunked"),
        Framing::None | Framing::UntilClose => {
            // Methods whose semantics carry a body get an explicit empty one, as nginx does.
            if matches!(method, "POST" | "PUT" | "PATCH") {
                header(out, b"Content-Length", b"0");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    host_at
}
