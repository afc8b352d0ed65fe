//! Compiling `[[route]]`: host pattern and prefix, the upstream it names, path rewriting,
//! header rules, timeouts, body limits, upgrades, compression and the cache keys; the access keys
//! are in `access`.

use super::schema::*;
use super::*;

impl Compiler<'_> {
    pub(super) fn route(
        &mut self,
        number: usize,
        r: &RawRoute,
        upstreams: &HashMap<String, usize>,
    ) -> Option<RoutePlan> {
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
        let cache = r.cache.as_ref().is_some_and(|c| *c.get_ref());
        let cache_ttl = r
            .cache_ttl
            .as_ref()
            .map(|_| self.duration(&r.cache_ttl, "route.cache_ttl", Duration::ZERO));
        if let (Some(ttl), false) = (&r.cache_ttl, cache) {
            self.error(
                ttl,
                "route.cache_ttl",
                format!("route #{number}: cache_ttl needs cache = true on the same route"),
            );
            ok = false;
        }
        let cache_bypass_cookies = self.bypass_cookies(number, r, cache);
        ok &= cache_bypass_cookies.is_some();
        ok.then(|| RoutePlan {
            number,
            listeners: None,
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
            compress: r.compress.unwrap_or(false),
            cache,
            cache_ttl: cache_ttl.filter(|d| !d.is_zero()),
            cache_bypass_cookies: cache_bypass_cookies.unwrap_or_default(),
        })
    }

    /// `cache_bypass_cookies`: cookie names (RFC 6265 tokens), each once, on a caching route.
    fn bypass_cookies(&mut self, number: usize, r: &RawRoute, cache: bool) -> Option<Vec<String>> {
        let Some(list) = &r.cache_bypass_cookies else {
            return Some(Vec::new());
        };
        let key = "route.cache_bypass_cookies";
        if !cache {
            let msg = format!("route #{number}: cache_bypass_cookies needs cache = true on the same route");
            self.error(list, key, msg);
            return None;
        }
        let mut names: Vec<String> = Vec::new();
        for name in list.get_ref() {
            if !is_token(name) {
                let msg = format!("`{name}` is not a cookie name (letters, digits and !#$%&'*+-.^_`|~, not empty)");
                self.error(list, key, msg);
                return None;
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        Some(names)
    }

    pub(super) fn header_rules(&mut self, raw: Option<&RawHeaderRules>, key: &str) -> HeaderRules {
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

pub(super) fn check_prefix(p: &str) -> Result<(), String> {
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

pub(super) fn parse_host_pattern(h: &str) -> Result<HostMatch, String> {
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
