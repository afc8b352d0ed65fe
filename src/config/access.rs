//! Compiling the access keys: `[server] trusted_proxies`, `[auth.NAME]` tables, and the route
//! keys auth / allow / deny / rate_limit / cors / identity_static. Errors name the line like
//! every other key; a bad htpasswd line is named in the htpasswd file itself.

use super::access_plan::*;
use super::cidr::CidrList;
use super::htpasswd::Users;
use super::schema::*;
use super::units::parse_duration;
use super::upstream::resolve_server;
use super::{is_token, Compiler, ConfigError};
use super::{Near, Place};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Compiler<'_> {
    /// The process-wide access plan and the index of each `[auth.NAME]` table.
    pub(super) fn access(&mut self, raw: &RawConfig) -> (AccessPlan, HashMap<String, usize>) {
        let mut plan = AccessPlan::default();
        if let Some(t) = &raw.server.trusted_proxies {
            plan.trusted_proxies = self.cidrs(t, "server.trusted_proxies").unwrap_or_default();
        }
        let mut ids = HashMap::new();
        for (name, a) in &raw.auth {
            if let Some(auth) = self.auth(name, a, &mut plan.identity_headers) {
                ids.insert(name.clone(), plan.auths.len());
                plan.auths.push(auth);
            }
        }
        (plan, ids)
    }

    pub(super) fn cidrs(&mut self, list: &S<Vec<String>>, key: &str) -> Option<CidrList> {
        match CidrList::parse(list.get_ref().iter().map(|s| s.as_str())) {
            Ok(l) => Some(l),
            Err(m) => {
                self.error(list, key, m);
                None
            }
        }
    }

    fn header_name(&mut self, at: &impl Place, key: &str, name: &str) -> bool {
        if is_token(name) {
            true
        } else {
            self.error(at, key, format!("`{name}` is not a valid header name"));
            false
        }
    }

    fn auth(&mut self, name: &str, a: &RawAuth, identity: &mut Vec<String>) -> Option<AuthPlan> {
        let raw = a;
        let key = format!("auth.{name}");
        let identity_header = match &raw.identity_header {
            Some(h) if self.header_name(h, &format!("{key}.identity_header"), h.get_ref()) => {
                identity.push(h.get_ref().to_ascii_lowercase());
                Some(h.get_ref().clone())
            }
            _ => None,
        };
        let method = match (&raw.basic, &raw.forward) {
            (Some(b), None) => AuthMethod::Basic(self.basic(&key, b)?),
            (None, Some(f)) => AuthMethod::Forward(self.forward_auth(&key, f, identity)?),
            (Some(_), Some(_)) => {
                self.error(&Near::file(&key), &key, "use either basic or forward, not both");
                return None;
            }
            (None, None) => {
                self.error(
                    &Near::file(&key),
                    &key,
                    "needs `basic = { htpasswd = ... }` or `forward = { url = ... }`",
                );
                return None;
            }
        };
        Some(AuthPlan {
            name: name.to_string(),
            method,
            identity_header,
        })
    }

    fn basic(&mut self, key: &str, b: &RawBasic) -> Option<BasicAuth> {
        let raw = b;
        let key = format!("{key}.basic");
        let path = self.relative_file(raw.htpasswd.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    &raw.htpasswd,
                    &format!("{key}.htpasswd"),
                    format!("cannot read `{}`: {e}", path.display()),
                );
                return None;
            }
        };
        let from = self.line(raw.htpasswd.span().start);
        let users = match Users::parse(&text) {
            Ok(u) => u,
            Err(errors) => {
                for (line, message) in errors {
                    self.errors.push(ConfigError {
                        file: path.clone(),
                        line,
                        key: format!("{key}.htpasswd"),
                        message: format!("{message} (file named at {}:{from})", self.file.display()),
                    });
                }
                return None;
            }
        };
        let realm = raw.realm.as_ref().map(|r| r.get_ref().as_str()).unwrap_or("ringway");
        if realm.contains(['"', '\\']) || realm.chars().any(|c| c.is_control()) {
            if let Some(r) = &raw.realm {
                self.error(
                    r,
                    &format!("{key}.realm"),
                    "must not contain quotes, backslashes or control characters",
                );
            }
            return None;
        }
        let remember = self.duration(&raw.remember, &format!("{key}.remember"), Duration::from_secs(60));
        Some(BasicAuth {
            users,
            challenge: format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            remember,
        })
    }

    /// Relative paths are tried from the working directory, then from the config file's folder.
    fn relative_file(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() || path.exists() {
            return path.to_path_buf();
        }
        match self.file.parent() {
            Some(dir) if dir.join(path).exists() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    fn forward_auth(&mut self, key: &str, f: &RawForwardAuth, identity: &mut Vec<String>) -> Option<ForwardAuth> {
        let raw = f;
        let key = format!("{key}.forward");
        let url = raw.url.get_ref();
        let Some(rest) = url.strip_prefix("http://") else {
            self.error(
                &raw.url,
                &format!("{key}.url"),
                format!("`{url}`: only http:// auth services are supported"),
            );
            return None;
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if path.bytes().any(|b| !(0x21..0x7f).contains(&b)) || path.contains('#') {
            self.error(
                &raw.url,
                &format!("{key}.url"),
                format!("`{url}`: the path must be plain ASCII without spaces or fragment"),
            );
            return None;
        }
        let addr = match resolve_server(authority) {
            Ok((addr, _, _)) => addr,
            Err(m) => {
                self.error(&raw.url, &format!("{key}.url"), m);
                return None;
            }
        };
        let mut copy = Vec::new();
        for (from, to) in &raw.copy_headers {
            let k = format!("{key}.copy_headers");
            if self.header_name(to, &k, from) && self.header_name(to, &k, to.get_ref()) {
                identity.push(to.get_ref().to_ascii_lowercase());
                copy.push((from.to_ascii_lowercase(), to.get_ref().clone()));
            }
        }
        let timeout = self.duration(&raw.timeout, &format!("{key}.timeout"), Duration::from_secs(5));
        Some(ForwardAuth {
            url: url.clone(),
            addr,
            authority: authority.to_string(),
            path,
            copy,
            timeout,
        })
    }

    /// A route's access keys; `identity` collects identity_static header names.
    pub(super) fn route_access(
        &mut self,
        number: usize,
        route: &S<RawRoute>,
        auths: &HashMap<String, usize>,
        identity: &mut Vec<String>,
    ) -> RouteAccess {
        let r = route.get_ref();
        let mut a = RouteAccess::default();
        if let Some(name) = &r.auth {
            match auths.get(name.get_ref()) {
                Some(&id) => a.auth = Some(id),
                None => self.error(
                    name,
                    "route.auth",
                    format!(
                        "route #{number} names auth `{}`, which is not defined as [auth.{}]",
                        name.get_ref(),
                        name.get_ref()
                    ),
                ),
            }
        }
        if let Some(l) = &r.allow {
            a.allow = self.cidrs(l, "route.allow");
        }
        if let Some(l) = &r.deny {
            a.deny = self.cidrs(l, "route.deny");
        }
        if let Some(rl) = &r.rate_limit {
            let per_second = rl.per_second.get();
            let burst = rl.burst.map(|b| b.get()).unwrap_or(per_second.max(1.0));
            if !(per_second > 0.0 && per_second.is_finite()) {
                self.error(
                    &Near::within(route, "rate_limit"),
                    "route.rate_limit.per_second",
                    "must be a number above 0",
                );
            } else if !(burst >= 1.0 && burst.is_finite()) {
                self.error(
                    &Near::within(route, "rate_limit"),
                    "route.rate_limit.burst",
                    "must be at least 1",
                );
            } else {
                a.rate = Some(RateSpec { per_second, burst });
            }
        }
        if let Some(c) = &r.cors {
            a.cors = self.cors(c, route);
        }
        if let Some(s) = &r.identity_static {
            let raw = s;
            let bad_value = raw.value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
            if !self.header_name(
                &Near::within(route, "identity_static"),
                "route.identity_static.header",
                &raw.header,
            ) {
            } else if bad_value {
                self.error(
                    &Near::within(route, "identity_static"),
                    "route.identity_static.value",
                    "contains control characters",
                );
            } else {
                identity.push(raw.header.to_ascii_lowercase());
                a.identity_static = Some((raw.header.clone(), raw.value.clone()));
            }
        }
        a
    }

    fn cors(&mut self, c: &RawCors, route: &S<RawRoute>) -> Option<CorsPlan> {
        let raw = c;
        let any_origin = raw.allow_origin.iter().any(|o| o == "*");
        for o in &raw.allow_origin {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| (0x21..0x7f).contains(&b)));
            if !ok {
                self.error(
                    &Near::within(route, "cors"),
                    "route.cors.allow_origin",
                    format!("`{o}` is not an origin like https://app.example.com (scheme and host, no path) or `*`"),
                );
                return None;
            }
        }
        if any_origin && raw.allow_credentials {
            self.error(
                &Near::within(route, "cors"),
                "route.cors.allow_credentials",
                "credentials cannot be allowed for any origin (`*`); list the origins",
            );
            return None;
        }
        for (list, k) in [
            (&raw.allow_methods, "allow_methods"),
            (&raw.allow_headers, "allow_headers"),
            (&raw.expose_headers, "expose_headers"),
        ] {
            if let Some(bad) = list.iter().find(|m| !is_token(m)) {
                self.error(
                    &Near::within(route, "cors"),
                    &format!("route.cors.{k}"),
                    format!("`{bad}` is not a valid token"),
                );
                return None;
            }
        }
        let max_age = match &raw.max_age {
            None => None,
            Some(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(m) => {
                    self.error(&Near::within(route, "cors"), "route.cors.max_age", m);
                    return None;
                }
            },
        };
        Some(CorsPlan {
            allow_origin: raw.allow_origin.iter().filter(|o| *o != "*").cloned().collect(),
            any_origin,
            allow_methods: raw.allow_methods.join(", "),
            allow_headers: raw.allow_headers.join(", "),
            expose_headers: raw.expose_headers.join(", "),
            allow_credentials: raw.allow_credentials,
            max_age,
        })
    }
}
