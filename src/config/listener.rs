//! Compiling `[server]` and `[[listener]]`: limits and timeouts, bind addresses, TLS
//! certificates (loaded here, so a bad file fails `ringway check`), HSTS and redirects.

use super::schema::*;
use super::*;

impl Compiler<'_> {
    pub(super) fn listener(&mut self, l: &RawListener) -> Option<ListenerPlan> {
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

    pub(super) fn server(&mut self, raw: &RawServer) -> ServerSettings {
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

    pub(super) fn count(
        &mut self,
        v: &Option<S<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: u32,
    ) -> u32 {
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
}
