//! Idle keep-alive client connections through the built binary: a connection that idles holds
//! no buffer, so its next request (after a long pause, pipelined or not, whole or in many small
//! pieces, plain or TLS) must be read from scratch correctly; and the memory a burst of
//! connections used goes back to the system after they close.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough that any buffer-holding shortcut would have been released; well under the
/// idle timeout.
const LONG_IDLE: Duration = Duration::from_secs(3);

fn config(backend: SocketAddr, tls: Option<(&str, &str)>) -> String {
    let tls = match tls {
        Some((cert, key)) => format!("[[listener.tls]]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
        None => String::new(),
    };
    format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n{tls}\
         [upstream.app]\nservers = [\"{backend}\"]\n[[route]]\nprefix = \"/\"\nupstream = \"app\"\n"
    )
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: idle.test\r\n\r\n").into_bytes()
}

/// Reads one Content-Length framed response from `s` (bytes after it stay in `carry`) and
/// returns its status and the URL the backend saw.
fn read_response<S: Read>(s: &mut S, carry: &mut Vec<u8>) -> (u16, String) {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read a response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(carry)
        );
        carry.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&carry[..head_end]).to_string();
    let status = head[9..12].parse().expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
        .parse()
        .unwrap();
    while carry.len() < head_end + len {
        let n = s.read(&mut chunk).expect("read a response body");
        assert!(n > 0, "connection closed inside a response body");
        carry.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&carry[head_end..head_end + len]).to_string();
    carry.drain(..head_end + len);
    (status, Echo::parse(&body).url)
}

/// One keep-alive connection through its idle periods: a request, a long idle, a request, a
/// long idle, two pipelined requests in one write, a long idle, a head sent in many small
/// pieces. Every response names the path its request asked for.
fn idle_between_requests<S: Read + Write>(s: &mut S) {
    let mut carry = Vec::new();
    s.write_all(&request("/first")).unwrap();
    assert_eq!(read_response(s, &mut carry), (200, "/first".into()));
    thread::sleep(LONG_IDLE);
    s.write_all(&request("/after-idle")).unwrap();
    assert_eq!(read_response(s, &mut carry), (200, "/after-idle".into()));
    thread::sleep(LONG_IDLE);
    let mut two = request("/pipelined-1");
    two.extend_from_slice(&request("/pipelined-2"));
    s.write_all(&two).unwrap();
    assert_eq!(read_response(s, &mut carry), (200, "/pipelined-1".into()));
    assert_eq!(read_response(s, &mut carry), (200, "/pipelined-2".into()));
    thread::sleep(LONG_IDLE);
    let head = b"GET /in-pieces HTTP/1.1\r\nHost: idle.test\r\nX-Filler: abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    for piece in head.chunks(3) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
        thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(read_response(s, &mut carry), (200, "/in-pieces".into()));
    assert!(carry.is_empty(), "no bytes beyond the responses");
}

fn plain_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[test]
fn plain_connection_is_served_after_long_idles() {
    let backend = Backend::echo();
    let p = Ringway::start(&config(backend.addr, None));
    let mut s = plain_connect(p.addr());
    idle_between_requests(&mut s);
}

/// After a long idle, one write carries two whole requests and the start of a third: the
/// connection serves the two, keeps the partial head while it waits for the rest (it is not idle
/// then, and holds what it has), serves the third once it completes, and then idles again before
/// a last request.
#[test]
fn pipelined_requests_with_a_partial_tail_after_a_long_idle() {
    let backend = Backend::echo();
    let p = Ringway::start(&config(backend.addr, None));
    let mut s = plain_connect(p.addr());
    let mut carry = Vec::new();
    s.write_all(&request("/first")).unwrap();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/first".into()));
    thread::sleep(LONG_IDLE);
    let third = request("/third");
    let (third_start, third_rest) = third.split_at(third.len() / 2);
    let mut burst = request("/second-a");
    burst.extend_from_slice(&request("/second-b"));
    burst.extend_from_slice(third_start);
    s.write_all(&burst).unwrap();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/second-a".into()));
    assert_eq!(read_response(&mut s, &mut carry), (200, "/second-b".into()));
    thread::sleep(Duration::from_millis(300));
    s.write_all(third_rest).unwrap();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/third".into()));
    thread::sleep(LONG_IDLE);
    s.write_all(&request("/last")).unwrap();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/last".into()));
    assert!(carry.is_empty(), "no bytes beyond the responses");
}

/// A self-signed certificate for `localhost` in `dir`, and a client configuration trusting it.
fn tls_setup(dir: &TempDir) -> (String, String, Arc<rustls::ClientConfig>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.write("cert.pem", &c.cert.pem());
    let key = dir.write("key.pem", &c.key_pair.serialize_pem());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (cert.display().to_string(), key.display().to_string(), Arc::new(client))
}

fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.set_nodelay(true).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn tls_connection_is_served_after_long_idles() {
    let (backend, dir) = (Backend::echo(), TempDir::new());
    let (cert, key, client) = tls_setup(&dir);
    let p = Ringway::start(&config(backend.addr, Some((&cert, &key))));
    idle_between_requests(&mut tls_connect(p.addr(), &client));
}

/// Two pipelined requests in one TLS record, the first exactly one read buffer long: after it,
/// the second is already decrypted inside rustls while the socket is empty. The connection must
/// serve it without waiting for the socket to become readable (it never would).
#[test]
fn tls_pipelined_request_already_decrypted_is_served() {
    let (backend, dir) = (Backend::echo(), TempDir::new());
    let (cert, key, client) = tls_setup(&dir);
    let p = Ringway::start(&config(backend.addr, Some((&cert, &key))));
    let mut s = tls_connect(p.addr(), &client);
    let start = b"GET /exact HTTP/1.1\r\nHost: idle.test\r\nX-Pad: ";
    let end = b"\r\n\r\n";
    let mut first = start.to_vec();
    first.resize(4096 - end.len(), b'p');
    first.extend_from_slice(end);
    assert_eq!(first.len(), 4096);
    first.extend_from_slice(&request("/second"));
    s.write_all(&first).unwrap();
    let mut carry = Vec::new();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/exact".into()));
    let started = Instant::now();
    assert_eq!(read_response(&mut s, &mut carry), (200, "/second".into()));
    assert!(started.elapsed() < Duration::from_secs(3), "the second request waited");
}

/// RSS of the process, parsed from /proc (KiB).
fn rss(p: &Ringway) -> u64 {
    p.rss_kib()
}

#[test]
fn memory_of_a_burst_goes_back_after_its_connections_close() {
    const N: usize = 1500;
    let backend = Backend::echo();
    let p = Ringway::start(&config(backend.addr, None));
    // Warm up: the upstream pool, the buffer pools, the runtime's first allocations.
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.write_all(&request("/warm")).unwrap();
        read_response(&mut s, &mut Vec::new());
    }
    thread::sleep(Duration::from_millis(1500));
    let base = rss(&p);
    // The burst: N keep-alive connections served one request each, then each sends most of a
    // large head and stops, so every connection holds a head buffer at once.
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&request(&format!("/burst/{i}"))).unwrap();
        assert_eq!(read_response(&mut s, &mut Vec::new()).0, 200);
        conns.push(s);
    }
    let partial = format!(
        "GET /partial HTTP/1.1\r\nHost: idle.test\r\nX-Big: {}",
        "b".repeat(6000)
    );
    for s in &mut conns {
        s.write_all(partial.as_bytes()).unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    let peak = rss(&p);
    assert!(
        peak > base + 4 * 1024,
        "the burst should be visible in RSS: base {base} KiB, peak {peak} KiB"
    );
    drop(conns);
    // Generous: back to within half the burst's growth, within 10 s.
    let bound = base + (peak - base) / 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = rss(&p);
    while now > bound && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        now = rss(&p);
    }
    assert!(
        now <= bound,
        "RSS after the burst closed: {now} KiB (base {base} KiB, peak {peak} KiB, bound {bound} KiB)"
    );
    // And the proxy still serves.
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(&request("/after")).unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new()), (200, "/after".into()));
}
