//! A small HTTP/2 client writing frames by hand, for the clients that misbehave on purpose
//! (rapid reset, CONTINUATION floods, oversized header lists, PING and SETTINGS floods, a
//! window held at zero, a body that never comes, a body shorter than its content-length).
//! Header blocks are HPACK literals without indexing, so no encoder state is needed; what the
//! server sends is read as frames only (type, flags, stream), never decoded.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing, new names.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0);
        int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n.as_bytes());
        int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The pseudo-headers of a request to `path` on `authority`.
pub fn request<'a>(method: &'a str, path: &'a str, authority: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ]
}

impl Conn {
    /// Connects, sends the preface and SETTINGS (`settings`: id, value).
    pub fn open(addr: SocketAddr, settings: &[(u16, u32)]) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut c = Conn { s, buf: Vec::new() };
        c.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut p = Vec::new();
        for (id, v) in settings {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        c.frame(SETTINGS, 0, 0, &p);
        c
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    pub fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
        let len = payload.len() as u32;
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&len.to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.send_raw(&f)
    }

    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> bool {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.frame(HEADERS, flags, stream, &hpack(fields))
    }

    pub fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> bool {
        self.frame(DATA, if end_stream { END_STREAM } else { 0 }, stream, data)
    }

    pub fn rst(&mut self, stream: u32) -> bool {
        self.frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())
    }

    /// The next frame, acknowledging SETTINGS on the way; `None` at end of stream or after
    /// `within` with nothing complete.
    pub fn next(&mut self, within: Duration) -> Option<Frame> {
        let until = Instant::now() + within;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    if f.kind == SETTINGS && f.flags & ACK == 0 {
                        self.frame(SETTINGS, ACK, 0, &[]);
                    }
                    return Some(f);
                }
            }
            if Instant::now() >= until {
                return None;
            }
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until one matches `pred` (returned) or `within` passes / the peer closes.
    pub fn until(&mut self, within: Duration, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let until = Instant::now() + within;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(f) if pred(&f) => return Some(f),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Whether the server closed the connection within `within` (frames before it are skipped).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}
