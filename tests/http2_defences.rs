//! HTTP/2 clients that misbehave on purpose, each written frame by frame (`h2raw`): rapid
//! reset, a CONTINUATION flood, an HPACK bomb, PING and SETTINGS floods, a window held at zero,
//! and a body that never comes. In every case the misbehaving connection is stopped (reset
//! stream or closed connection) within its limit, and another client on the same single worker
//! keeps being served.

mod common;
mod h2raw;
use common::*;
use h2raw::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// One worker, one h2c listener; `route` extras for timeouts.
fn proxy(backend: SocketAddr, route: &str) -> Ringway {
    Ringway::start(&format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n{}[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", backend)
    ))
}

/// Another client on the same worker is answered, over HTTP/2.
fn others_served(p: &Ringway) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/other", p.addr()))
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "another client was not served"
    );
}

/// Whether the connection was stopped: a GOAWAY, or closed outright.
fn stopped(c: &mut Conn, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match c.next(left) {
            Some(f) if f.kind == GOAWAY => return true,
            Some(_) => {}
            None => return Instant::now() < until,
        }
    }
}

#[test]
fn rapid_reset_costs_the_upstream_nothing_and_closes_the_connection() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    let mut c = Conn::open(p.addr(), &[]);
    let fields = request("GET", "/reset", "app.test");
    let mut sent = 0;
    for i in 0..2000u32 {
        let id = 1 + 2 * i;
        if !(c.headers(id, &fields, true) && c.rst(id)) {
            break;
        }
        sent += 1;
    }
    assert!(
        stopped(&mut c, Duration::from_secs(5)),
        "the connection was not closed after {sent} resets"
    );
    others_served(&p);
    assert!(
        b.hits() < 100,
        "{} of {sent} reset streams reached the upstream",
        b.hits()
    );
    p.assert_healthy();
}

#[test]
fn continuation_flood_and_hpack_bomb_are_refused() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    let mut c = Conn::open(p.addr(), &[]);
    c.frame(HEADERS, 0, 1, &hpack(&request("GET", "/flood", "app.test")));
    let filler = hpack(&[("x-filler", &"a".repeat(1000))]);
    for _ in 0..10_000 {
        if !c.frame(CONTINUATION, 0, 1, &filler) {
            break;
        }
    }
    assert!(
        stopped(&mut c, Duration::from_secs(5)),
        "CONTINUATION flood not stopped"
    );
    // One 4 KiB field put in the dynamic table, then referenced 4,000 times (1 byte each):
    // 16 MB of header list from a 8 KB block.
    let mut c = Conn::open(p.addr(), &[]);
    let mut block = hpack(&request("GET", "/bomb", "app.test"));
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0x81, 0x1f]); // 127 + 3969 = 4096
    block.extend_from_slice(&[b'b'; 4096]);
    block.extend(std::iter::repeat_n(0x80 | 62, 4000));
    c.frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
    let answer = c.until(Duration::from_secs(5), |f| {
        f.kind == GOAWAY || (f.stream == 1 && f.kind != WINDOW_UPDATE)
    });
    assert!(
        answer.is_none() || matches!(answer.as_ref().map(|f| f.kind), Some(GOAWAY | RST_STREAM | HEADERS)),
        "{answer:?}"
    );
    assert_eq!(b.hits(), 0, "a refused header list reached the upstream");
    others_served(&p);
    p.assert_healthy();
}

#[test]
fn ping_and_settings_floods_do_not_starve_other_clients() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    let before = p.rss_kib();
    let mut c = Conn::open(p.addr(), &[]);
    c.s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    // Never reads the PONGs or SETTINGS ACKs: what the server queues for this client is bounded.
    for i in 0..100_000u64 {
        let ok = if i % 2 == 0 {
            c.frame(PING, 0, 0, &i.to_be_bytes())
        } else {
            c.frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0])
        };
        if !ok || started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    others_served(&p);
    drop(c);
    let after = p.rss_kib();
    assert!(after < before + 64 * 1024, "RSS grew from {before} to {after} KiB");
    p.assert_healthy();
}

#[test]
fn a_window_held_at_zero_is_ended_by_send_timeout() {
    let b = Backend::with(|_, _| common::Reply::Large(4 << 20));
    let mut p = proxy(b.addr, "send_timeout = \"1s\"");
    let mut c = Conn::open(p.addr(), &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    let started = Instant::now();
    c.headers(1, &request("GET", "/big", "app.test"), true);
    let f = c.until(Duration::from_secs(8), |f| f.stream == 1 && f.kind == RST_STREAM);
    assert!(f.is_some(), "the stalled stream was not reset");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "reset before send_timeout"
    );
    others_served(&p);
    p.assert_healthy();
}

#[test]
fn a_body_that_never_comes_is_ended_by_read_timeout() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "read_timeout = \"1s\"");
    let mut c = Conn::open(p.addr(), &[]);
    let mut fields = request("POST", "/upload", "app.test");
    fields.push(("content-length", "100"));
    let started = Instant::now();
    c.headers(1, &fields, false);
    c.data(1, b"only the start", false);
    let f = c.until(Duration::from_secs(8), |f| {
        f.stream == 1 && matches!(f.kind, RST_STREAM | HEADERS)
    });
    assert!(f.is_some(), "the silent stream was not ended");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended before read_timeout"
    );
    others_served(&p);
    p.assert_healthy();
}
