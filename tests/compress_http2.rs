//! Response compression for HTTP/2 clients through the built binary: each encoding over each
//! upstream framing decoded equal to the original by curl over TLS (ALPN h2) and by a Rust h2
//! client (h2c, many streams at once on one connection); a body decoded while the origin still
//! holds back the rest; every never-compress case as HTTP/2 sees it; a cut upstream body resets
//! the stream instead of ending it, and the connection's other streams carry on.

mod common;
mod compress_origin;

use bytes::Bytes;
use common::*;
use compress_origin::*;
use std::net::SocketAddr;
use std::sync::{mpsc, Mutex};

/// A TLS listener (HTTP/2 by ALPN) first, then a plaintext one with h2c; `/plain/` does not
/// compress, everything else does.
fn proxy(dir: &TempDir, origin: SocketAddr) -> Ringway {
    let (cert, key) = localhost_cert(dir);
    let cfg = format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener.tls]]\ncert = \"{}\"\n\
         key = \"{}\"\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n{}\
         [[route]]\nprefix = \"/plain/\"\nupstream = \"o\"\n\
         [[route]]\nprefix = \"/\"\nupstream = \"o\"\ncompress = true\n",
        cert.display(),
        key.display(),
        upstream("o", origin)
    );
    Ringway::start(&cfg)
}

/// curl over TLS with HTTP/2 and one encoding offered: (head, decoded body, exit success).
fn curl_h2(p: &Ringway, path: &str, accept: &str) -> (String, Vec<u8>, bool) {
    let url = format!("https://localhost:{}{path}", p.addrs[0].port());
    curl_decoded(&["-k", "--http2"], &url, accept)
}

fn request(method: &str, path: &str, fields: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(format!("http://t{path}"));
    for (n, v) in fields {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap()
}

/// The response head, and its body as it came in DATA frames (still encoded); `each` sees the
/// body so far after every frame.
async fn fetch(
    client: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    mut each: impl FnMut(&[u8]),
) -> Result<(u16, http::HeaderMap, Vec<u8>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (resp, _) = client.send_request(req, true)?;
    let resp = resp.await?;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let mut recv = resp.into_body();
    let mut body = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d?;
        let _ = recv.flow_control().release_capacity(d.len());
        body.extend_from_slice(&d);
        each(&body);
    }
    Ok((status, headers, body))
}

fn field<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn each_encoding_over_http2_decodes_to_the_original() {
    let body = script(300_000);
    let served = body.clone();
    let addr = origin(move |head| {
        let frame = frame_of(head);
        let mut a = answer("application/javascript", &served, frame);
        a.headers.push(("ETag", "\"b1\"".into()));
        a
    });
    let dir = TempDir::new();
    let mut p = proxy(&dir, addr);
    let cases: Vec<(&str, &str)> = ["gzip", "br", "zstd"]
        .into_iter()
        .flat_map(|e| ["length", "chunked", "close"].map(|f| (e, f)))
        .collect();
    for (encoding, frame) in &cases {
        let (head, decoded, ok) = curl_h2(&p, &format!("/app/{frame}"), encoding);
        let what = format!("curl {encoding} over {frame}");
        assert!(ok && head.starts_with("http/2 200"), "{what}: {head}");
        assert!(
            head.contains(&format!("content-encoding: {encoding}")),
            "{what}: {head}"
        );
        assert!(decoded == body, "{what}: decoded body differs");
    }
    // All nine at once, as streams of one connection.
    let rt = runtime();
    rt.block_on(async {
        let client = h2c(p.addrs[1]).await;
        let mut tasks = Vec::new();
        for (encoding, frame) in cases.iter().copied() {
            let client = client.clone();
            let req = request("GET", &format!("/app/{frame}"), &[("accept-encoding", encoding)]);
            tasks.push((
                encoding,
                frame,
                tokio::spawn(async move { fetch(&client, req, |_| {}).await }),
            ));
        }
        for (encoding, frame, task) in tasks {
            let what = format!("h2 {encoding} over {frame}");
            let (status, h, raw) = task.await.unwrap().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(status, 200, "{what}");
            assert_eq!(field(&h, "content-encoding"), Some(encoding), "{what}");
            assert_eq!(field(&h, "vary"), Some("Accept-Encoding"), "{what}");
            assert_eq!(field(&h, "etag"), Some("W/\"b1\""), "{what}");
            assert!(h.get("content-length").is_none(), "{what}: {h:?}");
            assert!(raw.len() < body.len() / 3, "{what}: {} bytes", raw.len());
            assert!(decode(encoding, &raw) == body, "{what}: decoded body differs");
        }
    });
    p.assert_healthy();
}

/// A 4 MiB body in 64 KiB slices, and a trickle of two 3,000-byte slices: the client decodes
/// the first part from DATA frames while the origin still holds back the rest.
#[test]
fn http2_client_decodes_the_body_as_it_arrives() {
    let big = script(4 << 20);
    let small = script(6_000);
    let (big_served, small_served) = (big.clone(), small.clone());
    let (addr, gates) = gated_origin(move |head| {
        let mut a = if head.contains("/events") {
            answer("text/event-stream", &small_served, Frame::Chunked)
        } else {
            answer("text/plain", &big_served, Frame::Length)
        };
        a.slice = if head.contains("/events") { 3_000 } else { 64 * 1024 };
        a
    });
    let dir = TempDir::new();
    let p = proxy(&dir, addr);
    let rt = runtime();
    rt.block_on(async {
        let client = h2c(p.addrs[1]).await;
        for (encoding, path, body, release_at) in [
            ("zstd", "/big", &big, 1 << 20),
            ("br", "/events", &small, 3_000),
            ("gzip", "/events", &small, 3_000),
        ] {
            let req = request("GET", path, &[("accept-encoding", encoding)]);
            let released = stream_released(&client, req, encoding, body, release_at, &gates).await;
            assert!(
                released,
                "{encoding} {path}: the first part never arrived before the rest"
            );
        }
    });
}

/// Fetches and decodes as DATA frames arrive; once `release_at` bytes decode to the start of
/// `body`, lets the origin send the rest. True when that happened and the whole decoded equal.
async fn stream_released(
    client: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    encoding: &str,
    body: &[u8],
    release_at: usize,
    gates: &Mutex<Vec<mpsc::Sender<()>>>,
) -> bool {
    let mut sink = Sink::new(encoding);
    let mut fed = 0;
    let mut released = false;
    let res = fetch(client, req, |so_far| {
        sink.write(&so_far[fed..]);
        fed = so_far.len();
        if !released && sink.decoded().len() >= release_at {
            assert!(sink.decoded()[..release_at] == body[..release_at], "{encoding}");
            gates.lock().unwrap().last().unwrap().send(()).unwrap();
            released = true;
        }
    })
    .await;
    let (_, h, _) = res.unwrap_or_else(|e| panic!("{encoding}: {e}"));
    assert_eq!(field(&h, "content-encoding"), Some(encoding));
    assert!(sink.decoded()[..] == body[..], "{encoding}: decoded body differs");
    released
}

type Field<'a> = (&'a str, &'a str);

/// Each case arrives as the origin sent it, with its length; HEAD, 204 and 304 included.
#[test]
fn never_compressed_over_http2() {
    let body = script(20_000);
    let addr = never_compress_origin(&body);
    let dir = TempDir::new();
    let mut p = proxy(&dir, addr);
    let all = ("accept-encoding", "gzip, br, zstd");
    let cases: &[(&str, &str, &[Field])] = &[
        ("GET", "/encoded", &[all]),
        ("GET", "/no-transform", &[all]),
        ("GET", "/partial", &[all, ("range", "bytes=0-19999")]),
        ("GET", "/any", &[all, ("range", "bytes=0-99")]),
        ("GET", "/png", &[all]),
        ("GET", "/small", &[all]),
        ("GET", "/plain/route-off", &[all]),
        ("HEAD", "/page", &[all]),
        ("GET", "/empty", &[all]),
        ("GET", "/unchanged", &[all]),
    ];
    let rt = runtime();
    rt.block_on(async {
        let client = h2c(p.addrs[1]).await;
        for (method, path, fields) in cases {
            let what = format!("{method} {path}");
            let res = fetch(&client, request(method, path, fields), |_| {}).await;
            let (status, h, raw) = res.unwrap_or_else(|e| panic!("{what}: {e}"));
            let encoded = (*path == "/encoded").then_some("gzip");
            assert_eq!(field(&h, "content-encoding"), encoded, "{what}");
            assert!(h.get("vary").is_none(), "{what}: {h:?}");
            let want: &[u8] = match (*method, *path) {
                ("HEAD", _) | (_, "/empty" | "/unchanged") => &[],
                (_, "/small") => &body[..1023],
                _ => &body,
            };
            assert!(raw == want, "{what}: body changed ({} bytes)", raw.len());
            if matches!(status, 200 | 206) {
                let len = if *path == "/small" { "1023" } else { "20000" };
                assert_eq!(field(&h, "content-length"), Some(len), "{what}");
            }
        }
    });
    p.assert_healthy();
}

/// An origin that closes inside its body: the stream is reset, so neither the h2 client nor
/// curl takes the body as complete, and the connection's next stream is served.
#[test]
fn cut_upstream_body_resets_the_http2_stream() {
    let body = script(400_000);
    let served = body.clone();
    let addr = origin(move |head| {
        let frame = frame_of(head);
        let mut a = answer("text/plain", &served, frame);
        if head.contains("/cut/") {
            a.cut_after = Some(150_000);
        }
        a
    });
    let dir = TempDir::new();
    let p = proxy(&dir, addr);
    let rt = runtime();
    rt.block_on(async {
        let client = h2c(p.addrs[1]).await;
        for path in ["/cut/length", "/cut/chunked"] {
            let res = fetch(&client, request("GET", path, &[("accept-encoding", "gzip")]), |_| {}).await;
            assert!(res.is_err(), "{path}: a cut body arrived as complete");
        }
        let res = fetch(&client, request("GET", "/whole", &[("accept-encoding", "br")]), |_| {}).await;
        let (_, h, raw) = res.expect("the next stream on the same connection");
        assert_eq!(field(&h, "content-encoding"), Some("br"));
        assert!(decode("br", &raw) == body, "decoded body differs");
    });
    for path in ["/cut/length", "/cut/chunked"] {
        let (_, _, ok) = curl_h2(&p, path, "gzip");
        assert!(!ok, "{path}: curl took the cut body as complete");
    }
}
