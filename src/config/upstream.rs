//! Compiling `[upstream.NAME]`: servers (resolved once, at load), balancing, retries,
//! connection limits, passive ejection, active health checks and upstream TLS.

use super::schema::*;
use super::*;

const MAX_WEIGHT: i64 = 1000;

impl Compiler<'_> {
    pub(super) fn upstream(&mut self, name: &str, up: &RawUpstream, workers: usize) -> UpstreamPlan {
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
        let send_proxy = match raw.send_proxy_protocol.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None => None,
            Some((_, "v1")) => Some(ProxyVersion::V1),
            Some((_, "v2")) => Some(ProxyVersion::V2),
            Some((v, other)) => {
                self.error(
                    v,
                    &format!("upstream.{name}.send_proxy_protocol"),
                    format!("`{other}`: must be \"v1\" or \"v2\""),
                );
                None
            }
        };
        // The header names one client and belongs to the connection: a pooled connection could
        // carry only that client's next request, so such connections are not pooled at all.
        let keepalive = match (&send_proxy, &raw.keepalive) {
            (Some(_), Some(k)) if *k.get_ref() > 0 => {
                self.error(
                    k,
                    &format!("upstream.{name}.keepalive"),
                    "connections carrying a PROXY header (send_proxy_protocol) are never pooled; leave keepalive out or set 0",
                );
                0
            }
            (Some(_), _) => 0,
            _ => keepalive,
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
            send_proxy,
        }
    }

    pub(super) fn health(&mut self, name: &str, h: &RawHealth) -> HealthPlan {
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

    pub(super) fn upstream_tls(
        &mut self,
        name: &str,
        raw: &RawUpstream,
        any_https: bool,
    ) -> Option<crate::tls::UpstreamTls> {
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
}

pub(super) fn parse_hash_key(text: &str) -> Result<HashKey, String> {
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
pub(super) fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = match text.trim().split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

/// The host of `host:port` or `[v6]:port`, for SNI and certificate names.
pub(super) fn host_of(authority: &str) -> String {
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
pub(super) fn resolve_server(text: &str) -> Result<(SocketAddr, String, bool), String> {
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

    pub(super) fn errors(upstream: &str) -> Vec<String> {
        let text =
            format!("[[listener]]\nbind = \"127.0.0.1:0\"\n[[route]]\nupstream = \"app\"\n[upstream.app]\n{upstream}");
        match load_str(&text, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    pub(super) fn upstream_group_keys() {
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
    pub(super) fn passive_ejection_defaults_on_only_for_groups() {
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
