//! What the cache tests share: responses written by hand for a scripted upstream, the request
//! fields and path it saw, a one-worker caching proxy, and curl over HTTP/2 reporting
//! `cache-status`.

#![allow(dead_code)]

use super::common::*;
use std::net::SocketAddr;
use std::process::Command;

/// A response with a Content-Length body.
pub fn response(status: u16, fields: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in fields {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// A response with a chunked body, in two chunks.
pub fn chunked(fields: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
    for (n, v) in fields {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    let half = body.len() / 2;
    for part in [&body[..half], &body[half..]] {
        r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        r.extend_from_slice(part);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

/// The value of request field `name` in a raw request.
pub fn field(raw: &[u8], name: &str) -> Option<String> {
    request_headers(raw)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The path of a raw request.
pub fn path(raw: &[u8]) -> String {
    request_line(raw).split(' ').nth(1).unwrap_or("").to_string()
}

/// One worker (each worker has its own cache), an admin endpoint, a plaintext listener that
/// also takes HTTP/2 with prior knowledge; `top` goes in before the listener, `route` into
/// the caching route.
pub fn proxy(up: SocketAddr, top: &str, route: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 1\n[admin]\nbind = \"127.0.0.1:0\"\n{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n\n{}\
         [[route]]\nupstream = \"app\"\ncache = true\n{route}\n",
        upstream("app", up)
    );
    Ringway::start(&cfg)
}

pub fn status(r: &HttpResp) -> &str {
    r.header("cache-status").unwrap_or("")
}

pub fn count(up: &Scripted, p: &str) -> usize {
    up.requests().iter().filter(|r| path(r) == p).count()
}

pub fn metric(p: &Ringway, name: &str) -> u64 {
    let text = get(&format!("http://{}/metrics", p.admin_addr())).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// curl over HTTP/2 with prior knowledge: status, `cache-status`, body.
pub fn curl_h2(url: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-si", "--http2-prior-knowledge", "--max-time", "10"])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl");
    let end = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(out.stdout.len());
    let head = String::from_utf8_lossy(&out.stdout[..end]).into_owned();
    let body = out.stdout[end..].to_vec();
    assert!(head.starts_with("HTTP/2 "), "{head}");
    let code = head[7..10].parse().unwrap_or(0);
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("cache-status: "))
        .unwrap_or("")
        .to_string();
    (code, status, body)
}
