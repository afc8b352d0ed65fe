//! Operator views of a plan without traffic: `ringway check` prints the compiled table in match
//! order; `ringway route` runs a request through the same decision code the workers use and
//! shows what would be sent upstream — the answer to most sub-path questions (redirect loops,
//! 404 assets) without touching the network.

use crate::client::h1::decide_bytes as decide;
use crate::config::units::format_duration;
use crate::config::{Balance, HostMatch, PathRewrite, Plan, RoutePlan, UpstreamPlan};
use crate::exchange::Decision;
use crate::http::client_info::ClientInfo;
use crate::upstream::{Board, Tried, Upstreams};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

/// Routes in the order a lookup considers them: exact hosts, wildcards (longest first), then
/// host-less routes; longest prefix first within each.
pub fn match_order(plan: &Plan) -> Vec<&RoutePlan> {
    let mut routes: Vec<&RoutePlan> = plan.routes.iter().collect();
    routes.sort_by_key(|r| {
        let group = match &r.host {
            HostMatch::Exact(h) => (0, 0, h.clone()),
            HostMatch::Suffix(s) => (1, usize::MAX - s.len(), s.clone()),
            HostMatch::Any => (2, 0, String::new()),
        };
        (group, usize::MAX - r.key.len(), r.number)
    });
    routes
}

/// A listener as `check` and `route` name it: `public (0.0.0.0:443)` or its address.
fn listener_label(l: &crate::config::ListenerPlan) -> String {
    match &l.name {
        Some(n) => format!("{n} ({})", l.bind),
        None => l.bind.to_string(),
    }
}

/// ` listeners=public,internal` for a route limited to listeners, else nothing.
fn route_listeners(plan: &Plan, r: &RoutePlan) -> String {
    match &r.listeners {
        None => String::new(),
        Some(ls) => {
            let names: Vec<&str> = ls
                .iter()
                .filter_map(|&i| plan.listeners.get(i).and_then(|l| l.name.as_deref()))
                .collect();
            format!(" listeners={}", names.join(","))
        }
    }
}

pub fn route_line(r: &RoutePlan) -> String {
    let host = match &r.host {
        HostMatch::Any => "*any*".to_string(),
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(s) => format!("*{s}"),
    };
    let mut line = format!("#{} host={} prefix={}", r.number, host, r.prefix);
    if r.case_insensitive {
        line.push_str(" (case-insensitive)");
    }
    match &r.rewrite {
        PathRewrite::Keep => {}
        PathRewrite::Strip => line.push_str(" strip_prefix"),
        PathRewrite::Replace(to) => {
            let _ = write!(line, " replace_prefix={to}/");
        }
    }
    line
}

pub fn describe(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "configuration {} is valid", plan.source.display());
    let _ = writeln!(s, "workers: {}", plan.server.workers);
    let driver = match crate::server::driver::probe(plan.server.io_driver) {
        Ok(d) => format!("{} on this host", crate::server::driver::describe(&d)),
        Err(e) => format!("none on this host, ringway would not start: {e}"),
    };
    let _ = writeln!(s, "io driver: {driver}");
    let _ = write!(s, "shutdown: drain up to {:?}", plan.server.shutdown_timeout);
    match &plan.server.control_socket {
        Some(p) => {
            let _ = writeln!(s, ", takeover via {}", p.display());
        }
        None => {
            let _ = writeln!(s, ", no control_socket (no takeover)");
        }
    }
    let _ = writeln!(
        s,
        "request headers with `_` in their name: {}",
        if plan.server.drop_underscore_headers {
            "dropped (underscores_in_headers = \"drop\")"
        } else {
            "passed (underscores_in_headers = \"pass\")"
        }
    );
    let access = match &plan.log.access {
        crate::config::AccessTarget::Off => "off".to_string(),
        crate::config::AccessTarget::Stdout => "stdout".to_string(),
        crate::config::AccessTarget::File(p) => p.display().to_string(),
    };
    let format = match plan.log.format {
        crate::config::LogFormat::Combined => "combined",
        crate::config::LogFormat::Json => "json",
    };
    let _ = writeln!(s, "access log: {access} ({format}), events: {}", plan.log.level.name());
    if let Some(a) = plan.admin {
        let _ = writeln!(s, "admin: http://{a}/ (/metrics, /healthz, /readyz, status page)");
    }
    let _ = writeln!(s, "listeners:");
    for l in &plan.listeners {
        let mut line = format!("  {}", listener_label(l));
        if l.tls.is_some() {
            line.push_str(" tls");
        }
        if let Some(h) = &l.hsts {
            let _ = write!(line, " hsts=\"{h}\"");
        }
        if let Some(r) = &l.redirect_https {
            let _ = write!(line, " redirect_https={r}");
        }
        if let Some(from) = &l.proxy_protocol {
            if from.is_empty() {
                line.push_str(" proxy_protocol (from any peer)");
            } else {
                let _ = write!(line, " proxy_protocol (from {} range(s))", from.ranges());
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "upstreams:");
    for u in &plan.upstreams {
        let servers: Vec<String> = u
            .servers
            .iter()
            .map(|sv| {
                let scheme = if sv.tls { "https://" } else { "" };
                if sv.authority == sv.addr.to_string() {
                    format!("{scheme}{}", sv.authority)
                } else {
                    format!("{scheme}{} ({})", sv.authority, sv.addr)
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "  {}: {} (connect_timeout {}, keepalive {})",
            u.name,
            servers.join(", "),
            format_duration(u.connect_timeout),
            u.keepalive
        );
        for line in upstream_lines(u) {
            let _ = writeln!(s, "    {line}");
        }
    }
    let _ = writeln!(s, "routes (in match order):");
    for r in match_order(plan) {
        let _ = writeln!(
            s,
            "  {}{} -> {}{} response_timeout={} idle_timeout={}{}",
            route_line(r),
            route_listeners(plan, r),
            plan.upstreams[r.upstream].name,
            if r.preserve_host { "" } else { " (Host rewritten)" },
            format_duration(r.response_timeout),
            format_duration(r.idle_timeout),
            r.max_body.map(|m| format!(" max_body={m}")).unwrap_or_default(),
        );
        if let Some(a) = crate::auth::describe_route(plan, r) {
            let _ = writeln!(s, "    access: {a}");
        }
    }
    s.push_str(&crate::auth::describe(plan));
    s
}

/// The balancing, limits and health settings of one upstream, one fact per line, then every
/// server with its resolved address and weight.
pub fn upstream_lines(u: &UpstreamPlan) -> Vec<String> {
    let mut lines = Vec::new();
    let mut first = format!("balance {}", u.balance.name());
    if let Balance::Hash(key) = &u.balance {
        let _ = write!(first, " (hash_key {key}, consistent)");
    }
    let _ = write!(first, ", retries {}", u.retries);
    if u.max_connections_per_server > 0 {
        let _ = write!(
            first,
            ", max_connections_per_server {} ({} per worker), queue_timeout {}",
            u.max_connections_per_server,
            u.max_conns_per_worker,
            format_duration(u.queue_timeout)
        );
    }
    lines.push(first);
    for sv in &u.servers {
        lines.push(format!("server {} -> {} weight {}", sv.authority, sv.addr, sv.weight));
    }
    match &u.health {
        Some(h) => lines.push(format!(
            "health GET {} every {}, timeout {}, rise {}, fall {}, expect_status {}-{}",
            h.path,
            format_duration(h.interval),
            format_duration(h.timeout),
            h.rise,
            h.fall,
            h.expect.0,
            h.expect.1
        )),
        None => lines.push("health: no active checks".into()),
    }
    match &u.passive {
        Some(p) => lines.push(format!(
            "passive: eject after {} failures in a row for {}",
            p.max_fails,
            format_duration(p.cooldown)
        )),
        None => lines.push("passive: off".into()),
    }
    lines
}

/// Explains a request given as a URL (`http://host/path?q`) or a path (with `-H 'Host: …'`).
pub fn explain(
    plan: &Plan,
    method: &str,
    url: &str,
    headers: &[String],
    listener: Option<&str>,
) -> Result<String, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, Some(r))
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, Some(r))
    } else {
        (false, None)
    };
    let (host, target) = match rest {
        Some(r) => {
            let i = r.find(['/', '?']).unwrap_or(r.len());
            let path = &r[i..];
            (
                Some(&r[..i]),
                if path.is_empty() {
                    "/".to_string()
                } else if path.starts_with('?') {
                    format!("/{path}")
                } else {
                    path.to_string()
                },
            )
        }
        None if url.starts_with('/') => (None, url.to_string()),
        None => return Err(format!("`{url}` is neither an http(s) URL nor a path")),
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    let has_host = headers.iter().any(|h| {
        h.split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("host"))
    });
    match (host, has_host) {
        (Some(h), false) => head.push_str(&format!("Host: {h}\r\n")),
        (None, false) => head.push_str("Host: localhost\r\n"),
        _ => {}
    }
    for h in headers {
        if !h.contains(':') {
            return Err(format!("header `{h}` must look like 'Name: value'"));
        }
        head.push_str(h.trim());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");

    // The listener named, else the first of the URL's kind (TLS for https://), as a client
    // would reach it.
    let listener = match listener {
        Some(name) => plan.listener_named(name).ok_or_else(|| {
            let known = crate::config::listener_names(&plan.listeners);
            format!(
                "no listener is named `{name}` (named listeners: {})",
                known.as_deref().unwrap_or("none")
            )
        })?,
        None => plan.listeners.iter().position(|l| l.tls.is_some() == tls).unwrap_or(0),
    };
    let port = plan.listeners.get(listener).map(|l| l.bind.port()).unwrap_or(80);
    let peer: SocketAddr = "192.0.2.10:50000".parse().unwrap();
    let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut info = ClientInfo::new(peer, Some(local), tls);
    info.listener = listener as u32;
    let access = crate::auth::WorkerAccess::new(plan);
    let mut out = Vec::new();
    let mut s = String::new();
    // Which listener answered matters only where there is a choice.
    if let (true, Some(l)) = (plan.listeners.len() > 1, plan.listeners.get(listener)) {
        let _ = writeln!(s, "listener: {}", listener_label(l));
    }
    let decision = match decide(plan, &access, &info, head.as_bytes(), &mut out) {
        Decision::Authorize(o, sub) => {
            let auth = &plan.access.auths[sub.auth];
            if let crate::config::AuthMethod::Forward(fa) = &auth.method {
                let _ = writeln!(
                    s,
                    "auth: {} asks {} first (2xx forwards, 401/403/3xx answer)",
                    auth.name, fa.url
                );
            }
            Decision::Forward(o)
        }
        d => d,
    };
    match decision {
        Decision::Answer(a) => {
            let (body, _) = a.body_parts();
            let _ = writeln!(
                s,
                "response: {} {} (access step)",
                a.status,
                String::from_utf8_lossy(body)
            );
        }
        Decision::Authorize(..) => unreachable!("resolved above"),
        Decision::Reply(r) => {
            match r.route {
                Some(i) => {
                    let _ = writeln!(s, "route: {}", route_line(&plan.routes[i]));
                }
                None if r.status == 404 => {
                    let _ = writeln!(s, "route: none (404)");
                }
                None => {}
            }
            match r.field("Location") {
                Some(loc) => {
                    let _ = writeln!(s, "redirect: {} {}", r.status, String::from_utf8_lossy(loc));
                }
                None => {
                    let (body, _) = r.body_parts();
                    let _ = writeln!(s, "response: {} {}", r.status, String::from_utf8_lossy(body));
                }
            }
        }
        Decision::Forward(o) => {
            let route = &plan.routes[o.route];
            let up = &plan.upstreams[o.upstream];
            let _ = writeln!(s, "route: {}", route_line(route));
            // The server a fresh worker would choose first, every server assumed healthy.
            let fresh = Upstreams::new(plan, Arc::new(Board::new(plan)));
            let server = fresh
                .try_pick(up, o.upstream, o.affinity, &Tried::default())
                .unwrap_or(0);
            let _ = writeln!(s, "upstream: {} {}", up.name, up.servers[server].authority);
            if let Some((a, b)) = o.host_at {
                let authority = up.servers[server].authority.as_bytes();
                out.splice(a..b, authority.iter().copied());
            }
            let mut sent = [httparse::EMPTY_HEADER; 160];
            let mut req = httparse::Request::new(&mut sent);
            let _ = req.parse(&out);
            let _ = writeln!(
                s,
                "upstream request: {} {}",
                req.method.unwrap_or(""),
                req.path.unwrap_or("")
            );
            let mut recv = [httparse::EMPTY_HEADER; 160];
            let mut client = httparse::Request::new(&mut recv);
            let _ = client.parse(head.as_bytes());
            let same =
                |a: &httparse::Header, b: &httparse::Header| a.name.eq_ignore_ascii_case(b.name) && a.value == b.value;
            for h in req.headers.iter() {
                if crate::observe::request_id::is_request_id_header(h.name)
                    && !client.headers.iter().any(|c| same(c, h))
                {
                    let id = String::from_utf8_lossy(h.value);
                    let _ = writeln!(s, "header set: {}: {id} (generated, one per request)", h.name);
                } else if !client.headers.iter().any(|c| same(c, h)) {
                    let _ = writeln!(s, "header set: {}: {}", h.name, String::from_utf8_lossy(h.value));
                }
            }
            for c in client.headers.iter() {
                if !req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(c.name)) {
                    let _ = writeln!(s, "header removed: {}", c.name);
                }
            }
            if route.rewrites_path() {
                let _ = writeln!(
                    s,
                    "responses: Location, Content-Location and Set-Cookie paths under {} are mapped back to {}/",
                    if route.upstream_key().is_empty() {
                        "/"
                    } else {
                        route.upstream_key()
                    },
                    route.key
                );
            }
        }
    }
    Ok(s)
}
