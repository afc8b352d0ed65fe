//! Hostile clients in bulk: slowloris connections trickling a head, floods of huge heads, endless
//! chunked bodies that nobody will read, pipelined requests whose responses are never read. The
//! proxy must keep serving ordinary clients, close the hostile ones at their deadlines, and hold
//! its memory (VmRSS) and fds within the bounds README's "Security" section states.

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn proxy(up: SocketAddr, server: &str) -> Ringway {
    let cfg = format!(
        "[server]\nworkers = 2\n{server}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}{}\
[[route]]\nprefix = \"/app/\"\nupstream = \"app\"\n\n\
[[route]]\nprefix = \"/dead/\"\nupstream = \"dead\"\n",
        upstream("app", up),
        upstream("dead", refused_addr()),
    );
    Ringway::start(&cfg)
}

/// Reads what is there without blocking: (bytes, closed). `closed` is EOF or a reset.
fn drain_nonblocking(s: &mut TcpStream) -> (Vec<u8>, bool) {
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// Ordinary requests while a flood runs: every one answered 200; returns the slowest latency.
fn serve_meanwhile(p: &Ringway, until: Instant) -> Duration {
    let agent = agent();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while Instant::now() < until || n < 3 {
        let t = Instant::now();
        let r = http(&agent, "GET", &p.url("/app/ok"), &[], None);
        assert_eq!(r.status, 200, "an ordinary client was not served during the flood");
        worst = worst.max(t.elapsed());
        n += 1;
        thread::sleep(Duration::from_millis(100));
    }
    worst
}

#[test]
fn five_thousand_slowloris_connections_do_not_starve_others_and_are_closed_at_the_deadline() {
    const N: usize = 5000;
    let header_timeout = Duration::from_secs(4);
    let b = Backend::echo();
    let mut p = proxy(b.addr, "header_timeout = \"4s\"");
    assert_eq!(get(&p.url("/app/warm")).status, 200);
    let baseline = p.fd_count();
    let rss_before = p.rss_kib();

    // Each connection sends its first byte at once, then one byte a second: the head deadline
    // (header_timeout after the first byte) falls long before the head could complete. Four
    // threads open them, so a busy machine still opens all well inside the first deadline.
    let head = b"GET /app/slow HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let t_first = Instant::now();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let addr = p.addr();
            thread::spawn(move || {
                (0..N / 4)
                    .map(|_| {
                        let mut s = TcpStream::connect(addr).expect("slowloris connect");
                        s.set_nodelay(true).unwrap();
                        s.write_all(&head[..1]).unwrap();
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let socks: Vec<TcpStream> = openers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let t_last = Instant::now();
    let earliest_deadline = t_first + header_timeout;
    assert!(
        t_last + Duration::from_millis(500) < earliest_deadline,
        "opening {N} connections took {:?}; too slow for the deadline check",
        t_last - t_first
    );
    let socks = Arc::new(std::sync::Mutex::new(socks));
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let socks = socks.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut i = 1;
            while !stop.load(Ordering::SeqCst) && i < head.len() {
                thread::sleep(Duration::from_secs(1));
                for s in socks.lock().unwrap().iter_mut() {
                    let _ = s.write_all(&head[i..i + 1]);
                }
                i += 1;
            }
        })
    };

    // Before the deadline every slow connection is held and ordinary clients are served.
    let all_held = wait_until(
        earliest_deadline.saturating_duration_since(Instant::now()) - Duration::from_millis(300),
        || p.fd_count() >= baseline + N * 99 / 100,
    );
    let held = p.fd_count();
    let rss_held = p.rss_kib();
    assert!(
        all_held && Instant::now() < earliest_deadline,
        "the slow connections were not all held before their deadline: {held} fds, baseline {baseline}"
    );
    let worst = serve_meanwhile(&p, earliest_deadline - Duration::from_millis(500));
    assert!(
        worst < Duration::from_secs(2),
        "an ordinary request took {worst:?} during the flood"
    );

    // At the deadline (plus scheduling slack) all of them are closed: fds back to the baseline.
    // (+1: the other worker may have pooled an upstream connection for an ordinary request.)
    let now = p.wait_fds_at_most(
        baseline + 1,
        t_last + header_timeout + Duration::from_secs(3) - Instant::now(),
    );
    let closed_after = t_first.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickler.join().unwrap();
    assert!(
        now <= baseline + 1,
        "{} slowloris connections still open {closed_after:?} after the first connect ({now} fds, baseline {baseline})",
        now - baseline
    );
    let mut open = 0;
    let mut got_408 = 0;
    for s in socks.lock().unwrap().iter_mut() {
        let (bytes, closed) = drain_nonblocking(s);
        open += usize::from(!closed);
        got_408 += usize::from(bytes.starts_with(b"HTTP/1.1 408"));
    }
    assert_eq!(open, 0, "slowloris connections the proxy did not close");
    assert!(
        got_408 >= N * 99 / 100,
        "only {got_408} of {N} slow clients were told 408 before the close"
    );
    assert_eq!(get(&p.url("/app/after")).status, 200);
    p.assert_healthy();
    println!(
        "slowloris: {N} connections opened in {:?}, held {} fds, RSS {rss_before} → {rss_held} KiB \
         ({:.1} KiB per connection), worst ordinary request {worst:?}, all closed {closed_after:?} after the first",
        t_last - t_first,
        held - baseline,
        (rss_held.saturating_sub(rss_before)) as f64 / N as f64,
    );
}

/// RSS bound for a connection holding a head just under `max_head_size` (16 KiB): the head
/// buffer grows to at most 32 KiB of capacity (20 KiB of RSS measured), plus the connection task.
const HEAD_HOLD_KIB_PER_CONN: u64 = 32;

/// The proxy's RSS once it has stopped moving: two readings 200 ms apart within 0.5% (or 5 s).
fn settled_rss_kib(p: &Ringway) -> u64 {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = p.rss_kib();
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = p.rss_kib();
        if now.abs_diff(last) <= now / 200 || Instant::now() >= end {
            return now;
        }
        last = now;
    }
}

#[test]
fn flood_of_huge_heads_is_answered_431_with_memory_bounded_and_reused() {
    const N: usize = 1000;
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    assert_eq!(get(&p.url("/app/warm")).status, 200);
    let baseline_fds = p.fd_count();
    let rss_before = p.rss_kib();
    // Each connection parks a head of 16,000 bytes (under the 16 KiB limit) and holds it.
    let mut partial = b"GET /app/x HTTP/1.1\r\nHost: h\r\n".to_vec();
    while partial.len() < 16_000 {
        partial.extend_from_slice(b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    partial.truncate(16_000);
    // Two floods in a row: the second must fit in the memory the first left behind (freed
    // memory may stay resident, as the allocator keeps it, but it is reused, never leaked).
    let mut peaks = Vec::new();
    for round in 0..2 {
        let mut socks: Vec<TcpStream> = (0..N)
            .map(|_| {
                let mut s = TcpStream::connect(p.addr()).unwrap();
                s.write_all(&partial).unwrap();
                s
            })
            .collect();
        assert!(
            wait_until(Duration::from_secs(5), || p.fd_count() >= baseline_fds + N * 99 / 100),
            "the proxy did not hold the parked heads ({} fds, baseline {baseline_fds})",
            p.fd_count()
        );
        // Accepted is not yet read: wait until the heads are in (RSS stops growing).
        peaks.push(settled_rss_kib(&p));
        serve_meanwhile(&p, Instant::now() + Duration::from_millis(300));
        // Then every head goes over the limit: each gets 431 and is closed.
        for s in socks.iter_mut() {
            let _ = s.write_all(&[b'a'; 1024]);
        }
        let mut answered = 0;
        for s in socks.iter_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            answered += usize::from(got.starts_with(b"HTTP/1.1 431"));
        }
        drop(socks);
        assert_eq!(answered, N, "round {round}: every oversized head gets 431");
        // The other worker may have pooled an upstream connection for an ordinary request.
        let fds = p.wait_fds_at_most(baseline_fds + 1, Duration::from_secs(5));
        assert!(
            fds <= baseline_fds + 1,
            "fds {fds} after the flood, baseline {baseline_fds}"
        );
    }
    let rss_after = p.rss_kib();
    let per_conn = peaks[0].saturating_sub(rss_before) / N as u64;
    println!(
        "huge heads: {N} held 16 KB heads, RSS {rss_before} → {} KiB ({per_conn} KiB each); second flood {} KiB; after {rss_after} KiB",
        peaks[0], peaks[1]
    );
    assert!(
        per_conn <= HEAD_HOLD_KIB_PER_CONN,
        "a parked 16 KB head costs {per_conn} KiB of RSS, bound {HEAD_HOLD_KIB_PER_CONN}"
    );
    assert!(
        peaks[1] <= peaks[0] + (peaks[0] - rss_before) / 10 + 1024,
        "the second flood did not reuse the first one's memory: {rss_before} → {} → {} KiB",
        peaks[0],
        peaks[1]
    );
    p.assert_healthy();
}

/// A body that never ends, sent where nobody will read it: a path with no route (404), an
/// upstream that refuses connections (502). The proxy answers, closes, and never buffers it.
#[test]
fn endless_chunked_bodies_to_refused_requests_are_cut_without_buffering() {
    const N: usize = 64;
    let b = Backend::echo();
    let mut p = proxy(b.addr, "");
    assert_eq!(get(&p.url("/app/warm")).status, 200);
    let baseline_fds = p.fd_count();
    let rss_before = p.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..N)
        .map(|i| {
            let addr = p.addr();
            let stop = stop.clone();
            thread::spawn(move || {
                let path = if i % 2 == 0 { "/nowhere/x" } else { "/dead/x" };
                let mut s = TcpStream::connect(addr).unwrap();
                let head = format!("POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
                let chunk = [b"4000\r\n".as_slice(), &[b'z'; 0x4000], b"\r\n"].concat();
                let mut sent = head.len();
                if s.write_all(head.as_bytes()).is_err() {
                    return (0, sent);
                }
                while !stop.load(Ordering::SeqCst) {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                let status = std::str::from_utf8(got.get(9..12).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0);
                (status, sent)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let rss_during = p.rss_kib();
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    let mut total_sent = 0;
    for s in senders {
        let (status, sent) = s.join().unwrap();
        statuses.push(status);
        total_sent += sent;
    }
    statuses.sort();
    statuses.dedup();
    assert!(
        statuses.iter().all(|s| matches!(s, 404 | 502 | 0)),
        "refusals were {statuses:?}"
    );
    // The other worker may have pooled an upstream connection for an ordinary request meanwhile.
    let fds = p.wait_fds_at_most(baseline_fds + 1, Duration::from_secs(5));
    assert!(
        fds <= baseline_fds + 1,
        "fds {fds} after the flood, baseline {baseline_fds}"
    );
    println!(
        "endless bodies: {N} senders pushed {total_sent} bytes before being cut; RSS {rss_before} → {rss_during} KiB"
    );
    assert!(
        rss_during <= rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB under endless bodies nobody reads"
    );
    assert_eq!(get(&p.url("/app/after")).status, 200);
    p.assert_healthy();
}

/// Clients that pipeline requests as fast as they can and never read a response: the proxy stops
/// reading when its writes to them block, so the backlog stays in socket buffers (bounded by the
/// kernel), not in the proxy's memory.
#[test]
fn pipelined_requests_never_read_do_not_grow_memory() {
    const N: usize = 32;
    let body = " ".repeat(1024);
    let b = Backend::with(move |_, _| Reply::fixed(200, &[], &body));
    let mut p = proxy(b.addr, "");
    assert_eq!(get(&p.url("/app/warm")).status, 200);
    let baseline_fds = p.fd_count();
    let rss_before = p.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let addr = p.addr();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                let req = b"GET /app/p HTTP/1.1\r\nHost: h\r\n\r\n".repeat(64);
                let mut sent = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    match s.write(&req) {
                        Ok(n) => sent += n,
                        Err(_) => thread::sleep(Duration::from_millis(50)),
                    }
                }
                sent
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2000));
    let rss_during = p.rss_kib();
    serve_meanwhile(&p, Instant::now() + Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    // Up to one pooled upstream connection per client may stay (keepalive = 64).
    let allowed = baseline_fds + N;
    let fds = p.wait_fds_at_most(allowed, Duration::from_secs(8));
    println!("pipelining without reading: {N} clients wrote {sent} request bytes; RSS {rss_before} → {rss_during} KiB");
    assert!(
        rss_during <= rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB while clients never read"
    );
    assert!(
        fds <= allowed,
        "fds {fds} after the clients left, baseline {baseline_fds}"
    );
    p.assert_healthy();
}
