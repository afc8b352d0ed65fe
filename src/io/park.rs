//! A worker's parked connections: idle plain keep-alive client connections held outside any
//! task. A parked connection is its socket (an owned fd, registered in the set's own epoll
//! instance) and a boxed closure that holds whatever it needs to continue (its identity, its
//! guards) and turns the socket back into a connection task when bytes arrive. Nothing else
//! stays allocated for it: no future, no task, no runtime socket record, no timer.
//!
//! The worker's park task waits for the epoll fd through the runtime ([`ParkSet::watch`]) and
//! then collects the ready connections ([`ParkSet::take_ready`]). Deadlines stay with the drain
//! registry (`drain`): its sweep shuts a parked socket down at its keep-alive deadline, and
//! `close_idle` at shutdown; either hang-up makes the socket ready, and the park task then
//! drops it (closing the fd and dropping its guards) instead of resuming it.

use super::epoll::{Epoll, Event};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A resumed connection's task: its peer (for the panic message of `server::contain`) and its
/// future.
pub type Resumed = (SocketAddr, Pin<Box<dyn Future<Output = ()>>>);

/// What a parked connection keeps to continue: called with its socket when bytes arrive;
/// `None` when it cannot continue (the socket then closes). Dropped unused, it closes the
/// connection.
pub type Resume = Box<dyn FnOnce(OwnedFd) -> Option<Resumed>>;

struct Parked {
    fd: OwnedFd,
    resume: Resume,
}

/// Ready connections collected per `epoll_wait`.
const READY_BATCH: usize = 64;

/// The park set of one worker, owned by its `WorkerCtx`.
pub struct ParkSet {
    epoll: Option<Epoll>,
    /// Whether a park task watches the set: parking is refused until one does (and after its
    /// watch failed), so no connection is parked where nothing would wake it.
    watched: Cell<bool>,
    /// Set by [`ParkSet::stop`]; the park task's waker, to be told.
    stopped: Cell<bool>,
    stop_waker: Cell<Option<Waker>>,
    entries: RefCell<Entries>,
}

#[derive(Default)]
struct Entries {
    slots: Vec<Option<Parked>>,
    free: Vec<usize>,
}

impl Default for ParkSet {
    fn default() -> Self {
        ParkSet {
            // Without an epoll instance (fd exhaustion at start) connections wait in their tasks.
            epoll: Epoll::new().ok(),
            watched: Cell::new(false),
            stopped: Cell::new(false),
            stop_waker: Cell::new(None),
            entries: RefCell::default(),
        }
    }
}

impl ParkSet {
    /// Whether a connection parked now would be woken.
    pub fn accepts(&self) -> bool {
        self.watched.get() && !self.stopped.get() && self.epoll.is_some()
    }

    /// How many connections are parked.
    pub fn len(&self) -> usize {
        let e = self.entries.borrow();
        e.slots.len() - e.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parks `fd` until it is readable or hung up. On failure `resume` is dropped, which
    /// closes the connection: the caller has already given its socket away.
    pub fn park(&self, fd: OwnedFd, resume: Resume) -> io::Result<()> {
        let Some(epoll) = self.epoll.as_ref().filter(|_| self.accepts()) else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let mut e = self.entries.borrow_mut();
        let slot = match e.free.pop() {
            Some(i) => i,
            None => {
                e.slots.push(None);
                e.slots.len() - 1
            }
        };
        if let Err(err) = epoll.add(fd.as_fd(), slot as u64) {
            e.free.push(slot);
            return Err(err);
        }
        e.slots[slot] = Some(Parked { fd, resume });
        Ok(())
    }

    /// The epoll fd as a runtime socket whose `readable()` is the park task's wait, and marks
    /// the set as watched. monoio waits for readiness only on its own socket types, and an
    /// epoll fd is readable exactly when it has events ready: a `UnixStream` built from a
    /// duplicate of it is only ever waited on (`readable`, never read or written), which works
    /// the same through io_uring (a poll request on the fd) and the epoll driver (the fd
    /// registered in the runtime's own epoll instance, edge-triggered: hence
    /// [`ParkSet::take_ready`] empties the set's ready list every time).
    pub fn watch(&self) -> io::Result<monoio::net::UnixStream> {
        let epoll = self.epoll.as_ref().ok_or(io::ErrorKind::Unsupported)?;
        if self.stopped.get() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let dup = epoll.as_fd().try_clone_to_owned()?;
        let watcher = monoio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(dup))?;
        self.watched.set(true);
        Ok(watcher)
    }

    /// Stops parking (the worker ends, or the watch failed): connections already parked close,
    /// and the park task is told to end ([`ParkSet::poll_stopped`]).
    pub fn stop(&self) {
        self.watched.set(false);
        self.stopped.set(true);
        self.close_all();
        if let Some(w) = self.stop_waker.take() {
            w.wake();
        }
    }

    /// Ready once [`ParkSet::stop`] was called; the park task polls it beside its wait.
    pub fn poll_stopped(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopped.get() {
            return Poll::Ready(());
        }
        self.stop_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Takes every connection that is ready now out of the set. Those with bytes to read (or
    /// whose peer only stopped sending) are returned with their resume closures; those hung
    /// up or in error (including the drain registry's shutdown at their deadline) are dropped,
    /// which closes them.
    pub fn take_ready(&self) -> Vec<(OwnedFd, Resume)> {
        let Some(epoll) = self.epoll.as_ref() else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        let mut closed = Vec::new();
        let mut events: Vec<Event> = Vec::with_capacity(READY_BATCH);
        loop {
            events.clear();
            let n = epoll.ready(&mut events).unwrap_or(0);
            let mut e = self.entries.borrow_mut();
            for ev in &events {
                let slot = ev.token as usize;
                let Some(parked) = e.slots.get_mut(slot).and_then(Option::take) else {
                    continue;
                };
                e.free.push(slot);
                epoll.remove(parked.fd.as_fd());
                if ev.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    closed.push(parked);
                } else {
                    ready.push((parked.fd, parked.resume));
                }
            }
            drop(e);
            // A short batch: nothing more is ready.
            if n < READY_BATCH {
                break;
            }
        }
        // Dropped outside the borrow: a connection's guards may reach into the worker.
        drop(closed);
        ready
    }

    /// Closes every parked connection.
    pub fn close_all(&self) {
        let parked: Vec<Parked> = {
            let mut e = self.entries.borrow_mut();
            let taken = e.slots.drain(..).flatten().collect();
            e.free.clear();
            taken
        };
        if let Some(epoll) = &self.epoll {
            for p in &parked {
                epoll.remove(p.fd.as_fd());
            }
        }
        drop(parked);
    }
}

impl Drop for ParkSet {
    fn drop(&mut self) {
        self.close_all();
    }
}
