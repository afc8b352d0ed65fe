//! Large plaintext response bodies through the splice path (src/body_splice.rs), through the
//! built binary: byte-exact for Content-Length and close-delimited bodies, keep-alive on both
//! sides afterwards, a truncated upstream body closes the client, and no fd or pipe stays
//! behind. Run under both drivers (MONOIO_FORCE_LEGACY_DRIVER=1 for epoll).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{get_req, pattern, Checksum, RawClient, Ringway};

/// A raw HTTP/1.1 backend: `/cl/N` answers N bytes with Content-Length (keep-alive),
/// `/close/N` N bytes delimited by closing, `/short/N/M` announces N bytes, sends M and closes;
/// bodies are `pattern(N, N)`. `/sum` reads the request's Content-Length body and answers
/// `LEN CHECKSUM`. Counts the connections it accepted.
struct BodyBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn body_backend() -> BodyBackend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || serve(conn));
        }
    });
    BodyBackend { addr, accepted }
}

fn serve(conn: TcpStream) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut request_body = vec![0u8; content_length];
        if r.read_exact(&mut request_body).is_err() {
            return;
        }
        let path = first.split(' ').nth(1).unwrap_or("/").to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let num = |i: usize| parts.get(i).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let (head, body, close) = match parts[0] {
            "cl" => (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", num(1)),
                pattern(num(1), num(1) as u64),
                false,
            ),
            "close" => (
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
                pattern(num(1), num(1) as u64),
                true,
            ),
            "sum" => {
                let answer = format!("{} {}", request_body.len(), Checksum::of(&request_body)).into_bytes();
                (
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", answer.len()),
                    answer,
                    false,
                )
            }
            "short" => {
                let full = pattern(num(1), num(1) as u64);
                (
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", num(1)),
                    full[..num(2)].to_vec(),
                    true,
                )
            }
            "stall" => {
                // Head and the first bytes of the body, then nothing for 5 s.
                let full = pattern(num(1), num(1) as u64);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", num(1));
                let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(&full[..num(2)]));
                thread::sleep(Duration::from_secs(5));
                return;
            }
            _ => (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                Vec::new(),
                false,
            ),
        };
        if w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body)).is_err() || close {
            return;
        }
    }
}

fn config(backend: SocketAddr) -> String {
    format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
         [upstream.files]\nservers = [\"{backend}\"]\n\
         [[route]]\nprefix = \"/\"\nupstream = \"files\"\n"
    )
}

#[test]
fn large_bodies_arrive_byte_exact_and_both_connections_stay_usable() {
    let backend = body_backend();
    let proxy = Ringway::start(&config(backend.addr));
    let pipes = || proxy.fd_targets().iter().filter(|t| t.starts_with("pipe:")).count();
    let pipes_before = pipes();
    let mut client = RawClient::connect(proxy.addr());
    // Sizes around the splice threshold, a pipe's worth, and several MiB.
    for len in [70_000usize, 64 * 1024 + 1, 1 << 20, 8 << 20 | 12345, 1000] {
        client.send(&get_req(&format!("/cl/{len}"), "files", &[]));
        let resp = client.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), len, "body length for /cl/{len}");
        assert!(
            resp.body == pattern(len, len as u64),
            "body of /cl/{len} changed in transit"
        );
    }
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        1,
        "the upstream connection is reused after spliced bodies"
    );
    assert_eq!(
        pipes(),
        pipes_before + 2,
        "the bodies went through one pipe, lent by the worker's pool and back in it"
    );

    // Close-delimited: passed on as is to an HTTP/1.0 client (no re-chunking), spliced.
    let mut old = RawClient::connect(proxy.addr());
    old.send(b"GET /close/3000000 HTTP/1.0\r\nHost: files\r\n\r\n");
    let resp = old.read_response();
    assert_eq!(resp.status, 200);
    assert!(resp.close_delimited, "HTTP/1.0 gets the body delimited by close");
    assert!(
        resp.body == pattern(3_000_000, 3_000_000),
        "close-delimited body changed in transit"
    );

    // An HTTP/1.1 client of a close-delimited body gets it re-chunked (copy path), intact.
    let mut chunked = RawClient::connect(proxy.addr());
    chunked.send(&get_req("/close/200000", "files", &[]));
    let resp = chunked.read_response();
    assert!(resp.body == pattern(200_000, 200_000));
}

#[test]
fn large_request_bodies_arrive_byte_exact() {
    let backend = body_backend();
    let proxy = Ringway::start(&config(backend.addr));
    let pipes = || proxy.fd_targets().iter().filter(|t| t.starts_with("pipe:")).count();
    let pipes_before = pipes();
    let mut client = RawClient::connect(proxy.addr());
    for len in [5_000_000usize, 100, 65 * 1024] {
        let body = pattern(len, 99);
        let head = format!("POST /sum HTTP/1.1\r\nHost: files\r\nContent-Length: {len}\r\n\r\n");
        // Head and body in separate writes, so most of the body is left after the head read.
        client.send(head.as_bytes());
        client.send(&body);
        let resp = client.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&resp.body),
            format!("{len} {}", Checksum::of(&body)),
            "request body of {len} bytes changed in transit"
        );
    }
    assert_eq!(
        pipes(),
        pipes_before + 2,
        "the large request bodies went through a pooled pipe"
    );
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection, reused"
    );
}

/// Asks `path` and checks that the client gets no complete response and is then closed.
fn assert_cut_short(proxy: &Ringway, path: &str) {
    let mut client = RawClient::connect(proxy.addr());
    client.set_timeout(Duration::from_secs(10));
    client.send(&get_req(path, "files", &[]));
    let got = client.try_read_response(false);
    assert!(
        got.is_err(),
        "a body cut short must not look complete: {:?}",
        got.map(|r| r.body.len())
    );
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "the client connection is closed after a body cut short"
    );
}

#[test]
fn a_truncated_upstream_body_closes_the_client() {
    let backend = body_backend();
    let proxy = Ringway::start(&config(backend.addr));
    assert_cut_short(&proxy, "/short/4000000/1000000");
}

#[test]
fn a_spliced_body_that_stalls_is_cut_at_the_read_timeout() {
    let backend = body_backend();
    let cfg = config(backend.addr) + "read_timeout = \"300ms\"\n";
    let proxy = Ringway::start(&cfg);
    let started = Instant::now();
    // 1 MB of a 4 MB body, then the upstream goes quiet for 5 s: past SPLICE_MIN_BODY, so the
    // pause happens inside the splice relay.
    assert_cut_short(&proxy, "/stall/4000000/1000000");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?}: the 300 ms read_timeout, not the upstream's 5 s stall, must end it"
    );
}

#[test]
fn spliced_bodies_leave_no_fd_or_pipe_behind() {
    let backend = body_backend();
    let proxy = Ringway::start(&config(backend.addr));
    // Warm: one exchange opens the pooled upstream connection and lends the pool's first pipe.
    let mut warm = RawClient::connect(proxy.addr());
    warm.send(&get_req("/cl/100000", "files", &[]));
    assert_eq!(warm.read_response().body.len(), 100_000);
    drop(warm);
    thread::sleep(Duration::from_millis(200));
    let count = |kind: &str| proxy.fd_targets().iter().filter(|t| t.starts_with(kind)).count();
    let (sockets_before, pipes_before) = (count("socket:"), count("pipe:"));

    let mut handles = Vec::new();
    for t in 0..8 {
        let addr = proxy.addr();
        handles.push(thread::spawn(move || {
            for i in 0..10 {
                let mut c = RawClient::connect(addr);
                let (path, len) = match (t + i) % 3 {
                    0 => ("/cl/300000", Some(300_000)),
                    1 => ("/short/500000/200000", None),
                    _ => ("/cl/2000000", Some(2_000_000)),
                };
                c.send(&get_req(path, "files", &[]));
                match (c.try_read_response(false), len) {
                    (Ok(r), Some(len)) => assert!(r.body == pattern(len, len as u64), "{path} changed"),
                    (Ok(r), None) => panic!(
                        "{path}: a truncated body was taken as complete ({} bytes)",
                        r.body.len()
                    ),
                    (Err(e), Some(_)) => panic!("{path}: {e}"),
                    (Err(_), None) => assert!(c.closed_within(Duration::from_secs(5))),
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    // Client connections are gone; upstream connections that ended a body cleanly may stay
    // pooled (at most one per concurrent client here); pipes go back to the worker's pool, at
    // most one per concurrent body. Nothing may grow with the number of exchanges.
    thread::sleep(Duration::from_millis(300));
    let (sockets, pipes) = (count("socket:"), count("pipe:"));
    assert!(
        sockets <= sockets_before + 8,
        "sockets: {sockets_before} before, {sockets} after 80 exchanges"
    );
    assert!(
        pipes <= pipes_before + 2 * 8,
        "pipe fds: {pipes_before} before, {pipes} after 80 exchanges; at most 8 bodies were concurrent"
    );
}

#[test]
fn a_client_that_stops_mid_body_is_closed_and_the_upstream_not_reused() {
    let backend = body_backend();
    let proxy = Ringway::start(&config(backend.addr));
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"POST /sum HTTP/1.1\r\nHost: files\r\nContent-Length: 1000000\r\n\r\n");
    client.send(&pattern(200_000, 5));
    client.shutdown_write();
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "the proxy closes a client whose body ended short"
    );
    // The upstream saw a cut body: its connection must not serve the next request.
    let mut next = RawClient::connect(proxy.addr());
    next.send(&get_req("/cl/100000", "files", &[]));
    assert!(next.read_response().body == pattern(100_000, 100_000));
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        2,
        "a fresh upstream connection"
    );
}
