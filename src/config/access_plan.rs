//! The access part of the plan: who may pass (`allow`/`deny`, `trusted_proxies`), how fast
//! (`rate`), CORS, and the `[auth.NAME]` tables (basic auth against a password file, forward
//! auth to a service). The `auth` step of the exchange reads these; it never builds them.

use super::cidr::CidrList;
use super::htpasswd::Users;
use std::net::SocketAddr;
use std::time::Duration;

/// The access part of the compiled plan.
#[derive(Default)]
pub struct AccessPlan {
    /// Peers whose X-Forwarded-For is believed (`[server] trusted_proxies`).
    pub trusted_proxies: CidrList,
    /// `[auth.NAME]` tables, referenced by index from routes.
    pub auths: Vec<AuthPlan>,
    /// Every identity header in the file, lower-case with `_` written as `-`; stripped from all
    /// client requests in any spelling that folds to one of them.
    pub identity_headers: Vec<String>,
}

impl AccessPlan {
    /// Whether a client's header name is an identity header in any case and with `_` for `-`
    /// anywhere: WSGI, CGI and Rack backends see `X_WEBAUTH_USER` as `X-WEBAUTH-USER`. Names
    /// of another length are passed over without looking at their bytes.
    pub fn is_identity_header(&self, name: &str) -> bool {
        let name = name.as_bytes();
        self.identity_headers
            .iter()
            .any(|h| h.len() == name.len() && h.bytes().zip(name).all(|(a, &b)| a == fold_header_byte(b)))
    }
}

/// A header name byte as identity headers are compared: lower-case, `_` as `-`.
#[inline]
pub fn fold_header_byte(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

pub struct AuthPlan {
    pub name: String,
    pub method: AuthMethod,
    /// Basic: set to the user name. Forward: only stripped (the auth service's copy_headers set it).
    pub identity_header: Option<String>,
}

pub enum AuthMethod {
    Basic(BasicAuth),
    Forward(ForwardAuth),
}

pub struct BasicAuth {
    pub users: Users,
    /// The WWW-Authenticate value, e.g. `Basic realm="Grafana", charset="UTF-8"`.
    pub challenge: String,
    pub remember: Duration,
}

/// A route's access settings; the default lets everyone in unchanged.
#[derive(Default)]
pub struct RouteAccess {
    pub auth: Option<usize>,
    pub allow: Option<CidrList>,
    pub deny: Option<CidrList>,
    pub rate: Option<RateSpec>,
    pub cors: Option<CorsPlan>,
    /// `identity_static = { header, value }`: (name as written, value).
    pub identity_static: Option<(String, String)>,
}

pub struct ForwardAuth {
    /// As written, for messages.
    pub url: String,
    pub addr: SocketAddr,
    /// `host:port` sent as Host.
    pub authority: String,
    /// Path and query of the auth URL.
    pub path: String,
    /// (auth response header, lower-case; upstream request header as written).
    pub copy: Vec<(String, String)>,
    /// Connect plus complete answer.
    pub timeout: Duration,
}

pub struct CorsPlan {
    /// Exact origins (`https://app.example.com`), or `*` for any.
    pub allow_origin: Vec<String>,
    pub any_origin: bool,
    /// Comma-joined, as sent.
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub allow_credentials: bool,
    pub max_age: Option<Duration>,
}

/// The limit as written in the route (process-wide).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: f64,
}
