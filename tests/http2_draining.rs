//! Draining HTTP/2 client connections: a takeover while h2load keeps streams in flight fails
//! no request, and on SIGTERM a client is told the last stream that will be served (GOAWAY),
//! sees those streams finish, and the connection closes; a stream outlasting
//! `shutdown_timeout` is cut there.

mod common;
mod h2raw;
use common::*;
use h2raw::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether h2load is installed; without it the h2load tests are skipped, unless the suite was
/// asked to require it.
fn have_h2load() -> bool {
    if Command::new("h2load").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("RINGWAY_REQUIRE_H2LOAD").is_none(),
        "h2load not found (scripts/test.sh installs nghttp2-client)"
    );
    eprintln!("h2load not found; skipped");
    false
}

/// An h2c listener on port 0 (a successor taking over inherits the same socket).
fn config(backend: SocketAddr, server: &str) -> String {
    format!(
        "[server]\nworkers = 2\n{server}\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n{}[[route]]\nupstream = \"app\"\n",
        upstream("app", backend)
    )
}

#[test]
fn two_takeovers_under_h2load_fail_no_request() {
    if !have_h2load() {
        return;
    }
    // A few milliseconds per answer keep streams in flight when the old process drains. A
    // thread per upstream connection: tiny_http's pool can leave a new connection queued until
    // another one closes, which pooled keep-alive connections do not do for a minute.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let b = Scripted::start(move |_, _, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        Step {
            delay: Duration::from_millis(3),
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            close: false,
        }
    });
    let hits = move || hits.load(Ordering::SeqCst);
    let dir = TempDir::new();
    let control = dir.path.join("ringway.sock");
    let cfg = config(
        b.addr,
        &format!("shutdown_timeout = \"10s\"\ncontrol_socket = \"{}\"", control.display()),
    );
    let mut current = Ringway::start(&cfg);
    let url = format!("http://{}/load", current.addr());
    // A stream of short connections, each sending its 8 requests at once as it opens (as a page
    // load does): 200 new connections a second for 8 s. h2load (1.52) does not open a new
    // connection after a GOAWAY: it would count each request it had not yet sent on a long-lived
    // connection as failed, though the server never saw it. Here every request a client makes
    // is sent before the old process can say GOAWAY, so each one counts.
    let (conns, per_conn) = (1600, 8);
    let total = conns * per_conn;
    let mut load = Command::new("h2load")
        .args([
            "-n",
            &total.to_string(),
            "-c",
            &conns.to_string(),
            "-m",
            &per_conn.to_string(),
        ])
        .args(["-r", "10", "--rate-period", "50ms"])
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run h2load");
    for round in 0..2 {
        let before = hits();
        assert!(
            wait_until(Duration::from_secs(20), || hits() > before + 1500),
            "round {round}: the load is not flowing ({} requests)",
            hits()
        );
        let takeover = control.clone();
        let next = Ringway::start_with(&cfg, |c| {
            c.arg("--takeover").arg(&takeover);
        });
        assert_eq!(next.addr(), current.addr(), "round {round}: the same listener");
        assert!(
            current.exited_within(Duration::from_secs(12)),
            "round {round}: the old process did not finish draining; stderr:\n{}",
            current.stderr()
        );
        assert!(
            !current.stderr().contains("closing the remaining connections"),
            "round {round}: the drain ran into shutdown_timeout:\n{}",
            current.stderr()
        );
        if load.try_wait().unwrap().is_some() {
            let out = load.wait_with_output().unwrap();
            panic!(
                "round {round}: h2load finished before the takeover did:\n{}\nringway:\n{}",
                String::from_utf8_lossy(&out.stdout),
                current.stderr()
            );
        }
        current = next;
    }
    let out = load.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(
        text.contains(&format!("{total} succeeded, 0 failed, 0 errored, 0 timeout")),
        "requests failed across the takeovers:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("status codes: {total} 2xx")), "{text}");
    current.assert_healthy();
}

/// Opens two slow streams and waits until both reached the upstream.
fn two_streams_in_flight(p: &Ringway, b: &Backend, path: &str) -> Conn {
    let mut c = Conn::open(p.addr(), &[]);
    c.headers(1, &request("GET", path, "app.test"), true);
    c.headers(3, &request("GET", path, "app.test"), true);
    assert!(
        wait_until(Duration::from_secs(5), || b.hits() == 2),
        "the streams did not reach the upstream"
    );
    c
}

fn sigterm(p: &Ringway) -> Instant {
    // SAFETY: a signal to the ringway process this test started.
    assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    Instant::now()
}

/// What a client with streams 1 and 3 in flight sees of a drain that began at `since`: h2
/// drains in two steps, GOAWAY naming the highest id (no new streams, please), a PING, then
/// GOAWAY naming the last stream it took: 3. Both streams finish; stream 5, opened after the
/// final GOAWAY, is not served; then the connection closes.
fn assert_drained(c: &mut Conn, b: &Backend, since: Instant) {
    let mut last = None;
    let mut ended = Vec::new();
    let mut late = false;
    while let Some(f) = c.next(Duration::from_secs(5)) {
        match f.kind {
            GOAWAY => {
                assert_eq!(f.error_code(), 0, "a drain is not an error: {f:?}");
                if f.last_stream() != 0x7fff_ffff && !late {
                    late = c.headers(5, &request("GET", "/late", "app.test"), true);
                }
                last = Some(f.last_stream());
            }
            HEADERS | DATA if f.flags & END_STREAM != 0 => ended.push(f.stream),
            RST_STREAM if f.stream == 5 => {}
            RST_STREAM => panic!("stream {} reset while draining: {f:?}", f.stream),
            _ => {}
        }
    }
    let closed_in = since.elapsed();
    ended.sort();
    assert!(late, "could not send the late stream");
    assert_eq!(last, Some(3), "the final GOAWAY names stream 3");
    assert_eq!(
        ended,
        vec![1, 3],
        "both streams in flight finished, the late one did not"
    );
    assert_eq!(b.hits(), 2, "the stream sent after GOAWAY reached the upstream");
    assert!(
        closed_in < Duration::from_secs(4),
        "the connection closed {closed_in:?} after the drain began"
    );
}

fn slow_backend() -> Backend {
    Backend::with(|_, url| match url {
        "/slow" => Reply::Delay(Duration::from_millis(1500)),
        _ => Reply::Echo,
    })
}

#[test]
fn sigterm_goaway_names_the_last_stream_and_streams_in_flight_finish() {
    let b = slow_backend();
    let mut p = Ringway::start(&config(b.addr, "shutdown_timeout = \"5s\""));
    let mut c = two_streams_in_flight(&p, &b, "/slow");
    let signalled = sigterm(&p);
    assert_drained(&mut c, &b, signalled);
    assert!(
        p.exited_within(Duration::from_secs(3)),
        "ringway still running after its last connection closed"
    );
}

#[test]
fn a_takeover_drains_http2_connections_the_same_way() {
    let b = slow_backend();
    let dir = TempDir::new();
    let control = dir.path.join("ringway.sock");
    let cfg = config(
        b.addr,
        &format!("shutdown_timeout = \"5s\"\ncontrol_socket = \"{}\"", control.display()),
    );
    let mut old = Ringway::start(&cfg);
    let mut c = two_streams_in_flight(&old, &b, "/slow");
    let next = Ringway::start_with(&cfg, |cmd| {
        cmd.arg("--takeover").arg(&control);
    });
    assert_drained(&mut c, &b, Instant::now());
    assert!(
        old.exited_within(Duration::from_secs(3)),
        "the old process still running after its last connection closed"
    );
    // The successor serves HTTP/2 on the same socket.
    let mut c = Conn::open(next.addr(), &[]);
    c.headers(1, &request("GET", "/after", "app.test"), true);
    let f = c.until(Duration::from_secs(5), |f| f.stream == 1 && f.kind == HEADERS);
    assert!(f.is_some(), "the successor did not answer");
}

#[test]
fn a_stream_outlasting_shutdown_timeout_is_cut_there() {
    let b = Backend::with(|_, _| Reply::Delay(Duration::from_secs(30)));
    let mut p = Ringway::start(&config(b.addr, "shutdown_timeout = \"1s\""));
    let mut c = two_streams_in_flight(&p, &b, "/stuck");
    let signalled = sigterm(&p);
    let goaway = c.until(Duration::from_secs(3), |f| f.kind == GOAWAY);
    assert!(goaway.is_some(), "no GOAWAY after SIGTERM");
    assert!(
        p.exited_within(Duration::from_secs(5)),
        "ringway still running {:?} after SIGTERM with shutdown_timeout 1s",
        signalled.elapsed()
    );
    let exited_in = signalled.elapsed();
    assert!(
        exited_in >= Duration::from_millis(900),
        "exited after {exited_in:?}, before shutdown_timeout"
    );
    assert!(c.closed_within(Duration::from_secs(2)), "the connection stayed open");
}
