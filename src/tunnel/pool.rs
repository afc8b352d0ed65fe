//! Per-worker state of the splice relay: a pool of kernel pipes and the tunnels' shared timer. A
//! tunnel borrows a pipe only while bytes are in flight and gives it back once the pipe is empty,
//! so idle tunnels hold no pipe and the per-user pipe budget (`fs.pipe-user-pages-soft`) is spent
//! on active transfers only.

use std::cell::{Cell, RefCell};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use super::timer::SharedTimers;
use crate::io::fd as sys;

/// Pipe capacity asked of the kernel when none is given (also Linux's default capacity).
pub const DEFAULT_PIPE_SIZE: usize = 64 * 1024;
/// Idle pipes a pool keeps by default; more are closed when returned.
pub const DEFAULT_MAX_IDLE_PIPES: usize = 64;

/// A non-blocking pipe and its capacity in bytes.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

/// Empty pipes for one worker thread, and the one timer all of the worker's splice tunnels share
/// for their idle and lifetime deadlines (see `timer.rs`). Not `Send`: each worker owns its pool
/// and uses it without locks.
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    timers: Rc<SharedTimers>,
    pipe_size: usize,
    max_idle: usize,
    in_use: Cell<usize>,
    created: Cell<u64>,
    _one_thread: PhantomData<*const ()>,
}

impl PipePool {
    /// A pool whose pipes are resized to `pipe_size` bytes (0 keeps the kernel's default) and which
    /// keeps at most `max_idle` empty pipes. Pipes are created lazily.
    pub fn new(pipe_size: usize, max_idle: usize) -> Self {
        PipePool {
            idle: RefCell::new(Vec::new()),
            timers: Rc::default(),
            pipe_size,
            max_idle,
            in_use: Cell::new(0),
            created: Cell::new(0),
            _one_thread: PhantomData,
        }
    }

    /// Empty pipes waiting in the pool (each holds 2 fds).
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Pipes currently lent to tunnels with bytes in flight.
    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }

    /// Pipes created since the pool was made (a counter for metrics: reuse keeps it low).
    pub fn created(&self) -> u64 {
        self.created.get()
    }

    /// Tunnel deadlines currently parked on this worker's shared timer.
    pub fn armed_timers(&self) -> usize {
        self.timers.pending()
    }

    pub(crate) fn timers(&self) -> &Rc<SharedTimers> {
        &self.timers
    }

    /// Lends an empty pipe, creating one when the pool has none.
    pub(crate) fn lend(&self) -> io::Result<LentPipe<'_>> {
        let pooled = self.idle.borrow_mut().pop();
        let pipe = match pooled {
            Some(pipe) => pipe,
            None => self.create()?,
        };
        self.in_use.set(self.in_use.get() + 1);
        Ok(LentPipe {
            pool: self,
            pipe: Some(pipe),
            filled: 0,
        })
    }

    fn create(&self) -> io::Result<Pipe> {
        let (read, write) = sys::pipe()?;
        // Once the user's pipe budget is spent the kernel refuses to grow pipes (EPERM) and hands
        // out small ones; a small pipe still relays, only in smaller steps.
        let granted = if self.pipe_size > 0 {
            sys::set_pipe_size(write.as_fd(), self.pipe_size).ok()
        } else {
            None
        };
        let capacity = match granted {
            Some(bytes) => bytes,
            None => sys::pipe_size(write.as_fd()).unwrap_or(4096),
        };
        self.created.set(self.created.get() + 1);
        Ok(Pipe {
            read,
            write,
            capacity: capacity.max(1),
        })
    }

    fn give_back(&self, pipe: Pipe, empty: bool) {
        self.in_use.set(self.in_use.get() - 1);
        let mut idle = self.idle.borrow_mut();
        // A pipe that still holds bytes (tunnel ended mid-transfer) must never be lent again.
        if empty && idle.len() < self.max_idle {
            idle.push(pipe);
        }
    }
}

impl Default for PipePool {
    fn default() -> Self {
        PipePool::new(DEFAULT_PIPE_SIZE, DEFAULT_MAX_IDLE_PIPES)
    }
}

/// A pipe on loan from a [`PipePool`]; returns to it on drop if empty, otherwise it is closed.
pub(crate) struct LentPipe<'p> {
    pool: &'p PipePool,
    pipe: Option<Pipe>,
    /// Bytes spliced into the pipe and not yet out of it.
    pub(crate) filled: usize,
}

impl LentPipe<'_> {
    fn pipe(&self) -> &Pipe {
        self.pipe.as_ref().expect("pipe present until drop")
    }

    pub(crate) fn read_end(&self) -> BorrowedFd<'_> {
        self.pipe().read.as_fd()
    }

    pub(crate) fn write_end(&self) -> BorrowedFd<'_> {
        self.pipe().write.as_fd()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.pipe().capacity
    }
}

impl Drop for LentPipe<'_> {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.pool.give_back(pipe, self.filled == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_reuses_and_caps_idle_pipes() {
        let pool = PipePool::new(DEFAULT_PIPE_SIZE, 2);
        let a = pool.lend().unwrap();
        let b = pool.lend().unwrap();
        let c = pool.lend().unwrap();
        assert_eq!((pool.in_use(), pool.idle(), pool.created()), (3, 0, 3));
        assert!(a.capacity() >= 4096);
        drop((a, b, c));
        assert_eq!(
            (pool.in_use(), pool.idle()),
            (0, 2),
            "the third pipe is closed, not kept"
        );
        let d = pool.lend().unwrap();
        assert_eq!((pool.idle(), pool.created()), (1, 3), "an idle pipe is reused");
        drop(d);
    }

    #[test]
    fn a_refused_size_falls_back_to_the_pipe_the_kernel_gave() {
        // Above fs.pipe-max-size (1 MiB here) an unprivileged F_SETPIPE_SZ fails with EPERM, as
        // it does once the user's pipe budget is spent: the pipe is still usable.
        let pool = PipePool::new(64 * 1024 * 1024, 1);
        let pipe = pool.lend().unwrap();
        assert!(pipe.capacity() >= 4096);
    }

    #[test]
    fn a_pipe_with_bytes_in_it_is_not_returned() {
        let pool = PipePool::new(DEFAULT_PIPE_SIZE, 8);
        let mut pipe = pool.lend().unwrap();
        pipe.filled = 10;
        drop(pipe);
        assert_eq!((pool.in_use(), pool.idle()), (0, 0));
    }
}
