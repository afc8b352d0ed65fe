//! Broken upstreams and vanishing clients: bodies cut short are passed on truncated and the client
//! connection closed (never kept alive as if complete), a stalled body obeys `read_timeout` while
//! the head obeys `response_timeout`, a pooled connection the upstream closed is replaced only
//! when that cannot repeat a request, and a client that leaves mid-upload or mid-download takes
//! its upstream connection with it (closed, not pooled, no fd left behind).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn proxy(up: SocketAddr, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", up)
    );
    Ringway::start(&cfg)
}

/// An upstream that runs `serve(connection_index, stream)` for each connection after reading the
/// request head, for behaviours the scripted upstream cannot express (dripping, endless bodies).
struct RawUpstream {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    /// Connections whose writes failed because the proxy closed them.
    write_failures: Arc<AtomicUsize>,
}

impl RawUpstream {
    fn start(serve: impl Fn(usize, &mut TcpStream) -> std::io::Result<()> + Send + Sync + 'static) -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let write_failures = Arc::new(AtomicUsize::new(0));
        let serve = Arc::new(serve);
        {
            let (conns, write_failures) = (conns.clone(), write_failures.clone());
            thread::spawn(move || {
                for s in l.incoming() {
                    let Ok(mut s) = s else { continue };
                    let idx = conns.fetch_add(1, Ordering::SeqCst);
                    let (serve, write_failures) = (serve.clone(), write_failures.clone());
                    thread::spawn(move || {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match s.read(&mut b) {
                                Ok(1) => head.push(b[0]),
                                _ => return,
                            }
                        }
                        if serve(idx, &mut s).is_err() {
                            write_failures.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
            });
        }
        RawUpstream {
            addr,
            conns,
            write_failures,
        }
    }
}

/// Everything the client receives until the proxy closes the connection (or `within` passes).
fn read_until_closed(c: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        c.set_read_timeout(Some(left)).unwrap();
        match c.read(&mut tmp) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[test]
fn chunked_response_without_its_last_chunk_is_passed_on_truncated_and_the_client_closed() {
    let up = Scripted::start(|_, _, _| {
        Step::reply_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n")
    });
    let p = proxy(up.addr, "");
    let mut c = TcpStream::connect(p.addr()).unwrap();
    c.write_all(&get_req("/", "h", &[])).unwrap();
    let (got, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "the client connection was kept open after a cut body: {text:?}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.contains("Transfer-Encoding: chunked"), "{text:?}");
    assert!(
        text.ends_with("5\r\nhello\r\n3\r\nabc\r\n"),
        "the data that arrived is passed on: {text:?}"
    );
    assert!(!text.contains("\r\n0\r\n"), "a last chunk was invented: {text:?}");
}

#[test]
fn short_content_length_body_is_passed_on_truncated_and_the_client_closed() {
    let up = Scripted::start(|_, _, _| {
        Step::reply_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-twenty-bytes...")
    });
    let p = proxy(up.addr, "");
    // Keep-alive client: after the cut body it must see a close, not a reusable connection.
    let mut c = TcpStream::connect(p.addr()).unwrap();
    c.write_all(&get_req("/", "h", &["Connection: keep-alive"])).unwrap();
    let (got, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "the client connection was kept open after a cut body: {text:?}");
    assert!(text.contains("Content-Length: 100\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\nonly-twenty-bytes..."), "{text:?}");
}

#[test]
fn a_stalled_body_is_cut_after_read_timeout_not_response_timeout() {
    let up = RawUpstream::start(|_, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")?;
        thread::sleep(Duration::from_secs(8));
        Ok(())
    });
    let p = proxy(up.addr, "response_timeout = \"6s\"\nread_timeout = \"600ms\"");
    let mut c = TcpStream::connect(p.addr()).unwrap();
    let t = Instant::now();
    c.write_all(&get_req("/", "h", &[])).unwrap();
    let (got, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    let took = t.elapsed();
    assert!(closed, "a stalled body held the client past read_timeout");
    assert!(String::from_utf8_lossy(&got).ends_with("\r\n\r\n0123456789"));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "cut after {took:?}; read_timeout is 600ms, response_timeout 6s"
    );
}

#[test]
fn a_slow_but_steady_body_outlives_response_timeout() {
    // One byte every 250 ms for 2 s: longer than response_timeout in total, never a pause as
    // long as read_timeout.
    let up = RawUpstream::start(|_, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")?;
        for b in b"abcdefgh" {
            thread::sleep(Duration::from_millis(250));
            s.write_all(std::slice::from_ref(b))?;
        }
        Ok(())
    });
    let p = proxy(up.addr, "response_timeout = \"1s\"\nread_timeout = \"1s\"");
    let t = Instant::now();
    let r = raw_roundtrip(p.addr(), &get_req("/", "h", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abcdefgh");
    assert!(t.elapsed() >= Duration::from_millis(1900), "{:?}", t.elapsed());
}

#[test]
fn a_pooled_connection_the_upstream_closed_while_idle_is_replaced_even_for_post() {
    // The first connection answers once and closes (without Connection: close, so the proxy
    // pools it); every later connection behaves.
    let up = Scripted::start(|conn, _, _| {
        if conn == 0 {
            Step::reply_close(OK)
        } else {
            Step::reply(OK)
        }
    });
    let mut p = proxy(up.addr, "");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/first", "h", &[]));
    assert_eq!(c.read_response().status, 200);
    // The upstream's FIN reaches the idle pooled connection.
    thread::sleep(Duration::from_millis(200));
    c.send(b"POST /once HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let posts: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(b"POST /once"))
        .collect();
    assert_eq!(posts.len(), 1, "the POST reached the upstream {} times", posts.len());
    assert_eq!(
        up.conn_count(),
        2,
        "the dead pooled connection was replaced by one fresh one"
    );
    p.assert_healthy();
}

#[test]
fn a_pooled_connection_closed_after_taking_the_request_is_retried_only_for_idempotent_methods() {
    // Every connection answers its first request, then closes on its second without answering:
    // the upstream may have acted on that second request.
    let up = Scripted::start(|_, req, _| {
        if req == 0 {
            Step::reply(OK)
        } else {
            Step::reply_close(b"")
        }
    });
    let mut p = proxy(up.addr, "");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/a", "h", &[]));
    assert_eq!(c.read_response().status, 200);
    // GET on the pooled connection: cut, then transparently sent again on a fresh connection.
    c.send(&get_req("/b", "h", &[]));
    assert_eq!(c.read_response().status, 200, "an idempotent request is retried");
    let gets = up.requests().iter().filter(|r| r.starts_with(b"GET /b")).count();
    assert_eq!(gets, 2, "GET /b: once on the closed connection, once on the fresh one");
    let conns_before = up.conn_count();
    // POST on the pooled connection (the fresh one, now at its second request): not repeated.
    c.send(b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody");
    let r = c.read_response();
    assert_eq!(
        r.status, 502,
        "a non-idempotent request the upstream took is not sent again"
    );
    thread::sleep(Duration::from_millis(200));
    let posts = up.requests().iter().filter(|r| r.starts_with(b"POST /c")).count();
    assert_eq!(posts, 1, "the POST reached the upstream {posts} times");
    assert_eq!(
        up.conn_count(),
        conns_before,
        "no new connection was opened for the POST"
    );
    p.assert_healthy();
}

/// Sockets back to the count `before` (sockets, pipe ends); spliced bodies may leave one drained
/// pipe pair pooled for the next body (pipes holding bytes are closed, never pooled).
fn assert_nothing_leaked(p: &Ringway, before: (usize, usize)) {
    let (sockets, pipes) = before;
    let now = p.wait_sockets_at_most(sockets, Duration::from_secs(3));
    // A relay's pipe closes when its task ends, which may trail the sockets: wait as for them.
    wait_until(Duration::from_secs(3), || p.sockets_and_pipes().1 <= pipes + 2);
    let pipes_now = p.sockets_and_pipes().1;
    assert!(
        now <= sockets && pipes_now <= pipes + 2,
        "sockets {now} (before {sockets}), pipe ends {pipes_now} (before {pipes}): {:?}",
        p.fd_targets()
    );
}

#[test]
fn a_client_leaving_mid_upload_closes_its_upstream_connection_and_leaks_nothing() {
    let up = Scripted::always(OK);
    let mut p = proxy(up.addr, "");
    assert_eq!(raw_roundtrip(p.addr(), &get_req("/warm", "h", &[])).status, 200);
    let before = p.sockets_and_pipes();
    for round in 0..5 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n")
            .unwrap();
        s.write_all(&vec![b'u'; 300_000]).unwrap();
        // The upload is flowing: the upstream has part of it.
        assert!(
            wait_until(Duration::from_secs(3), || up
                .conns()
                .last()
                .is_some_and(|c| c.received.len() > 100_000)),
            "round {round}: upload did not reach the upstream"
        );
        drop(s);
        assert!(
            wait_until(Duration::from_secs(3), || up
                .conns()
                .last()
                .is_some_and(|c| c.closed_by_peer)),
            "round {round}: the upstream connection of an abandoned upload stayed open"
        );
    }
    assert_nothing_leaked(&p, before);
    // The pooled connection from the warm-up is still the only reusable one.
    assert_eq!(raw_roundtrip(p.addr(), &get_req("/after", "h", &[])).status, 200);
    p.assert_healthy();
}

#[test]
fn a_client_leaving_mid_download_closes_its_upstream_connection_and_leaks_nothing() {
    // An endless body in both framings: the upstream writes until the proxy closes on it.
    let up = RawUpstream::start(|conn, s| {
        let block = vec![b'd'; 64 * 1024];
        if conn % 2 == 0 {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")?;
            loop {
                s.write_all(&block)?;
            }
        } else {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            loop {
                s.write_all(b"10000\r\n")?;
                s.write_all(&block)?;
                s.write_all(b"\r\n")?;
            }
        }
    });
    let mut p = proxy(up.addr, "");
    let before = p.sockets_and_pipes();
    for round in 0..6 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.write_all(&get_req("/download", "h", &[])).unwrap();
        let mut got = vec![0u8; 200_000];
        s.read_exact(&mut got).unwrap();
        drop(s);
        assert!(
            wait_until(Duration::from_secs(3), || up.write_failures.load(Ordering::SeqCst)
                > round),
            "round {round}: the upstream kept sending after the client left"
        );
    }
    assert_eq!(
        up.conns.load(Ordering::SeqCst),
        6,
        "every download used its own connection"
    );
    assert_nothing_leaked(&p, before);
    p.assert_healthy();
}

/// Found by the `response_head` fuzz target: a Set-Cookie attribute with a multi-byte character
/// where `Path=` could start made the cookie rewrite slice inside a character and panic.
#[test]
fn a_set_cookie_with_multibyte_attributes_is_rewritten_without_a_panic() {
    let up = Scripted::always(
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=b;pOa=\u{4cf};x\r\nSet-Cookie: s=1; \u{4cf}\u{4cf}; Path=/x\r\nContent-Length: 2\r\n\r\nok"
            .as_bytes()
            .to_vec()
            .leak(),
    );
    let mut p = proxy(up.addr, "prefix = \"/app/\"\nstrip_prefix = true");
    for _ in 0..3 {
        let r = raw_roundtrip(p.addr(), &get_req("/app/x", "h", &[]));
        assert_eq!(r.status, 200);
        let cookies = r.all("set-cookie");
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert_eq!(cookies[0], "a=b;pOa=\u{4cf};x");
        assert_eq!(cookies[1], "s=1; \u{4cf}\u{4cf}; Path=/app/x");
    }
    p.assert_healthy();
}
