//! HTTP/1.1 client-side behaviour: keep-alive, pipelining in order, HTTP/1.0 clients,
//! Expect: 100-continue, HEAD / 204 / 304 without a body, upstream keep-alive pooling, and the
//! header and idle timeouts.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn proxy(upstream_addr: std::net::SocketAddr, extra_server: &str, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n{extra_server}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", upstream_addr)
    );
    Ringway::start(&cfg)
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    for i in 0..5 {
        c.send(&get_req(&format!("/ka/{i}"), "h.test", &[]));
        let r = c.read_response();
        assert_eq!(r.echo().url, format!("/ka/{i}"));
        assert!(
            !r.all("Connection").iter().any(|v| v.eq_ignore_ascii_case("close")),
            "ringway asked to close a keep-alive connection"
        );
    }
    // a real client library on one agent as well
    let a = agent();
    for i in 0..3 {
        assert_eq!(
            http(&a, "GET", &p.url(&format!("/u/{i}")), &[], None).echo().url,
            format!("/u/{i}")
        );
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    // The first request is the slowest: answers out of order would show.
    let b = Backend::with(|_, url| match url {
        "/p/0" => Reply::Delay(Duration::from_millis(400)),
        "/p/1" => Reply::Delay(Duration::from_millis(150)),
        _ => Reply::Echo,
    });
    let p = proxy(b.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.extend_from_slice(&get_req(&format!("/p/{i}"), "h.test", &[]));
    }
    // one POST with a body inside the pipeline
    batch.extend_from_slice(b"POST /p/4 HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n\r\nhello");
    batch.extend_from_slice(&get_req("/p/5", "h.test", &[]));
    c.send(&batch);
    for i in 0..6 {
        let e = c.read_response().echo();
        assert_eq!(e.url, format!("/p/{i}"), "answer {i} out of order");
        if i == 4 {
            assert_eq!(e.body_len, 5);
            assert_eq!(e.body_sum, Checksum::of(b"hello"));
        }
    }
}

#[test]
fn http10_client_gets_a_complete_answer_and_a_close() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    c.send(b"GET /old HTTP/1.0\r\nHost: h.test\r\n\r\n");
    let r = c.read_response();
    assert!(r.version.starts_with("HTTP/1."), "{}", r.version);
    assert!(!r.chunked, "HTTP/1.0 clients cannot read chunked bodies");
    assert_eq!(r.echo().url, "/old");
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "HTTP/1.0 without keep-alive must be closed"
    );

    // HTTP/1.0 without Host, through curl as well
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http1.0", "-o", "-", "-w", "\n%{http_code}", &p.url("/curl10")])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n200"), "curl --http1.0: {text}");
    assert!(text.contains("\"url\":\"/curl10\""), "{text}");
}

#[test]
fn http10_close_delimited_upstream_response_reaches_http10_client_unchunked() {
    let up =
        Scripted::start(|_, _, _| Step::reply_close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nold school"));
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.chunked);
    assert_eq!(r.text(), "old school");
}

#[test]
fn expect_100_continue_is_answered_by_ringway_and_not_forwarded() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    c.send(b"PUT /upload HTTP/1.1\r\nHost: h.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    c.set_timeout(Duration::from_secs(3));
    let interim = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no 100 Continue before the body was sent: {e}"));
    assert_eq!(interim.status, 100);
    c.set_timeout(Duration::from_secs(10));
    c.send(b"hello world");
    let e = c.read_final().echo();
    assert_eq!(e.body_len, 11);
    assert_eq!(e.body_sum, Checksum::of(b"hello world"));
    assert!(e.all("Expect").is_empty(), "Expect was forwarded: {:?}", e.headers);

    // curl waits for 100 Continue on large bodies
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "5",
            "--data-binary",
            "@-",
            &p.url("/curl-expect"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(&vec![b'z'; 100_000])?;
            ch.wait_with_output()
        })
        .expect("curl");
    let e = Echo::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(e.body_len, 100_000);
}

#[test]
fn head_204_and_304_carry_no_body_and_the_connection_stays_in_sync() {
    let up = Scripted::start(|_, _, req| {
        let line = request_line(req);
        if line.starts_with("HEAD") {
            Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/html\r\n\r\n")
        } else if line.contains("/204") {
            Step::reply(b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n")
        } else if line.contains("/304") {
            Step::reply(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n")
        } else {
            Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        }
    });
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());

    let t = Instant::now();
    c.send(b"HEAD /page HTTP/1.1\r\nHost: h.test\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("1000"),
        "HEAD keeps the representation's length"
    );
    c.send(&get_req("/after-head", "h.test", &[]));
    let r = c.read_response();
    assert_eq!(r.body, b"next", "bytes after a HEAD answer would desync the connection");

    c.send(&get_req("/204", "h.test", &[]));
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert!(r.header("Transfer-Encoding").is_none(), "204 with Transfer-Encoding");
    c.send(&get_req("/after-204", "h.test", &[]));
    assert_eq!(c.read_response().body, b"next");

    c.send(&get_req("/304", "h.test", &["If-None-Match: \"v1\""]));
    let r = c.read_response();
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some("\"v1\""));
    c.send(&get_req("/after-304", "h.test", &[]));
    assert_eq!(c.read_response().body, b"next");
    assert!(
        c.leftover().is_empty(),
        "stray bytes: {:?}",
        String::from_utf8_lossy(c.leftover())
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "ringway waited for a body that never comes"
    );
}

#[test]
fn upstream_connections_are_pooled_with_keep_alive() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "", "");
    for i in 0..5 {
        // a new client connection each time: reuse must come from the upstream pool
        let r = raw_roundtrip(p.addr(), &get_req(&format!("/{i}"), "h.test", &[]));
        assert_eq!(r.body, b"ok");
    }
    assert_eq!(
        up.conn_count(),
        1,
        "one worker, sequential requests: one pooled upstream connection"
    );
    assert_eq!(up.requests().len(), 5);
}

#[test]
fn upstream_connection_is_not_reused_when_the_upstream_asks_to_close() {
    let up =
        Scripted::start(|_, _, _| Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"));
    let p = proxy(up.addr, "", "");
    for _ in 0..3 {
        assert_eq!(raw_roundtrip(p.addr(), &get_req("/", "h.test", &[])).body, b"ok");
    }
    assert_eq!(up.conn_count(), 3);
    for c in up.conns() {
        assert_eq!(c.requests.len(), 1);
    }
}

#[test]
fn header_timeout_closes_a_client_that_never_finishes_its_head() {
    let b = Backend::echo();
    let p = proxy(b.addr, "header_timeout = \"500ms\"", "");
    let mut c = RawClient::connect(p.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h.test\r\n");
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(4)), "slow-loris head kept open");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "closed before the header timeout"
    );
    assert_eq!(b.hits(), 0);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "idle_timeout = \"500ms\"");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/", "h.test", &[]));
    assert_eq!(c.read_response().status, 200);
    assert!(c.closed_within(Duration::from_secs(4)), "idle connection not closed");
}

#[test]
fn upstream_connection_is_not_reused_when_the_client_left_mid_response() {
    let big: &'static [u8] = {
        let mut v = b"HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n".to_vec();
        v.extend(std::iter::repeat_n(b'x', 8 << 20));
        Box::leak(v.into_boxed_slice())
    };
    let up = Scripted::start(move |conn, _, _| {
        if conn == 0 {
            Step::reply(big)
        } else {
            Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
    });
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/big", "h.test", &[]));
    // read only a little of the 8 MiB answer, then go away
    let mut buf = [0u8; 4096];
    let n = std::io::Read::read(&mut c.stream, &mut buf).unwrap();
    assert!(n > 0 && buf.starts_with(b"HTTP/1.1 200"));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(5), || up
            .conns()
            .first()
            .is_some_and(|c| c.closed_by_peer)),
        "the upstream connection with an unread response body was kept"
    );
    let r = raw_roundtrip(p.addr(), &get_req("/next", "h.test", &[]));
    assert_eq!(r.body, b"ok");
    assert_eq!(
        up.conns()[0].requests.len(),
        1,
        "a half-read upstream connection was reused"
    );
}
