//! Which I/O driver serves, through the built binary. io_uring is blocked for real the way a
//! container's default seccomp profile blocks it: the child sets no-new-privs and installs a BPF
//! filter answering EPERM to `io_uring_setup` before exec. The ready line, `/metrics`, the status
//! page and `ringway check` must then say epoll and why, and plain HTTP, TLS and WebSocket
//! tunnels must still be served.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use tungstenite::Message;

mod common;
use common::{get, run_cli_with, stderr_of, stdout_of, ws_echo_server, Backend, ResponseView, Ringway, TempDir};

/// monoio's switch to epoll, which `auto` honours: removed where a test is about the choice itself.
const FORCE_EPOLL: &str = "MONOIO_FORCE_LEGACY_DRIVER";

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Makes `cmd`'s child deny `io_uring_setup` with EPERM, as Docker's and containerd's default
/// seccomp profiles do, and start without the test suite's epoll override.
fn block_io_uring(cmd: &mut Command) {
    let program: Box<[SockFilter]> = Box::new([
        // ld [0]: seccomp_data.nr
        SockFilter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // jeq io_uring_setup ? next : skip one
        SockFilter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        // ret SECCOMP_RET_ERRNO | EPERM
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        // ret SECCOMP_RET_ALLOW
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ]);
    cmd.env_remove(FORCE_EPOLL);
    // SAFETY: the closure runs in the forked child before exec; it only makes two prctl calls
    // (async-signal-safe) on memory built before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let prog = SockFprog {
                len: program.len() as u16,
                filter: program.as_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const SockFprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn config(backend: SocketAddr, ws: SocketAddr, server_extra: &str, tls: Option<(&str, &str)>) -> String {
    let tls_listener = match tls {
        Some((cert, key)) => {
            format!("[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener.tls]]\ncert = \"{cert}\"\nkey = \"{key}\"\n")
        }
        None => String::new(),
    };
    format!(
        "[server]\nworkers = 2\n{server_extra}\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n{tls_listener}\
         [upstream.app]\nservers = [\"{backend}\"]\n[upstream.ws]\nservers = [\"{ws}\"]\n\
         [[route]]\nprefix = \"/ws\"\nupstream = \"ws\"\n[[route]]\nprefix = \"/\"\nupstream = \"app\"\n"
    )
}

fn ready_line(p: &Ringway) -> String {
    let log = p.stderr();
    log.lines()
        .find(|l| l.starts_with("ringway: ready"))
        .unwrap_or_else(|| panic!("no ready line:\n{log}"))
        .to_string()
}

fn admin(p: &Ringway) -> String {
    format!("http://{}", p.admin_addr())
}

/// The `ringway_io_driver` lines of `/metrics`, e.g. `ringway_io_driver{driver="epoll",reason="seccomp"} 2`.
fn driver_metrics(p: &Ringway) -> Vec<String> {
    let m = get(&format!("{}/metrics", admin(p)));
    assert_eq!(m.status(), 200);
    m.text()
        .lines()
        .filter(|l| l.starts_with("ringway_io_driver{"))
        .map(str::to_string)
        .collect()
}

fn status_json(p: &Ringway) -> serde_json::Value {
    let s = get(&format!("{}/status.json", admin(p)));
    assert_eq!(s.status(), 200);
    serde_json::from_slice(s.body()).expect("status.json parses")
}

/// Whether the process holds an io_uring instance (an `anon_inode:[io_uring]` descriptor).
fn holds_io_uring(p: &Ringway) -> bool {
    p.fd_targets().iter().any(|t| t.contains("io_uring"))
}

/// A request, a TLS request and a WebSocket round trip through `p`.
fn serves_everything(p: &Ringway) {
    let r = get(&p.url("/hello?x=1"));
    assert_eq!(r.echo().url, "/hello?x=1");

    let tls_port = p.addrs[1].port();
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{tls_port}/over-tls"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "TLS request through ringway: {text}");
    assert!(text.contains("/over-tls"), "TLS request reached the backend: {text}");

    let stream = TcpStream::connect(p.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, resp) = tungstenite::client(format!("ws://{}/ws", p.addr()), stream).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::Binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b == big, "200 KB message changed in the tunnel"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    ws.send(Message::Text("bye".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("bye".into()));
}

/// A self-signed certificate for `localhost` written into `dir`: (cert path, key path).
fn cert(dir: &TempDir) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.write("cert.pem", &c.cert.pem());
    let key = dir.write("key.pem", &c.key_pair.serialize_pem());
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn blocked_io_uring_serves_on_epoll_and_says_why_everywhere() {
    let (backend, dir) = (Backend::echo(), TempDir::new());
    let (c, k) = cert(&dir);
    let p = Ringway::start_with(
        &config(backend.addr, ws_echo_server(), "", Some((&c, &k))),
        block_io_uring,
    );
    assert_eq!(
        ready_line(&p),
        "ringway: ready (2 workers, epoll driver: a seccomp filter denies io_uring_setup)"
    );
    let log = p.stderr();
    let why = log
        .lines()
        .find_map(|l| l.strip_prefix("ringway: epoll driver: "))
        .unwrap_or_else(|| panic!("no line saying why epoll:\n{log}"));
    for words in ["EPERM", "seccomp", "io_uring_enter", "io_driver = \"epoll\""] {
        assert!(why.contains(words), "the reason names {words}: {why}");
    }
    assert!(
        !holds_io_uring(&p),
        "no io_uring descriptor under the filter: {:?}",
        p.fd_targets()
    );

    assert_eq!(
        driver_metrics(&p),
        [
            "ringway_io_driver{driver=\"io_uring\",reason=\"\"} 0",
            "ringway_io_driver{driver=\"epoll\",reason=\"seccomp\"} 2"
        ]
    );
    let status = status_json(&p);
    assert_eq!(status["io_driver"], "epoll");
    assert_eq!(status["io_driver_reason"].as_str(), Some(why));
    let page = get(&format!("{}/", admin(&p)));
    assert!(
        page.text().contains("id=\"io-driver-reason\""),
        "the status page shows why"
    );

    serves_everything(&p);
    // Still epoll after traffic (nothing set a ring up later).
    assert!(!holds_io_uring(&p));
}

#[test]
fn io_driver_io_uring_refuses_to_start_where_blocked_naming_the_cause() {
    let dir = TempDir::new();
    let path = dir.write(
        "ringway.toml",
        &config(
            common::refused_addr(),
            common::refused_addr(),
            "io_driver = \"io_uring\"",
            None,
        ),
    );
    let path = path.to_str().unwrap();
    let out = run_cli_with(&["--config", path], block_io_uring);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr_of(&out);
    assert!(!err.contains("ringway: ready"), "{err}");
    for words in ["io_driver = \"io_uring\"", "EPERM", "seccomp"] {
        assert!(err.contains(words), "the error names {words}: {err}");
    }

    // `ringway check` on the same host says so without starting.
    let out = run_cli_with(&["check", "--config", path], block_io_uring);
    let text = stdout_of(&out);
    assert!(
        text.contains("io driver: none on this host, ringway would not start: io_driver = \"io_uring\" but io_uring_setup was refused (EPERM)"),
        "{text}"
    );
}

#[test]
fn check_says_which_driver_this_host_gives() {
    let dir = TempDir::new();
    let path = dir.write(
        "ringway.toml",
        &config(common::refused_addr(), common::refused_addr(), "", None),
    );
    let path = path.to_str().unwrap();
    let blocked = stdout_of(&run_cli_with(&["check", "--config", path], block_io_uring));
    assert!(
        blocked.contains("io driver: epoll (io_uring_setup was refused (EPERM) by this process's seccomp filter"),
        "{blocked}"
    );
    let forced = stdout_of(&run_cli_with(&["check", "--config", path], |c| {
        c.env(FORCE_EPOLL, "1");
    }));
    assert!(
        forced.contains("io driver: epoll (MONOIO_FORCE_LEGACY_DRIVER is set in the environment) on this host"),
        "{forced}"
    );
}

#[test]
fn io_driver_epoll_is_honoured_where_io_uring_works() {
    let backend = Backend::echo();
    let p = Ringway::start_with(
        &config(backend.addr, ws_echo_server(), "io_driver = \"epoll\"", None),
        |c| {
            c.env_remove(FORCE_EPOLL);
        },
    );
    assert_eq!(
        ready_line(&p),
        "ringway: ready (2 workers, epoll driver: io_driver = \"epoll\")"
    );
    assert!(!holds_io_uring(&p));
    assert_eq!(
        driver_metrics(&p)[1],
        "ringway_io_driver{driver=\"epoll\",reason=\"configured\"} 2"
    );
    assert_eq!(get(&p.url("/e")).echo().url, "/e");
}

/// Without a filter, `auto` gives what `ringway check` predicts for this host (io_uring on a
/// kernel that has it, with the ring really held); an explicit `io_uring` wins over the test
/// suite's epoll override.
#[test]
fn auto_matches_check_and_explicit_io_uring_beats_the_environment() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let cfg = config(backend.addr, ws_echo_server(), "", None);
    let path = dir.write("ringway.toml", &cfg);
    let predicted = stdout_of(&run_cli_with(&["check", "--config", path.to_str().unwrap()], |c| {
        c.env_remove(FORCE_EPOLL);
    }));
    let p = Ringway::start_with(&cfg, |c| {
        c.env_remove(FORCE_EPOLL);
    });
    if predicted.contains("io driver: io_uring on this host") {
        assert_eq!(ready_line(&p), "ringway: ready (2 workers, io_uring driver)");
        assert!(holds_io_uring(&p), "{:?}", p.fd_targets());
        assert_eq!(
            driver_metrics(&p),
            [
                "ringway_io_driver{driver=\"io_uring\",reason=\"\"} 2",
                "ringway_io_driver{driver=\"epoll\",reason=\"\"} 0"
            ]
        );
        assert_eq!(status_json(&p)["io_driver_reason"], "");

        let explicit = Ringway::start_with(
            &config(backend.addr, ws_echo_server(), "io_driver = \"io_uring\"", None),
            |c| {
                c.env(FORCE_EPOLL, "1");
            },
        );
        assert_eq!(ready_line(&explicit), "ringway: ready (2 workers, io_uring driver)");
        assert_eq!(get(&explicit.url("/u")).echo().url, "/u");
    } else {
        assert!(ready_line(&p).contains("epoll driver: "), "{predicted}");
    }
    assert_eq!(get(&p.url("/a")).echo().url, "/a");
}
