//! Idle plain keep-alive connections parked outside their tasks (after a second without a
//! byte), through the built binary: resumed correctly for whole, pipelined, piecemeal and
//! closing requests; closed at their keep-alive timeout, at shutdown and when the peer leaves;
//! still counted by `max_connections` and the open-connection gauge; no fd left behind.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Past the second an idle connection waits in its task before it is parked.
const PARKED: Duration = Duration::from_millis(1600);

fn config(backend: SocketAddr, server: &str, route: &str) -> String {
    format!(
        "[server]\nworkers = 1\n{server}\n[[listener]]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [upstream.app]\nservers = [\"{backend}\"]\n[[route]]\nprefix = \"/\"\nupstream = \"app\"\n{route}\n"
    )
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: park.test\r\n\r\n").into_bytes()
}

/// The value of an unlabelled gauge on the admin server's /metrics.
fn gauge(p: &Ringway, name: &str) -> f64 {
    let mut c = TcpStream::connect(p.admin_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (the parked gauge is sampled each second) until `name` reads `want`.
fn wait_gauge(p: &Ringway, name: &str, want: f64) -> bool {
    wait_until(Duration::from_secs(5), || gauge(p, name) == want)
}

/// Sends a request and checks that its own response comes back (the backend echoes the URL).
fn roundtrip(c: &mut RawClient, path: &str) {
    c.send(&request(path));
    expect(c, path);
}

fn expect(c: &mut RawClient, path: &str) {
    let r = c.read_response();
    assert_eq!(r.status, 200, "{path}");
    assert_eq!(Echo::parse(&String::from_utf8_lossy(&r.body)).url, path);
}

/// A connection that served `path` and has been parked since.
fn parked_client(p: &Ringway, path: &str) -> RawClient {
    let mut c = RawClient::connect(p.addr());
    roundtrip(&mut c, path);
    thread::sleep(PARKED);
    assert!(
        wait_gauge(p, "ringway_parked_connections", 1.0),
        "the idle connection was parked"
    );
    c
}

#[test]
fn parked_connection_resumes_for_whole_pipelined_piecemeal_and_closing_requests() {
    let backend = Backend::echo();
    let mut p = Ringway::start(&config(backend.addr, "", ""));
    let mut c = RawClient::connect(p.addr());
    roundtrip(&mut c, "/first");
    thread::sleep(PARKED);
    assert!(
        wait_gauge(&p, "ringway_parked_connections", 1.0),
        "the idle connection was parked"
    );
    assert_eq!(
        gauge(&p, "ringway_open_connections"),
        1.0,
        "and is still counted as open"
    );
    roundtrip(&mut c, "/after-park");

    thread::sleep(PARKED);
    assert!(wait_gauge(&p, "ringway_parked_connections", 1.0));
    let mut two = request("/pipelined-1");
    two.extend_from_slice(&request("/pipelined-2"));
    c.send(&two);
    expect(&mut c, "/pipelined-1");
    expect(&mut c, "/pipelined-2");

    thread::sleep(PARKED);
    assert!(wait_gauge(&p, "ringway_parked_connections", 1.0));
    for piece in request("/in-pieces").chunks(3) {
        c.send(piece);
        thread::sleep(Duration::from_millis(60));
    }
    expect(&mut c, "/in-pieces");

    thread::sleep(PARKED);
    assert!(wait_gauge(&p, "ringway_parked_connections", 1.0));
    c.send(b"GET /last HTTP/1.1\r\nHost: park.test\r\nConnection: close\r\n\r\n");
    expect(&mut c, "/last");
    assert!(c.closed_within(Duration::from_secs(3)), "Connection: close ends it");
    assert!(wait_gauge(&p, "ringway_parked_connections", 0.0));
    assert!(wait_gauge(&p, "ringway_open_connections", 0.0));
    p.assert_healthy();
}

#[test]
fn parked_connection_closes_at_its_idle_timeout() {
    let backend = Backend::echo();
    let mut p = Ringway::start(&config(backend.addr, "", "idle_timeout = \"3s\""));
    // Before the request: the idle time is shorter than this, never longer.
    let idle_from = Instant::now();
    let mut c = parked_client(&p, "/one");
    assert_eq!(gauge(&p, "ringway_open_connections"), 1.0);
    assert!(c.closed_within(Duration::from_secs(5)), "closed at the idle timeout");
    let after = idle_from.elapsed();
    assert!(
        after >= Duration::from_millis(2900),
        "closed after {after:?}, before its idle timeout"
    );
    assert!(
        wait_gauge(&p, "ringway_open_connections", 0.0),
        "the open-connection gauge falls"
    );
    assert!(wait_gauge(&p, "ringway_parked_connections", 0.0));
    p.assert_healthy();
}

#[test]
fn max_connections_counts_parked_connections_and_frees_their_slots() {
    let backend = Backend::echo();
    let mut p = Ringway::start(&config(backend.addr, "max_connections = 2", ""));
    let mut a = RawClient::connect(p.addr());
    let mut b = RawClient::connect(p.addr());
    roundtrip(&mut a, "/a");
    roundtrip(&mut b, "/b");
    thread::sleep(PARKED);
    assert!(wait_gauge(&p, "ringway_parked_connections", 2.0));
    let mut refused = RawClient::connect(p.addr());
    assert!(
        refused.closed_within(Duration::from_secs(3)),
        "a third connection is over max_connections although both others are parked"
    );
    drop(a);
    assert!(
        wait_gauge(&p, "ringway_open_connections", 1.0),
        "a parked connection whose client left is closed"
    );
    let mut c = RawClient::connect(p.addr());
    roundtrip(&mut c, "/c");
    roundtrip(&mut b, "/b-again");
    p.assert_healthy();
}

#[test]
fn sigterm_closes_parked_connections_and_the_process_exits() {
    let backend = Backend::echo();
    let mut p = Ringway::start(&config(backend.addr, "shutdown_timeout = \"2s\"", ""));
    let mut c = parked_client(&p, "/one");
    // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "the parked connection is closed"
    );
    assert!(
        p.exited_within(Duration::from_secs(5)),
        "ringway exits:\n{}",
        p.stderr()
    );
}

#[test]
fn fds_return_to_their_baseline_after_parked_connections_close() {
    let backend = Backend::echo();
    let p = Ringway::start(&config(backend.addr, "", ""));
    // One connection first, so the upstream pool holds its connection in the baseline.
    let mut warm = RawClient::connect(p.addr());
    roundtrip(&mut warm, "/warm");
    drop(warm);
    assert!(wait_gauge(&p, "ringway_open_connections", 0.0));
    let baseline = p.fd_count();
    let mut clients: Vec<RawClient> = (0..20)
        .map(|i| {
            let mut c = RawClient::connect(p.addr());
            roundtrip(&mut c, &format!("/c{i}"));
            c
        })
        .collect();
    thread::sleep(PARKED);
    assert!(wait_gauge(&p, "ringway_parked_connections", 20.0));
    assert!(p.fd_count() >= baseline + 20, "each parked connection holds one fd");
    // Half leave on their own, half are served once more after parking and then leave.
    for (i, c) in clients.iter_mut().enumerate().skip(10) {
        roundtrip(c, &format!("/again{i}"));
    }
    drop(clients);
    let left = p.wait_fds_at_most(baseline, Duration::from_secs(5));
    assert_eq!(left, baseline, "fds after the connections closed: {:?}", p.fd_targets());
    assert!(wait_gauge(&p, "ringway_parked_connections", 0.0));
}
