//! Message framing: Content-Length and chunked request bodies (re-framed), large streamed uploads
//! and downloads without buffering (RSS checked), close-delimited and chunked upstream responses,
//! max_body, the request-smuggling refusals (400, nothing sent upstream), 431 and 414.

mod common;
use common::*;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn proxy(upstream_addr: SocketAddr, server: &str, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n{server}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nupstream = \"app\"\nresponse_timeout = \"5s\"\n{route}\n",
        upstream("app", upstream_addr)
    );
    Ringway::start(&cfg)
}

#[test]
fn content_length_body_is_forwarded_intact() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let body = pattern(300_000, 1);
    let r = http(
        &agent(),
        "POST",
        &p.url("/api/ds/query"),
        &[("Content-Type", "application/json")],
        Some(&body),
    );
    let e = r.echo();
    assert_eq!(e.method, "POST");
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_sum, Checksum::of(&body));
}

#[test]
fn chunked_request_body_is_reframed_exactly() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    // chunk extension, upper-case hex, a trailer, then a second request on the same connection
    c.send(
        b"POST /c HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n\
5;name=value\r\nhello\r\nA\r\n, chunked!\r\n1\r\n \r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(c.read_response().body, b"ok");
    c.send(b"POST /d HTTP/1.1\r\nHost: h.test\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.read_response().body, b"ok");

    let reqs = up.requests();
    assert_eq!(
        reqs.len(),
        2,
        "upstream saw {:?}",
        String::from_utf8_lossy(&up.all_received())
    );
    let first = &reqs[0];
    assert_eq!(decoded_body(first), b"hello, chunked! ");
    let hs = request_headers(first);
    let te: Vec<_> = hs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .collect();
    let cl: Vec<_> = hs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .collect();
    assert!(te.len() + cl.len() == 1, "exactly one framing header upstream: {hs:?}");
    // The second request starts exactly where the first ends: the body framing was consistent.
    assert_eq!(request_line(&reqs[1]), "POST /d HTTP/1.1");
    assert_eq!(decoded_body(&reqs[1]), b"abc");
}

#[test]
fn chunked_request_body_reaches_a_real_server() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let body = pattern(1_000_003, 2);
    let mut req = b"PUT /big HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(77_777) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let e = raw_roundtrip(p.addr(), &req).echo();
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_sum, Checksum::of(&body));
}

/// Samples the proxy's VmRSS in the background; returns the maximum seen (KiB) when stopped.
struct RssSampler {
    max: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = st
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        m.fetch_max(kib, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            max,
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max.load(Ordering::SeqCst)
    }
}

const BIG: u64 = 256 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn large_upload_is_streamed_not_buffered() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let sampler = RssSampler::start(p.pid());
    let mut c = RawClient::connect(p.addr());
    c.send(format!("POST /upload HTTP/1.1\r\nHost: h.test\r\nContent-Length: {BIG}\r\n\r\n").as_bytes());
    let block = pattern(1 << 20, 3);
    let mut sum = Checksum::default();
    let mut sent = 0u64;
    while sent < BIG {
        c.send(&block);
        sum.update(&block);
        sent += block.len() as u64;
    }
    c.set_timeout(Duration::from_secs(30));
    let e = c.read_response().echo();
    let max_rss = sampler.finish();
    assert_eq!(e.body_len, BIG);
    assert_eq!(e.body_sum, sum.finish());
    assert!(max_rss > 0);
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "ringway RSS reached {max_rss} KiB while relaying a 256 MiB upload"
    );
}

#[test]
fn large_download_is_streamed_not_buffered() {
    let b = Backend::with(|_, _| Reply::Large(BIG));
    let p = proxy(b.addr, "", "");
    let sampler = RssSampler::start(p.pid());
    let resp = agent().get(&p.url("/download")).call().expect("download");
    assert_eq!(resp.status(), 200);
    // Read slowly at first so a buffering proxy would have to hold the body.
    std::thread::sleep(Duration::from_millis(500));
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let mut sum = Checksum::default();
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        got += n as u64;
    }
    let max_rss = sampler.finish();
    assert_eq!(got, BIG, "download truncated or padded");
    let mut want = Checksum::default();
    let block = pattern(65536, 7);
    for _ in 0..(BIG / 65536) {
        want.update(&block);
    }
    assert_eq!(sum.finish(), want.finish());
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "ringway RSS reached {max_rss} KiB while relaying a 256 MiB response"
    );
}

#[test]
fn close_delimited_upstream_response_is_rechunked_for_http11_clients() {
    let up = Scripted::start(|_, _, _| {
        Step::reply_close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until close")
    });
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req("/a", "h.test", &[]));
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        r.chunked,
        "expected chunked re-framing, got head {:?}",
        String::from_utf8_lossy(&r.raw_head)
    );
    assert_eq!(r.text(), "streamed until close");
    // The client connection survives the upstream closing.
    c.send(&get_req("/b", "h.test", &[]));
    let r = c.read_response();
    assert_eq!(r.text(), "streamed until close");
    assert_eq!(up.conn_count(), 2);
}

#[test]
fn chunked_upstream_response_is_relayed_correctly() {
    let up = Scripted::always(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: x\r\n\r\n",
    );
    let p = proxy(up.addr, "", "");
    let mut c = RawClient::connect(p.addr());
    for _ in 0..2 {
        c.send(&get_req("/", "h.test", &[]));
        let r = c.read_response();
        assert_eq!(r.text(), "Wikipedia in\r\n\r\nchunks.");
    }
    assert_eq!(
        up.conn_count(),
        1,
        "a fully read chunked response leaves the upstream reusable"
    );
    // and through a real client (curl understands trailers)
    let out = std::process::Command::new("curl")
        .args(["-sS", &p.url("/")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"Wikipedia in\r\n\r\nchunks.");
}

#[test]
fn body_over_max_body_gets_413_and_is_not_forwarded() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "", "max_body = \"1KB\"");
    let r = raw_roundtrip(
        p.addr(),
        format!(
            "POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5000\r\n\r\n{}",
            "x".repeat(5000)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    std::thread::sleep(Duration::from_millis(100));
    assert!(up.all_received().is_empty(), "an oversized body was sent upstream");
    // within the limit is fine
    let r = raw_roundtrip(
        p.addr(),
        b"POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    assert_eq!(r.status, 200);
}

/// Requests that must be refused with 400 before anything reaches the upstream.
const SMUGGLING: &[(&str, &[u8])] = &[
    (
        "CL and TE together",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE and CL together",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ),
    (
        "differing CL",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ),
    (
        "differing CL list",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabcd",
    ),
    (
        "CL with sign",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd",
    ),
    (
        "CL not a number",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4x\r\n\r\nabcd",
    ),
    (
        "TE last coding not chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE gzip only",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE chunked then another TE line",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE obfuscated",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    ("bare LF in head", b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n"),
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: h\n\n"),
    ("bare CR in head", b"GET / HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n"),
    (
        "obs-fold with tab",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\t2\r\n\r\n",
    ),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n"),
    (
        "space before colon in Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ),
    ("tab before colon", b"GET / HTTP/1.1\r\nHost: h\r\nX-A\t: 1\r\n\r\n"),
];

/// Malformed chunk framing: the request line reaches no upstream as a separate request.
const BAD_CHUNKS: &[(&str, &[u8])] = &[
    ("chunk size not hex", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("negative chunk size", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("overflowing chunk size", b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("empty chunk size", b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk size bare LF", b"5\nhello\r\n0\r\n\r\n"),
    ("extension with control char", b"5;a\x01b\r\nhello\r\n0\r\n\r\n"),
    ("extension with bare LF", b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("extension unterminated quote", b"5;a=\"x\r\nhello\r\n0\r\n\r\n"),
    ("chunk data longer than size", b"3\r\nhello\r\n0\r\n\r\n"),
];

#[test]
fn smuggling_heads_are_refused_with_400_and_nothing_is_sent_upstream() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "", "");
    let mut failures = Vec::new();
    for (name, req) in SMUGGLING {
        let mut c = RawClient::connect(p.addr());
        c.send(req);
        match c.try_read_response(false) {
            Ok(r) if r.status == 400 => {}
            Ok(r) => failures.push(format!("{name}: got {} {}", r.status, r.text())),
            Err(e) => failures.push(format!("{name}: no response ({e})")),
        }
        std::thread::sleep(Duration::from_millis(30));
        let seen = up.all_received();
        if !seen.is_empty() {
            failures.push(format!(
                "{name}: upstream received {:?}",
                String::from_utf8_lossy(&seen)
            ));
            break;
        }
    }
    assert!(failures.is_empty(), "refusals failed:\n{}", failures.join("\n"));
}

#[test]
fn malformed_chunks_are_refused_with_400_and_never_smuggled() {
    let mut failures = Vec::new();
    for (name, chunks) in BAD_CHUNKS {
        // a fresh upstream per case, so each failure is attributed to its case
        let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let p = proxy(up.addr, "", "");
        let mut req = b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(chunks);
        req.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut c = RawClient::connect(p.addr());
        c.set_timeout(Duration::from_secs(3));
        c.send(&req);
        match c.try_read_response(false) {
            Ok(r) if r.status == 400 => {
                // Nothing after the 400 may be answered as a request.
                if c.try_read_response(false).is_ok() {
                    failures.push(format!("{name}: a second response followed the 400"));
                }
            }
            Ok(r) => failures.push(format!("{name}: got {} {:?}", r.status, r.text())),
            Err(e) => failures.push(format!("{name}: no response ({e})")),
        }
        std::thread::sleep(Duration::from_millis(50));
        let seen = String::from_utf8_lossy(&up.all_received()).into_owned();
        if seen.contains("/smuggled") {
            failures.push(format!("{name}: /smuggled reached the upstream"));
        }
        if !up.requests().is_empty() {
            failures.push(format!("{name}: upstream received a complete request: {seen:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "malformed chunk refusals failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn oversized_head_is_431_and_oversized_uri_is_414_with_configured_limits() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "max_head_size = 2048\nmax_uri_size = 256", "");
    let big_header = format!("X-Big: {}", "a".repeat(3000));
    let r = raw_roundtrip(p.addr(), &get_req("/", "h", &[&big_header]));
    assert_eq!(r.status, 431);
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: {}", "v".repeat(20))).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(raw_roundtrip(p.addr(), &get_req("/", "h", &many)).status, 431);
    let r = raw_roundtrip(p.addr(), &get_req(&format!("/{}", "u".repeat(300)), "h", &[]));
    assert_eq!(r.status, 414);
    // just under the limits passes
    let r = raw_roundtrip(p.addr(), &get_req(&format!("/{}", "u".repeat(200)), "h", &["X-Ok: 1"]));
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests().len(),
        1,
        "only the request within limits reached the upstream"
    );
}

#[test]
fn default_limits_are_16k_head_and_8k_uri() {
    let b = Backend::echo();
    let p = proxy(b.addr, "", "");
    let r = raw_roundtrip(
        p.addr(),
        &get_req("/", "h", &[&format!("X-Big: {}", "a".repeat(17_000))]),
    );
    assert_eq!(r.status, 431);
    let r = raw_roundtrip(p.addr(), &get_req(&format!("/{}", "u".repeat(8200)), "h", &[]));
    assert_eq!(r.status, 414);
    let r = raw_roundtrip(
        p.addr(),
        &get_req(
            &format!("/{}", "u".repeat(6000)),
            "h",
            &[&format!("X-Big: {}", "a".repeat(8000))],
        ),
    );
    assert_eq!(r.status, 200, "a 14 KiB head with a 6 KiB URI is within the defaults");
    assert_eq!(b.hits(), 1);
}

#[test]
fn stalled_request_body_is_cut_after_read_timeout() {
    let up = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = proxy(up.addr, "", "read_timeout = \"500ms\"");
    let mut c = RawClient::connect(p.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly-a-little");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "a stalled upload held the connection open"
    );
    // the upstream connection carrying the half body is not kept either
    assert!(
        wait_until(Duration::from_secs(3), || up.conns().iter().all(|c| c.closed_by_peer)),
        "upstream connection of the stalled upload left open"
    );
}
