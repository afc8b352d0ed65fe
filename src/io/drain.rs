//! A worker's drain state: each client connection has a slot here (its socket and whether it
//! waits idle between requests). Draining has two steps. From [`Drain::begin`], every
//! connection stays open and its next response is its last (`Connection: close`), so a client
//! about to send on an idle keep-alive connection is answered, not cut (HAProxy's
//! `idle-close-on-response`). Near the end of `shutdown_timeout`, [`Drain::close_idle`] shuts
//! down the sockets of connections still idle, which ends their pending reads with
//! end-of-stream wherever they are parked. The request path takes no lock: two `RefCell`
//! stores per keep-alive cycle. `server::shutdown` tells the worker when to begin.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;

use super::deadline::ConnTimer;
use std::time::{Duration, Instant};

/// A worker's drain state and its connections, owned by its `WorkerCtx`.
pub struct Drain {
    draining: Cell<bool>,
    closing_idle: Cell<bool>,
    conns: RefCell<Conns>,
    /// The origin of the slots' times: milliseconds since it take half the room of an
    /// `Instant` in every slot.
    epoch: Instant,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: Cell::default(),
            closing_idle: Cell::default(),
            conns: RefCell::default(),
            epoch: Instant::now(),
        }
    }
}

#[derive(Default)]
struct Conns {
    slots: Vec<Conn>,
    free: Vec<usize>,
}

/// One connection's slot, kept for its whole life (idle ones included): 32 bytes.
#[derive(Clone)]
struct Conn {
    fd: RawFd,
    idle: bool,
    /// While the connection waits for a request: when the wait ends (see [`Drain::sweep`]), in
    /// [`Drain::millis`]; 0 when it does not wait.
    until: u64,
    /// While it waits: its timer, released by the sweep at `release` (in [`Drain::millis`]) if
    /// the wait still lasts (a busy connection keeps it from one request to the next).
    release: u64,
    timer: Option<Rc<ConnTimer>>,
}

impl Conn {
    const FREE: Conn = Conn {
        fd: -1,
        idle: false,
        until: 0,
        release: 0,
        timer: None,
    };
}

/// A connection without a slot (`ringway route`, benches): never shut down from here.
pub const NO_SLOT: usize = usize::MAX;

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Whether idle connections are being closed: a connection that becomes idle now closes.
    pub fn is_closing_idle(&self) -> bool {
        self.closing_idle.get()
    }

    /// Gives an accepted connection a slot; [`Drain::leave`] it when the connection ends,
    /// before anything else runs on this worker (the fd number is only meaningful until then).
    pub fn join(&self, fd: RawFd) -> usize {
        let mut c = self.conns.borrow_mut();
        let conn = Conn { fd, ..Conn::FREE };
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
            *conn = Conn::FREE;
            c.free.push(slot);
        }
    }

    /// The connection's socket is now `fd` (a parked connection holds a duplicate of the one
    /// it was accepted with).
    pub fn set_fd(&self, slot: usize, fd: RawFd) {
        if let Some(conn) = self.conns.borrow_mut().slots.get_mut(slot) {
            conn.fd = fd;
        }
    }

    /// Marks a connection as waiting for its next request (true) or busy (false).
    pub fn set_idle(&self, slot: usize, idle: bool) {
        if let Some(conn) = self.conns.borrow_mut().slots.get_mut(slot) {
            conn.idle = idle;
        }
    }

    /// Starts a connection's wait for a request at `now`, timed to end `wait` later (see
    /// [`Drain::sweep`]), `idle` as in [`Drain::set_idle`]; its timer, if it has one, goes to the
    /// sweep to release `keep` after `now` if the wait still lasts. One clock conversion and one
    /// slot update per wait.
    pub fn begin_wait(
        &self,
        slot: usize,
        now: Instant,
        wait: Duration,
        idle: bool,
        timer: Option<(Duration, Rc<ConnTimer>)>,
    ) {
        let base = self.millis(now);
        let after = |d: Duration| base.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if let Some(conn) = self.conns.borrow_mut().slots.get_mut(slot) {
            conn.idle = idle;
            conn.until = after(wait);
            if let Some((keep, timer)) = timer {
                conn.release = after(keep);
                conn.timer = Some(timer);
            }
        }
    }

    /// Ends a connection's wait for a request: busy again, untimed, its timer its own.
    pub fn end_wait(&self, slot: usize) {
        if let Some(conn) = self.conns.borrow_mut().slots.get_mut(slot) {
            conn.idle = false;
            conn.until = 0;
            conn.timer = None;
        }
    }

    /// `t` as milliseconds since the epoch, at least 1 (0 means no time in a slot). Rounded
    /// down: a deadline may pass up to a millisecond early, well inside the sweep's period.
    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// Shuts down the sockets of connections whose wait for a request passed its deadline (their
    /// reads then see end-of-stream). The worker calls this a few times a second.
    pub fn sweep(&self, now: Instant) {
        let now = self.millis(now);
        let mut conns = self.conns.borrow_mut();
        for c in conns.slots.iter_mut() {
            if c.timer.is_some() && c.release <= now {
                if let Some(timer) = c.timer.take() {
                    timer.release();
                }
            }
        }
        let expired: Vec<RawFd> = conns
            .slots
            .iter_mut()
            .filter(|c| c.fd >= 0 && c.until != 0 && c.until <= now)
            .map(|c| {
                c.until = 0;
                c.fd
            })
            .collect();
        drop(conns);
        for fd in expired {
            shutdown_both(fd);
        }
    }

    /// Starts draining: every connection's next response is its last. Nothing is closed yet.
    pub fn begin(&self) {
        self.draining.set(true);
    }

    /// Ends the wait of every idle keep-alive connection (shuts its socket down) and makes
    /// connections that go idle later close at once.
    pub fn close_idle(&self) {
        self.draining.set(true);
        self.closing_idle.set(true);
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
    fn close_idle_shuts_down_idle_connections_only() {
        let d = Drain::default();
        let (idle_here, mut idle_peer) = StdUnixStream::pair().unwrap();
        let (busy_here, busy_peer) = StdUnixStream::pair().unwrap();
        let a = d.join(idle_here.as_raw_fd());
        let b = d.join(busy_here.as_raw_fd());
        d.set_idle(a, true);
        d.set_idle(b, true);
        d.set_idle(b, false);
        d.begin();
        assert!(d.is_draining() && !d.is_closing_idle());
        busy_peer.set_nonblocking(true).unwrap();
        idle_peer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert!((&idle_peer).read(&mut buf).is_err(), "begin closes nothing");
        idle_peer.set_nonblocking(false).unwrap();
        d.close_idle();
        assert!(d.is_closing_idle());
        assert_eq!(
            idle_peer.read(&mut buf).unwrap(),
            0,
            "the idle connection was shut down"
        );
        assert!(
            (&busy_peer).read(&mut buf).is_err(),
            "the busy one is untouched (would block)"
        );
        d.leave(a);
        assert_eq!(d.join(busy_here.as_raw_fd()), a, "a freed slot is taken again");
    }

    #[test]
    fn a_slot_stays_small() {
        // Every open connection keeps one, idle or not.
        assert!(std::mem::size_of::<Conn>() <= 32, "{}", std::mem::size_of::<Conn>());
    }

    #[test]
    fn sweep_shuts_down_waits_past_their_deadline_only() {
        let d = Drain::default();
        let (late_here, mut late_peer) = StdUnixStream::pair().unwrap();
        let (early_here, early_peer) = StdUnixStream::pair().unwrap();
        let now = Instant::now();
        let late = d.join(late_here.as_raw_fd());
        let early = d.join(early_here.as_raw_fd());
        d.begin_wait(late, now, Duration::ZERO, false, None);
        d.begin_wait(early, now, Duration::from_secs(60), false, None);
        d.sweep(now);
        let mut buf = [0u8; 1];
        assert_eq!(late_peer.read(&mut buf).unwrap(), 0, "the expired wait was shut down");
        early_peer.set_nonblocking(true).unwrap();
        assert!((&early_peer).read(&mut buf).is_err(), "the other still waits");
        d.end_wait(early);
        d.sweep(now + Duration::from_secs(120));
        assert!((&early_peer).read(&mut buf).is_err(), "an ended wait is not timed");
    }
}
