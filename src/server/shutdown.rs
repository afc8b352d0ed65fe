//! Graceful shutdown inside one worker. The supervisor thread tells each worker to drain by
//! writing a byte to that worker's end of a socket pair (a cross-thread wake-up that works with
//! both monoio drivers); from then on the worker's [`Drain`] says so. Connections read the flag
//! only at their keep-alive boundary, and the idle keep-alive wait is the only place that parks
//! a waker here, so the request path takes no lock and pays one `Cell` read per request.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::task::{Poll, Waker};

/// A worker's drain state, owned by its `WorkerCtx`.
#[derive(Default)]
pub struct Drain {
    draining: Cell<bool>,
    /// Idle keep-alive connections waiting for a next request; woken when draining starts.
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining: every idle keep-alive wait ends (its connection closes).
    pub fn begin(&self) {
        self.draining.set(true);
        let wakers: Vec<Waker> = {
            let mut w = self.waiters.borrow_mut();
            w.free.clear();
            w.slots.drain(..).flatten().collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Runs `f` unless draining starts first: `None` then (`f` is dropped, which cancels its
    /// pending I/O). For waits that may be cut short, such as an idle keep-alive connection.
    pub async fn or_drain<F: Future>(&self, f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let mut slot = Slot { drain: self, key: None };
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if self.draining.get() {
                return Poll::Ready(None);
            }
            slot.park(cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// One parked waker; removed when the wait ends, however it ends.
struct Slot<'a> {
    drain: &'a Drain,
    key: Option<usize>,
}

impl Slot<'_> {
    fn park(&mut self, waker: &Waker) {
        let mut w = self.drain.waiters.borrow_mut();
        match self.key {
            Some(k) if k < w.slots.len() => match &mut w.slots[k] {
                Some(old) if old.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            },
            _ => {
                let k = match w.free.pop() {
                    Some(k) => {
                        w.slots[k] = Some(waker.clone());
                        k
                    }
                    None => {
                        w.slots.push(Some(waker.clone()));
                        w.slots.len() - 1
                    }
                };
                self.key = Some(k);
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let mut w = self.drain.waiters.borrow_mut();
            // After `begin` the table is empty and keys are stale: nothing to give back.
            if k < w.slots.len() {
                w.slots[k] = None;
                w.free.push(k);
            }
        }
    }
}

/// The supervisor's side of one worker's drain signal.
pub struct DrainHandle(StdUnixStream);

/// The worker's side: resolves once the supervisor asks for a drain (or is gone).
pub struct DrainSignal(StdUnixStream);

pub fn drain_pair() -> io::Result<(DrainHandle, DrainSignal)> {
    let (a, b) = StdUnixStream::pair()?;
    b.set_nonblocking(true)?;
    Ok((DrainHandle(a), DrainSignal(b)))
}

impl DrainHandle {
    pub fn start(&self) {
        use std::io::Write;
        let _ = (&self.0).write_all(b"d");
    }
}

impl DrainSignal {
    /// Registers the socket with the calling worker's runtime (so start-up can report failure).
    pub fn register(self) -> io::Result<Registered> {
        Ok(Registered(monoio::net::UnixStream::from_std(self.0)?))
    }
}

/// A [`DrainSignal`] inside its worker's runtime.
pub struct Registered(monoio::net::UnixStream);

impl Registered {
    /// Resolves once the supervisor calls [`DrainHandle::start`] (or is gone).
    pub async fn wait(mut self) {
        use monoio::io::AsyncReadRent;
        let (_res, _buf) = self.0.read(vec![0u8; 1]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_cleared_on_begin() {
        let d = Drain::default();
        let waker = std::task::Waker::noop();
        {
            let mut a = Slot { drain: &d, key: None };
            a.park(waker);
            let mut b = Slot { drain: &d, key: None };
            b.park(waker);
            assert_eq!((a.key, b.key), (Some(0), Some(1)));
        }
        assert_eq!(d.waiters.borrow().free.len(), 2);
        let mut c = Slot { drain: &d, key: None };
        c.park(waker);
        assert_eq!(d.waiters.borrow().slots.len(), 2, "a freed slot is taken again");
        d.begin();
        assert!(d.is_draining());
        drop(c);
        assert!(d.waiters.borrow().slots.is_empty());
    }
}
