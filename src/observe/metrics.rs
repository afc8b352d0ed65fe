//! Counters and gauges, one block per worker. A worker is the only writer of its block, so an
//! update is a plain load and store (no locked instruction), and blocks are cache-line aligned
//! so workers never write the same line. `/metrics` sums the blocks when it is scraped.

use super::Health;
use crate::config::{Encoding, Plan};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Upper bounds of the request-duration histogram, in microseconds (the last bucket is +Inf).
pub const BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const HIST: usize = BUCKETS_US.len() + 1;
/// Per route: 5 status classes, histogram buckets, duration sum (µs).
const PER_ROUTE: usize = 5 + HIST + 1;
/// Per server: connect errors, connect timeouts, response timeouts, in flight, idle pooled.
const PER_SERVER: usize = 5;

/// Process-wide counters (not per route or server).
#[derive(Clone, Copy)]
pub enum Global {
    OpenConnections = 0,
    OpenTunnels,
    Tunnels,
    ReceivedBytes,
    SentBytes,
    IdlePipes,
    ProxyProtocolRefused,
    OpenH2Connections,
    H2Streams,
    CacheHits,
    CacheMisses,
    CacheStale,
    CacheBytes,
    CacheEvictions,
    ParkedConnections,
}
const NAMED_GLOBALS: usize = 15;
/// Per encoding (zstd, br, gzip): compressed responses, body bytes in, compressed bytes out.
const COMPRESS_AT: usize = NAMED_GLOBALS;
const GLOBALS: usize = NAMED_GLOBALS + 3 * Encoding::ALL.len();

/// The exposition of each process-wide counter: name, type, help.
const GLOBAL_FAMILIES: [(&str, &str, &str, Global); NAMED_GLOBALS] = [
    (
        "ringway_open_connections",
        "gauge",
        "Client connections open now (tunnels included).",
        Global::OpenConnections,
    ),
    (
        "ringway_open_tunnels",
        "gauge",
        "Upgraded connections (WebSocket) being relayed now.",
        Global::OpenTunnels,
    ),
    (
        "ringway_tunnels_total",
        "counter",
        "Upgraded connections relayed, finished or not.",
        Global::Tunnels,
    ),
    (
        "ringway_client_received_bytes_total",
        "counter",
        "Bytes received from clients (heads, bodies, tunnels).",
        Global::ReceivedBytes,
    ),
    (
        "ringway_client_sent_bytes_total",
        "counter",
        "Bytes sent to clients (heads, bodies, tunnels).",
        Global::SentBytes,
    ),
    (
        "ringway_tunnel_idle_pipes",
        "gauge",
        "Empty pipes kept for splice tunnels (sampled each second per worker).",
        Global::IdlePipes,
    ),
    (
        "ringway_proxy_protocol_refused_total",
        "counter",
        "Connections closed on a proxy_protocol listener: no valid PROXY header within header_timeout, or a peer not in proxy_protocol_from.",
        Global::ProxyProtocolRefused,
    ),
    (
        "ringway_open_http2_connections",
        "gauge",
        "HTTP/2 client connections open now (also counted in ringway_open_connections).",
        Global::OpenH2Connections,
    ),
    (
        "ringway_http2_streams_total",
        "counter",
        "HTTP/2 streams (requests) received from clients.",
        Global::H2Streams,
    ),
    (
        "ringway_cache_hits_total",
        "counter",
        "Responses served from the cache without asking the upstream.",
        Global::CacheHits,
    ),
    (
        "ringway_cache_misses_total",
        "counter",
        "Requests on caching routes that found no stored response and went upstream.",
        Global::CacheMisses,
    ),
    (
        "ringway_cache_stale_total",
        "counter",
        "Requests that found a stale stored response and revalidated it upstream.",
        Global::CacheStale,
    ),
    (
        "ringway_cache_bytes",
        "gauge",
        "Bytes held by the response cache (all workers).",
        Global::CacheBytes,
    ),
    (
        "ringway_cache_evictions_total",
        "counter",
        "Stored responses dropped to make room (least recently used first).",
        Global::CacheEvictions,
    ),
    (
        "ringway_parked_connections",
        "gauge",
        "Idle plain keep-alive client connections held outside any task (sampled each second per worker; also counted in ringway_open_connections).",
        Global::ParkedConnections,
    ),
];

#[derive(Clone, Copy)]
pub enum ServerStat {
    ConnectErrors = 0,
    ConnectTimeouts,
    ResponseTimeouts,
    InFlight,
    IdlePooled,
}

#[repr(align(64))]
#[derive(Default)]
struct Line([AtomicU64; 8]);

/// One worker's block.
pub struct Block {
    lines: Box<[Line]>,
    layout: Layout,
}

#[derive(Clone)]
struct Layout {
    routes: usize,
    server_base: Vec<usize>,
    servers_at: usize,
}

impl Layout {
    fn new(plan: &Plan) -> Self {
        let routes = plan.routes.len() + 1;
        let mut server_base = Vec::with_capacity(plan.upstreams.len());
        let mut n = 0;
        for u in &plan.upstreams {
            server_base.push(n);
            n += u.servers.len();
        }
        Layout {
            routes,
            server_base,
            servers_at: GLOBALS + routes * PER_ROUTE,
        }
    }

    fn route_at(&self, route: Option<usize>) -> usize {
        GLOBALS + route.unwrap_or(self.routes - 1).min(self.routes - 1) * PER_ROUTE
    }

    fn server_at(&self, upstream: usize, server: usize) -> usize {
        self.servers_at + (self.server_base[upstream] + server) * PER_SERVER
    }
}

impl Block {
    fn new(layout: Layout, servers: usize) -> Self {
        let slots = layout.servers_at + servers * PER_SERVER;
        let lines = (0..slots.div_ceil(8)).map(|_| Line::default()).collect();
        Block { lines, layout }
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicU64 {
        &self.lines[i / 8].0[i % 8]
    }

    /// Single-writer increment: this worker is the only one that writes the slot.
    #[inline]
    fn add(&self, i: usize, n: u64) {
        let s = self.slot(i);
        s.store(s.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    fn get(&self, i: usize) -> u64 {
        self.slot(i).load(Relaxed)
    }

    #[inline]
    pub fn add_global(&self, g: Global, n: u64) {
        self.add(g as usize, n);
    }

    #[inline]
    pub fn sub_global(&self, g: Global, n: u64) {
        let s = self.slot(g as usize);
        s.store(s.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    #[inline]
    pub fn set_global(&self, g: Global, v: u64) {
        self.slot(g as usize).store(v, Relaxed);
    }

    /// One finished request: its status class and duration under its route (None: no route).
    #[inline]
    pub fn request(&self, route: Option<usize>, status: u16, micros: u64) {
        let at = self.layout.route_at(route);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.add(at + class, 1);
        let bucket = BUCKETS_US.iter().position(|&b| micros <= b).unwrap_or(BUCKETS_US.len());
        self.add(at + 5 + bucket, 1);
        self.add(at + 5 + HIST, micros);
    }

    /// One compressed response (finished or cut): its body bytes before and after compression.
    pub fn compressed(&self, encoding: Encoding, bytes_in: u64, bytes_out: u64) {
        let at = COMPRESS_AT + 3 * encoding as usize;
        self.add(at, 1);
        self.add(at + 1, bytes_in);
        self.add(at + 2, bytes_out);
    }

    #[inline]
    pub fn server(&self, upstream: usize, server: usize, stat: ServerStat, n: u64) {
        self.add(self.layout.server_at(upstream, server) + stat as usize, n);
    }

    #[inline]
    pub fn set_server(&self, upstream: usize, server: usize, stat: ServerStat, v: u64) {
        self.slot(self.layout.server_at(upstream, server) + stat as usize)
            .store(v, Relaxed);
    }
}

/// Every worker's block, for scraping.
pub struct Registry {
    blocks: Vec<Arc<Block>>,
    layout: Layout,
}

impl Registry {
    pub fn new(plan: &Plan, workers: usize) -> Self {
        let layout = Layout::new(plan);
        let servers = plan.upstreams.iter().map(|u| u.servers.len()).sum();
        let blocks = (0..workers)
            .map(|_| Arc::new(Block::new(layout.clone(), servers)))
            .collect();
        Registry { blocks, layout }
    }

    pub fn block(&self, worker: usize) -> Arc<Block> {
        self.blocks[worker].clone()
    }

    fn sum(&self, i: usize) -> u64 {
        self.blocks.iter().map(|b| b.get(i)).fold(0, u64::wrapping_add)
    }

    pub fn global(&self, g: Global) -> u64 {
        self.sum(g as usize)
    }

    /// Requests by status class (1xx..5xx) of one route (None: requests that matched none).
    pub fn route_classes(&self, route: Option<usize>) -> [u64; 5] {
        let at = self.layout.route_at(route);
        std::array::from_fn(|c| self.sum(at + c))
    }

    pub fn requests(&self) -> u64 {
        (0..self.layout.routes)
            .map(|r| self.route_classes(Some(r)).iter().sum::<u64>())
            .sum()
    }

    pub fn server_stat(&self, upstream: usize, server: usize, stat: ServerStat) -> u64 {
        self.sum(self.layout.server_at(upstream, server) + stat as usize)
    }

    /// The Prometheus text exposition (format 0.0.4) of every family.
    pub fn render(&self, plan: &Plan, board: &dyn Health) -> String {
        let mut out = String::with_capacity(4096);
        let route_labels: Vec<String> = (0..self.layout.routes)
            .map(|r| match plan.routes.get(r) {
                Some(route) => format!(
                    "route=\"{}\",upstream=\"{}\"",
                    escape(&route_label(plan, r)),
                    escape(&plan.upstreams[route.upstream].name)
                ),
                None => "route=\"none\",upstream=\"\"".to_string(),
            })
            .collect();

        family(
            &mut out,
            "ringway_requests_total",
            "counter",
            "Requests answered, by route and status class.",
        );
        for (r, labels) in route_labels.iter().enumerate() {
            for (c, n) in self.route_classes(Some(r)).iter().enumerate() {
                let _ = writeln!(out, "ringway_requests_total{{{labels},class=\"{}xx\"}} {n}", c + 1);
            }
        }

        family(
            &mut out,
            "ringway_request_duration_seconds",
            "histogram",
            "Time from a complete request head to the end of the response, by route.",
        );
        for (r, labels) in route_labels.iter().enumerate() {
            let at = self.layout.route_at(Some(r)) + 5;
            let mut cumulative = 0;
            for (b, bound) in BUCKETS_US.iter().enumerate() {
                cumulative += self.sum(at + b);
                let _ = writeln!(
                    out,
                    "ringway_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e6
                );
            }
            cumulative += self.sum(at + BUCKETS_US.len());
            let _ = writeln!(
                out,
                "ringway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let sum = self.sum(at + HIST) as f64 / 1e6;
            let _ = writeln!(out, "ringway_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "ringway_request_duration_seconds_count{{{labels}}} {cumulative}");
        }

        let servers: Vec<(usize, usize, String)> = plan
            .upstreams
            .iter()
            .enumerate()
            .flat_map(|(u, up)| {
                up.servers.iter().enumerate().map(move |(s, sv)| {
                    (
                        u,
                        s,
                        format!("upstream=\"{}\",server=\"{}\"", escape(&up.name), escape(&sv.authority)),
                    )
                })
            })
            .collect();
        let per_server = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(usize, usize) -> u64| {
            family(out, name, kind, help);
            for (u, s, labels) in &servers {
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(*u, *s));
            }
        };
        per_server(
            &mut out,
            "ringway_upstream_connect_errors_total",
            "counter",
            "Connections to an upstream server that failed (refused, unreachable, TLS).",
            &|u, s| self.server_stat(u, s, ServerStat::ConnectErrors),
        );
        family(
            &mut out,
            "ringway_upstream_timeouts_total",
            "counter",
            "Upstream timeouts by server and phase (connect, response).",
        );
        for (u, s, labels) in &servers {
            let c = self.server_stat(*u, *s, ServerStat::ConnectTimeouts);
            let r = self.server_stat(*u, *s, ServerStat::ResponseTimeouts);
            let _ = writeln!(out, "ringway_upstream_timeouts_total{{{labels},phase=\"connect\"}} {c}");
            let _ = writeln!(
                out,
                "ringway_upstream_timeouts_total{{{labels},phase=\"response\"}} {r}"
            );
        }
        per_server(
            &mut out,
            "ringway_upstream_healthy",
            "gauge",
            "1 when the server passes its active health checks (or has none), else 0.",
            &|u, s| board.is_up(u, s) as u64,
        );
        per_server(
            &mut out,
            "ringway_upstream_in_flight_requests",
            "gauge",
            "Requests in flight to a server (sampled each second per worker).",
            &|u, s| self.server_stat(u, s, ServerStat::InFlight),
        );
        per_server(
            &mut out,
            "ringway_upstream_idle_connections",
            "gauge",
            "Idle keep-alive connections pooled per server (sampled each second per worker).",
            &|u, s| self.server_stat(u, s, ServerStat::IdlePooled),
        );

        for (name, kind, help, which) in GLOBAL_FAMILIES {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", self.global(which));
        }
        super::compress_metrics::render(&mut out, |e| {
            let at = COMPRESS_AT + 3 * e as usize;
            [self.sum(at), self.sum(at + 1), self.sum(at + 2)]
        });
        out
    }
}

/// How routes are named in metrics and logs: host (when set) and prefix as written.
pub fn route_label(plan: &Plan, route: usize) -> String {
    use crate::config::HostMatch;
    let r = &plan.routes[route];
    match &r.host {
        HostMatch::Any => r.prefix.clone(),
        HostMatch::Exact(h) => format!("{h}{}", r.prefix),
        HostMatch::Suffix(s) => format!("*{s}{}", r.prefix),
    }
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
pub(super) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
