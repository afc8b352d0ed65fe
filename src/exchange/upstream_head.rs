//! The rewrite step: the upstream's HTTP/1.1 request head, written from the protocol-neutral
//! request: the path mapped by the route (`rewrite`), hop-by-hop and identity headers dropped
//! (identity ones in every spelling, and names with `_` unless `underscores_in_headers = "pass"`),
//! the route's header rules, the identity the access step proved, the forwarding headers and
//! the body framing the upstream will see.

use super::request::RequestHead;
use super::rewrite::upstream_path;
use crate::auth;
use crate::config::{Plan, RoutePlan};
use crate::http::client_info::ClientInfo;
use crate::http::headers::{classify, Known};
use crate::http::request::RequestFacts;
use crate::http::write::{header, header_u64, RawLines};
use crate::http::Framing;
use crate::observe::RequestId;

/// Writes the upstream request head; returns where the Host value sits when it names the server
/// (a route with `preserve_host = false`), so the exchange can put in the server it chose.
#[allow(clippy::too_many_arguments)]
pub fn write_upstream_head(
    plan: &Plan,
    route_id: usize,
    granted: &auth::Granted<'_>,
    client_ip: &str,
    info: &ClientInfo,
    req: &RequestHead<'_>,
    facts: &RequestFacts<'_>,
    upgrade: Option<&[u8]>,
    path: &[u8],
    matched: usize,
    request_id: &RequestId,
    out: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    let route: &RoutePlan = &plan.routes[route_id];
    let fwd = route.forwarding;
    let upstream = &plan.upstreams[route.upstream];
    // Behind trusted_proxies, an untrusted peer's own X-Forwarded-For is not passed on.
    let pass_client_xff = auth::client_addr::forwards_client_list(&plan.access.trusted_proxies, info.peer.ip());
    out.extend_from_slice(req.method.as_bytes());
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
    let drop_underscores = plan.server.drop_underscore_headers;
    let mut lines = RawLines::new(req.raw);
    for h in req.headers {
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
            // nginx's underscores_in_headers off: `X_User` and `X-User` are one variable to a
            // WSGI, CGI or Rack backend, so a name with `_` could stand in for a trusted one.
            || (drop_underscores && memchr::memchr(b'_', h.name.as_bytes()).is_some())
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
            for h in req.headers.iter().filter(|h| classify(h.name) == Known::XForwardedFor) {
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
        header(out, b"X-Forwarded-Proto", info.scheme().as_bytes());
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
            if matches!(req.method, "POST" | "PUT" | "PATCH") {
                header(out, b"Content-Length", b"0");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    host_at
}
