//! Listening sockets, one per worker per listener, bound with SO_REUSEPORT so the kernel spreads
//! connections across workers without a shared accept lock.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const BACKLOG: i32 = 4096;

fn socket_for(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

/// Binds `count` sockets to `addr`. Port 0 is resolved once, so every worker shares the port.
///
/// SO_REUSEPORT would let a second server bind the same port silently and take half the
/// connections; a probe bind without it first turns that mistake into a clear start-up error.
pub fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 {
        let probe = socket_for(addr, false)?;
        match probe.bind(&addr.into()) {
            Ok(()) => {}
            // Connections left by a previous process (FIN-WAIT-2 after a crash or kill) also
            // make the probe fail; only a listening socket means the port is really taken.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && !listener_stays(addr) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{addr} is already in use by another process"),
                ))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))),
        }
    }
    bind_more(addr, count)
}

/// How long a listener seen on the port is given to go away before it counts as taken.
const LISTENER_GRACE: Duration = Duration::from_secs(1);

/// Whether a listener on `addr`'s port is still there after [`LISTENER_GRACE`]. A process just
/// killed while accepting through io_uring leaves its listening socket open for some
/// milliseconds after it has been reaped (the kernel tears its ring, which holds the socket for
/// the pending accept, down asynchronously): a restart right after a crash must not take that
/// for another server.
fn listener_stays(addr: SocketAddr) -> bool {
    let until = Instant::now() + LISTENER_GRACE;
    while someone_listens(addr) {
        if Instant::now() >= until {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether a TCP socket listens on `addr`'s port at an overlapping address (the same IP, or a
/// wildcard on either side), per /proc/net/tcp and tcp6. Unreadable tables count as "yes".
fn someone_listens(addr: SocketAddr) -> bool {
    let mut tables = 0;
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        tables += 1;
        if text.lines().skip(1).any(|l| listens_on(l, v6, addr)) {
            return true;
        }
    }
    tables == 0
}

/// One /proc/net/tcp{,6} line: `sl local_address rem_address st ...`, addresses as hex words
/// in host byte order, state 0A = LISTEN.
fn listens_on(line: &str, v6: bool, addr: SocketAddr) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(local), Some(state)) = (fields.nth(1), fields.nth(1)) else {
        return false;
    };
    let Some((ip_hex, port_hex)) = local.split_once(':') else {
        return false;
    };
    if state != "0A" || u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
        return false;
    }
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip_hex.len()).step_by(8) {
        match ip_hex.get(i..i + 8).and_then(|w| u32::from_str_radix(w, 16).ok()) {
            Some(word) => bytes.extend_from_slice(&word.to_le_bytes()),
            None => return false,
        }
    }
    let ip: std::net::IpAddr = match (v6, <[u8; 4]>::try_from(&bytes[..]), <[u8; 16]>::try_from(&bytes[..])) {
        (false, Ok(b), _) => b.into(),
        (true, _, Ok(b)) => std::net::Ipv6Addr::from(b).to_canonical(),
        _ => return false,
    };
    ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified()
}

/// Binds `count` more SO_REUSEPORT sockets to `addr`, joining the sockets already there (a
/// takeover with more workers than the old process had). No probe: the port is ours.
pub fn bind_more(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let s = socket_for(bound, true)?;
        s.bind(&bound.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {bound}: {e}")))?;
        s.listen(BACKLOG)?;
        let l: TcpListener = s.into();
        bound = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1 1";
        assert!(listens_on(v4, false, a));
        assert!(
            !listens_on(&v4.replace(" 0A ", " 05 "), false, a),
            "FIN-WAIT-2 is not listening"
        );
        assert!(!listens_on(&v4.replace(":1F90", ":1F91"), false, a), "another port");
        let other: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        assert!(!listens_on(v4, false, other));
        assert!(listens_on(v4, false, "0.0.0.0:8080".parse().unwrap()));
        let any6 = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0";
        assert!(listens_on(any6, true, a), "[::] covers every address");
        let lo6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0";
        assert!(listens_on(lo6, true, "[::1]:8080".parse().unwrap()));
        assert!(!listens_on(lo6, true, a));
    }

    #[test]
    fn a_live_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(someone_listens(l.local_addr().unwrap()));
    }
}
