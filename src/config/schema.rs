//! The TOML file as written: serde types that mirror the public configuration keys.
//! Unknown keys are rejected here; meaning (addresses, references, conflicts) is checked in `compile`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A value with its place in the file, for errors that name the line. Only for values and for
/// tables that are always written explicitly (`[[route]]`): toml cannot give the span of a table
/// created implicitly by a dotted key or a deeper header (`[auth.sso.forward]` alone,
/// `upstream.g.servers = …`), so such tables are plain and their errors are located by text.
pub type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub listener: Vec<S<RawListener>>,
    #[serde(default)]
    pub upstream: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub route: Vec<S<RawRoute>>,
    #[serde(default)]
    pub auth: BTreeMap<String, RawAuth>,
    pub log: Option<S<RawLog>>,
    pub admin: Option<S<RawAdmin>>,
    pub compress: Option<S<RawCompress>>,
    pub cache: Option<S<RawCache>>,
}

/// `[compress]`: what `[[route]] compress = true` compresses, and how hard.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCompress {
    /// Media types (`type/subtype` or `type/*`) worth compressing.
    pub types: Option<S<Vec<String>>>,
    /// Responses with a smaller Content-Length are sent as they are.
    pub min_size: Option<S<SizeValue>>,
    pub gzip_level: Option<S<i64>>,
    pub brotli_level: Option<S<i64>>,
    pub zstd_level: Option<S<i64>>,
}

/// `[cache]`: the memory the response cache may use and the largest response it keeps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// For the whole process, split evenly across workers.
    pub size: Option<S<SizeValue>>,
    pub max_object: Option<S<SizeValue>>,
}

/// `[log]`: the access log and the level of ringway's own stderr events.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `stdout` | `off` | a file path.
    pub access: Option<S<String>>,
    /// `combined` | `json`.
    pub format: Option<S<String>>,
    /// `error` | `warn` | `info` | `debug`.
    pub level: Option<S<String>>,
}

/// `[admin]`: the metrics, health and status endpoints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub workers: Option<S<i64>>,
    pub max_head_size: Option<S<SizeValue>>,
    pub max_uri_size: Option<S<SizeValue>>,
    pub header_timeout: Option<S<String>>,
    pub max_connections: Option<S<i64>>,
    pub trusted_proxies: Option<S<Vec<String>>>,
    /// How long a stopping or replaced ringway lets in-flight requests finish.
    pub shutdown_timeout: Option<S<String>>,
    /// Unix socket on which a running ringway hands its listeners to a successor.
    pub control_socket: Option<S<String>>,
    /// "auto", "io_uring" or "epoll": which monoio driver the workers run on.
    pub io_driver: Option<S<String>>,
    /// "drop" (default) or "pass": request header names containing `_`.
    pub underscores_in_headers: Option<S<String>>,
    /// HTTP/2: streams one client connection may have open at once.
    pub h2_max_concurrent_streams: Option<S<i64>>,
    /// HTTP/2: flow-control window of each stream and of the whole connection (request bodies).
    pub h2_stream_window: Option<S<SizeValue>>,
    pub h2_connection_window: Option<S<SizeValue>>,
    /// HTTP/2: streams a client may reset before their response, before rapid reset is checked.
    pub h2_max_resets: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: S<String>,
    /// What routes call this listener (`[[route]] listeners`).
    pub name: Option<S<String>>,
    /// `[[listener.tls]]`: certificate pairs; the first is the default for clients without SNI.
    #[serde(default)]
    pub tls: Vec<S<RawCertPair>>,
    /// Strict-Transport-Security value sent on responses of a TLS listener.
    pub hsts: Option<S<String>>,
    /// Plaintext listener: answer every request with 308 to this base URL + path and query.
    pub redirect_https: Option<S<String>>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a layer-4 balancer.
    pub proxy_protocol: Option<S<bool>>,
    /// The peers (CIDRs) allowed to send that header; default: any.
    pub proxy_protocol_from: Option<S<Vec<String>>>,
    /// TLS listener: offer HTTP/2 through ALPN (default true).
    pub http2: Option<S<bool>>,
    /// Plaintext listener: accept HTTP/2 with prior knowledge (default false).
    pub h2c: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: S<String>,
    pub key: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub servers: S<Vec<RawServerEntry>>,
    pub connect_timeout: Option<S<String>>,
    /// Idle pooled connections kept per worker and server.
    pub keepalive: Option<S<i64>>,
    /// How long a pooled connection may stay idle before it is closed.
    pub keepalive_timeout: Option<S<String>>,
    /// `round_robin` (smooth weighted) | `least_conn` | `p2c` | `hash`.
    pub balance: Option<S<String>>,
    /// With `balance = "hash"`: `client_ip` | `header:NAME` | `cookie:NAME`.
    pub hash_key: Option<S<String>>,
    pub max_connections_per_server: Option<S<i64>>,
    pub queue_timeout: Option<S<String>>,
    pub retries: Option<S<i64>>,
    pub health: Option<RawHealth>,
    pub passive: Option<RawPassive>,
    /// PEM CA file trusted for `https://` servers (default: the system roots).
    pub ca: Option<S<String>>,
    /// Accept any certificate from `https://` servers (explicit only; `ringway check` warns).
    pub insecure_skip_verify: Option<S<bool>>,
    /// "v1" | "v2": a PROXY protocol header first on every connection to the servers.
    pub send_proxy_protocol: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub expect_status: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    pub max_fails: Option<S<i64>>,
    pub cooldown: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawServerEntry {
    Addr(String),
    Detailed(RawServerDetail),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerDetail {
    pub addr: String,
    pub weight: Option<i64>,
}

/// A size is an integer of bytes or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Names of the listeners this route serves (default: every listener).
    pub listeners: Option<S<Vec<String>>>,
    pub host: Option<S<String>>,
    pub prefix: Option<S<String>>,
    #[serde(default)]
    pub prefix_case_insensitive: bool,
    pub upstream: S<String>,
    pub strip_prefix: Option<S<bool>>,
    pub replace_prefix: Option<S<String>>,
    pub preserve_host: Option<bool>,
    pub response_timeout: Option<S<String>>,
    pub read_timeout: Option<S<String>>,
    pub send_timeout: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub max_body: Option<S<SizeValue>>,
    /// Upgrade tokens forwarded to the upstream (default: websocket).
    pub upgrades: Option<S<Vec<String>>>,
    pub tunnel_idle_timeout: Option<S<String>>,
    pub tunnel_max_lifetime: Option<S<String>>,
    pub request_headers: Option<RawHeaderRules>,
    pub response_headers: Option<RawHeaderRules>,
    pub forwarding: Option<RawForwarding>,
    pub auth: Option<S<String>>,
    pub allow: Option<S<Vec<String>>>,
    pub deny: Option<S<Vec<String>>>,
    pub rate_limit: Option<RawRateLimit>,
    pub cors: Option<RawCors>,
    pub identity_static: Option<RawIdentityStatic>,
    /// Compress eligible responses for clients that accept it (`[compress]` says which and how).
    pub compress: Option<bool>,
    /// Keep cacheable responses in the worker's cache (`[cache]`).
    pub cache: Option<S<bool>>,
    /// Freshness for 200 responses to GET/HEAD that carry no caching headers (micro-caching).
    pub cache_ttl: Option<S<String>>,
    /// Cookies that make a request one person's: not answered from or stored in the cache
    /// unless the response says it may be shared.
    pub cache_bypass_cookies: Option<S<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    #[serde(default)]
    pub set: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub add: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub remove: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    pub x_forwarded_for: Option<bool>,
    pub x_forwarded_proto: Option<bool>,
    pub x_forwarded_host: Option<bool>,
    pub x_forwarded_port: Option<bool>,
    pub x_real_ip: Option<bool>,
    pub x_forwarded_prefix: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub basic: Option<RawBasic>,
    pub forward: Option<RawForwardAuth>,
    pub identity_header: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub htpasswd: S<String>,
    pub realm: Option<S<String>>,
    /// How long a worker remembers a successful check ("0s" turns it off).
    pub remember: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub url: S<String>,
    #[serde(default)]
    pub copy_headers: BTreeMap<String, S<String>>,
    pub timeout: Option<S<String>>,
}

/// A number written as an integer or a float.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn get(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: Number,
    pub burst: Option<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allow_origin: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityStatic {
    pub header: String,
    pub value: String,
}
