//! The origin the compression tests share: a raw HTTP/1.1 server that frames each answer as the
//! test says (length, chunked, until close), slices it, cuts it short or holds its second half
//! until the test lets it go; a script-like body that compresses as real bundles do; and the
//! decoders a client uses, whole ([`decode`]) or as the bytes arrive ([`Sink`]), and curl
//! decoding for itself ([`curl_decoded`]).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the origin frames a body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Frame {
    Length,
    Chunked,
    Close,
}

/// One origin answer: the body goes out in `slice`-byte writes; `cut_after` closes the
/// connection after that many body bytes; `gate` holds the second half until the test says go.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub frame: Frame,
    pub slice: usize,
    pub cut_after: Option<usize>,
    pub gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
}

pub fn answer(content_type: &str, body: &[u8], frame: Frame) -> Answer {
    Answer {
        status: 200,
        headers: vec![("Content-Type", content_type.to_string())],
        body: body.to_vec(),
        frame,
        slice: 16 * 1024,
        cut_after: None,
        gate: None,
    }
}

/// A raw HTTP/1.1 origin: reads request heads and writes what `route(request_head)` says.
pub fn origin(route: impl Fn(&str) -> Answer + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let route = Arc::new(route);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let route = route.clone();
            thread::spawn(move || serve(conn, &*route));
        }
    });
    addr
}

fn serve(mut s: TcpStream, route: &dyn Fn(&str) -> Answer) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        buf.drain(..end + 4);
        let a = route(&head);
        if a.status == 101 {
            let _ =
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
            let _ = s.write_all(&a.body);
            thread::sleep(Duration::from_millis(200));
            return;
        }
        let mut out = format!("HTTP/1.1 {} X\r\n", a.status);
        for (n, v) in &a.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        match a.frame {
            _ if matches!(a.status, 204 | 304) => {}
            Frame::Length => out.push_str(&format!("Content-Length: {}\r\n", a.body.len())),
            Frame::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
            Frame::Close => out.push_str("Connection: close\r\n"),
        }
        out.push_str("\r\n");
        if s.write_all(out.as_bytes()).is_err() {
            return;
        }
        if head.starts_with("HEAD ") || matches!(a.status, 204 | 304) {
            continue;
        }
        let body = &a.body[..a.cut_after.unwrap_or(a.body.len())];
        for (i, piece) in body.chunks(a.slice.max(1)).enumerate() {
            if let Some(gate) = &a.gate {
                if i * a.slice >= a.body.len() / 2 && i * a.slice < a.body.len() / 2 + a.slice {
                    // No word from the client: it could not decode the first half on its own,
                    // so the body was held back; cut it so the test fails.
                    if gate.lock().unwrap().recv_timeout(Duration::from_secs(10)).is_err() {
                        return;
                    }
                }
            }
            let sent = match a.frame {
                Frame::Chunked => {
                    s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).is_ok()
                        && s.write_all(piece).is_ok()
                        && s.write_all(b"\r\n").is_ok()
                }
                _ => s.write_all(piece).is_ok(),
            };
            if !sent {
                return;
            }
        }
        if a.cut_after.is_some() || a.frame == Frame::Close {
            return;
        }
        if a.frame == Frame::Chunked && s.write_all(b"0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// The framing the request's path asks for: `…/chunked`, `…/close`, otherwise a length.
pub fn frame_of(head: &str) -> Frame {
    match head.split_whitespace().nth(1).unwrap_or("") {
        p if p.ends_with("/chunked") => Frame::Chunked,
        p if p.ends_with("/close") => Frame::Close,
        _ => Frame::Length,
    }
}

/// An origin answering `body` as HTML, except on the paths of the never-compress cases:
/// `/encoded` (gzip already), `/no-transform`, `/partial` (206), `/png`, `/small` (1,023 bytes),
/// `/empty` (204), `/unchanged` (304) and `/ws` (101, then the body tunnelled).
pub fn never_compress_origin(body: &[u8]) -> SocketAddr {
    let served = body.to_vec();
    origin(move |head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut a = answer("text/html", &served, Frame::Length);
        match path.as_str() {
            "/encoded" => a.headers.push(("Content-Encoding", "gzip".into())),
            "/no-transform" => a.headers.push(("Cache-Control", "public, no-transform".into())),
            "/partial" => {
                a.status = 206;
                a.headers.push(("Content-Range", "bytes 0-19999/40000".into()));
            }
            "/png" => a.headers[0].1 = "image/png".into(),
            "/small" => a.body.truncate(1023),
            "/empty" => a.status = 204,
            "/unchanged" => a.status = 304,
            "/ws" => a.status = 101,
            _ => {}
        }
        a
    })
}

/// Text that compresses like a script bundle: repetitive, not trivially so.
pub fn script(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "function f{i}(a, b) {{ return a * {} + b.concat(\"{}\"); }}\n",
            i % 89,
            i.wrapping_mul(2654435761) % 100_000
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

pub fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out)),
        other => panic!("unknown encoding {other}"),
    }
    .unwrap_or_else(|e| panic!("{encoding} body does not decode: {e}"));
    out
}

/// A streaming decoder for the client side: compressed bytes in, decoded bytes counted.
pub enum Sink {
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Sink {
    pub fn new(encoding: &str) -> Sink {
        match encoding {
            "gzip" => Sink::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            "br" => Sink::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            _ => Sink::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        match self {
            Sink::Gzip(d) => d.write_all(data).and_then(|_| d.flush()),
            Sink::Br(d) => d.write_all(data).and_then(|_| d.flush()),
            Sink::Zstd(d) => d.write_all(data).and_then(|_| d.flush()),
        }
        .expect("decodes");
    }

    pub fn decoded(&mut self) -> &mut Vec<u8> {
        match self {
            Sink::Gzip(d) => d.get_mut(),
            Sink::Br(d) => d.get_mut(),
            Sink::Zstd(d) => d.get_mut(),
        }
    }
}

/// An origin whose answers (from `make(request_head)`) hold their second half back until the
/// test releases them; returns its address and the release of each request in arrival order.
pub fn gated_origin(
    make: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mutex<Vec<mpsc::Sender<()>>>>) {
    let gates: Arc<Mutex<Vec<mpsc::Sender<()>>>> = Arc::new(Mutex::new(Vec::new()));
    let senders = gates.clone();
    let addr = origin(move |head| {
        let (tx, rx) = mpsc::channel();
        senders.lock().unwrap().push(tx);
        let mut a = make(head);
        a.gate = Some(Arc::new(Mutex::new(rx)));
        a
    });
    (addr, gates)
}

/// curl --compressed with one encoding offered (and `extra` arguments): the head in lower case,
/// the decoded body, and whether curl took the transfer as complete.
pub fn curl_decoded(extra: &[&str], url: &str, accept: &str) -> (String, Vec<u8>, bool) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--compressed", "-D", "-"])
        .args(extra)
        .arg("-H")
        .arg(format!("Accept-Encoding: {accept}"))
        .arg(url)
        .output()
        .expect("curl");
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    let head = String::from_utf8_lossy(&out.stdout[..split]).to_ascii_lowercase();
    (head, out.stdout[split..].to_vec(), out.status.success())
}
