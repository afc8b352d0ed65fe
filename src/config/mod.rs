//! Configuration: read the TOML file, check it, and compile it into the immutable [`Plan`].
//!
//! Every error names the file, the line and the key, so `ringway check` output can be acted on
//! without guessing; all errors are collected, not just the first.

mod access;
mod plan;
pub mod route_table;
mod schema;
pub mod units;

pub use crate::http::is_token;
pub use plan::*;

use crate::config::route_table::RouteTable;
use schema::*;
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use units::{parse_duration, parse_size};

/// One problem in the configuration file, located by line and key.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.file.display(), self.line)?;
        } else {
            write!(f, "{}: ", self.file.display())?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Reads and compiles the file at `path`.
pub fn load(path: &Path) -> Result<Plan, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    load_str(&text, path)
}

/// Compiles configuration text; `path` is only used to name the file in errors.
pub fn load_str(text: &str, path: &Path) -> Result<Plan, Vec<ConfigError>> {
    let mut c = Compiler {
        text,
        file: path,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|s| c.line(s.start)).unwrap_or(0);
            let message = e.message().trim().to_string();
            return Err(vec![ConfigError {
                file: path.to_path_buf(),
                line,
                key: String::new(),
                message,
            }]);
        }
    };
    let plan = c.compile(raw);
    if c.errors.is_empty() {
        Ok(plan)
    } else {
        Err(c.errors)
    }
}

/// Where an error points: a spanned value, or `Near` text for tables toml gives no span for.
pub(super) trait Place {
    fn offset(&self, text: &str) -> Option<usize>;
}

impl<T> Place for S<T> {
    fn offset(&self, _: &str) -> Option<usize> {
        Some(self.span().start)
    }
}

/// The first place the text appears in the file at or after a byte offset (a table header or
/// dotted key naming the table): `Near::file` searches the whole file, `Near::within` one
/// `[[route]]` table, so an error points at the route at fault.
pub(super) struct Near<'a> {
    from: usize,
    text: &'a str,
}

impl<'a> Near<'a> {
    pub(super) fn file(text: &'a str) -> Self {
        Near { from: 0, text }
    }

    pub(super) fn within<T>(table: &S<T>, text: &'a str) -> Self {
        Near {
            from: table.span().start,
            text,
        }
    }
}

impl Place for Near<'_> {
    fn offset(&self, text: &str) -> Option<usize> {
        let rest = text.get(self.from..)?;
        Some(self.from + rest.find(self.text).unwrap_or(0))
    }
}

struct Compiler<'a> {
    text: &'a str,
    file: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Compiler<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn error(&mut self, at: &impl Place, key: &str, message: impl Into<String>) {
        let line = at.offset(self.text).map(|o| self.line(o)).unwrap_or(0);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Option<S<String>>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(m) => {
                    self.error(s, key, m);
                    default
                }
            },
        }
    }

    fn size(&mut self, v: &Option<S<SizeValue>>, key: &str) -> Option<u64> {
        let s = v.as_ref()?;
        let parsed = match s.get_ref() {
            SizeValue::Bytes(n) if *n >= 0 => Ok(*n as u64),
            SizeValue::Bytes(n) => Err(format!("size {n} must not be negative")),
            SizeValue::Text(t) => parse_size(t),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(m) => {
                self.error(s, key, m);
                None
            }
        }
    }

    fn compile(&mut self, raw: RawConfig) -> Plan {
        let server = self.server(&raw.server);
        let listeners = raw
            .listener
            .iter()
            .filter_map(|l| self.listener(l.get_ref()))
            .collect::<Vec<_>>();
        if raw.listener.is_empty() {
            self.errors.push(ConfigError {
                file: self.file.to_path_buf(),
                line: 0,
                key: "listener".into(),
                message: "no [[listener]] defined: add one with bind = \"0.0.0.0:8080\"".into(),
            });
        }

        let mut upstream_ids = HashMap::new();
        let mut upstreams = Vec::new();
        for (name, up) in &raw.upstream {
            upstream_ids.insert(name.clone(), upstreams.len());
            upstreams.push(self.upstream(name, up, server.workers));
        }

        let (mut access, auth_ids) = self.access(&raw);
        let mut routes: Vec<RoutePlan> = Vec::new();
        let mut seen: HashMap<(HostMatch, String), usize> = HashMap::new();
        for (i, r) in raw.route.iter().enumerate() {
            let Some(mut route) = self.route(i + 1, r.get_ref(), &upstream_ids) else {
                continue;
            };
            route.access = self.route_access(i + 1, r, &auth_ids, &mut access.identity_headers);
            let dup_key = (route.host.clone(), route.key.to_ascii_lowercase());
            let prefix_at = r.get_ref().prefix.as_ref();
            if let Some(&other) = seen.get(&dup_key) {
                let same_case = routes[other].key == route.key;
                if same_case || route.case_insensitive || routes[other].case_insensitive {
                    let msg = format!(
                        "route #{} duplicates route #{} (same host and prefix `{}`)",
                        route.number, routes[other].number, route.prefix
                    );
                    match prefix_at {
                        Some(p) => self.error(p, "route.prefix", msg),
                        None => self.error(&r.get_ref().upstream, "route.prefix", msg),
                    }
                    continue;
                }
            }
            seen.insert(dup_key, routes.len());
            routes.push(route);
        }
        if raw.route.is_empty() {
            self.errors.push(ConfigError {
                file: self.file.to_path_buf(),
                line: 0,
                key: "route".into(),
                message: "no [[route]] defined: every request would get 404".into(),
            });
        }
        access.identity_headers.sort();
        access.identity_headers.dedup();
        let table = RouteTable::build(&routes);
        let log = self.log(raw.log.as_ref());
        let admin = raw.admin.as_ref().and_then(|a| {
            let bind = &a.get_ref().bind;
            match bind.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        bind,
                        "admin.bind",
                        format!("`{}` is not an IP:port address", bind.get_ref()),
                    );
                    None
                }
            }
        });
        Plan {
            source: self.file.to_path_buf(),
            server,
            listeners,
            upstreams,
            routes,
            table,
            access,
            warnings: std::mem::take(&mut self.warnings),
            log,
            admin,
        }
    }

    fn log(&mut self, raw: Option<&S<RawLog>>) -> LogPlan {
        let mut plan = LogPlan::default();
        let Some(raw) = raw.map(|r| r.get_ref()) else {
            return plan;
        };
        if let Some(a) = &raw.access {
            plan.access = match a.get_ref().as_str() {
                "off" => AccessTarget::Off,
                "stdout" => AccessTarget::Stdout,
                "" => {
                    self.error(a, "log.access", "must be \"stdout\", \"off\" or a file path");
                    AccessTarget::Off
                }
                path => AccessTarget::File(self.path(path)),
            };
        }
        if let Some(f) = &raw.format {
            plan.format = match f.get_ref().as_str() {
                "combined" => LogFormat::Combined,
                "json" => LogFormat::Json,
                other => {
                    self.error(f, "log.format", format!("`{other}`: must be \"combined\" or \"json\""));
                    LogFormat::Combined
                }
            };
        }
        if let Some(l) = &raw.level {
            match crate::observe::Level::parse(l.get_ref()) {
                Some(level) => plan.level = level,
                None => self.error(
                    l,
                    "log.level",
                    format!("`{}`: must be \"error\", \"warn\", \"info\" or \"debug\"", l.get_ref()),
                ),
            }
        }
        plan
    }

    fn warn<T>(&mut self, at: &S<T>, key: &str, message: impl fmt::Display) {
        let line = self.line(at.span().start);
        self.warnings
            .push(format!("{}:{}: {}: {}", self.file.display(), line, key, message));
    }

    /// A path in the configuration, relative to the configuration file's directory.
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.file.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn listener(&mut self, l: &RawListener) -> Option<ListenerPlan> {
        let bind = match l.bind.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.error(
                    &l.bind,
                    "listener.bind",
                    format!(
                        "`{}` is not an address like 0.0.0.0:8080 or [::]:8080",
                        l.bind.get_ref()
                    ),
                );
                return None;
            }
        };
        let tls = if l.tls.is_empty() {
            None
        } else {
            let pairs: Vec<crate::tls::CertPair> = l
                .tls
                .iter()
                .map(|p| crate::tls::CertPair {
                    cert: self.path(p.get_ref().cert.get_ref()),
                    key: self.path(p.get_ref().key.get_ref()),
                })
                .collect();
            match crate::tls::ServerTls::load(&pairs) {
                Ok((tls, warnings)) => {
                    for w in warnings {
                        self.warn(&l.tls[0].get_ref().cert, "listener.tls.cert", w);
                    }
                    Some(tls)
                }
                Err(e) => {
                    // Point at the pair the error names, when it names one.
                    let text = e.to_string();
                    let at = l
                        .tls
                        .iter()
                        .zip(&pairs)
                        .find(|(_, p)| {
                            text.contains(&*p.cert.to_string_lossy()) || text.contains(&*p.key.to_string_lossy())
                        })
                        .map(|(raw, _)| raw)
                        .unwrap_or(&l.tls[0]);
                    self.error(&at.get_ref().cert, "listener.tls", text);
                    return None;
                }
            }
        };
        let hsts = match &l.hsts {
            None => None,
            Some(h) if tls.is_none() => {
                self.error(
                    h,
                    "listener.hsts",
                    "only a TLS listener (with [[listener.tls]]) can send HSTS",
                );
                None
            }
            Some(h) if h.get_ref().is_empty() || h.get_ref().bytes().any(|b| b < 0x20 || b == 0x7f) => {
                self.error(
                    h,
                    "listener.hsts",
                    "must be a header value such as \"max-age=31536000\"",
                );
                None
            }
            Some(h) => Some(h.get_ref().clone()),
        };
        let redirect_https = match &l.redirect_https {
            None => None,
            Some(r) if tls.is_some() => {
                self.error(
                    r,
                    "listener.redirect_https",
                    "a TLS listener cannot redirect to HTTPS; use it on a plaintext listener",
                );
                None
            }
            Some(r) => {
                let base = r.get_ref().trim_end_matches('/');
                let rest = base.strip_prefix("https://").unwrap_or("");
                if rest.is_empty()
                    || rest.contains(['/', '?', '#', ' '])
                    || rest.bytes().any(|b| !(0x21..0x7f).contains(&b))
                {
                    self.error(
                        r,
                        "listener.redirect_https",
                        format!("`{}` must be https://host or https://host:port (no path)", r.get_ref()),
                    );
                    None
                } else {
                    Some(base.to_string())
                }
            }
        };
        Some(ListenerPlan {
            bind,
            tls,
            hsts,
            redirect_https,
        })
    }

    fn server(&mut self, raw: &RawServer) -> ServerSettings {
        let cores = core_affinity::get_core_ids().map(|c| c.len()).unwrap_or(0).max(1);
        let workers = match &raw.workers {
            None => cores,
            Some(w) if *w.get_ref() == 0 => cores,
            Some(w) if (1..=1024).contains(w.get_ref()) => *w.get_ref() as usize,
            Some(w) => {
                self.error(w, "server.workers", "must be 0 (one per core) or 1 to 1024");
                1
            }
        };
        let max_head_size = self
            .size(&raw.max_head_size, "server.max_head_size")
            .unwrap_or(16 * 1024) as usize;
        let max_uri_size = self.size(&raw.max_uri_size, "server.max_uri_size").unwrap_or(8 * 1024) as usize;
        if max_head_size < 256 {
            if let Some(s) = &raw.max_head_size {
                self.error(s, "server.max_head_size", "must be at least 256 bytes");
            }
        }
        let header_timeout = self.duration(&raw.header_timeout, "server.header_timeout", Duration::from_secs(10));
        let max_connections = match &raw.max_connections {
            None => 0,
            Some(m) if *m.get_ref() >= 0 => *m.get_ref() as usize,
            Some(m) => {
                self.error(m, "server.max_connections", "must not be negative");
                0
            }
        };
        let shutdown_timeout = self.duration(
            &raw.shutdown_timeout,
            "server.shutdown_timeout",
            Duration::from_secs(30),
        );
        let control_socket = match &raw.control_socket {
            Some(p) if p.get_ref().is_empty() => {
                self.error(
                    p,
                    "server.control_socket",
                    "must be a path (leave the key out for none)",
                );
                None
            }
            Some(p) => Some(self.path(p.get_ref())),
            None => None,
        };
        ServerSettings {
            workers,
            max_head_size: max_head_size.max(256),
            max_uri_size,
            header_timeout,
            max_connections,
            shutdown_timeout,
            control_socket,
        }
    }

    fn count(&mut self, v: &Option<S<i64>>, key: &str, range: std::ops::RangeInclusive<i64>, default: u32) -> u32 {
        match v {
            None => default,
            Some(n) if range.contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.error(
                    n,
                    key,
                    format!("must be a whole number from {} to {}", range.start(), range.end()),
                );
                default
            }
        }
    }

    fn upstream(&mut self, name: &str, up: &RawUpstream, workers: usize) -> UpstreamPlan {
        let raw = up;
        let key = format!("upstream.{name}.servers");
        let mut servers = Vec::new();
        if raw.servers.get_ref().is_empty() {
            self.error(&raw.servers, &key, "needs at least one server");
        }
        for entry in raw.servers.get_ref() {
            let (addr, weight) = match entry {
                RawServerEntry::Addr(a) => (a.as_str(), 1),
                RawServerEntry::Detailed(d) => (d.addr.as_str(), d.weight.unwrap_or(1)),
            };
            if !(1..=MAX_WEIGHT).contains(&weight) {
                self.error(
                    &raw.servers,
                    &key,
                    format!("`{addr}`: weight {weight} must be from 1 to {MAX_WEIGHT}"),
                );
                continue;
            }
            let weight = weight as u32;
            match resolve_server(addr) {
                Ok((sock, authority, tls)) => servers.push(ServerPlan {
                    addr: sock,
                    host: host_of(&authority),
                    authority,
                    weight,
                    tls,
                }),
                Err(m) => self.error(&raw.servers, &key, m),
            }
        }
        let connect_timeout = self.duration(
            &raw.connect_timeout,
            &format!("upstream.{name}.connect_timeout"),
            Duration::from_secs(5),
        );
        let keepalive_timeout = self.duration(
            &raw.keepalive_timeout,
            &format!("upstream.{name}.keepalive_timeout"),
            Duration::from_secs(30),
        );
        let keepalive = match &raw.keepalive {
            None => 64,
            Some(k) if *k.get_ref() >= 0 => *k.get_ref() as usize,
            Some(k) => {
                self.error(k, &format!("upstream.{name}.keepalive"), "must not be negative");
                0
            }
        };
        let k = |s: &str| format!("upstream.{name}.{s}");
        let balance = match &raw.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_conn" => Balance::LeastConn,
                "p2c" => Balance::P2c,
                "hash" => Balance::Hash(HashKey::ClientIp),
                other => {
                    self.error(
                        b,
                        &k("balance"),
                        format!("`{other}` is not an algorithm (use round_robin, least_conn, p2c or hash)"),
                    );
                    Balance::RoundRobin
                }
            },
        };
        let balance = match (&raw.hash_key, balance) {
            (Some(h), Balance::Hash(_)) => match parse_hash_key(h.get_ref()) {
                Ok(key) => Balance::Hash(key),
                Err(m) => {
                    self.error(h, &k("hash_key"), m);
                    Balance::Hash(HashKey::ClientIp)
                }
            },
            (Some(h), other) => {
                self.error(h, &k("hash_key"), "only used with balance = \"hash\"");
                other
            }
            (None, b) => b,
        };
        let max_conns = self.count(
            &raw.max_connections_per_server,
            &k("max_connections_per_server"),
            0..=1_000_000,
            0,
        );
        let queue_timeout = self.duration(&raw.queue_timeout, &k("queue_timeout"), Duration::from_secs(1));
        let retries = self.count(&raw.retries, &k("retries"), 0..=16, 1);
        let health = raw.health.as_ref().map(|h| self.health(name, h));
        // Passive ejection is on by default only where another server can take the traffic: a
        // lone server that is ejected would turn a short outage into `cooldown` of 503s.
        let passive = match &raw.passive {
            Some(p) => {
                let max_fails = self.count(&p.max_fails, &k("passive.max_fails"), 0..=1000, 3);
                let cooldown = self.duration(&p.cooldown, &k("passive.cooldown"), Duration::from_secs(10));
                (max_fails > 0).then_some(PassivePlan { max_fails, cooldown })
            }
            None if servers.len() > 1 => Some(PassivePlan {
                max_fails: 3,
                cooldown: Duration::from_secs(10),
            }),
            None => None,
        };
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        let ring = matches!(balance, Balance::Hash(_)).then(|| {
            let names: Vec<&str> = servers.iter().map(|s| s.authority.as_str()).collect();
            HashRing::build(&names, &weights)
        });
        let tls = self.upstream_tls(name, raw, servers.iter().any(|s| s.tls));
        if health.is_some() && servers.iter().any(|s| s.tls) {
            // The prober speaks plain HTTP: against a TLS port it would mark every server down.
            self.error(
                &Near::file(&format!("upstream.{name}")),
                &k("health"),
                "active health checks of https:// servers are not supported yet; remove [health] (passive ejection still applies)",
            );
        }
        UpstreamPlan {
            name: name.to_string(),
            servers,
            connect_timeout,
            keepalive,
            keepalive_timeout,
            balance,
            weights,
            ring,
            max_conns_per_worker: if max_conns == 0 {
                0
            } else {
                max_conns.div_ceil(workers.max(1) as u32)
            },
            max_connections_per_server: max_conns,
            queue_timeout,
            retries,
            health,
            passive,
            tls,
        }
    }

    fn health(&mut self, name: &str, h: &RawHealth) -> HealthPlan {
        let k = |s: &str| format!("upstream.{name}.health.{s}");
        let raw = h;
        let path = match &raw.path {
            None => "/".to_string(),
            Some(p) if p.get_ref().starts_with('/') && !p.get_ref().bytes().any(|b| !(0x21..0x7f).contains(&b)) => {
                p.get_ref().clone()
            }
            Some(p) => {
                self.error(
                    p,
                    &k("path"),
                    format!("`{}` must be a path starting with `/`, without spaces", p.get_ref()),
                );
                "/".to_string()
            }
        };
        let interval = self.duration(&raw.interval, &k("interval"), Duration::from_secs(2));
        let timeout = self.duration(&raw.timeout, &k("timeout"), Duration::from_secs(1));
        if let Some(i) = &raw.interval {
            if interval.is_zero() {
                self.error(i, &k("interval"), "must be longer than 0");
            }
        }
        if let Some(t) = &raw.timeout {
            if timeout.is_zero() {
                self.error(t, &k("timeout"), "must be longer than 0");
            }
        }
        let rise = self.count(&raw.rise, &k("rise"), 1..=100, 2);
        let fall = self.count(&raw.fall, &k("fall"), 1..=100, 3);
        let expect = match &raw.expect_status {
            None => (200, 399),
            Some(e) => match parse_status_range(e.get_ref()) {
                Some(r) => r,
                None => {
                    self.error(
                        e,
                        &k("expect_status"),
                        format!("`{}` is not a status or range like \"200\" or \"200-399\"", e.get_ref()),
                    );
                    (200, 399)
                }
            },
        };
        HealthPlan {
            path,
            interval: if interval.is_zero() {
                Duration::from_secs(2)
            } else {
                interval
            },
            timeout: if timeout.is_zero() {
                Duration::from_secs(1)
            } else {
                timeout
            },
            rise,
            fall,
            expect,
        }
    }

    fn upstream_tls(&mut self, name: &str, raw: &RawUpstream, any_https: bool) -> Option<crate::tls::UpstreamTls> {
        let insecure = raw.insecure_skip_verify.as_ref().is_some_and(|v| *v.get_ref());
        if !any_https {
            if let Some(ca) = &raw.ca {
                self.warn(
                    ca,
                    &format!("upstream.{name}.ca"),
                    "no server of this upstream is https://, so it is unused",
                );
            }
            if let Some(v) = raw.insecure_skip_verify.as_ref().filter(|_| insecure) {
                self.warn(
                    v,
                    &format!("upstream.{name}.insecure_skip_verify"),
                    "no server of this upstream is https://, so it is unused",
                );
            }
            return None;
        }
        if let Some(v) = raw.insecure_skip_verify.as_ref().filter(|_| insecure) {
            self.warn(
                v,
                &format!("upstream.{name}.insecure_skip_verify"),
                "certificates of this upstream are NOT verified; anyone on the path can impersonate it",
            );
        }
        let ca = raw.ca.as_ref().map(|c| (c, self.path(c.get_ref())));
        match crate::tls::UpstreamTls::new(ca.as_ref().map(|(_, p)| p.as_path()), insecure) {
            Ok(tls) => Some(tls),
            Err(e) => {
                match &ca {
                    Some((at, _)) => self.error(*at, &format!("upstream.{name}.ca"), e.to_string()),
                    None => self.error(&raw.servers, &format!("upstream.{name}.servers"), e.to_string()),
                }
                None
            }
        }
    }

    fn route(&mut self, number: usize, r: &RawRoute, upstreams: &HashMap<String, usize>) -> Option<RoutePlan> {
        let mut ok = true;
        let upstream = match upstreams.get(r.upstream.get_ref()) {
            Some(&id) => id,
            None => {
                let known: Vec<&str> = upstreams.keys().map(|k| k.as_str()).collect();
                self.error(
                    &r.upstream,
                    "route.upstream",
                    format!(
                        "route #{number} names upstream `{}`, which is not defined (defined: {})",
                        r.upstream.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                ok = false;
                0
            }
        };
        let host = match &r.host {
            None => HostMatch::Any,
            Some(h) => match parse_host_pattern(h.get_ref()) {
                Ok(m) => m,
                Err(msg) => {
                    self.error(h, "route.host", msg);
                    ok = false;
                    HostMatch::Any
                }
            },
        };
        let prefix = r
            .prefix
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| "/".into());
        if let Some(p) = &r.prefix {
            if let Err(msg) = check_prefix(p.get_ref()) {
                self.error(p, "route.prefix", msg);
                ok = false;
            }
        }
        let key = prefix.strip_suffix('/').unwrap_or(&prefix).to_string();
        let strip = r.strip_prefix.as_ref().map(|s| *s.get_ref()).unwrap_or(false);
        let rewrite = match (&r.replace_prefix, strip) {
            (Some(rep), true) => {
                self.error(
                    rep,
                    "route.replace_prefix",
                    "use either strip_prefix = true or replace_prefix, not both",
                );
                ok = false;
                PathRewrite::Keep
            }
            (Some(rep), false) => match check_prefix(rep.get_ref()) {
                Ok(()) => PathRewrite::Replace(rep.get_ref().strip_suffix('/').unwrap_or(rep.get_ref()).to_string()),
                Err(msg) => {
                    self.error(rep, "route.replace_prefix", msg);
                    ok = false;
                    PathRewrite::Keep
                }
            },
            (None, true) => PathRewrite::Strip,
            (None, false) => PathRewrite::Keep,
        };
        let response_timeout = self.duration(&r.response_timeout, "route.response_timeout", Duration::from_secs(60));
        let read_timeout = self.duration(&r.read_timeout, "route.read_timeout", Duration::from_secs(60));
        let send_timeout = self.duration(&r.send_timeout, "route.send_timeout", Duration::from_secs(60));
        let idle_timeout = self.duration(&r.idle_timeout, "route.idle_timeout", Duration::from_secs(75));
        let max_body = self.size(&r.max_body, "route.max_body");
        let upgrades = match &r.upgrades {
            None => vec!["websocket".to_string()],
            Some(list) => {
                let mut out = Vec::new();
                for u in list.get_ref() {
                    if is_token(u) {
                        out.push(u.to_ascii_lowercase());
                    } else {
                        self.error(list, "route.upgrades", format!("`{u}` is not a protocol name"));
                    }
                }
                out
            }
        };
        let tunnel = TunnelLimits {
            idle_timeout: self.duration(
                &r.tunnel_idle_timeout,
                "route.tunnel_idle_timeout",
                Duration::from_secs(3600),
            ),
            max_lifetime: r
                .tunnel_max_lifetime
                .as_ref()
                .map(|_| self.duration(&r.tunnel_max_lifetime, "route.tunnel_max_lifetime", Duration::ZERO)),
        };
        let request_headers = self.header_rules(r.request_headers.as_ref(), "route.request_headers");
        let response_headers = self.header_rules(r.response_headers.as_ref(), "route.response_headers");
        let forwarding = match &r.forwarding {
            None => Forwarding::default(),
            Some(f) => Forwarding {
                x_forwarded_for: f.x_forwarded_for.unwrap_or(true),
                x_forwarded_proto: f.x_forwarded_proto.unwrap_or(true),
                x_forwarded_host: f.x_forwarded_host.unwrap_or(true),
                x_forwarded_port: f.x_forwarded_port.unwrap_or(true),
                x_real_ip: f.x_real_ip.unwrap_or(true),
                x_forwarded_prefix: f.x_forwarded_prefix.unwrap_or(true),
            },
        };
        ok.then(|| RoutePlan {
            number,
            host,
            prefix,
            key,
            case_insensitive: r.prefix_case_insensitive,
            upstream,
            rewrite,
            preserve_host: r.preserve_host.unwrap_or(true),
            response_timeout,
            read_timeout,
            send_timeout,
            idle_timeout,
            max_body,
            upgrades,
            tunnel,
            request_headers,
            response_headers,
            forwarding,
            access: Default::default(),
        })
    }

    fn header_rules(&mut self, raw: Option<&RawHeaderRules>, key: &str) -> HeaderRules {
        let Some(raw) = raw else { return HeaderRules::default() };
        let mut rules = HeaderRules::default();
        for (list, which) in [(&raw.set, "set"), (&raw.add, "add")] {
            for (name, value) in list {
                let k = format!("{key}.{which}");
                if !is_token(name) {
                    self.error(value, &k, format!("`{name}` is not a valid header name"));
                    continue;
                }
                if value.get_ref().bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    self.error(value, &k, format!("the value of `{name}` contains control characters"));
                    continue;
                }
                let hv = HeaderValue {
                    name: name.clone(),
                    lower: name.to_ascii_lowercase(),
                    value: value.get_ref().clone(),
                };
                if which == "set" {
                    rules.set.push(hv)
                } else {
                    rules.add.push(hv)
                }
            }
        }
        for name in &raw.remove {
            if is_token(name.get_ref()) {
                rules.remove.push(name.get_ref().to_ascii_lowercase());
            } else {
                self.error(
                    name,
                    &format!("{key}.remove"),
                    format!("`{}` is not a valid header name", name.get_ref()),
                );
            }
        }
        rules
    }
}

fn check_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`"));
    }
    if p.contains(['?', '#', ' ', '%']) || p.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!(
            "`{p}` must be a plain path (no query, fragment, spaces or escapes)"
        ));
    }
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("`{p}` must not contain `.` or `..` segments"));
    }
    if p.contains("//") {
        return Err(format!("`{p}` must not contain empty segments (`//`)"));
    }
    Ok(())
}

fn parse_host_pattern(h: &str) -> Result<HostMatch, String> {
    let lower = h.trim().to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with('.')
        && !name.ends_with('.');
    if !valid {
        return Err(format!(
            "`{h}` is not a host name (use `example.com` or `*.example.com`, without port)"
        ));
    }
    Ok(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_string())
    })
}

const MAX_WEIGHT: i64 = 1000;

fn parse_hash_key(text: &str) -> Result<HashKey, String> {
    if text == "client_ip" {
        return Ok(HashKey::ClientIp);
    }
    let bad = || format!("`{text}` is not a hash key (use client_ip, header:NAME or cookie:NAME)");
    let (kind, name) = text.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    if !is_token(name) {
        return Err(bad());
    }
    match kind {
        "header" => Ok(HashKey::Header(name.to_ascii_lowercase())),
        "cookie" => Ok(HashKey::Cookie(name.to_string())),
        _ => Err(bad()),
    }
}

/// `200` or `200-399`, within 100..=599.
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = match text.trim().split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

/// The host of `host:port` or `[v6]:port`, for SNI and certificate names.
fn host_of(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match authority.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => authority.to_string(),
    }
}

/// Resolves `host:port`, `http://host:port` or `https://host[:port]` once at start-up; returns
/// the address, the authority as written and whether the server speaks TLS.
fn resolve_server(text: &str) -> Result<(SocketAddr, String, bool), String> {
    let (rest, tls) = if let Some(r) = text.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = text.strip_prefix("https://") {
        (r, true)
    } else if text.contains("://") {
        return Err(format!("`{text}`: only http:// and https:// upstreams are supported"));
    } else {
        (text, false)
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(format!(
            "`{text}`: a server is host:port; put paths in the route's replace_prefix"
        ));
    }
    // https:// without a port means 443.
    let with_port;
    let authority = if tls && !authority.ends_with(']') && !authority.contains(':') {
        with_port = format!("{authority}:443");
        with_port.as_str()
    } else {
        authority
    };
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok((addr, authority.to_string(), tls));
    }
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| format!("`{text}` does not resolve: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolved to no address"))?;
    Ok((addr, authority.to_string(), tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(upstream: &str) -> Vec<String> {
        let text =
            format!("[[listener]]\nbind = \"127.0.0.1:0\"\n[[route]]\nupstream = \"app\"\n[upstream.app]\n{upstream}");
        match load_str(&text, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn upstream_group_keys() {
        let ok = "servers = [\"127.0.0.1:1\", { addr = \"127.0.0.1:2\", weight = 2 }]\nbalance = \"hash\"\n\
                  hash_key = \"cookie:grafana_session\"\nmax_connections_per_server = 512\nqueue_timeout = \"2s\"\n\
                  retries = 1\n[upstream.app.health]\npath = \"/api/health\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
                  rise = 2\nfall = 3\nexpect_status = \"200-399\"\n[upstream.app.passive]\nmax_fails = 3\ncooldown = \"10s\"\n";
        assert!(errors(ok).is_empty(), "{:?}", errors(ok));

        let e = errors("servers = [\"127.0.0.1:1\", \"no-such-host.invalid:3000\"]\n");
        assert!(
            e[0].starts_with("t.toml:6: upstream.app.servers: `no-such-host.invalid:3000` does not resolve"),
            "{e:?}"
        );
        let e = errors("servers = [\"127.0.0.1:1\"]\nbalance = \"random\"\n");
        assert!(e[0].starts_with("t.toml:7: upstream.app.balance: `random`"), "{e:?}");
        let e = errors("servers = [\"127.0.0.1:1\"]\nhash_key = \"client_ip\"\n");
        assert!(e[0].contains("upstream.app.hash_key: only used with balance"), "{e:?}");
        let e = errors("servers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nhash_key = \"ip\"\n");
        assert!(e[0].contains("`ip` is not a hash key"), "{e:?}");
        let e = errors("servers = [{ addr = \"127.0.0.1:1\", weight = 0 }]\n");
        assert!(e[0].contains("weight 0 must be from 1"), "{e:?}");
        let e = errors("servers = [\"127.0.0.1:1\"]\n[upstream.app.health]\nexpect_status = \"2xx\"\nfall = 0\n");
        assert_eq!(e.len(), 2, "{e:?}");
        let e = errors("servers = [\"127.0.0.1:1\"]\n[upstream.app.health]\nintervall = \"1s\"\n");
        assert!(e[0].contains("unknown field `intervall`"), "{e:?}");
    }

    #[test]
    fn passive_ejection_defaults_on_only_for_groups() {
        let one = load_str(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[[route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n",
            Path::new("t.toml"),
        )
        .ok()
        .unwrap();
        assert!(one.upstreams[0].passive.is_none());
        let two = load_str(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[server]\nworkers = 2\n[[route]]\nupstream = \"a\"\n[upstream.a]\n\
             servers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nmax_connections_per_server = 5\n",
            Path::new("t.toml"),
        )
        .ok()
        .unwrap();
        let up = &two.upstreams[0];
        assert_eq!(up.passive.as_ref().map(|p| p.max_fails), Some(3));
        assert_eq!((up.max_connections_per_server, up.max_conns_per_worker), (5, 3));
    }
}

#[cfg(test)]
mod implicit_table_tests {
    use super::load_str;
    use std::path::Path;

    /// Tables created by dotted keys or by a deeper header alone are ordinary TOML: they load.
    #[test]
    fn implicit_tables_load() {
        let forms = [
            "[upstream]\ng.servers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"g\"\n",
            "[upstream.g]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"g\"\nrate_limit.per_second = 5\nrate_limit.burst = 5\n",
            "[upstream.g]\nservers = [\"127.0.0.1:1\"]\n[auth.sso.forward]\nurl = \"http://127.0.0.1:4180/auth\"\n[[route]]\nupstream = \"g\"\nauth = \"sso\"\n",
        ];
        for body in forms {
            let text = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n{body}");
            if let Err(e) = load_str(&text, Path::new("t.toml")) {
                panic!("{body}\n{}", e[0]);
            }
        }
    }

    #[test]
    fn active_checks_of_https_servers_are_refused_clearly() {
        let text = "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.g]\nservers = [\"https://127.0.0.1:8443\"]\n\
                    [upstream.g.health]\npath = \"/h\"\n[[route]]\nupstream = \"g\"\n";
        let errors = load_str(text, Path::new("t.toml")).err().expect("refused");
        assert!(
            errors.iter().any(|e| e.key == "upstream.g.health" && e.line == 3),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn route_table_errors_point_at_the_route_at_fault() {
        let text = "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.g]\nservers = [\"127.0.0.1:1\"]\n\
                    [[route]]\nprefix = \"/a/\"\nupstream = \"g\"\ncors = { allow_origin = [\"https://ok.example\"] }\n\
                    [[route]]\nprefix = \"/b/\"\nupstream = \"g\"\ncors = { allow_origin = [\"not an origin\"] }\n";
        let errors = load_str(text, Path::new("t.toml")).err().expect("refused");
        let e = errors
            .iter()
            .find(|e| e.key == "route.cors.allow_origin")
            .expect("cors error");
        assert_eq!(e.line, 12, "{e}");
    }
}
