//! PROXY protocol listeners through the built binary: v1 and v2 headers (TCP4, TCP6, LOCAL,
//! TLVs), broken ones (truncated, oversized, missing, slow, from a peer not allowed), TLS after
//! the header, and the carried client address in forwarding headers, allow/deny and the
//! access log.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn config(listener_extra: &str, route_extra: &str, backend: SocketAddr, log: &std::path::Path) -> String {
    format!(
        "[server]\nworkers = 1\nheader_timeout = \"1s\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n{listener_extra}\n\
         [admin]\nbind = \"127.0.0.1:0\"\n\
         [log]\naccess = \"{}\"\n\
         {}\n[[route]]\nupstream = \"app\"\n{route_extra}\n",
        log.display(),
        upstream("app", backend)
    )
}

fn v1(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let family = if src.contains(':') { "TCP6" } else { "TCP4" };
    format!("PROXY {family} {src} {dst} {sport} {dport}\r\n").into_bytes()
}

const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), `family` byte, address block, then TLVs.
fn v2(command: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(addrs);
    h.extend_from_slice(tlvs);
    h
}

fn v2_tcp6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut a = src.octets().to_vec();
    a.extend_from_slice(&dst.octets());
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    v2(1, 0x21, &a, tlvs)
}

fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend_from_slice(&dst);
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    v2(1, 0x11, &a, tlvs)
}

/// Sends `header` then a GET on one connection; returns the echo the backend saw.
fn through(addr: SocketAddr, header: &[u8], extra: &[&str]) -> RawResp {
    let mut c = RawClient::connect(addr);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&get_req("/who", "app", extra));
    c.send(&bytes);
    c.read_response()
}

fn refused_count(p: &Ringway) -> u64 {
    let text = get(&format!("http://{}/metrics", p.admin_addr())).text();
    text.lines()
        .find_map(|l| l.strip_prefix("ringway_proxy_protocol_refused_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no ringway_proxy_protocol_refused_total in {text}"))
}

fn closed_without_response(c: &mut RawClient) -> bool {
    let mut buf = [0u8; 64];
    c.set_timeout(Duration::from_secs(5));
    matches!(c.stream.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn v1_and_v2_addresses_become_the_client_address() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let p = Ringway::start(&config("", "", backend.addr, &log));
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (v1("203.0.113.7", "192.0.2.1", 56324, 443), "203.0.113.7", "443"),
        (v1("2001:db8::7", "2001:db8::1", 40000, 8443), "2001:db8::7", "8443"),
        (
            v2_tcp4([198, 51, 100, 9], [192, 0, 2, 1], 1234, 80, &[]),
            "198.51.100.9",
            "80",
        ),
        (
            // TLVs (ALPN "h2", an AWS-style vendor TLV, a NOOP) are skipped.
            v2_tcp6(
                "2001:db8::9".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                5555,
                8080,
                &[0x01, 0, 2, b'h', b'2', 0xEA, 0, 3, 1, 2, 3, 0x04, 0, 0],
            ),
            "2001:db8::9",
            "8080",
        ),
    ];
    for (header, ip, port) in &cases {
        let e = through(p.addr(), header, &["X-Forwarded-For: 6.6.6.6"]).echo();
        // The client's own list is passed on (no trusted_proxies), the carried address appended.
        assert_eq!(e.header("x-forwarded-for"), Some(format!("6.6.6.6, {ip}").as_str()));
        assert_eq!(e.header("x-real-ip"), Some(*ip), "the client's own XFF is not believed");
        assert_eq!(e.header("x-forwarded-port"), Some(*port), "the port the client reached");
    }
    // The access log names the carried address.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            cases.iter().all(|(_, ip, _)| text.contains(ip))
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(refused_count(&p), 0);
}

#[test]
fn local_and_unknown_are_served_with_the_real_peer() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let p = Ringway::start(&config("", "", backend.addr, &dir.path.join("a.log")));
    for header in [
        v2(0, 0x00, &[], &[]),
        v2(0, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], &[]),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        let e = through(p.addr(), &header, &[]).echo();
        assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    }
}

#[test]
fn keep_alive_requests_after_the_header_keep_the_address() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let p = Ringway::start(&config("", "", backend.addr, &dir.path.join("a.log")));
    let mut c = RawClient::connect(p.addr());
    // The header and the first request in one segment, the second request later.
    let mut first = v1("203.0.113.8", "192.0.2.1", 1, 80);
    first.extend_from_slice(&get_req("/1", "app", &[]));
    c.send(&first);
    assert_eq!(c.read_response().echo().header("x-real-ip"), Some("203.0.113.8"));
    c.send(&get_req("/2", "app", &[]));
    assert_eq!(c.read_response().echo().header("x-real-ip"), Some("203.0.113.8"));
}

#[test]
fn broken_missing_and_slow_headers_are_closed_and_counted() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let p = Ringway::start(&config("", "", backend.addr, &dir.path.join("a.log")));
    let mut oversized = SIG.to_vec();
    oversized.extend_from_slice(&[0x21, 0x11, 0x20, 0x00]); // 8192 bytes announced
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("plain HTTP, no header", get_req("/", "app", &[])),
        ("v1 garbage", b"PROXY TCP4 1.2.3.4 nope\r\n".to_vec()),
        ("v1 without CRLF", [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()),
        ("v2 oversized", oversized),
        ("v2 version 3", [SIG.as_slice(), &[0x31, 0x11, 0, 0]].concat()),
        (
            "v2 TLV past the end",
            v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[0x01, 0, 9, b'h']),
        ),
        ("TLS without a header", vec![0x16, 0x03, 0x01, 0x00, 0x05]),
    ];
    for (what, bytes) in &bad {
        let mut c = RawClient::connect(p.addr());
        c.send(bytes);
        assert!(closed_without_response(&mut c), "{what}: closed without an answer");
    }
    // Truncated: part of a header, then the client closes its side.
    let mut c = RawClient::connect(p.addr());
    c.send(&v1("203.0.113.7", "192.0.2.1", 1, 2)[..12]);
    c.shutdown_write();
    assert!(closed_without_response(&mut c), "truncated header");
    // Nothing at all: closed at header_timeout (1 s).
    let mut c = RawClient::connect(p.addr());
    let t = Instant::now();
    assert!(closed_without_response(&mut c), "silent client");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        t.elapsed()
    );
    let want = bad.len() as u64 + 2;
    assert!(
        wait_until(Duration::from_secs(3), || refused_count(&p) == want),
        "{}",
        refused_count(&p)
    );
    assert!(p.stderr().contains("no PROXY protocol header"), "{}", p.stderr());

    // Slow but within header_timeout: a byte every 50 ms is fine.
    let mut c = RawClient::connect(p.addr());
    for b in v2_tcp4([203, 0, 113, 5], [192, 0, 2, 1], 9, 80, &[0x04, 0, 1, 0]) {
        c.send(&[b]);
        thread::sleep(Duration::from_millis(25));
    }
    c.send(&get_req("/", "app", &[]));
    assert_eq!(c.read_response().echo().header("x-real-ip"), Some("203.0.113.5"));
    // Slower than header_timeout: closed.
    let mut c = RawClient::connect(p.addr());
    c.send(b"PROXY TCP4 ");
    thread::sleep(Duration::from_millis(1300));
    let _ = c.try_send(b"1.2.3.4 5.6.7.8 1 2\r\n");
    assert!(
        closed_without_response(&mut c),
        "header not complete within header_timeout"
    );
}

#[test]
fn a_peer_not_in_proxy_protocol_from_is_closed_before_its_header_is_read() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let p = Ringway::start(&config(
        "proxy_protocol_from = [\"10.0.0.0/8\", \"2001:db8::/32\"]",
        "",
        backend.addr,
        &dir.path.join("a.log"),
    ));
    let mut c = RawClient::connect(p.addr());
    let _ = c.try_send(&v1("203.0.113.7", "192.0.2.1", 1, 2));
    assert!(closed_without_response(&mut c));
    assert!(wait_until(Duration::from_secs(3), || refused_count(&p) == 1));
    // The line is written after the count: wait for it as for the count.
    let logged = wait_until(Duration::from_secs(3), || {
        p.stderr().contains("not in proxy_protocol_from")
    });
    assert!(logged, "{}", p.stderr());
    assert_eq!(backend.hits(), 0);

    let q = Ringway::start(&config(
        "proxy_protocol_from = [\"127.0.0.0/8\"]",
        "",
        backend.addr,
        &dir.path.join("b.log"),
    ));
    let e = through(q.addr(), &v1("203.0.113.7", "192.0.2.1", 1, 2), &[]).echo();
    assert_eq!(e.header("x-real-ip"), Some("203.0.113.7"));
}

#[test]
fn allow_deny_and_rate_limits_see_the_carried_address() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let p = Ringway::start(&config(
        "",
        "allow = [\"203.0.113.0/24\"]\ndeny = [\"203.0.113.66\"]\nrate_limit = { per_second = 0.1, burst = 1 }",
        backend.addr,
        &dir.path.join("a.log"),
    ));
    assert_eq!(
        through(p.addr(), &v1("203.0.113.7", "192.0.2.1", 1, 80), &[]).status,
        200
    );
    assert_eq!(
        through(p.addr(), &v1("198.51.100.1", "192.0.2.1", 1, 80), &[]).status,
        403
    );
    assert_eq!(
        through(p.addr(), &v1("203.0.113.66", "192.0.2.1", 1, 80), &[]).status,
        403
    );
    // The rate limit counts per carried address: .7 is over its burst, .8 is not.
    assert_eq!(
        through(p.addr(), &v1("203.0.113.7", "192.0.2.1", 2, 80), &[]).status,
        429
    );
    assert_eq!(
        through(p.addr(), &v1("203.0.113.8", "192.0.2.1", 2, 80), &[]).status,
        200
    );
}

#[test]
fn tls_after_the_header() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["pp.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let cert = dir.write("cert.pem", &leaf.pem());
    let key = dir.write("key.pem", &leaf_key.serialize_pem());
    let tls = format!(
        "[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"",
        cert.display(),
        key.display()
    );
    let p = Ringway::start(&config(&tls, "", backend.addr, &dir.path.join("a.log")));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = Arc::new(client);
    for header in [
        v1("203.0.113.20", "192.0.2.1", 1, 443),
        v2_tcp4(
            [203, 0, 113, 21],
            [192, 0, 2, 1],
            1,
            443,
            &[0x02, 0, 7, b'p', b'p', b'.', b't', b'e', b's', b't'],
        ),
    ] {
        let mut sock = TcpStream::connect(p.addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.write_all(&header).unwrap();
        let conn = rustls::ClientConnection::new(client.clone(), "pp.test".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"GET /t HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let e = Echo::parse(&text[text.find("\r\n\r\n").unwrap() + 4..]);
        let ip = if header[0] == b'P' {
            "203.0.113.20"
        } else {
            "203.0.113.21"
        };
        assert_eq!(e.header("x-real-ip"), Some(ip));
        assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    }
    // A TLS client that skips the header is refused.
    let sock = TcpStream::connect(p.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ClientConnection::new(client, "pp.test".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    assert!(
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .and_then(|_| tls.flush())
            .is_err()
            || {
                let mut b = [0u8; 16];
                !matches!(tls.read(&mut b), Ok(n) if n > 0)
            }
    );
}

#[test]
fn config_errors_name_the_line() {
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.toml",
        "[[listener]]\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/33\"]\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n\
         [upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n",
    );
    let out = run_cli(&["check", "--config", bad.to_str().unwrap()]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:4: listener.proxy_protocol_from"), "{err}");
    assert!(
        err.contains("bad.toml:7: listener.proxy_protocol_from: goes with proxy_protocol = true"),
        "{err}"
    );
}

/// A backend that records the first bytes of each connection (up to the end of its first
/// request head) and answers every request `200 ok`.
fn recording_backend() -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let log = log.clone();
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let mut first = true;
                loop {
                    // A request head ends at the first CRLFCRLF after its `GET`.
                    let start = buf.windows(4).position(|w| w == b"GET ");
                    let end = start.and_then(|s| buf[s..].windows(4).position(|w| w == b"\r\n\r\n").map(|e| s + e + 4));
                    if let Some(end) = end {
                        if first {
                            log.lock().unwrap().push(buf[..end].to_vec());
                            first = false;
                        }
                        buf.drain(..end);
                        if conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    match conn.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn upstreams_are_sent_the_header_on_each_new_connection() {
    let (v1_addr, v1_seen) = recording_backend();
    let (v2_addr, v2_seen) = recording_backend();
    let cfg = format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n\
         [upstream.one]\nservers = [\"{v1_addr}\"]\nsend_proxy_protocol = \"v1\"\n\
         [upstream.two]\nservers = [\"{v2_addr}\"]\nsend_proxy_protocol = \"v2\"\n\
         [[route]]\nprefix = \"/one/\"\nupstream = \"one\"\n\
         [[route]]\nprefix = \"/two/\"\nupstream = \"two\"\n"
    );
    let p = Ringway::start(&cfg);
    let local = p.addr();
    // Two clients (carried addresses), each with two keep-alive requests per upstream.
    for (src, port) in [("203.0.113.7", 40001u16), ("198.51.100.3", 40002)] {
        let mut c = RawClient::connect(local);
        let mut first = v1(src, "192.0.2.1", port, 443);
        first.extend_from_slice(&get_req("/one/a", "app", &[]));
        c.send(&first);
        for path in ["/one/b", "/two/a", "/two/b"] {
            assert_eq!(c.read_response().status, 200);
            c.send(&get_req(path, "app", &[]));
        }
        assert_eq!(c.read_response().status, 200);
    }
    // Never pooled: every request had a connection of its own, opened with its client's header.
    let one = v1_seen.lock().unwrap().clone();
    assert_eq!(one.len(), 4, "one connection per request");
    for (conn, src, port) in [(0, "203.0.113.7", 40001), (2, "198.51.100.3", 40002)] {
        for c in [conn, conn + 1] {
            let want = format!("PROXY TCP4 {src} 192.0.2.1 {port} 443\r\nGET /one/");
            assert!(
                one[c].starts_with(want.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(&one[c])
            );
        }
    }
    let two = v2_seen.lock().unwrap().clone();
    assert_eq!(two.len(), 4);
    let expect = v2_tcp4([198, 51, 100, 3], [192, 0, 2, 1], 40002, 443, &[]);
    assert!(two[3].starts_with(&expect), "{:?}", &two[3][..two[3].len().min(40)]);
    assert_eq!(&two[3][expect.len()..expect.len() + 9], b"GET /two/");

    // keepalive with send_proxy_protocol is refused: the connections cannot be pooled.
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.toml",
        &format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"{v1_addr}\"]\n\
             send_proxy_protocol = \"v3\"\n[upstream.b]\nservers = [\"{v1_addr}\"]\nsend_proxy_protocol = \"v1\"\n\
             keepalive = 8\n[[route]]\nupstream = \"a\"\n"
        ),
    );
    let out = run_cli(&["check", "--config", bad.to_str().unwrap()]);
    let err = stderr_of(&out);
    assert!(
        err.contains("bad.toml:5: upstream.a.send_proxy_protocol: `v3`"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:9: upstream.b.keepalive: connections carrying a PROXY header"),
        "{err}"
    );
}
