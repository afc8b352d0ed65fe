//! HTTP/2 clients that misbehave on purpose, each written frame by frame (`h2raw`): rapid
//! reset, a CONTINUATION flood, an HPACK bomb, PING and SETTINGS floods, a window held at zero,
//! and a body that never comes. In every case the misbehaving connection is stopped (reset
//! stream or closed connection) within its limit, another client on the same single worker
//! keeps being served, and once the attacking connection is gone the proxy's open fds are back
//! at what they were before it came and its RSS stayed within a generous bound.

mod common;
mod h2raw;
use common::*;
use h2raw::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// One worker, one h2c listener; `route` extras for timeouts. No pooled upstream connections
/// (`keepalive = 0`), so every socket the proxy holds after a request belongs to a live client.
fn proxy(backend: SocketAddr, route: &str) -> Ringway {
    Ringway::start(&format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n{}keepalive = 0\n[[route]]\nupstream = \"app\"\n{route}\n",
        upstream("app", backend)
    ))
}

/// RSS an attack may leave behind: generous (allocator caches, h2's buffers), yet far below
/// what an unbounded queue or a leak per stream or frame would grow to.
const RSS_GROWTH_KIB: u64 = 16 * 1024;

/// What the proxy holds with no client connected, after one request warmed it up.
struct Baseline {
    fds: usize,
    rss_kib: u64,
}

fn baseline(p: &Ringway) -> Baseline {
    others_served(p);
    // The warm-up connections close asynchronously: settle on the lowest count seen.
    let mut fds = p.fd_count();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        fds = fds.min(p.fd_count());
    }
    Baseline {
        fds,
        rss_kib: p.rss_kib(),
    }
}

/// After the attacking connection is gone: the fds are back at the baseline, RSS bounded.
fn back_to_baseline(p: &Ringway, base: &Baseline, case: &str) {
    let fds = p.wait_fds_at_most(base.fds, Duration::from_secs(5));
    assert!(
        fds <= base.fds,
        "{case}: {fds} fds open after the attack, {} before: {:?}",
        base.fds,
        p.fd_targets()
    );
    let rss = p.rss_kib();
    eprintln!(
        "{case}: {fds} fds (before: {}), RSS {rss} KiB (before: {})",
        base.fds, base.rss_kib
    );
    assert!(
        rss < base.rss_kib + RSS_GROWTH_KIB,
        "{case}: RSS grew from {} to {rss} KiB",
        base.rss_kib
    );
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
    let base = baseline(&p);
    let hits_before = b.hits();
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
    let reached = b.hits() - hits_before;
    eprintln!("rapid reset: {sent} streams opened and reset, {reached} reached the upstream");
    assert!(
        reached * 20 < sent.max(20),
        "{reached} of {sent} reset streams reached the upstream"
    );
    others_served(&p);
    drop(c);
    back_to_baseline(&p, &base, "rapid reset");
    p.assert_healthy();
}

/// Opens `n` streams from `first` and resets each at once (HEADERS and RST_STREAM in one write).
fn open_and_reset(c: &mut Conn, first: u32, n: u32) -> u32 {
    let fields = request("GET", "/reset", "app.test");
    for i in 0..n {
        let id = first + 2 * i;
        let mut frames = frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &hpack(&fields));
        frames.extend(frame_bytes(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        if !c.send_raw(&frames) {
            return i;
        }
    }
    n
}

#[test]
fn h2_max_resets_sets_how_many_cancelled_streams_a_connection_may_have() {
    let b = Backend::echo();
    // Under the default (100), 60 cancelled streams are what a browser may do: still served.
    let mut p = proxy(b.addr, "");
    let mut c = Conn::open(p.addr(), &[]);
    assert_eq!(open_and_reset(&mut c, 1, 60), 60);
    c.headers(121, &request("GET", "/after", "app.test"), true);
    let f = c.until(Duration::from_secs(5), |f| {
        f.kind == GOAWAY || (f.stream == 121 && f.kind == HEADERS)
    });
    assert_eq!(f.map(|f| f.kind), Some(HEADERS), "the 61st stream was not answered");
    p.assert_healthy();
    // With `h2_max_resets = 10` the same client is closed with ENHANCE_YOUR_CALM.
    let mut p = Ringway::start(&format!(
        "[server]\nworkers = 1\nh2_max_resets = 10\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n{}[[route]]\nupstream = \"app\"\n",
        upstream("app", b.addr)
    ));
    let mut c = Conn::open(p.addr(), &[]);
    open_and_reset(&mut c, 1, 60);
    c.headers(121, &request("GET", "/after", "app.test"), true);
    let f = c.until(Duration::from_secs(5), |f| {
        f.kind == GOAWAY || (f.stream == 121 && f.kind == HEADERS)
    });
    let f = f.expect("neither GOAWAY nor an answer");
    assert_eq!((f.kind, f.error_code()), (GOAWAY, 0xb), "ENHANCE_YOUR_CALM expected");
    p.assert_healthy();
}

#[test]
fn continuation_flood_and_hpack_bomb_are_refused() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    let base = baseline(&p);
    let hits_before = b.hits();
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
    drop(c);
    back_to_baseline(&p, &base, "CONTINUATION flood");
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
    assert_eq!(b.hits(), hits_before, "a refused header list reached the upstream");
    others_served(&p);
    drop(c);
    back_to_baseline(&p, &base, "HPACK bomb");
    p.assert_healthy();
}

#[test]
fn ping_and_settings_floods_do_not_starve_other_clients() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    let base = baseline(&p);
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
    back_to_baseline(&p, &base, "PING and SETTINGS flood");
    p.assert_healthy();
}

#[test]
fn a_window_held_at_zero_is_ended_by_send_timeout() {
    let b = Backend::with(|_, _| common::Reply::Large(4 << 20));
    let mut p = proxy(b.addr, "send_timeout = \"1s\"");
    let base = baseline(&p);
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
    drop(c);
    back_to_baseline(&p, &base, "window held at zero");
    p.assert_healthy();
}

#[test]
fn a_body_that_never_comes_is_ended_by_read_timeout() {
    let b = Backend::echo();
    let mut p = proxy(b.addr, "read_timeout = \"1s\"");
    let base = baseline(&p);
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
    drop(c);
    back_to_baseline(&p, &base, "body that never comes");
    p.assert_healthy();
}
