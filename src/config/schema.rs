//! The TOML file as written: serde types that mirror the public configuration keys.
//! Unknown keys are rejected here; meaning (addresses, references, conflicts) is checked in `compile`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub listener: Vec<S<RawListener>>,
    #[serde(default)]
    pub upstream: BTreeMap<String, S<RawUpstream>>,
    #[serde(default)]
    pub route: Vec<S<RawRoute>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub workers: Option<S<i64>>,
    pub max_head_size: Option<S<SizeValue>>,
    pub max_uri_size: Option<S<SizeValue>>,
    pub header_timeout: Option<S<String>>,
    pub max_connections: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: S<String>,
    /// `[[listener.tls]]`: certificate pairs; the first is the default for clients without SNI.
    #[serde(default)]
    pub tls: Vec<S<RawCertPair>>,
    /// Strict-Transport-Security value sent on responses of a TLS listener.
    pub hsts: Option<S<String>>,
    /// Plaintext listener: answer every request with 308 to this base URL + path and query.
    pub redirect_https: Option<S<String>>,
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
    /// PEM CA file trusted for `https://` servers (default: the system roots).
    pub ca: Option<S<String>>,
    /// Accept any certificate from `https://` servers (explicit only; `ringway check` warns).
    pub insecure_skip_verify: Option<S<bool>>,
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
    pub weight: Option<u32>,
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
