//! HTTP/2 towards clients through the built binary: curl over TLS (ALPN `h2`) and with prior
//! knowledge (h2c), `http2 = false` falling back to HTTP/1.1, a Rust h2 client for concurrent
//! streams and both request body framings, route features over HTTP/2 (prefix strip and
//! Location mapping, forwarding headers, basic auth, deny, the access log), GOAWAY when
//! draining, and h2load for a few thousand requests.

mod common;
mod h2raw;
use bytes::Bytes;
use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// One worker; a TLS listener (first address, `tls_extra` in its table) and a plaintext one
/// with h2c; `extra` goes in at the top level, `routes` after the upstream.
fn proxy(dir: &TempDir, backend: SocketAddr, tls_extra: &str, extra: &str, routes: &str) -> Ringway {
    let (cert, key) = localhost_cert(dir);
    let cfg = format!(
        "[server]\nworkers = 1\n{extra}\n[[listener]]\nbind = \"127.0.0.1:0\"\n{tls_extra}\n\
         [[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n\n\
         {}{routes}\n",
        cert.display(),
        key.display(),
        upstream("app", backend),
    );
    Ringway::start(&cfg)
}

const ROUTE: &str = "[[route]]\nupstream = \"app\"\n";

/// curl's answer: the protocol version it used, the status and the body.
fn curl(args: &[&str], url: &str) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, code) = tail.split_once(' ').unwrap_or((tail, "0"));
    (version.to_string(), code.parse().unwrap_or(0), body.to_string())
}

fn tls_url(p: &Ringway, path: &str) -> String {
    format!("https://localhost:{}{path}", p.addrs[0].port())
}

#[test]
fn curl_over_tls_negotiates_h2_and_the_request_goes_through_the_exchange() {
    let b = Backend::echo();
    let dir = TempDir::new();
    let p = proxy(&dir, b.addr, "", "", ROUTE);
    let (version, status, body) = curl(&["--http2", "-H", "X-Forwarded-Proto: forged"], &tls_url(&p, "/a?b=1"));
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let e = Echo::parse(&body);
    assert_eq!(e.url, "/a?b=1");
    assert_eq!(e.version, "1.1", "upstreams stay HTTP/1.1");
    assert_eq!(e.header("host"), Some(&*format!("localhost:{}", p.addrs[0].port())));
    assert_eq!(e.all("x-forwarded-proto"), ["https"]);
    // The plaintext listener with h2c: prior knowledge speaks HTTP/2, a plain client HTTP/1.1.
    let h2c = format!("http://{}/c", p.addrs[1]);
    let (version, status, body) = curl(&["--http2-prior-knowledge"], &h2c);
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    assert_eq!(Echo::parse(&body).all("x-forwarded-proto"), ["http"]);
    let (version, status, _) = curl(&[], &h2c);
    assert_eq!((version.as_str(), status), ("1.1", 200));
    let mut p = p;
    p.assert_healthy();
}

#[test]
fn http2_false_offers_only_http11_and_h2c_is_off_by_default() {
    let b = Backend::echo();
    let dir = TempDir::new();
    let (cert, key) = localhost_cert(&dir);
    let cfg = format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\nhttp2 = false\n[[listener.tls]]\n\
         cert = \"{}\"\nkey = \"{}\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n{}{ROUTE}",
        cert.display(),
        key.display(),
        upstream("app", b.addr)
    );
    let p = Ringway::start(&cfg);
    let (version, status, _) = curl(&["--http2"], &tls_url(&p, "/"));
    assert_eq!((version.as_str(), status), ("1.1", 200));
    // Without h2c the preface is an HTTP/1.1 request line it cannot parse.
    let (version, status, _) = curl(&["--http2-prior-knowledge"], &format!("http://{}/", p.addrs[1]));
    assert_ne!((version.as_str(), status), ("2", 200));
    // The keys are checked: http2 on a plaintext listener, h2c on a TLS one.
    let bad = "[[listener]]\nbind = \"127.0.0.1:0\"\nhttp2 = true\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n";
    let dir2 = TempDir::new();
    let path = dir2.write("bad.toml", bad);
    let out = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(stderr_of(&out).contains("listener.http2"), "{}", stderr_of(&out));
}

/// Sends one request (body in `chunks`, none when empty) and returns the status and the body.
async fn send(
    client: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    chunks: Vec<Vec<u8>>,
) -> Result<(u16, http::HeaderMap, Vec<u8>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (resp, mut body) = client.send_request(req, chunks.is_empty())?;
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        body.send_data(Bytes::from(c), i + 1 == n)?;
    }
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut out = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d?;
        let _ = recv.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    Ok((status, headers, out))
}

/// Odd streams send no content-length, so they go upstream chunked. Both upstreams keep no idle
/// connections: the test backend (tiny_http) serves each connection on a pool thread and queues
/// a burst of new connections behind its four idle threads, so a fifth concurrent connection
/// would wait until a kept-alive one closes.
#[test]
fn concurrent_streams_cookie_crumbs_and_both_body_framings() {
    let b = Backend::echo();
    let chunked = Backend::echo();
    let dir = TempDir::new();
    let routes = format!(
        "keepalive = 0\n[upstream.chunked]\nservers = [\"{}\"]\nkeepalive = 0\n[[route]]\nprefix = \"/c/\"\nupstream = \"chunked\"\n{ROUTE}",
        chunked.addr
    );
    let p = proxy(&dir, b.addr, "", "", &routes);
    let addr = p.addrs[1];
    runtime().block_on(async move {
        let client = h2c(addr).await;
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let body = pattern(10_000 + i as usize * 997, i);
                let path = if i % 2 == 0 { "s" } else { "c" };
                let mut req = http::Request::post(format!("http://app.test/{path}/{i}"))
                    .header("cookie", "a=1")
                    .header("cookie", format!("b={i}"));
                if i % 2 == 0 {
                    req = req.header("content-length", body.len().to_string());
                }
                let chunks: Vec<Vec<u8>> = body.chunks(4096).map(<[u8]>::to_vec).collect();
                let (status, _, resp) = send(&client, req.body(()).unwrap(), chunks).await.unwrap();
                (i, path, body, status, String::from_utf8(resp).unwrap())
            }));
        }
        for t in tasks {
            let (i, path, body, status, resp) = t.await.unwrap();
            assert_eq!(status, 200, "stream {i}: {resp}");
            let e = Echo::parse(&resp);
            assert_eq!(e.url, format!("/{path}/{i}"));
            assert_eq!(e.header("host"), Some("app.test"));
            assert_eq!(e.all("cookie"), [format!("a=1; b={i}").as_str()]);
            assert_eq!(
                (e.body_len, e.body_sum, e.body_ok),
                (body.len() as u64, Checksum::of(&body), true)
            );
            if i % 2 == 0 {
                assert_eq!(e.header("content-length"), Some(&*body.len().to_string()));
            } else {
                assert_eq!(e.header("transfer-encoding"), Some("chunked"));
            }
        }
        // A HEAD on the same connection: the length, no body.
        let head = http::Request::head("http://app.test/h").body(()).unwrap();
        let (status, headers, body) = send(&client, head, vec![]).await.unwrap();
        assert_eq!((status, body.len()), (200, 0));
        assert!(headers.get("content-length").is_some());
    });
}

#[test]
fn large_responses_stream_under_flow_control() {
    let b = Backend::with(|_, _| common::Reply::Large(8 << 20));
    let dir = TempDir::new();
    let p = proxy(&dir, b.addr, "", "", ROUTE);
    let addr = p.addrs[1];
    runtime().block_on(async move {
        let client = h2c(addr).await;
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let req = http::Request::get("http://app.test/big").body(()).unwrap();
                send(&client, req, vec![]).await.unwrap()
            }));
        }
        for t in tasks {
            let (status, _, body) = t.await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(body.len(), 8 << 20);
            assert_eq!(Checksum::of(&body), Checksum::of(&large_body(8 << 20)));
        }
    });
}

#[test]
fn a_body_shorter_than_its_content_length_is_a_stream_error() {
    let b = Backend::echo();
    let dir = TempDir::new();
    let p = proxy(&dir, b.addr, "", "", ROUTE);
    let mut c = h2raw::Conn::open(p.addrs[1], &[]);
    let mut fields = h2raw::request("POST", "/short", "app.test");
    fields.push(("content-length", "10"));
    c.headers(1, &fields, false);
    c.data(1, b"12345", true);
    let f = c.until(Duration::from_secs(5), |f| {
        f.stream == 1 && f.kind != h2raw::WINDOW_UPDATE
    });
    let f = f.expect("an answer on stream 1");
    assert_eq!(f.kind, h2raw::RST_STREAM, "{f:?}");
    // The upstream never saw a complete body, and the connection still serves.
    std::thread::sleep(Duration::from_millis(200));
    c.headers(3, &h2raw::request("GET", "/after", "app.test"), true);
    let f = c
        .until(Duration::from_secs(5), |f| f.stream == 3)
        .expect("stream 3 answered");
    assert_eq!(f.kind, h2raw::HEADERS);
    let (version, status, body) = curl(&["--http2-prior-knowledge"], &format!("http://{}/x", p.addrs[1]));
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
}

#[test]
fn routes_work_the_same_over_http2() {
    let b = Backend::with(|_, url| {
        if url.starts_with("/login") {
            common::Reply::fixed(200, &[], "login page")
        } else if url == "/go" {
            common::Reply::fixed(302, &[("Location", "/login?from=go")], "")
        } else {
            common::Reply::Echo
        }
    });
    let dir = TempDir::new();
    let htpasswd = dir.write(
        "staff.htpasswd",
        "alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\n",
    );
    let log = dir.path.join("access.log");
    let extra = format!(
        "[log]\naccess = \"{}\"\nformat = \"json\"\n[auth.staff]\nbasic = {{ htpasswd = \"{}\", realm = \"R\" }}\n",
        log.display(),
        htpasswd.display()
    );
    let routes = "[[route]]\nprefix = \"/app/\"\nupstream = \"app\"\nstrip_prefix = true\n\
                  [[route]]\nprefix = \"/staff/\"\nupstream = \"app\"\nauth = \"staff\"\n\
                  [[route]]\nprefix = \"/closed/\"\nupstream = \"app\"\ndeny = [\"127.0.0.0/8\"]\n";
    let p = proxy(&dir, b.addr, "", &extra, routes);
    let h2 = ["--http2"];
    let (v, status, body) = curl(&h2, &tls_url(&p, "/app/x?y=1"));
    assert_eq!((v.as_str(), status), ("2", 200));
    let e = Echo::parse(&body);
    assert_eq!(e.url, "/x?y=1");
    assert_eq!(e.header("x-forwarded-prefix"), Some("/app"));
    // The redirect comes back under the public prefix.
    let out = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{redirect_url}",
        ])
        .arg(tls_url(&p, "/app/go"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("2 ") && text.ends_with("/app/login?from=go"), "{text}");
    assert_eq!(curl(&h2, &tls_url(&p, "/app")).1, 301, "/app → /app/");
    assert_eq!(curl(&h2, &tls_url(&p, "/staff/a")).1, 401);
    assert_eq!(
        curl(
            &[&h2[..], &["-u", "alice:wonderLAND"]].concat(),
            &tls_url(&p, "/staff/a")
        )
        .1,
        401
    );
    let (_, status, body) = curl(&["--http2", "-u", "alice:wonderland"], &tls_url(&p, "/staff/a"));
    assert_eq!(status, 200);
    assert_eq!(Echo::parse(&body).url, "/staff/a");
    assert_eq!(curl(&h2, &tls_url(&p, "/closed/a")).1, 403);
    assert_eq!(curl(&h2, &tls_url(&p, "/nowhere")).1, 404);
    // The access log names the protocol.
    let mut lines = String::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.lines().count() >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = lines
        .lines()
        .find(|l| l.contains("\"/app/x?y=1\""))
        .unwrap_or_else(|| panic!("no line for /app/x?y=1 in:\n{lines}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["protocol"], "HTTP/2.0", "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert!(lines.lines().any(|l| l.contains("\"status\":403")), "{lines}");
}

#[test]
fn sigterm_sends_goaway_and_streams_in_flight_finish() {
    let b = Backend::with(|_, url| match url {
        "/slow" => common::Reply::Delay(Duration::from_millis(800)),
        _ => common::Reply::Echo,
    });
    let dir = TempDir::new();
    let mut p = proxy(&dir, b.addr, "", "shutdown_timeout = \"5s\"", ROUTE);
    let addr = p.addrs[1];
    let pid = p.pid() as libc::pid_t;
    let (slow, closed_in, after) = runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
            std::time::Instant::now()
        });
        let c = client.clone();
        let slow = tokio::spawn(async move {
            let req = http::Request::get("http://app.test/slow").body(()).unwrap();
            send(&c, req, vec![]).await.map(|r| r.0)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // SAFETY: a signal to the ringway process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let sent = std::time::Instant::now();
        let slow = slow.await.unwrap();
        let closed_at = tokio::time::timeout(Duration::from_secs(4), conn)
            .await
            .expect("connection closed")
            .unwrap();
        let req = http::Request::get("http://app.test/after").body(()).unwrap();
        let after = send(&client, req, vec![]).await;
        (slow, closed_at.duration_since(sent), after.is_err())
    });
    assert_eq!(slow.expect("the stream in flight finished"), 200);
    assert!(
        closed_in < Duration::from_secs(3),
        "GOAWAY and close took {closed_in:?}"
    );
    assert!(after, "no new stream after GOAWAY");
    assert!(
        p.exited_within(Duration::from_secs(5)),
        "ringway still running after its last HTTP/2 connection closed"
    );
}

#[test]
fn h2load_thousands_of_requests_without_a_failure() {
    if Command::new("h2load").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("RINGWAY_REQUIRE_H2LOAD").is_none(),
            "h2load not found (scripts/test.sh installs nghttp2-client)"
        );
        eprintln!("h2load not found; skipped");
        return;
    }
    // A thread per upstream connection: tiny_http's pool can leave a new connection queued
    // behind pooled keep-alive ones, which stay open for a minute.
    let b = Scripted::always(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let dir = TempDir::new();
    let p = proxy(&dir, b.addr, "", "", ROUTE);
    let out = Command::new("h2load")
        .args(["-n", "3000", "-c", "8", "-m", "16"])
        .arg(tls_url(&p, "/load"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("3000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{text}"
    );
    assert!(text.contains("status codes: 3000 2xx"), "{text}");
}

/// Status, the named fields (lowercase) and body of one response, through curl.
fn fields_and_body(args: &[&str], url: &str, names: &[&str]) -> (u16, Vec<Option<String>>, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "-"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let picked = names
        .iter()
        .map(|want| fields.iter().find(|(n, _)| n == want).map(|(_, v)| v.clone()))
        .collect();
    (status, picked, body.to_string())
}

#[test]
fn ringway_s_own_replies_carry_the_same_fields_and_body_as_on_http11() {
    let b = Backend::echo();
    let dir = TempDir::new();
    let routes = "[[route]]\nprefix = \"/app/\"\nupstream = \"app\"\nstrip_prefix = true\n";
    let p = proxy(&dir, b.addr, "", "", routes);
    let names = ["location", "content-type", "content-length", "connection"];
    for (path, method, status) in [
        ("/app", "GET", 301),
        ("/nowhere", "GET", 404),
        ("/nowhere", "HEAD", 404),
    ] {
        let url = format!("http://{}{path}", p.addrs[1]);
        let head = if method == "HEAD" { vec!["-I"] } else { vec![] };
        let h1 = fields_and_body(&[&head[..], &["--http1.1"]].concat(), &url, &names);
        let h2 = fields_and_body(&[&head[..], &["--http2-prior-knowledge"]].concat(), &url, &names);
        assert_eq!(h1.0, status, "{method} {path} over HTTP/1.1");
        assert_eq!(h2.0, status, "{method} {path} over HTTP/2");
        assert_eq!(h2.1[..3], h1.1[..3], "{method} {path}: fields differ");
        assert_eq!(h2.1[3], None, "{method} {path}: no Connection field on HTTP/2");
        assert_eq!(h2.1[0].is_some(), status == 301, "{method} {path}: Location");
        assert_eq!(h2.2, h1.2, "{method} {path}: bodies differ");
    }
    let (_, fields, body) = fields_and_body(
        &["--http2-prior-knowledge"],
        &format!("http://{}/nowhere", p.addrs[1]),
        &names,
    );
    assert_eq!(fields[1].as_deref(), Some("text/plain; charset=utf-8"));
    assert!(
        body.ends_with('\n') && fields[2] == Some(body.len().to_string()),
        "{body:?}"
    );
}
