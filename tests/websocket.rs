//! WebSocket and Upgrade relay through the built binary: a real WebSocket echo server
//! (tungstenite) behind ringway, real WebSocket clients in front, raw sockets for the edge cases.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

mod common;
use common::{ws_echo_server, Ringway as Proxy};

fn config(upstream: SocketAddr, route_extra: &str, server_extra: &str) -> String {
    format!(
        "[server]\nworkers = 2\n{server_extra}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
         [upstream.ws]\nservers = [\"{upstream}\"]\n\
         [[route]]\nprefix = \"/\"\nupstream = \"ws\"\n{route_extra}\n"
    )
}

fn ws_connect(proxy: SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{proxy}{path}"), stream).expect("handshake through ringway");
    assert_eq!(resp.status(), 101);
    ws
}

#[test]
fn large_many_binary_ping_and_close_pass_intact() {
    let proxy = Proxy::start(&config(ws_echo_server(), "", ""));
    let mut ws = ws_connect(proxy.addr(), "/api/live/ws");

    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::Binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b == big, "1 MB binary message changed in transit"),
        other => panic!("expected binary, got {other:?}"),
    }

    for i in 0..10_000 {
        ws.write(Message::Text(format!("m{i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..10_000 {
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t, format!("m{i}")),
            other => panic!("expected text {i}, got {other:?}"),
        }
    }

    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(p, b"are you there");
                break;
            }
            Message::Ping(_) => {}
            other => panic!("expected pong, got {other:?}"),
        }
    }

    ws.close(None).unwrap();
    let closed = loop {
        match ws.read() {
            Ok(Message::Close(_)) => continue,
            Ok(other) => panic!("unexpected {other:?} after close"),
            Err(tungstenite::Error::ConnectionClosed) => break true,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    };
    assert!(closed);
}

/// A raw upstream: answers upgrade requests with `upgrade_reply`, other requests with 200 and
/// their path; keep-alive; records nothing.
fn scripted_upstream(upgrade_reply: &'static str, after_101: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || serve_scripted(stream, upgrade_reply, after_101));
        }
    });
    addr
}

fn serve_scripted(mut s: TcpStream, upgrade_reply: &str, after_101: fn(TcpStream)) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            if head.to_ascii_lowercase().contains("\r\nupgrade:") {
                s.write_all(upgrade_reply.as_bytes()).unwrap();
                if upgrade_reply.starts_with("HTTP/1.1 101") {
                    after_101(s);
                    return;
                }
            } else {
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let has_upgrade = head.to_ascii_lowercase().contains("upgrade");
                let body = format!("path={path} upgrade_seen={has_upgrade}");
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                s.write_all(resp.as_bytes()).unwrap();
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

const UPGRADE_REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn refused_upgrade_stays_http_without_desync() {
    let upstream = scripted_upstream("HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied", |_| {});
    let proxy = Proxy::start(&config(upstream, "", ""));
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The client pipelines an ordinary request right behind its upgrade request.
    let both = format!("{UPGRADE_REQUEST}GET /second HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
    c.write_all(both.as_bytes()).unwrap();
    let text = String::from_utf8(read_until_closed(&mut c)).unwrap();
    let first = text
        .find("HTTP/1.1 403")
        .expect("the 403 is relayed as an ordinary response");
    let second = text
        .find("HTTP/1.1 200")
        .expect("the pipelined request is answered after it");
    assert!(first < second, "{text}");
    assert!(text.contains("path=/second upgrade_seen=false"), "{text}");
}

#[test]
fn upgrade_not_allowed_by_route_is_not_forwarded() {
    let upstream = scripted_upstream(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        |_| {},
    );
    let proxy = Proxy::start(&config(upstream, "upgrades = []", ""));
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(
        UPGRADE_REQUEST
            .replace("Connection: Upgrade", "Connection: Upgrade, close")
            .as_bytes(),
    )
    .unwrap();
    let text = String::from_utf8(read_until_closed(&mut c)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("upgrade_seen=false"), "Upgrade must be stripped: {text}");
}

#[test]
fn half_close_propagates_while_the_other_direction_flows() {
    // After 101 the upstream echoes until it sees EOF, then sends "bye" and closes.
    let upstream = scripted_upstream(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        |mut s| {
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            loop {
                match s.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => {
                        got.extend_from_slice(&b[..n]);
                        s.write_all(&b[..n]).unwrap();
                    }
                    Err(_) => return,
                }
            }
            thread::sleep(Duration::from_millis(200));
            s.write_all(b"bye").unwrap();
        },
    );
    let proxy = Proxy::start(&config(upstream, "", ""));
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(UPGRADE_REQUEST.as_bytes()).unwrap();
    c.write_all(b"hello").unwrap(); // early bytes, sent before the 101 arrives
    thread::sleep(Duration::from_millis(200));
    c.shutdown(Shutdown::Write).unwrap();
    let text = String::from_utf8(read_until_closed(&mut c)).unwrap();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, "hellobye", "echo, then the upstream's bytes after it saw our EOF");
}

#[test]
fn idle_tunnel_is_closed_at_the_route_timeout() {
    let proxy = Proxy::start(&config(ws_echo_server(), "tunnel_idle_timeout = \"1s\"", ""));
    let mut ws = ws_connect(proxy.addr(), "/");
    ws.send(Message::Text("still here".into())).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Text(_)));
    let start = Instant::now();
    let err = loop {
        match ws.read() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}: {err}"
    );
}

#[test]
fn thousand_tunnels_release_every_fd_and_add_no_threads() {
    let proxy = Proxy::start(&config(ws_echo_server(), "", ""));
    // Warm-up tunnel so lazily created runtime resources are in the baseline.
    drop(ws_connect(proxy.addr(), "/"));
    thread::sleep(Duration::from_millis(300));
    let fds_before = proxy.fd_count();
    let threads_before = proxy.tasks().len();
    let rss_before = proxy.rss_kib();

    let mut open = Vec::new();
    for i in 0..1000 {
        let mut ws = ws_connect(proxy.addr(), "/");
        if i % 100 == 0 {
            ws.send(Message::Text(format!("probe {i}"))).unwrap();
            assert!(matches!(ws.read().unwrap(), Message::Text(_)));
        }
        open.push(ws);
    }
    let fds_during = proxy.fd_count();
    assert!(
        fds_during >= fds_before + 2000,
        "1,000 tunnels hold a client and an upstream fd each: {fds_before} -> {fds_during}"
    );
    assert_eq!(proxy.tasks().len(), threads_before, "tunnels must not add threads");
    // What idle tunnels cost in memory: the bound of 2 KB each (loadtest/ws_idle.sh
    // measures ~1.4 KB on a release build). A per-tunnel buffer, pipe page or leftover of the
    // HTTP state would blow through it.
    let per_tunnel = (proxy.rss_kib().saturating_sub(rss_before)) * 1024 / 1000;
    eprintln!("RSS growth per idle tunnel: {per_tunnel} B");
    assert!(
        per_tunnel <= 2048,
        "RSS grew {per_tunnel} B per idle tunnel (target: 2 KB)"
    );

    for mut ws in open.drain(..) {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    drop(open);
    // Pipes idle in the per-worker pools (at most 64 per worker, 2 fds each) may remain.
    let bound = fds_before + 2 * 2 * 64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = proxy.fd_count();
        if now <= bound {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds not released: before {fds_before}, during {fds_during}, after {now}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn max_connections_refuses_new_clients_and_keeps_tunnels_flowing() {
    let proxy =
        Proxy::start(&config(ws_echo_server(), "", "max_connections = 2").replace("workers = 2", "workers = 1"));
    let mut a = ws_connect(proxy.addr(), "/");
    let mut b = ws_connect(proxy.addr(), "/");
    // A third connection is closed at once.
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(UPGRADE_REQUEST.as_bytes());
    let reply = read_until_closed(&mut c);
    assert!(
        reply.is_empty(),
        "over the cap the connection is closed without an answer"
    );
    // The open tunnels keep working.
    for ws in [&mut a, &mut b] {
        ws.send(Message::Text("ok".into())).unwrap();
        assert!(matches!(ws.read().unwrap(), Message::Text(t) if t == "ok"));
    }
    // Closing one frees a slot.
    let _ = a.close(None);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Ok((mut ws, _)) = tungstenite::client(format!("ws://{}/", proxy.addr()), s) {
            ws.send(Message::Text("again".into())).unwrap();
            assert!(matches!(ws.read().unwrap(), Message::Text(_)));
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed after a tunnel closed");
        thread::sleep(Duration::from_millis(100));
    }
}
