//! WebSocket echo load for `loadtest/ws_echo.sh`: a backend that answers the upgrade and echoes
//! every frame, and a client that keeps many upgraded connections busy with small frames. One
//! file, std only, built by the script with `rustc -O` (Python could not load a proxy enough).
//!
//!   wsbench server PORT
//!   wsbench client PORT CONNS SECONDS SIZE WINDOW THREADS
//!
//! The client prints `messages=N bytes=B seconds=S` on stdout: N echoed messages (each counted
//! once, after its echo came back intact), B payload bytes both ways. Frames are real WebSocket
//! frames (masked client → server, unmasked back), though a proxy under test never parses them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const REQUEST: &str = "GET /echo HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
// The accept value for the fixed key above (RFC 6455 section 1.3's example).
const RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") if args.len() == 2 => server(&args[1]),
        Some("client") if args.len() == 7 => client(&args[1..]),
        _ => Err(io::Error::other(
            "usage: wsbench server PORT | wsbench client PORT CONNS SECONDS SIZE WINDOW THREADS",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg(v: &str, name: &str) -> io::Result<u64> {
    v.parse().map_err(|_| io::Error::other(format!("{name} must be a whole number, got {v:?}")))
}

/// Reads a head up to the blank line; returns its first line.
fn read_head(r: &mut impl BufRead) -> io::Result<String> {
    let mut first = String::new();
    r.read_line(&mut first)?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            return Ok(first);
        }
    }
}

fn server(port: &str) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", arg(port, "PORT")? as u16))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        thread::spawn(move || {
            let _ = echo(conn);
        });
    }
    Ok(())
}

/// Answers the upgrade, then echoes each masked client frame as an unmasked server frame.
fn echo(conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    read_head(&mut r)?;
    w.write_all(RESPONSE.as_bytes())?;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut payload = Vec::new();
    loop {
        // Echo everything already buffered in one write: fewer syscalls on the load core.
        loop {
            let mut hdr = [0u8; 2];
            if out.is_empty() || !r.buffer().is_empty() {
                if let Err(e) = r.read_exact(&mut hdr) {
                    return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e) };
                }
            } else {
                break;
            }
            let len = match hdr[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b)?;
                    u16::from_be_bytes(b) as usize
                }
                127 => return Err(io::Error::other("frame too large for this bench")),
                n => n as usize,
            };
            let mut mask = [0u8; 4];
            if hdr[1] & 0x80 != 0 {
                r.read_exact(&mut mask)?;
            }
            payload.resize(len, 0);
            r.read_exact(&mut payload)?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            push_frame(&mut out, hdr[0], &payload, None);
        }
        w.write_all(&out)?;
        out.clear();
    }
}

fn push_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(first);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(masked | payload.len() as u8);
    } else {
        out.push(masked | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

fn client(a: &[String]) -> io::Result<()> {
    let port = arg(&a[0], "PORT")? as u16;
    let conns = arg(&a[1], "CONNS")?.max(1) as usize;
    let seconds = arg(&a[2], "SECONDS")?;
    let size = arg(&a[3], "SIZE")? as usize;
    let window = arg(&a[4], "WINDOW")?.max(1) as usize;
    let threads = (arg(&a[5], "THREADS")?.max(1) as usize).min(conns);
    if size > 65535 {
        return Err(io::Error::other("SIZE must be below 64 KiB"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let messages = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..threads {
        let mine = conns / threads + usize::from(t < conns % threads);
        let (stop, messages) = (stop.clone(), messages.clone());
        workers.push(thread::spawn(move || drive(port, mine, size, window, &stop, &messages)));
    }
    let start = Instant::now();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| io::Error::other("client thread panicked"))??;
    }
    let n = messages.load(Ordering::Relaxed);
    println!(
        "messages={n} bytes={} seconds={:.3}",
        n * 2 * size as u64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Keeps `conns` connections in lockstep: each gets `window` frames, then each echo is read
/// back and checked. Writes never block at these sizes, so all connections stay busy at once.
fn drive(port: u16, conns: usize, size: usize, window: usize, stop: &AtomicBool, messages: &AtomicU64) -> io::Result<()> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut batch = Vec::new();
    for _ in 0..window {
        push_frame(&mut batch, 0x82, &payload, Some(MASK));
    }
    let mut expected = Vec::new();
    for _ in 0..window {
        push_frame(&mut expected, 0x82, &payload, None);
    }
    let mut streams = Vec::new();
    for _ in 0..conns {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        let mut r = BufReader::new(s.try_clone()?);
        (&s).write_all(REQUEST.as_bytes())?;
        let status = read_head(&mut r)?;
        if !status.starts_with("HTTP/1.1 101") {
            return Err(io::Error::other(format!("upgrade refused: {}", status.trim_end())));
        }
        if !r.buffer().is_empty() {
            return Err(io::Error::other("bytes after the 101 head"));
        }
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        streams.push(s);
    }
    let mut got = vec![0u8; expected.len()];
    while !stop.load(Ordering::Relaxed) {
        for mut s in &streams {
            s.write_all(&batch)?;
        }
        for mut s in &streams {
            s.read_exact(&mut got)?;
            if got != expected {
                return Err(io::Error::other("echo differs from what was sent"));
            }
        }
        messages.fetch_add((conns * window) as u64, Ordering::Relaxed);
    }
    Ok(())
}
