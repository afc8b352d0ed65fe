//! Configuration: read the TOML file, check it, and compile it into the immutable [`Plan`].
//!
//! Every error names the file, the line and the key, so `ringway check` output can be acted on
//! without guessing; all errors are collected, not just the first.

mod access;
mod access_plan;
pub mod cidr;
pub mod hash_ring;
pub mod htpasswd;
mod listener;
mod plan;
mod route;
pub mod route_table;
mod schema;
pub mod units;
mod upstream;

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
/// Whether two routes' listener sets overlap (`None` is every listener).
fn share_a_listener(a: &Option<Vec<usize>>, b: &Option<Vec<usize>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|l| b.contains(l)),
        _ => true,
    }
}

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
        for (i, l) in raw.listener.iter().enumerate() {
            let Some(name) = &l.get_ref().name else { continue };
            let first = raw.listener[..i]
                .iter()
                .position(|o| o.get_ref().name.as_ref().map(|n| n.get_ref()) == Some(name.get_ref()));
            if first.is_some() {
                self.error(
                    name,
                    "listener.name",
                    format!("`{}` names another listener already", name.get_ref()),
                );
            }
        }
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
        let mut seen: HashMap<(HostMatch, String), Vec<usize>> = HashMap::new();
        for (i, r) in raw.route.iter().enumerate() {
            let Some(mut route) = self.route(i + 1, r.get_ref(), &upstream_ids) else {
                continue;
            };
            route.listeners = self.route_listeners(i + 1, r.get_ref(), &listeners);
            route.access = self.route_access(i + 1, r, &auth_ids, &mut access.identity_headers);
            let dup_key = (route.host.clone(), route.key.to_ascii_lowercase());
            let prefix_at = r.get_ref().prefix.as_ref();
            // Two routes with the same host and prefix are a mistake only where both serve.
            let clash = seen.get(&dup_key).and_then(|others| {
                others
                    .iter()
                    .copied()
                    .find(|&o| share_a_listener(&routes[o].listeners, &route.listeners))
            });
            if let Some(other) = clash {
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
            seen.entry(dup_key).or_default().push(routes.len());
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
        for h in &mut access.identity_headers {
            *h = h.bytes().map(|b| fold_header_byte(b) as char).collect();
        }
        access.identity_headers.sort();
        access.identity_headers.dedup();
        let tables = if routes.iter().any(|r| r.listeners.is_some()) {
            (0..listeners.len().max(1))
                .map(|l| {
                    let serves = |r: &&RoutePlan| r.listeners.as_ref().is_none_or(|ls| ls.contains(&l));
                    RouteTable::build_from(&routes, serves)
                })
                .collect()
        } else {
            vec![RouteTable::build(&routes)]
        };
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
            tables,
            access,
            warnings: std::mem::take(&mut self.warnings),
            log,
            admin,
        }
    }

    /// `[[route]] listeners`: listener names resolved to indices.
    fn route_listeners(&mut self, number: usize, r: &RawRoute, listeners: &[ListenerPlan]) -> Option<Vec<usize>> {
        let names = r.listeners.as_ref()?;
        if names.get_ref().is_empty() {
            self.error(
                names,
                "route.listeners",
                format!("route #{number}: an empty list serves no listener; leave the key out to serve every listener"),
            );
            return None;
        }
        let mut found = Vec::new();
        for name in names.get_ref() {
            match listeners.iter().position(|l| l.name.as_deref() == Some(name.as_str())) {
                Some(i) => found.push(i),
                None => {
                    let known = plan::listener_names(listeners);
                    let known = known.unwrap_or_else(|| "none; give one a name = \"...\"".to_string());
                    self.error(
                        names,
                        "route.listeners",
                        format!(
                            "route #{number} names listener `{name}`, which is not defined (named listeners: {known})"
                        ),
                    );
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Some(found)
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
            match Level::parse(l.get_ref()) {
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
