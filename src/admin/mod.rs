//! The admin HTTP server (`[admin] bind`): `/metrics` (Prometheus text format), `/healthz`,
//! `/readyz`, `/` (a status page for a person), `/status.json` (what the page shows) and
//! `POST /cache/purge?prefix=/path/` (drops cached responses on every worker). It runs
//! on its own threads with blocking sockets, off the workers: a slow scrape never delays a
//! proxied request, and it only reads what workers publish (atomics, the health board).

use crate::cache::PurgeBoard;
use crate::config::HostMatch;
use crate::observe::metrics::{Global, ServerStat};
use crate::observe::Shared;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("status_page.html");
/// Admin connections served at once; more are closed at accept (this is a side door, not a
/// second proxy).
const MAX_CONNECTIONS: usize = 16;
const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves it on a background thread; returns the bound address.
///
/// The socket has SO_REUSEPORT so that a successor taking over (`takeover`) binds the same
/// admin port while this process drains; without a takeover a probe bind first turns a port
/// already in use into a clear start-up error instead of a silent share.
pub fn start(addr: SocketAddr, shared: Arc<Shared>, purges: Arc<PurgeBoard>, takeover: bool) -> io::Result<SocketAddr> {
    let cannot = |e: io::Error| io::Error::new(e.kind(), format!("[admin] cannot bind {addr}: {e}"));
    if !takeover && addr.port() != 0 {
        drop(TcpListener::bind(addr).map_err(cannot)?);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into()).map_err(cannot)?;
    socket.listen(128)?;
    let listener: TcpListener = socket.into();
    let bound = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else {
                    // fd exhaustion and the like: do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let (shared, purges, done) = (shared.clone(), purges.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("ringway-admin-conn".into())
                    .spawn(move || {
                        let _ = serve(conn, &shared, &purges);
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// One request per connection, then close.
fn serve(mut conn: TcpStream, shared: &Shared, purges: &PurgeBoard) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let head_end = loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(i) = memchr::memmem::find(&buf[..len], b"\r\n\r\n") {
            break i;
        }
        if len == buf.len() {
            return respond(&mut conn, 431, "text/plain", b"request head too large\n", false);
        }
    };
    let line_end = memchr::memchr(b'\n', &buf[..head_end]).unwrap_or(head_end);
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    let path = target.split('?').next().unwrap_or("");
    if path == "/cache/purge" {
        return purge(&mut conn, shared, purges, method, target);
    }
    if method != "GET" && !head_only {
        return respond(&mut conn, 405, "text/plain", b"only GET and HEAD\n", head_only);
    }
    match path {
        "/metrics" => {
            let mut body = shared.metrics.render(&shared.plan, &*shared.board);
            if let Some(d) = shared.drivers.get() {
                d.render(&mut body);
            }
            respond(
                &mut conn,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
        }
        "/healthz" => respond(&mut conn, 200, "text/plain", b"ok\n", head_only),
        "/readyz" => {
            let (status, body) = readiness(shared);
            respond(&mut conn, status, "text/plain", body.as_bytes(), head_only)
        }
        "/" => respond(&mut conn, 200, "text/html; charset=utf-8", PAGE.as_bytes(), head_only),
        "/status.json" => {
            let body = status_json(shared);
            respond(&mut conn, 200, "application/json", body.as_bytes(), head_only)
        }
        _ => respond(&mut conn, 404, "text/plain", b"not found\n", head_only),
    }
}

/// 200 when every listener is bound and every upstream has a server up, else 503 saying why.
fn readiness(shared: &Shared) -> (u16, String) {
    if !shared.is_ready() {
        return (503, "not ready: listeners are not all bound yet\n".into());
    }
    let down = shared.unhealthy_upstreams();
    if down.is_empty() {
        (200, "ready\n".into())
    } else {
        (
            503,
            format!("not ready: no healthy server in upstream {}\n", down.join(", ")),
        )
    }
}

/// `POST /cache/purge?prefix=/p/`: every worker drops the cached responses whose path starts
/// with the prefix before it next looks in its cache.
fn purge(conn: &mut TcpStream, shared: &Shared, purges: &PurgeBoard, method: &str, target: &str) -> io::Result<()> {
    if method != "POST" {
        return respond(conn, 405, "text/plain", b"use POST /cache/purge?prefix=/path/\n", false);
    }
    if shared.plan.cache.is_none() {
        return respond(conn, 404, "text/plain", b"no route has cache = true\n", false);
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let prefix = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("prefix="))
        .and_then(percent_decode);
    match prefix {
        Some(p) if p.starts_with('/') => {
            purges.request(&p);
            let body = format!("purging cached responses under {p} on every worker\n");
            respond(conn, 200, "text/plain", body.as_bytes(), false)
        }
        _ => respond(
            conn,
            400,
            "text/plain",
            b"prefix= must name a path starting with / (percent-encoded)\n",
            false,
        ),
    }
}

/// `%XX` escapes undone; `None` for a broken escape or a result that is not text.
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn respond(conn: &mut TcpStream, status: u16, kind: &str, body: &[u8], head_only: bool) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What the status page shows, as JSON.
pub fn status_json(shared: &Shared) -> String {
    let plan = &shared.plan;
    let m = &shared.metrics;
    let mut o = String::with_capacity(2048);
    let _ = write!(
        o,
        "{{\"version\":\"{}\",\"uptime_seconds\":{},\"ready\":{},\"workers\":{}",
        env!("CARGO_PKG_VERSION"),
        shared.started.elapsed().as_secs(),
        readiness(shared).0 == 200,
        plan.server.workers
    );
    if let Some(d) = shared.drivers.get() {
        o.push_str(",\"io_driver\":");
        json_str(&mut o, &d.name());
        o.push_str(",\"io_driver_reason\":");
        json_str(&mut o, &d.reason);
    }
    o.push_str(",\"listeners\":[");
    for (i, addr) in shared.listeners().iter().enumerate() {
        let tls = plan.listeners.get(i).is_some_and(|l| l.tls.is_some());
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"bind\":");
        json_str(&mut o, &addr.to_string());
        let _ = write!(o, ",\"tls\":{tls}}}");
    }
    o.push_str("],\"routes\":[");
    for (r, route) in plan.routes.iter().enumerate() {
        if r > 0 {
            o.push(',');
        }
        let host = match &route.host {
            HostMatch::Any => "*".to_string(),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*{s}"),
        };
        let classes = m.route_classes(Some(r));
        let _ = write!(o, "{{\"number\":{},\"host\":", route.number);
        json_str(&mut o, &host);
        o.push_str(",\"prefix\":");
        json_str(&mut o, &route.prefix);
        o.push_str(",\"upstream\":");
        json_str(&mut o, &plan.upstreams[route.upstream].name);
        let _ = write!(
            o,
            ",\"requests\":{},\"classes\":[{},{},{},{},{}]}}",
            classes.iter().sum::<u64>(),
            classes[0],
            classes[1],
            classes[2],
            classes[3],
            classes[4]
        );
    }
    o.push_str("],\"upstreams\":[");
    for (u, up) in plan.upstreams.iter().enumerate() {
        if u > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&mut o, &up.name);
        let _ = write!(o, ",\"balance\":\"{}\",\"servers\":[", up.balance.name());
        for (s, server) in up.servers.iter().enumerate() {
            if s > 0 {
                o.push(',');
            }
            o.push_str("{\"addr\":");
            json_str(&mut o, &server.authority);
            let _ = write!(
                o,
                ",\"healthy\":{},\"checked\":{},\"in_flight\":{},\"idle\":{},\"connect_errors\":{},\"timeouts\":{}}}",
                shared.board.is_up(u, s),
                up.health.is_some(),
                m.server_stat(u, s, ServerStat::InFlight),
                m.server_stat(u, s, ServerStat::IdlePooled),
                m.server_stat(u, s, ServerStat::ConnectErrors),
                m.server_stat(u, s, ServerStat::ConnectTimeouts) + m.server_stat(u, s, ServerStat::ResponseTimeouts),
            );
        }
        o.push_str("]}");
    }
    let unrouted = m.route_classes(None).iter().sum::<u64>();
    let _ = write!(
        o,
        "],\"requests\":{},\"unrouted_requests\":{unrouted},\"open_connections\":{},\"open_tunnels\":{},\"tunnels\":{},\"bytes_received\":{},\"bytes_sent\":{}}}",
        m.requests(),
        m.global(Global::OpenConnections),
        m.global(Global::OpenTunnels),
        m.global(Global::Tunnels),
        m.global(Global::ReceivedBytes),
        m.global(Global::SentBytes),
    );
    o
}
