//! Error paths: refused upstream → 502 naming it, connect and response timeouts → 504, malformed
//! upstream responses → 502 with the upstream connection closed (never reused), upstreams dying
//! mid-response, and no leaked file descriptors or hung clients on any of these paths.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn proxy(upstream_addr: SocketAddr, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[upstream.app]\nservers = [\"{upstream_addr}\"]\nconnect_timeout = \"500ms\"\n\n[[route]]\nupstream = \"app\"\nresponse_timeout = \"1s\"\n{route}\n"
    );
    Ringway::start(&cfg)
}

#[test]
fn refused_upstream_gives_502_naming_it() {
    let dead = refused_addr();
    let p = proxy(dead, "");
    let t = Instant::now();
    let r = get(&p.url("/"));
    assert_eq!(r.status, 502);
    let body = r.text();
    assert!(body.contains("upstream app"), "body names the upstream: {body:?}");
    assert!(body.contains(&dead.to_string()), "body names the address: {body:?}");
    assert!(body.contains("refused"), "{body:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // the client connection stays usable after a 502
    let mut c = RawClient::connect(p.addr());
    for _ in 0..2 {
        c.send(&get_req("/", "h", &[]));
        assert_eq!(c.read_response().status, 502);
    }
}

#[test]
fn slow_upstream_gives_504_after_response_timeout() {
    let b = Backend::with(|_, _| Reply::Delay(Duration::from_secs(4)));
    let p = proxy(b.addr, "");
    let t = Instant::now();
    let r = get(&p.url("/slow"));
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= Duration::from_millis(900), "504 before the timeout: {took:?}");
    assert!(took < Duration::from_millis(3000), "504 far too late: {took:?}");
    let body = r.text();
    assert!(
        body.contains("upstream app") && body.contains(&b.addr.to_string()),
        "{body:?}"
    );
    assert!(body.contains("1s"), "body names the timeout: {body:?}");
}

/// A listener whose accept queue is full: further SYNs are dropped and connects hang.
fn blackhole() -> Option<(socket2::Socket, Vec<socket2::Socket>, SocketAddr)> {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).ok()?;
    l.listen(0).ok()?;
    let addr = l.local_addr().ok()?.as_socket()?;
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        if s.connect_timeout(&addr.into(), Duration::from_millis(200)).is_err() {
            // The queue is full: this is the behaviour we need.
            return Some((l, fillers, addr));
        }
        fillers.push(s);
    }
    None
}

#[test]
fn connect_timeout_gives_504_naming_the_upstream() {
    let Some((_l, _fillers, addr)) = blackhole() else {
        panic!("could not build a listener whose connects hang on this machine");
    };
    let p = proxy(addr, "");
    let t = Instant::now();
    let r = get(&p.url("/"));
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("upstream app") && r.text().contains(&addr.to_string()),
        "{}",
        r.text()
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

#[test]
fn malformed_upstream_response_gives_502_and_the_connection_is_never_reused() {
    let up = Scripted::start(|conn, _, _| {
        if conn == 0 {
            // garbage status line; the upstream keeps the connection open
            Step::reply(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")
        } else {
            Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
    });
    let p = proxy(up.addr, "");
    let r = get(&p.url("/first"));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("upstream app"), "{}", r.text());
    let r = get(&p.url("/second"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    let conns = up.conns();
    assert_eq!(conns[0].requests.len(), 1, "the broken upstream connection was reused");
    assert!(conns.len() >= 2);
    assert!(
        wait_until(Duration::from_secs(3), || up.conns()[0].closed_by_peer),
        "ringway did not close the upstream connection that sent a malformed response"
    );
}

#[test]
fn malformed_upstream_responses_table_all_give_502() {
    let cases: &[&[u8]] = &[
        b"NOT-HTTP garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let bytes: &'static [u8] = bytes;
        let up = Scripted::start(move |_, _, _| Step::reply(bytes));
        let p = proxy(up.addr, "");
        let r = raw_roundtrip(p.addr(), &get_req("/", "h", &[]));
        assert_eq!(r.status, 502, "case {i}: {:?}", String::from_utf8_lossy(bytes));
        assert!(
            wait_until(Duration::from_secs(3), || up.conns().iter().all(|c| c.closed_by_peer)),
            "case {i}: upstream connection kept after a malformed response"
        );
    }
}

#[test]
fn upstream_closing_without_answer_gives_502() {
    let up = Scripted::start(|_, _, _| Step::reply_close(b""));
    let p = proxy(up.addr, "");
    let r = get(&p.url("/"));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("upstream app"), "{}", r.text());
}

#[test]
fn upstream_dying_mid_body_closes_the_client_instead_of_hanging() {
    let up = Scripted::start(|_, _, _| {
        Step::reply_close(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly 20 bytes here..")
    });
    let p = proxy(up.addr, "");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/", "h", &[]));
    let t = Instant::now();
    match c.try_read_response(false) {
        Ok(r) => panic!(
            "a truncated body was presented as complete: {} {:?}",
            r.status,
            r.text()
        ),
        Err(e) => assert!(e.contains("closed"), "client was not closed: {e}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "the client hung");
}

#[test]
fn no_fd_leak_on_error_paths() {
    let slow = Backend::with(|_, _| Reply::Delay(Duration::from_secs(3)));
    let good = Backend::echo();
    let dead = refused_addr();
    let garbage = Scripted::always(b"garbage\r\n\r\n");
    let mid = Scripted::start(|_, _, _| Step::reply_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"));
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}{}{}{}{}\
[[route]]\nprefix = \"/slow/\"\nupstream = \"slow\"\nresponse_timeout = \"300ms\"\n\n\
[[route]]\nprefix = \"/good/\"\nupstream = \"good\"\n\n\
[[route]]\nprefix = \"/dead/\"\nupstream = \"dead\"\n\n\
[[route]]\nprefix = \"/garbage/\"\nupstream = \"garbage\"\n\n\
[[route]]\nprefix = \"/mid/\"\nupstream = \"mid\"\n",
        upstream("slow", slow.addr),
        upstream("good", good.addr),
        upstream("dead", dead),
        upstream("garbage", garbage.addr),
        upstream("mid", mid.addr),
    );
    let mut p = Ringway::start(&cfg);
    let baseline = p.fd_count();
    for round in 0..3 {
        for _ in 0..5 {
            assert_eq!(get(&p.url("/dead/x")).status, 502);
            assert_eq!(get(&p.url("/garbage/x")).status, 502);
            assert_eq!(
                raw_roundtrip(p.addr(), b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n").status,
                400
            );
            assert_eq!(
                raw_roundtrip(p.addr(), b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n").status,
                404
            );
            let mut c = RawClient::connect(p.addr());
            c.send(&get_req("/mid/x", "h", &[]));
            assert!(c.try_read_response(false).is_err());
        }
        assert_eq!(get(&p.url("/slow/x")).status, 504);
        // clients that vanish: mid-head, mid-body, and while waiting for a slow upstream
        for path in ["/good/", "/slow/"] {
            let mut s = TcpStream::connect(p.addr()).unwrap();
            use std::io::Write;
            let _ =
                s.write_all(format!("POST {path}x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc").as_bytes());
            drop(s);
            let mut s = TcpStream::connect(p.addr()).unwrap();
            let _ = s.write_all(b"GET /good/x HTTP/1.1\r\nHost:");
            drop(s);
            let mut s = TcpStream::connect(p.addr()).unwrap();
            let _ = s.write_all(format!("GET {path}x HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            std::thread::sleep(Duration::from_millis(50));
            drop(s);
        }
        p.assert_healthy();
        // one good request keeps at most one pooled connection to `good`
        assert_eq!(get(&p.url("/good/x")).status, 200, "round {round}");
    }
    // Slow upstreams answer after 3 s; give the proxy time to notice closed peers.
    let allowed = baseline + 2; // a pooled connection to `good` (and to `slow`, once it answers)
    let now = p.wait_fds_at_most(allowed, Duration::from_secs(8));
    assert!(
        now <= allowed,
        "fd count grew from {baseline} to {now} after error paths; fds: {:?}",
        p.fd_targets()
    );
}

#[test]
fn upstream_header_lines_reach_the_client_as_plain_crlf_lines() {
    // Kept lines are copied from the upstream's head a run at a time; a line ended by a bare LF
    // or by trailing blanks must still be rewritten, never passed on as it came.
    let up = Scripted::start(|_, _, _| {
        Step::reply(b"HTTP/1.1 200 OK\r\nX-Plain: a\r\nX-Tight:b\r\nX-Bare-Lf: c\nX-Trailing: d \t\r\nContent-Length: 2\r\n\r\nok")
    });
    let p = proxy(up.addr, "");
    let r = raw_roundtrip(p.addr(), &get_req("/", "h", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    let head = String::from_utf8_lossy(&r.raw_head).into_owned();
    assert!(head.contains("\r\nX-Plain: a\r\nX-Tight:b\r\n"), "{head:?}");
    assert!(head.contains("\r\nX-Bare-Lf: c\r\n"), "{head:?}");
    assert!(head.contains("\r\nX-Trailing: d\r\n"), "{head:?}");
    let bytes = &r.raw_head;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i} in {head:?}");
        }
    }
}
