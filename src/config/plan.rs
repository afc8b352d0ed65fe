//! The compiled configuration: plain, immutable data built once at start-up and shared by every
//! worker behind an `Arc`. Nothing here is mutated after `compile` returns.

pub use super::access_plan::*;
pub use super::hash_ring::HashRing;
use crate::config::route_table::RouteTable;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub struct Plan {
    pub source: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<ListenerPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub routes: Vec<RoutePlan>,
    /// Route tables: one for every listener when some route is limited to listeners, else one
    /// shared by all. Read through [`Plan::table`].
    pub tables: Vec<RouteTable>,
    /// Trusted proxies, `[auth.NAME]` tables and the identity headers stripped from clients.
    pub access: AccessPlan,
    /// Things that work but deserve attention (expired certificate, skipped verification), each
    /// `FILE:LINE: key: message`; printed at start-up and by `ringway check`.
    pub warnings: Vec<String>,
    pub log: LogPlan,
    /// `[admin] bind`: where /metrics, /healthz, /readyz and the status page are served.
    pub admin: Option<SocketAddr>,
    /// `[compress]`: types, minimum size and levels for routes with `compress = true`.
    pub compress: CompressPlan,
    /// `[cache]`: present when some route has `cache = true`.
    pub cache: Option<CachePlan>,
}

/// The response cache's limits (`[cache]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePlan {
    /// Bytes for the whole process; each worker owns `size / workers`.
    pub size: u64,
    /// Larger responses stream through without being kept.
    pub max_object: u64,
}

impl CachePlan {
    pub const DEFAULT_SIZE: u64 = 256 << 20;
    pub const DEFAULT_MAX_OBJECT: u64 = 8 << 20;
}

impl Plan {
    /// The routes a listener serves, ready for lookup.
    pub fn table(&self, listener: usize) -> &RouteTable {
        self.tables.get(listener).unwrap_or(&self.tables[0])
    }

    /// The index of the listener called `name`.
    pub fn listener_named(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name.as_deref() == Some(name))
    }
}

/// The listeners' names for an error message, each once (a name may cover several addresses):
/// `public, internal`, or `None` when no listener has a name.
pub fn listener_names(listeners: &[ListenerPlan]) -> Option<String> {
    let mut names: Vec<&str> = Vec::new();
    for name in listeners.iter().filter_map(|l| l.name.as_deref()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    (!names.is_empty()).then(|| names.join(", "))
}

pub use super::compress::{CompressPlan, Encoding, MediaRange};

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessTarget {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// nginx's `combined` line with ringway's fields appended.
    Combined,
    /// One JSON object per line.
    Json,
}

pub struct LogPlan {
    pub access: AccessTarget,
    pub format: LogFormat,
    pub level: Level,
}

impl Default for LogPlan {
    fn default() -> Self {
        LogPlan {
            access: AccessTarget::Off,
            format: LogFormat::Combined,
            level: Level::Info,
        }
    }
}

pub struct ServerSettings {
    /// Worker threads; resolved from `workers = 0` to the core count.
    pub workers: usize,
    pub max_head_size: usize,
    pub max_uri_size: usize,
    pub header_timeout: Duration,
    /// Process-wide cap on client connections (0 = none), split across workers.
    pub max_connections: usize,
    /// Drain limit after SIGTERM/SIGINT or a takeover; what is still open then is closed.
    pub shutdown_timeout: Duration,
    /// Where this process serves takeover requests (see `server::handover`); `None` = nowhere.
    pub control_socket: Option<std::path::PathBuf>,
    pub io_driver: IoDriver,
    /// `underscores_in_headers = "drop"`: request headers whose name has a `_` are not forwarded.
    pub drop_underscore_headers: bool,
    pub h2: H2Limits,
}

/// HTTP/2 limits of every client connection (`[server] h2_*`); the header list size is
/// `max_head_size`.
#[derive(Clone, Copy, Debug)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub stream_window: u32,
    pub connection_window: u32,
    /// Streams a client may reset before their response (rapid reset) before the connection is
    /// checked: past it, a connection that reset most of its streams is closed; also how many
    /// reset streams may wait at once to be accepted.
    pub max_resets: u32,
}

/// `[server] io_driver`: what the operator asked for; `server::driver` decides what runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoDriver {
    /// io_uring where the kernel and the seccomp profile allow it, epoll (and say why) elsewhere.
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// epoll on purpose (a kernel with a known io_uring bug, a policy).
    Epoll,
}

pub struct ListenerPlan {
    pub bind: SocketAddr,
    /// `name = "public"`: how routes refer to this listener.
    pub name: Option<String>,
    /// Certificates (SNI) of a TLS listener; `None` for plaintext.
    pub tls: Option<crate::tls::ServerTls>,
    /// Strict-Transport-Security value added to proxied responses (TLS listeners only).
    pub hsts: Option<String>,
    /// Base URL (`https://host[:port]`, no trailing slash) every request is redirected to (308).
    pub redirect_https: Option<String>,
    /// `proxy_protocol = true`: the peers allowed to send the header (an empty list: any peer).
    pub proxy_protocol: Option<super::cidr::CidrList>,
    /// `h2c = true`: a plaintext connection that opens with the HTTP/2 preface speaks HTTP/2.
    /// (A TLS listener's `http2` is in its ALPN list, inside `tls`.)
    pub h2c: bool,
}

pub struct UpstreamPlan {
    pub name: String,
    pub servers: Vec<ServerPlan>,
    pub connect_timeout: Duration,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub balance: Balance,
    /// Server weights in server order (the balancers read them as one slice).
    pub weights: Vec<u32>,
    /// The consistent-hash ring, built once when `balance = "hash"`.
    pub ring: Option<HashRing>,
    /// Active requests per server and worker (0 = no cap); the configured process-wide cap
    /// divided across workers, rounded up, so no worker has to ask another.
    pub max_conns_per_worker: u32,
    /// The cap as written, for `ringway check` and error texts.
    pub max_connections_per_server: u32,
    pub queue_timeout: Duration,
    /// Extra attempts for idempotent requests that failed before any response byte.
    pub retries: u32,
    pub health: Option<HealthPlan>,
    pub passive: Option<PassivePlan>,
    /// Client TLS settings, present when a server is `https://`.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// `send_proxy_protocol`: the PROXY header version written first on each connection.
    pub send_proxy: Option<ProxyVersion>,
}

/// A PROXY protocol version to send (`send_proxy_protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    P2c,
    Hash(HashKey),
}

impl Balance {
    pub fn name(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::P2c => "p2c",
            Balance::Hash(_) => "hash",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// Lower-case header name.
    Header(String),
    Cookie(String),
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::ClientIp => write!(f, "client_ip"),
            HashKey::Header(h) => write!(f, "header:{h}"),
            HashKey::Cookie(c) => write!(f, "cookie:{c}"),
        }
    }
}

pub struct HealthPlan {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Inclusive status range that counts as a pass.
    pub expect: (u16, u16),
}

pub struct PassivePlan {
    pub max_fails: u32,
    pub cooldown: Duration,
}

pub struct ServerPlan {
    pub addr: SocketAddr,
    /// `host:port` as written, sent as Host when a route does not preserve the client's Host.
    pub authority: String,
    pub weight: u32,
    /// `https://`: connect with TLS, verifying the certificate for `host`.
    pub tls: bool,
    /// The host part of `authority` (SNI and certificate name), without brackets.
    pub host: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Any,
    /// Lower-case host without port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any name below it, at any depth.
    Suffix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    Keep,
    Strip,
    /// The replacement without its trailing slash (`/other/` → `/other`, `/` → ``).
    Replace(String),
}

pub struct RoutePlan {
    /// 1-based position in the file, as operators count routes.
    pub number: usize,
    /// Indices of the listeners this route serves (`[[route]] listeners`); `None`: every one.
    pub listeners: Option<Vec<usize>>,
    pub host: HostMatch,
    /// The prefix as written.
    pub prefix: String,
    /// The prefix without a trailing slash: what is matched and stripped (`/grafana/` → `/grafana`).
    pub key: String,
    pub case_insensitive: bool,
    pub upstream: usize,
    pub rewrite: PathRewrite,
    pub preserve_host: bool,
    pub response_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: Option<u64>,
    /// Lower-case upgrade tokens this route forwards (`websocket` by default).
    pub upgrades: Vec<String>,
    pub tunnel: TunnelLimits,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    pub forwarding: Forwarding,
    /// auth, allow/deny, rate_limit, cors, identity_static.
    pub access: RouteAccess,
    /// `compress = true`: eligible responses are compressed as `[compress]` says.
    pub compress: bool,
    /// `cache = true`: responses to GET and HEAD go through the worker's cache.
    pub cache: bool,
    /// `cache_ttl`: freshness given to 200 responses that carry no caching headers.
    pub cache_ttl: Option<Duration>,
    /// `cache_bypass_cookies`: names of cookies that make a request one person's, as for
    /// Authorization (exact, case-sensitive names, as cookies are compared).
    pub cache_bypass_cookies: Vec<String>,
}

impl RoutePlan {
    /// Whether an `Upgrade:` value names a protocol this route forwards.
    pub fn allows_upgrade(&self, value: &[u8]) -> bool {
        let first = value.split(|&b| b == b',').next().map(crate::http::trim).unwrap_or(b"");
        let name = first.split(|&b| b == b'/').next().unwrap_or(b"");
        self.upgrades.iter().any(|u| u.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The prefix ends in `/` and is not the root: a request for exactly the key is redirected to it.
    pub fn redirects_bare_prefix(&self) -> bool {
        self.prefix.len() > 1 && self.prefix.ends_with('/')
    }

    /// Whether the upstream sees a different path than the client: responses are then mapped back.
    pub fn rewrites_path(&self) -> bool {
        self.rewrite != PathRewrite::Keep
    }

    /// The path prefix on the upstream side of the rewrite (`` when stripped).
    pub fn upstream_key(&self) -> &str {
        match &self.rewrite {
            PathRewrite::Keep => &self.key,
            PathRewrite::Strip => "",
            PathRewrite::Replace(r) => r,
        }
    }
}

/// Header edits; names are stored lower-case for matching and as written for sending.
#[derive(Default)]
pub struct HeaderRules {
    pub set: Vec<HeaderValue>,
    pub add: Vec<HeaderValue>,
    pub remove: Vec<String>,
}

pub struct HeaderValue {
    pub name: String,
    pub lower: String,
    pub value: String,
}

impl HeaderRules {
    /// A header the client (or upstream) sent that this rule set replaces or removes.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name))
            || self.set.iter().any(|s| s.lower.as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Clone, Copy)]
pub struct Forwarding {
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub x_forwarded_port: bool,
    pub x_real_ip: bool,
    pub x_forwarded_prefix: bool,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            x_forwarded_port: true,
            x_real_ip: true,
            x_forwarded_prefix: true,
        }
    }
}

/// Severity of ringway's own stderr events (`[log] level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// A tunnel's limits (`[[route]] tunnel_idle_timeout`, `tunnel_max_lifetime`).
#[derive(Debug, Clone)]
pub struct TunnelLimits {
    /// The tunnel ends when no byte moved either way for this long.
    pub idle_timeout: Duration,
    /// The tunnel ends this long after the relay started, busy or not.
    pub max_lifetime: Option<Duration>,
}

impl Default for TunnelLimits {
    /// One hour idle, no maximum lifetime: an idle WebSocket must survive far longer than
    /// nginx's 60 s default.
    fn default() -> Self {
        TunnelLimits {
            idle_timeout: Duration::from_secs(3600),
            max_lifetime: None,
        }
    }
}
