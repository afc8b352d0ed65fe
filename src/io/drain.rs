//! A worker's drain state: each client connection has a slot here (its socket and whether it
//! waits idle between requests); draining shuts the idle ones' sockets down, which ends their
//! pending reads with end-of-stream wherever they are parked. The request path takes no lock:
//! two `RefCell` stores per keep-alive cycle. `server::shutdown` tells the worker when to begin.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;

/// A worker's drain state and its connections, owned by its `WorkerCtx`.
#[derive(Default)]
pub struct Drain {
    draining: Cell<bool>,
    conns: RefCell<Conns>,
}

#[derive(Default)]
struct Conns {
    slots: Vec<Conn>,
    free: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Conn {
    fd: RawFd,
    idle: bool,
}

/// A connection without a slot (`ringway route`, benches): never shut down from here.
pub const NO_SLOT: usize = usize::MAX;

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Gives an accepted connection a slot; [`Drain::leave`] it when the connection ends,
    /// before anything else runs on this worker (the fd number is only meaningful until then).
    pub fn join(&self, fd: RawFd) -> usize {
        let mut c = self.conns.borrow_mut();
        let conn = Conn { fd, idle: false };
        match c.free.pop() {
            Some(i) => {
                c.slots[i] = conn;
                i
            }
            None => {
                c.slots.push(conn);
                c.slots.len() - 1
            }
        }
    }

    pub fn leave(&self, slot: usize) {
        let mut c = self.conns.borrow_mut();
        if let Some(conn) = c.slots.get_mut(slot) {
            *conn = Conn { fd: -1, idle: false };
            c.free.push(slot);
        }
    }

    /// Marks a connection as waiting for its next request (true) or busy (false).
    pub fn set_idle(&self, slot: usize, idle: bool) {
        if let Some(conn) = self.conns.borrow_mut().slots.get_mut(slot) {
            conn.idle = idle;
        }
    }

    /// Starts draining: every idle keep-alive connection's socket is shut down, so its wait
    /// ends (and the connection closes) now; busy ones see the flag after their response.
    pub fn begin(&self) {
        self.draining.set(true);
        let idle: Vec<RawFd> = self
            .conns
            .borrow()
            .slots
            .iter()
            .filter(|c| c.idle && c.fd >= 0)
            .map(|c| c.fd)
            .collect();
        for fd in idle {
            shutdown_both(fd);
        }
    }
}

fn shutdown_both(fd: RawFd) {
    // SAFETY: shutdown(2) on an fd registered by an open connection of this worker (slots are
    // cleared when the connection ends, on this same thread); it touches no memory of ours.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream as StdUnixStream;

    #[test]
    fn begin_shuts_down_idle_connections_only() {
        let d = Drain::default();
        let (idle_here, mut idle_peer) = StdUnixStream::pair().unwrap();
        let (busy_here, busy_peer) = StdUnixStream::pair().unwrap();
        let a = d.join(idle_here.as_raw_fd());
        let b = d.join(busy_here.as_raw_fd());
        d.set_idle(a, true);
        d.set_idle(b, true);
        d.set_idle(b, false);
        d.begin();
        assert!(d.is_draining());
        let mut buf = [0u8; 1];
        assert_eq!(
            idle_peer.read(&mut buf).unwrap(),
            0,
            "the idle connection was shut down"
        );
        busy_peer.set_nonblocking(true).unwrap();
        assert!(
            (&busy_peer).read(&mut buf).is_err(),
            "the busy one is untouched (would block)"
        );
        d.leave(a);
        assert_eq!(d.join(busy_here.as_raw_fd()), a, "a freed slot is taken again");
    }
}
