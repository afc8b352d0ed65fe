//! Listening sockets, one per worker per listener, bound with SO_REUSEPORT so the kernel spreads
//! connections across workers without a shared accept lock.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

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
        probe.bind(&addr.into()).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(e.kind(), format!("{addr} is already in use by another process"))
            } else {
                io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))
            }
        })?;
    }
    bind_more(addr, count)
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
