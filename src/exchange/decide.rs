//! The steps of one request that need no I/O, in order: check the head (`http::request`), route
//! (`route`), access (`access`), rewrite into the upstream head (`upstream_head`). Everything
//! that can be refused is refused here, before any byte goes upstream. The server is chosen
//! later, in `forward`, so a failed attempt can move to another one.

use super::access;
use super::outgoing::{CacheRequest, Outgoing};
use super::reply::Reply;
use super::request::RequestHead;
use super::rewrite::check_path;
use super::route::{redirect_to_https, request_keeps_alive, route};
use super::upstream_head::write_upstream_head;
use crate::auth::{self, WorkerAccess};
use crate::config::Plan;
use crate::http::client_info::ClientInfo;
use crate::http::request::inspect;
use crate::http::RequestError;
use crate::observe::Record;
use crate::upstream::affinity;
use std::borrow::Cow;

/// What happens to a request after the steps without I/O.
pub enum Decision {
    Forward(Outgoing),
    /// A response ringway writes itself: a refusal or a redirect.
    Reply(Reply),
    /// The access step's answer (401, 403, 429, CORS preflight, an auth service's own), framed
    /// like a `Reply`.
    Answer(Reply),
    /// Forward once the auth service agrees (see `access::authorize`).
    Authorize(Outgoing, auth::forward::Subrequest),
}

impl Decision {
    /// While draining, the response in progress is the connection's last: `Connection: close`.
    pub fn last_response(self) -> Decision {
        match self {
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
            Decision::Answer(mut r) => {
                r.close = true;
                Decision::Answer(r)
            }
        }
    }
}

/// Runs the steps for `req` and writes the upstream request head into `out`; notes the route in
/// the request's record. The request id must already be resolved into `rec`.
pub fn decide(
    plan: &Plan,
    access: &WorkerAccess,
    info: &ClientInfo,
    req: &RequestHead<'_>,
    out: &mut Vec<u8>,
    rec: &mut Record,
) -> Decision {
    let (method, target, version) = (req.method, req.target, req.version);
    if target.len() > plan.server.max_uri_size {
        return Decision::Reply(Reply::refused(RequestError::UriTooLong));
    }
    if let Some(base) = &plan
        .listeners
        .get(info.listener as usize)
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
    let hit = match route(plan, info.listener as usize, &facts, &path) {
        Ok(hit) => hit,
        Err(reply) => {
            rec.route = reply.route;
            return Decision::Reply(reply);
        }
    };
    rec.route = Some(hit.route);
    let route = &plan.routes[hit.route];
    let client = auth::client_addr::resolve(&plan.access.trusted_proxies, info.peer.ip(), req.headers);
    let (granted, subrequest) = match access::check(plan, hit.route, access, info, req, &facts, client) {
        Ok(allowed) => allowed,
        Err(answer) => return Decision::Answer(answer),
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
        req,
        &facts,
        upgrade,
        &path,
        hit.matched,
        &rec.request_id,
        out,
    );
    let request_host = (route.rewrites_path())
        .then(|| facts.host.map(|h| String::from_utf8_lossy(h).into_owned()))
        .flatten();
    let cache = (route.cache
        && matches!(method, "GET" | "HEAD")
        && upgrade.is_none()
        && matches!(
            facts.framing,
            crate::http::Framing::None | crate::http::Framing::Length(0)
        ))
    .then(|| {
        Box::new(CacheRequest {
            host: facts
                .host
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .unwrap_or_default(),
            path: String::from_utf8_lossy(facts.target.path).into_owned(),
        })
    });
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
        cors_origin: granted.cors_origin.map(<[u8]>::to_vec),
        listener: info.listener as usize,
        proxy_header: plan.upstreams[route.upstream].send_proxy.map(|_| {
            let unspecified = std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            (info.peer, info.local.unwrap_or(unspecified))
        }),
        compress: route
            .compress
            .then(|| crate::compress::offer(req.headers, facts.is_head, version == 0, facts.upgrade.is_some()))
            .flatten(),
        cache,
    };
    match subrequest {
        None => Decision::Forward(outgoing),
        Some(s) => Decision::Authorize(outgoing, s),
    }
}
