//! Keep-alive pool of idle upstream connections, one per worker (no locks): LIFO per server so
//! the warmest connection is reused first; entries idle longer than the upstream's
//! `keepalive_timeout` are closed instead of reused, and so are entries the server has already
//! closed (or sent stray bytes on) while they sat idle, when the request could not be sent again:
//! those are found with a non-blocking peek before any byte is written, so a non-idempotent request
//! never lands on a dead connection. Idempotent requests skip the peek (a syscall per request) and
//! are retried on a fresh connection if the pooled one turns out closed.

use super::UpstreamConn;
use crate::config::Plan;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::time::Instant;

struct Idle {
    stream: UpstreamConn,
    since: Instant,
}

pub struct ConnPool {
    /// `slots[upstream][server]`.
    slots: RefCell<Vec<Vec<Vec<Idle>>>>,
}

impl ConnPool {
    pub fn new(plan: &Plan) -> Self {
        let slots = plan
            .upstreams
            .iter()
            .map(|u| u.servers.iter().map(|_| Vec::new()).collect())
            .collect();
        ConnPool {
            slots: RefCell::new(slots),
        }
    }

    /// The warmest usable idle connection; with `must_be_alive`, only one the server has not
    /// closed.
    pub fn take(&self, plan: &Plan, upstream: usize, server: usize, must_be_alive: bool) -> Option<UpstreamConn> {
        let max_idle = plan.upstreams[upstream].keepalive_timeout;
        let mut slots = self.slots.borrow_mut();
        let list = &mut slots[upstream][server];
        while let Some(idle) = list.pop() {
            if crate::io::clock::now().saturating_duration_since(idle.since) >= max_idle {
                // Older entries sit below this one: they are older still.
                list.clear();
                break;
            }
            if !must_be_alive || quiet(idle.stream.tcp()) {
                return Some(idle.stream);
            }
            // Closed by the server (or holding bytes nobody asked for): drop it, try the next.
        }
        None
    }

    pub fn put(&self, plan: &Plan, upstream: usize, server: usize, stream: UpstreamConn) {
        let cap = plan.upstreams[upstream].keepalive;
        let mut slots = self.slots.borrow_mut();
        let list = &mut slots[upstream][server];
        if list.len() >= cap {
            if cap == 0 {
                return;
            }
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: crate::io::clock::now(),
        });
    }

    /// Closes every idle connection (a draining worker gives the servers their slots back).
    pub fn clear(&self) {
        // Taken out first, closed (dropped) once the borrow has ended.
        let idle: Vec<Idle> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .flatten()
            .flat_map(std::mem::take)
            .collect();
        drop(idle);
    }

    /// Idle connections pooled for one server (for the metrics).
    pub fn idle_of(&self, upstream: usize, server: usize) -> usize {
        self.slots.borrow()[upstream][server].len()
    }

    pub fn idle_count(&self) -> usize {
        self.slots.borrow().iter().flatten().map(Vec::len).sum()
    }
}

/// An idle connection is usable only while it has nothing to read: no FIN, no RST, no bytes.
fn quiet(stream: &monoio::net::TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most one byte into `byte`, which lives across the call; the fd is
    // owned by `stream`, borrowed for the call. MSG_PEEK leaves any data in the socket.
    let rc = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    rc < 0 && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN))
}
