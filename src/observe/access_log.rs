//! The access log: one line per request and per closed tunnel, formatted into this worker's own
//! buffer and written out when the buffer passes `FLUSH_AT`, on the worker's one-second tick,
//! and when the worker stops. No lock and no syscall per request; each worker has its own file
//! descriptor (O_APPEND, so whole buffers from different workers never interleave).
//!
//! `combined` is nginx's combined line followed by ringway's fields, in this order:
//! `"route" "server" request_time upstream_time bytes_received "request_id" kind`
//! (times in seconds with millisecond precision, `-` when absent, kind `http` or `tunnel`).

use crate::config::{AccessTarget, LogFormat};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Write the buffer out once it holds this much.
const FLUSH_AT: usize = 32 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Tunnel,
}

/// Everything one line says; borrowed from the request's record.
pub struct Entry<'a> {
    pub kind: Kind,
    pub client_ip: &'a str,
    /// The request line as received (`GET /x HTTP/1.1`), possibly cut short for a refused head.
    pub request_line: &'a [u8],
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub server: Option<&'a str>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream_time: Option<Duration>,
    pub request_id: &'a [u8],
    /// Why a tunnel ended (tunnel lines only).
    pub end: Option<&'a str>,
}

enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

pub struct AccessLog {
    sink: Sink,
    format: LogFormat,
    buf: Vec<u8>,
    clock: Clock,
    /// A failed write is reported once, not once per flush.
    failing: bool,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

impl AccessLog {
    /// None when the access log is off.
    pub fn open(target: &AccessTarget, format: LogFormat) -> io::Result<Option<AccessLog>> {
        let sink = match target {
            AccessTarget::Off => return Ok(None),
            AccessTarget::Stdout => Sink::Stdout,
            AccessTarget::File(path) => Sink::File {
                file: open_append(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot open access log {}: {e}", path.display())))?,
                path: path.clone(),
            },
        };
        Ok(Some(AccessLog {
            sink,
            format,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            clock: Clock::default(),
            failing: false,
        }))
    }

    pub fn write(&mut self, e: &Entry<'_>) {
        self.clock.update();
        match self.format {
            LogFormat::Combined => combined(&mut self.buf, &self.clock, e),
            LogFormat::Json => json(&mut self.buf, &self.clock, e),
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let res = match &mut self.sink {
            // The stdout lock keeps workers' buffers whole; taken once per flush, not per line.
            Sink::Stdout => io::stdout().lock().write_all(&self.buf),
            Sink::File { file, .. } => file.write_all(&self.buf),
        };
        match res {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                super::event(
                    super::Level::Error,
                    format_args!("access log write failed: {e}; lines are dropped until it works again"),
                );
            }
            Err(_) => {}
        }
        self.buf.clear();
    }

    /// Flushes to the old file and opens the path again (after logrotate renamed it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush();
        if let Sink::File { path, file } = &mut self.sink {
            *file = open_append(path)?;
        }
        Ok(())
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File { path, .. } => Some(path),
            Sink::Stdout => None,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The wall-clock second, formatted once per second rather than once per line (UTC).
#[derive(Default)]
struct Clock {
    second: u64,
    /// `21/Nov/2026:03:04:05 +0000`
    combined: String,
    /// `2026-11-21T03:04:05Z`
    iso: String,
}

impl Clock {
    fn update(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now == self.second && !self.iso.is_empty() {
            return;
        }
        self.second = now;
        let (y, m, d) = civil_from_days((now / 86_400) as i64);
        let s = now % 86_400;
        let (hh, mm, ss) = (s / 3600, s / 60 % 60, s % 60);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        self.combined = format!("{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000", MONTHS[(m - 1) as usize]);
        self.iso = format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z");
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the era-based method: 400-year
/// eras of 146097 days, years starting in March so the leap day falls last).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y, m, d)
}

/// The request line's parts: method, target, protocol (`GET`, `/x?y`, `HTTP/1.1`).
pub fn split_request_line(line: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return (line, b"", b"");
    };
    let rest = &line[sp + 1..];
    match rest.iter().rposition(|&b| b == b' ') {
        Some(last) if rest[last + 1..].starts_with(b"HTTP/") => (&line[..sp], &rest[..last], &rest[last + 1..]),
        _ => (&line[..sp], rest, b""),
    }
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Seconds with millisecond precision: `0.003`.
fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    push_num(out, ms / 1000);
    out.push(b'.');
    let frac = ms % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Bytes a quoted field (combined) or a JSON string escapes: `"`, `\`, control and non-ASCII.
static ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b >= 0x7f || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    t
};

/// nginx's escaping for quoted fields: `"`, `\`, control and non-ASCII bytes become `\xHH`.
fn push_quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    if v.is_empty() {
        out.push(b'-');
    }
    // Clean runs are copied whole: escapes are rare, and byte-at-a-time pushes were most of a
    // line's cost.
    let mut rest = v;
    while let Some(i) = rest.iter().position(|&b| ESCAPED[b as usize]) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn combined(out: &mut Vec<u8>, clock: &Clock, e: &Entry<'_>) {
    out.extend_from_slice(e.client_ip.as_bytes());
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(clock.combined.as_bytes());
    out.extend_from_slice(b"] ");
    push_quoted(out, e.request_line);
    out.push(b' ');
    push_num(out, e.status as u64);
    out.push(b' ');
    push_num(out, e.bytes_out);
    out.push(b' ');
    push_quoted(out, e.referer);
    out.push(b' ');
    push_quoted(out, e.user_agent);
    out.push(b' ');
    push_quoted(out, e.route.unwrap_or("").as_bytes());
    out.push(b' ');
    push_quoted(out, e.server.unwrap_or("").as_bytes());
    out.push(b' ');
    push_secs(out, e.duration);
    out.push(b' ');
    match e.upstream_time {
        Some(t) => push_secs(out, t),
        None => out.push(b'-'),
    }
    out.push(b' ');
    push_num(out, e.bytes_in);
    out.push(b' ');
    push_quoted(out, e.request_id);
    out.extend_from_slice(match e.kind {
        Kind::Http => b" http\n",
        Kind::Tunnel => b" tunnel\n",
    });
}

/// A JSON string; bytes outside printable ASCII are written as `\u00XX` so any input stays valid.
fn push_json_str(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    let mut rest = v;
    while let Some(i) = rest.iter().position(|&b| ESCAPED[b as usize]) {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// `,"name":` before a field's value (every field but the first).
fn json_key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_field(out: &mut Vec<u8>, name: &str, v: Option<&[u8]>) {
    json_key(out, name);
    match v {
        Some(v) => push_json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_num(out: &mut Vec<u8>, name: &str, n: u64) {
    json_key(out, name);
    push_num(out, n);
}

fn json_secs(out: &mut Vec<u8>, name: &str, d: Option<Duration>) {
    json_key(out, name);
    match d {
        Some(d) => push_secs(out, d),
        None => out.extend_from_slice(b"null"),
    }
}

fn json(out: &mut Vec<u8>, clock: &Clock, e: &Entry<'_>) {
    let (method, target, protocol) = split_request_line(e.request_line);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(clock.iso.as_bytes());
    out.extend_from_slice(match e.kind {
        Kind::Http => b"\",\"kind\":\"http\"",
        Kind::Tunnel => b"\",\"kind\":\"tunnel\"",
    });
    json_field(out, "client", Some(e.client_ip.as_bytes()));
    json_field(out, "method", Some(method));
    json_field(out, "target", Some(target));
    json_field(out, "protocol", Some(protocol));
    json_num(out, "status", e.status as u64);
    json_num(out, "bytes_in", e.bytes_in);
    json_num(out, "bytes_out", e.bytes_out);
    json_secs(out, "duration", Some(e.duration));
    json_secs(out, "upstream_time", e.upstream_time);
    json_field(out, "route", e.route.map(str::as_bytes));
    json_field(out, "upstream", e.upstream.map(str::as_bytes));
    json_field(out, "server", e.server.map(str::as_bytes));
    json_field(out, "request_id", Some(e.request_id));
    json_field(out, "referer", (!e.referer.is_empty()).then_some(e.referer));
    json_field(out, "user_agent", (!e.user_agent.is_empty()).then_some(e.user_agent));
    if let Some(end) = e.end {
        json_field(out, "tunnel_end", Some(end.as_bytes()));
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
    }

    #[test]
    fn request_line_parts() {
        assert_eq!(
            split_request_line(b"GET /a b HTTP/1.1"),
            (&b"GET"[..], &b"/a b"[..], &b"HTTP/1.1"[..])
        );
        assert_eq!(split_request_line(b"GET /cut"), (&b"GET"[..], &b"/cut"[..], &b""[..]));
        assert_eq!(split_request_line(b"junk"), (&b"junk"[..], &b""[..], &b""[..]));
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        push_quoted(&mut out, b"a\"b\\c\x01\xff");
        assert_eq!(out, b"\"a\\x22b\\x5Cc\\x01\\xFF\"");
        out.clear();
        push_json_str(&mut out, b"a\"b\\\n\xc3");
        assert_eq!(out, b"\"a\\\"b\\\\\\u000a\\u00c3\"");
        out.clear();
        push_secs(&mut out, Duration::from_micros(1_234_567));
        assert_eq!(out, b"1.234");
    }
}
