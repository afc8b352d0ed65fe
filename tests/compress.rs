//! Response compression through the built binary: each encoding decoded by curl and by the Rust
//! decoders equals the original, for every upstream framing and for a multi-megabyte body that
//! arrives in slices (decoded by the client before the upstream has sent the rest); the choice
//! by q-values; every never-compress case; Vary, ETag and Content-Length; a cut upstream body
//! never passed on as complete; the per-encoding metrics and their ratio.

mod common;
mod compress_origin;

use common::*;
use compress_origin::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

fn config(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n{}\
         [[route]]\nprefix = \"/plain/\"\nupstream = \"o\"\n\
         [[route]]\nprefix = \"/\"\nupstream = \"o\"\ncompress = true\n{extra}",
        upstream("o", addr)
    )
}

fn fetch(p: &Ringway, path: &str, extra: &[&str]) -> RawResp {
    raw_roundtrip(p.addr(), &get_req(path, "t", extra))
}

fn curl(url: &str, accept: &str) -> (String, Vec<u8>, bool) {
    curl_decoded(&[], url, accept)
}

#[test]
fn each_encoding_and_framing_decodes_to_the_original() {
    let body = script(300_000);
    let served = body.clone();
    let addr = origin(move |head| {
        let frame = frame_of(head);
        answer("application/javascript; charset=utf-8", &served, frame)
    });
    let mut p = Ringway::start(&config(addr, ""));
    for encoding in ["gzip", "br", "zstd"] {
        for frame in ["length", "chunked", "close"] {
            let r = fetch(&p, &format!("/app/{frame}"), &[&format!("Accept-Encoding: {encoding}")]);
            let what = format!("{encoding} over {frame}");
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(r.header("content-encoding"), Some(encoding), "{what}");
            assert!(r.chunked && r.header("content-length").is_none(), "{what}");
            assert!(r.body.len() < body.len() / 3, "{what}: {} bytes", r.body.len());
            assert!(decode(encoding, &r.body) == body, "{what}: decoded body differs");
            let (head, decoded, ok) = curl(&p.url(&format!("/app/{frame}")), encoding);
            assert!(
                ok && head.contains(&format!("content-encoding: {encoding}")),
                "curl {what}: {head}"
            );
            assert!(decoded == body, "curl {what}: decoded body differs");
        }
    }
    let (status, _) = admin_metrics(&p);
    assert_eq!(status, 200);
    let metrics = settled_metrics(&p, |m| {
        ["gzip", "br", "zstd"]
            .iter()
            .all(|e| metric(m, &format!("ringway_compressed_responses_total{{encoding=\"{e}\"}}")) == 6)
    });
    for encoding in ["gzip", "br", "zstd"] {
        let n = metric(
            &metrics,
            &format!("ringway_compressed_responses_total{{encoding=\"{encoding}\"}}"),
        );
        let bytes_in = metric(
            &metrics,
            &format!("ringway_compress_in_bytes_total{{encoding=\"{encoding}\"}}"),
        );
        let bytes_out = metric(
            &metrics,
            &format!("ringway_compress_out_bytes_total{{encoding=\"{encoding}\"}}"),
        );
        assert_eq!(n, 6, "{encoding}: {metrics}");
        assert_eq!(bytes_in, 6 * body.len() as u64, "{encoding}");
        assert!(
            bytes_out > 0 && bytes_out < bytes_in / 3,
            "{encoding}: {bytes_out} of {bytes_in}"
        );
    }
    p.assert_healthy();
}

/// The ratio gauge is the compressed bytes the client read over the bytes the origin sent, and
/// is absent for an encoding that has compressed nothing.
#[test]
fn compress_ratio_is_bytes_out_over_bytes_in() {
    let body = script(50_000);
    let served = body.clone();
    let addr = origin(move |head| answer("application/javascript", &served, frame_of(head)));
    let mut p = Ringway::start(&config(addr, ""));
    let mut sent = 0;
    for path in ["/r/length", "/r/chunked"] {
        let r = fetch(&p, path, &["Accept-Encoding: gzip"]);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert!(decode("gzip", &r.body) == body, "{path}: decoded body differs");
        sent += r.body.len();
    }
    let gzip = |name: &str| format!("{name}{{encoding=\"gzip\"}}");
    let metrics = settled_metrics(&p, |m| metric(m, &gzip("ringway_compressed_responses_total")) == 2);
    let bytes_in = metric(&metrics, &gzip("ringway_compress_in_bytes_total"));
    let bytes_out = metric(&metrics, &gzip("ringway_compress_out_bytes_total"));
    assert_eq!((bytes_in, bytes_out), (2 * body.len() as u64, sent as u64));
    let ratio: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&gzip("ringway_compress_ratio")))
        .unwrap_or_else(|| panic!("no gzip ratio in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    let want = sent as f64 / (2 * body.len()) as f64;
    assert!(
        (ratio - want).abs() < 1e-9 && ratio < 0.5,
        "ratio {ratio}, bytes {sent} / {}",
        2 * body.len()
    );
    assert!(metrics.contains("# TYPE ringway_compress_ratio gauge"), "{metrics}");
    for idle in ["br", "zstd"] {
        let line = format!("ringway_compress_ratio{{encoding=\"{idle}\"}}");
        assert!(!metrics.contains(&line), "{idle} compressed nothing: {metrics}");
    }
    p.assert_healthy();
}

fn admin_metrics(p: &Ringway) -> (u16, String) {
    let mut c = TcpStream::connect(p.admin_addr()).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    let status = s.get(9..12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (status, s)
}

/// The metrics once `done` holds of them (or after 5 s): a worker counts a compressed response
/// when it has finished with it, which may be just after the client read its last byte.
fn settled_metrics(p: &Ringway, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    wait_until(Duration::from_secs(5), || {
        text = admin_metrics(p).1;
        done(&text)
    });
    text
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

/// Reads one chunk's data from a chunked body; None at the last chunk.
fn read_chunk(c: &mut RawClient) -> Option<Vec<u8>> {
    let line = c.read_line().expect("chunk size line");
    let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).expect("hex size");
    if size == 0 {
        assert!(c.read_line().expect("end of trailers").is_empty());
        return None;
    }
    let data = c.read_exact_body(size).expect("chunk data");
    assert!(c.read_line().expect("chunk CRLF").is_empty());
    Some(data)
}

/// Fetches `path` compressed with `encoding` and decodes it as the chunks arrive; once
/// `release_at` bytes decode to the start of `body`, the origin may send the rest. The whole
/// must decode to `body`.
fn fetch_gated(
    p: &Ringway,
    gates: &Mutex<Vec<mpsc::Sender<()>>>,
    path: &str,
    encoding: &str,
    release_at: usize,
    body: &[u8],
) {
    let mut c = RawClient::connect(p.addr());
    c.send(&get_req(path, "t", &[&format!("Accept-Encoding: {encoding}")]));
    let r = c.read_head_response();
    assert_eq!(r.header("content-encoding"), Some(encoding));
    let mut sink = Sink::new(encoding);
    let mut released = false;
    while let Some(data) = read_chunk(&mut c) {
        sink.write(&data);
        if !released && sink.decoded().len() >= release_at {
            assert!(sink.decoded()[..release_at] == body[..release_at], "{encoding} {path}");
            gates.lock().unwrap().last().unwrap().send(()).unwrap();
            released = true;
        }
    }
    assert!(
        released,
        "{encoding} {path}: the first part never arrived before the rest"
    );
    assert!(
        sink.decoded()[..] == body[..],
        "{encoding} {path}: decoded body differs"
    );
}

/// A 4 MiB body sent in 64 KiB slices: the client decodes the first megabyte while the origin
/// still holds back the second half (so nothing is buffered whole), and the whole decodes equal.
#[test]
fn multi_megabyte_body_streams_as_it_arrives() {
    let body = script(4 << 20);
    let served = body.clone();
    let (addr, gates) = gated_origin(move |head| {
        let frame = frame_of(head);
        let mut a = answer("text/plain", &served, frame);
        a.slice = 64 * 1024;
        a
    });
    let p = Ringway::start(&config(addr, ""));
    for (encoding, path) in [
        ("gzip", "/big/chunked"),
        ("br", "/big/length"),
        ("zstd", "/big/chunked"),
    ] {
        fetch_gated(&p, &gates, path, encoding, 1 << 20, &body);
    }
    // curl cannot release the gate: let it through at once.
    let release = thread::spawn(move || {
        assert!(wait_until(Duration::from_secs(10), || gates.lock().unwrap().len() == 4));
        let _ = gates.lock().unwrap()[3].send(());
    });
    let (head, decoded, ok) = curl(&p.url("/big/length"), "gzip, br, zstd");
    release.join().unwrap();
    assert!(ok && head.contains("content-encoding: zstd"), "{head}");
    assert!(decoded == body, "curl: decoded body differs");
}

/// A stream that trickles (server-sent events, a slow query): what has arrived is decodable by
/// the client before the origin sends more, in every encoding.
#[test]
fn a_trickle_reaches_the_client_as_it_arrives() {
    let body = script(6_000);
    let served = body.clone();
    let (addr, gates) = gated_origin(move |_| {
        let mut a = answer("text/event-stream", &served, Frame::Chunked);
        a.slice = 3_000;
        a
    });
    let p = Ringway::start(&config(addr, ""));
    for encoding in ["gzip", "br", "zstd"] {
        fetch_gated(&p, &gates, "/events", encoding, 3_000, &body);
    }
}

#[test]
fn q_values_choose_the_encoding() {
    let body = script(20_000);
    let addr = origin(move |_| answer("application/json", &body, Frame::Length));
    let p = Ringway::start(&config(addr, ""));
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip, deflate, br, zstd", Some("zstd")),
        ("gzip, br", Some("br")),
        ("br;q=0.5, gzip;q=0.8", Some("gzip")),
        ("zstd;q=0, br;q=0, gzip", Some("gzip")),
        ("*", Some("zstd")),
        ("*;q=0.5, zstd;q=0, br;q=0.1", Some("gzip")),
        ("gzip;q=0.5, identity", None),
        ("gzip;q=0", None),
        ("*;q=0", None),
        ("identity", None),
        ("deflate", None),
    ];
    for (accept, want) in cases {
        let r = fetch(&p, "/api/q", &[&format!("Accept-Encoding: {accept}")]);
        assert_eq!(r.header("content-encoding"), *want, "Accept-Encoding: {accept}");
    }
    let r = fetch(&p, "/api/q", &[]);
    assert_eq!(r.header("content-encoding"), None, "no Accept-Encoding");
}

/// Each case: the response must arrive exactly as the origin framed and sent it.
#[test]
fn never_compressed_cases() {
    let body = script(20_000);
    let addr = never_compress_origin(&body);
    let p = Ringway::start(&config(addr, "upgrades = [\"websocket\"]\n"));
    let gzip = "Accept-Encoding: gzip, br, zstd";
    let cases: &[(&str, &[&str])] = &[
        ("/encoded", &[gzip]),
        ("/no-transform", &[gzip]),
        ("/partial", &[gzip, "Range: bytes=0-19999"]),
        ("/any", &[gzip, "Range: bytes=0-99"]),
        ("/png", &[gzip]),
        ("/small", &[gzip]),
        ("/plain/route-off", &[gzip]),
    ];
    for (path, extra) in cases {
        let r = fetch(&p, path, extra);
        assert!(r.status == 200 || r.status == 206, "{path}: {}", r.status);
        assert_eq!(
            r.header("content-encoding"),
            if *path == "/encoded" { Some("gzip") } else { None },
            "{path}"
        );
        assert!(
            r.header("vary").is_none() && !r.chunked,
            "{path}: re-framed {:?}",
            r.headers
        );
        let want = if *path == "/small" { &body[..1023] } else { &body[..] };
        assert!(r.body == want, "{path}: body changed");
    }
    for path in ["/empty", "/unchanged"] {
        let r = fetch(&p, path, &[gzip]);
        assert!(r.header("content-encoding").is_none() && r.body.is_empty(), "{path}");
    }
    // HEAD keeps the Content-Length of the uncompressed body.
    let mut c = RawClient::connect(p.addr());
    c.send(format!("HEAD /page HTTP/1.1\r\nHost: t\r\n{gzip}\r\n\r\n").as_bytes());
    let r = c.read_head_response();
    assert_eq!(
        (r.header("content-encoding"), r.header("content-length")),
        (None, Some("20000"))
    );
    // HTTP/1.0: no chunked framing, so no compression.
    let mut c = RawClient::connect(p.addr());
    c.send(format!("GET /old HTTP/1.0\r\nHost: t\r\n{gzip}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert!(r.header("content-encoding").is_none() && r.body == body, "HTTP/1.0");
    // An upgrade: the 101 head and the tunnelled bytes pass untouched.
    let mut c = RawClient::connect(p.addr());
    c.send(
        format!("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{gzip}\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("content-encoding")), (101, None));
    let tunnelled = c.read_exact_body(body.len()).expect("tunnelled bytes");
    assert!(tunnelled == body, "the tunnel changed the bytes");
}

#[test]
fn vary_etag_and_content_length() {
    let body = script(10_000);
    let served = body.clone();
    let addr = origin(move |head| {
        let mut a = answer("text/css", &served, Frame::Length);
        if head.contains("/weak") {
            a.headers.push(("ETag", "W/\"w1\"".into()));
            a.headers.push(("Vary", "Accept-Encoding".into()));
        } else {
            a.headers.push(("ETag", "\"v1\"".into()));
            a.headers.push(("Vary", "Origin".into()));
        }
        a
    });
    let p = Ringway::start(&config(addr, ""));
    let r = fetch(&p, "/strong", &["Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.all("vary"), ["Origin, Accept-Encoding"]);
    assert_eq!(r.all("etag"), ["W/\"v1\""]);
    assert!(r.header("content-length").is_none() && r.header("transfer-encoding") == Some("chunked"));
    let r = fetch(&p, "/weak", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (r.all("vary"), r.all("etag")),
        (vec!["Accept-Encoding"], vec!["W/\"w1\""])
    );
    // Compressed responses end cleanly: the client connection carries the next request.
    let mut c = RawClient::connect(p.addr());
    for path in ["/strong", "/weak", "/strong"] {
        c.send(&get_req(path, "t", &["Accept-Encoding: br"]));
        let r = c.read_response();
        assert_eq!(r.header("content-encoding"), Some("br"), "{path}");
        assert!(decode("br", &r.body) == body, "{path} on a kept-alive connection");
    }
    // Not compressed: everything as the origin sent it.
    let r = fetch(&p, "/strong", &[]);
    assert_eq!((r.all("vary"), r.all("etag")), (vec!["Origin"], vec!["\"v1\""]));
    assert_eq!(r.header("content-length"), Some("10000"));
}

/// An origin that closes inside its body: the client gets no last chunk (the connection
/// closes), and curl reports the transfer as failed.
#[test]
fn cut_upstream_body_is_not_passed_as_complete() {
    let body = script(400_000);
    let addr = origin(move |head| {
        let frame = frame_of(head);
        let mut a = answer("text/plain", &body, frame);
        a.cut_after = Some(150_000);
        a
    });
    let p = Ringway::start(&config(addr, ""));
    for path in ["/cut/length", "/cut/chunked"] {
        let mut c = RawClient::connect(p.addr());
        c.send(&get_req(path, "t", &["Accept-Encoding: gzip"]));
        let res = c.try_read_response(false);
        assert!(res.is_err(), "{path}: a cut body arrived as complete");
        let (_, _, ok) = curl(&p.url(path), "gzip");
        assert!(!ok, "{path}: curl took the cut body as complete");
    }
}

#[test]
fn bad_compress_values_name_file_line_and_key() {
    let dir = TempDir::new();
    let text = config(refused_addr(), "[compress]\ntypes = [\"text/*\"]\ngzip_level = 12\n");
    let path = dir.write("ringway.toml", &text);
    let o = run_cli(&["check", "--config", path.to_str().unwrap()]);
    let err = stderr_of(&o);
    let line = text.lines().position(|l| l.starts_with("gzip_level")).unwrap() + 1;
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "ringway.toml:{line}: compress.gzip_level: level 12 is out of range"
        )),
        "{err}"
    );
}
