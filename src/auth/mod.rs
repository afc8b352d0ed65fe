//! Access control, the step between routing and forwarding: who the client is (`client_addr`),
//! whether its address may come in (`ip`), how fast (`rate`), CORS preflights (`cors`), and who
//! the user is (`htpasswd` basic auth, or a `forward` subrequest to an auth service). The result
//! is a verdict: allow (with the identity to pass upstream), reply now, or ask the auth service.
//!
//! Identity headers (`identity_header`, the targets of `copy_headers`, `identity_static`) are
//! stripped from every client request on every route, in any casing and any number of copies,
//! before the proxy writes its own: no client can pose as a user by sending one.

pub mod client_addr;
pub mod cors;
pub use crate::config::{cidr as ip, htpasswd};
pub mod forward;
pub mod rate;

use crate::config::{AuthMethod, Plan};
use crate::http::reply::{Reply, ReplyBody};
use crate::http::write::header;
use rate::RateLimiter;
use std::net::IpAddr;
use std::time::Instant;

/// One worker's mutable access state: rate buckets and remembered basic-auth checks.
pub struct WorkerAccess {
    rate: RateLimiter,
    memory: htpasswd::Memory,
}

impl WorkerAccess {
    pub fn new(plan: &Plan) -> Self {
        WorkerAccess {
            rate: RateLimiter::new(plan.routes.iter().map(|r| r.access.rate.as_ref()), plan.server.workers),
            memory: htpasswd::Memory::new(plan.access.auths.len()),
        }
    }
}

/// What the access step needs to know about one request.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query as the client sent them (before any rewrite).
    pub path: &'a [u8],
    pub query: &'a [u8],
    pub host: Option<&'a [u8]>,
    pub headers: &'a [httparse::Header<'a>],
    pub client: IpAddr,
    pub scheme: &'static str,
    /// Whether a reply written now must close the connection (unread body, or client asked).
    pub close: bool,
    pub is_head: bool,
}

/// What the request may do after the access step.
pub enum Verdict<'a> {
    Allow(Granted<'a>),
    /// Answer the client with this and forward nothing.
    Reply(Reply),
    /// Ask the auth service first (see `forward::authorize`).
    Authorize(Granted<'a>, forward::Subrequest),
}

/// What an allowed request carries upstream and back.
#[derive(Default)]
pub struct Granted<'a> {
    /// The user basic auth proved.
    pub user: Option<&'a str>,
    /// The Origin to answer with CORS headers.
    pub cors_origin: Option<&'a [u8]>,
}

/// The access step: address rules, rate limit, CORS preflight, then authentication.
pub fn check<'a>(plan: &'a Plan, route: usize, w: &WorkerAccess, req: &Request<'a>) -> Verdict<'a> {
    let access = &plan.routes[route].access;
    if access.deny.as_ref().is_some_and(|d| d.contains(req.client))
        || access.allow.as_ref().is_some_and(|a| !a.contains(req.client))
    {
        return Verdict::Reply(Reply::text(403, "access from this address is not allowed", req.close));
    }
    if access.rate.is_some() {
        if let Err(secs) = w.rate.take(route, req.client, Instant::now()) {
            let retry = itoa::Buffer::new().format(secs).as_bytes().to_vec();
            return Verdict::Reply(Reply::text(429, "too many requests", req.close).with("Retry-After", retry));
        }
    }
    let mut granted = Granted::default();
    if let Some(cors) = &access.cors {
        let origin = find(req.headers, "origin");
        let preflight = req.method == "OPTIONS" && find(req.headers, "access-control-request-method").is_some();
        match (origin.and_then(|o| cors.allowed(o)), preflight) {
            (Some(o), true) => {
                let mut reply = Reply::text(204, "", req.close);
                reply.body = ReplyBody::None;
                cors.preflight_fields(o, |name, value| reply.fields.push((name.into(), value.to_vec())));
                return Verdict::Reply(reply);
            }
            (None, true) => {
                return Verdict::Reply(Reply::text(
                    403,
                    "CORS preflight from an origin this route does not allow",
                    req.close,
                ))
            }
            (o, false) => granted.cors_origin = o,
        }
    }
    let Some(auth_id) = access.auth else {
        return Verdict::Allow(granted);
    };
    match &plan.access.auths[auth_id].method {
        AuthMethod::Basic(basic) => {
            let mut buf = [0u8; 512];
            let creds = find(req.headers, "authorization").and_then(|v| htpasswd::decode_basic(v, &mut buf));
            let user = creds.and_then(|(name, pass)| {
                w.memory
                    .check(auth_id, &basic.users, name, pass, basic.remember, Instant::now())
            });
            match user {
                Some(id) => {
                    granted.user = Some(basic.users.get(id).name.as_str());
                    Verdict::Allow(granted)
                }
                None => Verdict::Reply(
                    Reply::text(401, "authentication required", req.close)
                        .with("WWW-Authenticate", basic.challenge.as_bytes()),
                ),
            }
        }
        AuthMethod::Forward(fa) => Verdict::Authorize(granted, forward::Subrequest::build(auth_id, fa, req)),
    }
}

/// Writes the identity headers for an allowed request (after the client's copies were dropped).
pub fn write_identity(out: &mut Vec<u8>, plan: &Plan, route: usize, granted: &Granted<'_>) {
    let access = &plan.routes[route].access;
    if let Some((name, value)) = &access.identity_static {
        header(out, name.as_bytes(), value.as_bytes());
    }
    if let (Some(user), Some(auth)) = (granted.user, access.auth) {
        if let Some(name) = &plan.access.auths[auth].identity_header {
            header(out, name.as_bytes(), user.as_bytes());
        }
    }
}

/// The first value of a header, by lower-case name; Cookie and X-Forwarded-For are not looked
/// up this way (they may repeat).
fn find<'a>(headers: &[httparse::Header<'a>], lower: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.len() == lower.len() && h.name.eq_ignore_ascii_case(lower))
        .map(|h| h.value)
}

/// One line of a route's access settings for `ringway check`; None when the route is open.
pub fn describe_route(plan: &Plan, r: &crate::config::RoutePlan) -> Option<String> {
    let a = &r.access;
    let mut parts = Vec::new();
    if let Some(id) = a.auth {
        parts.push(format!("auth={}", plan.access.auths[id].name));
    }
    if let Some(l) = &a.allow {
        parts.push(format!("allow={} range(s)", l.ranges()));
    }
    if let Some(l) = &a.deny {
        parts.push(format!("deny={} range(s)", l.ranges()));
    }
    if let Some(rate) = &a.rate {
        parts.push(format!(
            "rate_limit={}/s burst {} per client (split over {} worker(s))",
            rate.per_second, rate.burst, plan.server.workers
        ));
    }
    if let Some(c) = &a.cors {
        let origins = if c.any_origin {
            "*".to_string()
        } else {
            c.allow_origin.join(" ")
        };
        parts.push(format!("cors={origins}"));
    }
    if let Some((h, v)) = &a.identity_static {
        parts.push(format!("identity_static {h}: {v}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The auth tables, trusted proxies and stripped identity headers for `ringway check`.
pub fn describe(plan: &Plan) -> String {
    let a = &plan.access;
    let mut s = String::new();
    if a.auths.is_empty() && a.trusted_proxies.is_empty() && a.identity_headers.is_empty() {
        return s;
    }
    s.push_str("access:\n");
    if !a.trusted_proxies.is_empty() {
        s.push_str(&format!("  trusted_proxies: {} range(s)\n", a.trusted_proxies.ranges()));
    }
    for auth in &a.auths {
        let how = match &auth.method {
            AuthMethod::Basic(b) => format!("basic, {} user(s), {}", b.users.len(), b.challenge),
            AuthMethod::Forward(f) => format!("forward to {}", f.url),
        };
        s.push_str(&format!("  auth {}: {how}\n", auth.name));
    }
    if !a.identity_headers.is_empty() {
        s.push_str(&format!(
            "  identity headers removed from every client request (any case, `_` for `-`): {}\n",
            a.identity_headers.join(", ")
        ));
    }
    s
}
