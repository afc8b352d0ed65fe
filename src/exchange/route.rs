//! The route step: normalise the Host, find the route among those serving the listener (host
//! group, then longest prefix on segment boundaries), and answer what the route itself
//! answers: 404 without a route, 301 from `/prefix` to `/prefix/`, 413 for a declared body
//! over the route's `max_body`.

use super::reply::Reply;
use crate::config::route_table::RouteHit;
use crate::config::Plan;
use crate::http::headers::{classify, Known};
use crate::http::request::RequestFacts;
use crate::http::{normalize_host, Framing, RequestError};

/// The route for a request whose path was checked (`rewrite::check_path`), or the reply.
pub fn route(plan: &Plan, listener: usize, facts: &RequestFacts<'_>, path: &[u8]) -> Result<RouteHit, Reply> {
    let mut host_buf = [0u8; 256];
    let host = facts.host.and_then(|h| normalize_host(h, &mut host_buf));
    let close = facts.framing != Framing::None || !facts.keep_alive;
    let Some(hit) = plan.table(listener).lookup(&plan.routes, host, path) else {
        return Err(Reply::text(404, "no route matches this request", close));
    };
    if hit.bare_prefix {
        let mut loc = Vec::with_capacity(path.len() + 1 + facts.target.query.len());
        loc.extend_from_slice(path);
        loc.push(b'/');
        loc.extend_from_slice(facts.target.query);
        let mut r = Reply::text(301, "", close).with("Location", loc);
        r.route = Some(hit.route);
        return Err(r);
    }
    if let (Some(max), Framing::Length(n)) = (plan.routes[hit.route].max_body, facts.framing) {
        if n > max {
            return Err(Reply::refused(RequestError::BodyTooLarge));
        }
    }
    Ok(hit)
}

/// `redirect_https`: 308 (method and body kept by the client) to the same path and query. The
/// request body, if any, is not read, so such a connection is closed after the reply.
pub fn redirect_to_https(base: &str, target: &[u8], keep_alive: bool) -> Reply {
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
    Reply::text(308, "", !keep_alive).with("Location", loc)
}

/// A bodiless HTTP/1.1 request without `Connection: close` (the redirect may keep the connection).
pub fn request_keeps_alive(headers: &[httparse::Header<'_>]) -> bool {
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
