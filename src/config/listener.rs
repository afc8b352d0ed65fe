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
        let http2 = match &l.http2 {
            Some(on) if *on.get_ref() && l.tls.is_empty() => {
                self.error(
                    on,
                    "listener.http2",
                    "is for TLS listeners (offered through ALPN); plaintext HTTP/2 is h2c = true",
                );
                false
            }
            Some(on) => *on.get_ref(),
            None => true,
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
                    let tls = if http2 { tls.offering_h2() } else { tls };
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
        let proxy_protocol = match (&l.proxy_protocol, &l.proxy_protocol_from) {
            (Some(on), from) if *on.get_ref() => match from {
                Some(list) if list.get_ref().is_empty() => {
                    self.error(
                        list,
                        "listener.proxy_protocol_from",
                        "an empty list would refuse every connection; leave the key out to accept the header from any peer",
                    );
                    None
                }
                Some(list) => self.cidrs(list, "listener.proxy_protocol_from"),
                None => Some(super::cidr::CidrList::default()),
            },
            (_, Some(list)) => {
                self.error(
                    list,
                    "listener.proxy_protocol_from",
                    "goes with proxy_protocol = true (it lists who may send the header)",
                );
                None
            }
            _ => None,
        };
        let name = match &l.name {
            Some(n) if n.get_ref().is_empty() || n.get_ref().bytes().any(|b| !b.is_ascii_graphic()) => {
                self.error(n, "listener.name", "must be a word such as \"public\" (no spaces)");
                None
            }
            Some(n) => Some(n.get_ref().clone()),
            None => None,
        };
        let h2c = match &l.h2c {
            Some(on) if *on.get_ref() && !l.tls.is_empty() => {
                self.error(
                    on,
                    "listener.h2c",
                    "is for plaintext listeners; a TLS listener offers HTTP/2 through ALPN (http2)",
                );
                false
            }
            Some(on) => *on.get_ref(),
            None => false,
        };
        Some(ListenerPlan {
            bind,
            name,
            tls,
            hsts,
            redirect_https,
            proxy_protocol,
            h2c,
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
        let io_driver = match raw.io_driver.as_ref().map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "auto")) => IoDriver::Auto,
            Some((_, "io_uring")) => IoDriver::IoUring,
            Some((_, "epoll")) => IoDriver::Epoll,
            Some((d, other)) => {
                self.error(
                    d,
                    "server.io_driver",
                    format!("`{other}`: must be \"auto\", \"io_uring\" or \"epoll\""),
                );
                IoDriver::Auto
            }
        };
        let drop_underscore_headers = match raw.underscores_in_headers.as_ref().map(|u| (u, u.get_ref().as_str())) {
            None | Some((_, "drop")) => true,
            Some((_, "pass")) => false,
            Some((u, other)) => {
                self.error(
                    u,
                    "server.underscores_in_headers",
                    format!("`{other}`: must be \"drop\" or \"pass\""),
                );
                true
            }
        };
        ServerSettings {
            drop_underscore_headers,
            h2: self.h2_limits(raw),
            workers,
            max_head_size: max_head_size.max(256),
            max_uri_size,
            header_timeout,
            max_connections,
            shutdown_timeout,
            control_socket,
            io_driver,
        }
    }

    /// `[server] h2_*`: stream count and flow-control windows, checked against what HTTP/2
    /// allows (a window is at least 64 KiB - 1 and at most 2^31 - 1).
    fn h2_limits(&mut self, raw: &RawServer) -> H2Limits {
        let max_concurrent_streams = self.count(
            &raw.h2_max_concurrent_streams,
            "server.h2_max_concurrent_streams",
            1..=10_000,
            128,
        );
        let mut window = |v: &Option<S<SizeValue>>, key: &str, default: u32| match self.size(v, key) {
            None => default,
            Some(n) if (65_535..=(1 << 31) - 1).contains(&n) => n as u32,
            Some(_) => {
                if let Some(s) = v {
                    self.error(s, key, "must be from 65535 bytes to 2 GiB - 1");
                }
                default
            }
        };
        let stream_window = window(&raw.h2_stream_window, "server.h2_stream_window", 256 * 1024);
        let connection_window = window(&raw.h2_connection_window, "server.h2_connection_window", 1024 * 1024);
        H2Limits {
            max_concurrent_streams,
            stream_window,
            connection_window,
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

#[cfg(test)]
mod tests {
    use super::super::{load_str, IoDriver};
    use std::path::Path;

    #[test]
    fn io_driver_takes_three_words() {
        let load = |v: &str| {
            let text = format!(
                "[[listener]]\nbind = \"127.0.0.1:0\"\n[server]\nio_driver = \"{v}\"\n[[route]]\nupstream = \"a\"\n\
                 [upstream.a]\nservers = [\"127.0.0.1:1\"]\n"
            );
            load_str(&text, Path::new("t.toml"))
        };
        for (word, want) in [
            ("auto", IoDriver::Auto),
            ("io_uring", IoDriver::IoUring),
            ("epoll", IoDriver::Epoll),
        ] {
            assert_eq!(load(word).ok().unwrap().server.io_driver, want);
        }
        let e = load("uring").err().unwrap();
        assert_eq!(
            e[0].to_string(),
            "t.toml:4: server.io_driver: `uring`: must be \"auto\", \"io_uring\" or \"epoll\""
        );
    }

    #[test]
    fn http2_limits_and_listener_keys() {
        let load = |server: &str, listener: &str| {
            let text = format!(
                "[[listener]]\nbind = \"127.0.0.1:0\"\n{listener}\n[server]\n{server}\n[[route]]\nupstream = \"a\"\n\
                 [upstream.a]\nservers = [\"127.0.0.1:1\"]\n"
            );
            load_str(&text, Path::new("t.toml"))
        };
        let plan = load("", "").ok().unwrap();
        let h2 = plan.server.h2;
        assert_eq!(
            (h2.max_concurrent_streams, h2.stream_window, h2.connection_window),
            (128, 256 * 1024, 1024 * 1024)
        );
        assert!(!plan.listeners[0].h2c);
        let plan = load(
            "h2_max_concurrent_streams = 16\nh2_stream_window = \"64k\"",
            "h2c = true",
        )
        .ok()
        .unwrap();
        assert_eq!(
            (plan.server.h2.max_concurrent_streams, plan.listeners[0].h2c),
            (16, true)
        );
        assert_eq!(plan.server.h2.stream_window, 65536);
        let e = load("h2_max_concurrent_streams = 0", "").err().unwrap();
        assert!(
            e[0].to_string().contains("server.h2_max_concurrent_streams"),
            "{}",
            e[0]
        );
        let e = load("h2_connection_window = 1000", "").err().unwrap();
        assert!(e[0].to_string().contains("server.h2_connection_window"), "{}", e[0]);
        let e = load("", "http2 = true").err().unwrap();
        assert!(e[0].to_string().contains("listener.http2"), "{}", e[0]);
    }
}
