//! Deadlines for tunnels. A monoio `Sleep` is 640 bytes (its timer entry is cache-padded to 128
//! bytes), a third of an idle splice tunnel's state, so splice tunnels share one sleeping task per
//! worker instead: each parks its deadline and waker in an ordered map kept by the worker's
//! [`PipePool`](super::PipePool), and the ticker task sleeps until the earliest one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::time::{sleep_until, Instant, Sleep};

/// A timer a relay arms at a deadline and polls; re-armed only when it fires (bytes moving
/// between two polls do not touch it).
pub(crate) trait RelayTimer {
    fn arm(self: Pin<&mut Self>, at: Instant);
    /// Ready once the armed deadline has passed (then disarmed); never ready when disarmed.
    fn poll_fire(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A timer of its own (used by the copy relay, whose idle cost is dominated by its buffers).
impl RelayTimer for Option<Sleep> {
    fn arm(mut self: Pin<&mut Self>, at: Instant) {
        match self.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(at),
            None => self.set(Some(sleep_until(at))),
        }
    }

    fn poll_fire(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Pending,
        }
    }
}

type Key = (Instant, u64);

/// The deadlines of one worker's tunnels.
#[derive(Default)]
pub(crate) struct SharedTimers {
    entries: RefCell<BTreeMap<Key, Waker>>,
    next_id: Cell<u64>,
    ticker_running: Cell<bool>,
    /// The ticker's waker while it sleeps, to move it forward when an earlier deadline arrives.
    ticker: RefCell<Option<Waker>>,
}

impl SharedTimers {
    /// Deadlines parked right now (one per armed tunnel).
    pub(crate) fn pending(&self) -> usize {
        self.entries.borrow().len()
    }

    fn insert(self: &Rc<Self>, at: Instant, waker: &Waker) -> Key {
        let key = (at, self.next_id.get());
        self.next_id.set(key.1.wrapping_add(1));
        let earliest = {
            let mut entries = self.entries.borrow_mut();
            entries.insert(key, waker.clone());
            entries.first_key_value().map(|(k, _)| *k) == Some(key)
        };
        if !self.ticker_running.get() {
            self.ticker_running.set(true);
            monoio::spawn(ticker(self.clone()));
        } else if earliest {
            if let Some(ticker) = self.ticker.borrow_mut().take() {
                ticker.wake();
            }
        }
        key
    }

    fn remove(&self, key: &Key) {
        self.entries.borrow_mut().remove(key);
    }

    /// The first entry due at `now`, taken out of the map.
    fn pop_due(&self, now: Instant) -> Option<Waker> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    fn earliest(&self) -> Option<Instant> {
        self.entries.borrow().first_key_value().map(|(k, _)| k.0)
    }
}

/// One worker task for all deadlines: wakes the due tunnels, sleeps until the next deadline, and
/// exits when none is left (the next deadline spawns it again).
async fn ticker(timers: Rc<SharedTimers>) {
    let mut sleep = pin!(sleep_until(Instant::now()));
    poll_fn(|cx| loop {
        let now = Instant::now();
        while let Some(waker) = timers.pop_due(now) {
            waker.wake();
        }
        let Some(next) = timers.earliest() else {
            timers.ticker_running.set(false);
            timers.ticker.borrow_mut().take();
            return Poll::Ready(());
        };
        // Every entry left is in the future; re-arming an elapsed sleep too means a sleep that
        // fired early can never spin this loop.
        if sleep.deadline() != next || sleep.is_elapsed() {
            sleep.as_mut().reset(next);
        }
        *timers.ticker.borrow_mut() = Some(cx.waker().clone());
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// A tunnel's handle on the worker's shared timer: at most one parked entry, removed on drop.
pub(crate) struct SharedDeadline<'t> {
    timers: &'t Rc<SharedTimers>,
    at: Option<Instant>,
    parked: Option<Key>,
}

impl<'t> SharedDeadline<'t> {
    pub(crate) fn new(timers: &'t Rc<SharedTimers>) -> Self {
        SharedDeadline {
            timers,
            at: None,
            parked: None,
        }
    }

    fn unpark(&mut self) {
        if let Some(key) = self.parked.take() {
            self.timers.remove(&key);
        }
    }
}

impl RelayTimer for SharedDeadline<'_> {
    fn arm(self: Pin<&mut Self>, at: Instant) {
        self.get_mut().at = Some(at);
    }

    fn poll_fire(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        let Some(at) = me.at else {
            return Poll::Pending;
        };
        if let Some(key) = me.parked.filter(|key| key.0 == at) {
            // Still parked (the ticker takes entries out when they are due): keep waiting.
            let mut entries = me.timers.entries.borrow_mut();
            if let Some(waker) = entries.get_mut(&key) {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                return Poll::Pending;
            }
        }
        me.unpark();
        if at <= Instant::now() {
            me.at = None;
            return Poll::Ready(());
        }
        me.parked = Some(me.timers.insert(at, cx.waker()));
        Poll::Pending
    }
}

impl Drop for SharedDeadline<'_> {
    fn drop(&mut self) {
        self.unpark();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    > {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    async fn fire_at(timers: &Rc<SharedTimers>, at: Instant) {
        let mut deadline = pin!(SharedDeadline::new(timers));
        deadline.as_mut().arm(at);
        poll_fn(|cx| deadline.as_mut().poll_fire(cx)).await;
    }

    #[test]
    fn an_earlier_deadline_wakes_the_sleeping_ticker() {
        runtime().block_on(async {
            let timers = Rc::new(SharedTimers::default());
            let start = Instant::now();
            {
                // A late deadline first: the ticker goes to sleep until it.
                let mut late = pin!(SharedDeadline::new(&timers));
                late.as_mut().arm(start + Duration::from_secs(5));
                poll_fn(|cx| {
                    assert!(late.as_mut().poll_fire(cx).is_pending());
                    Poll::Ready(())
                })
                .await;
                monoio::time::sleep(Duration::from_millis(10)).await;
                assert_eq!(timers.pending(), 1);

                fire_at(&timers, start + Duration::from_millis(100)).await;
                let waited = start.elapsed();
                assert!(waited >= Duration::from_millis(100), "{waited:?}");
                assert!(waited < Duration::from_millis(400), "{waited:?}");
                assert_eq!(timers.pending(), 1, "the late deadline is still parked");
            }
            assert_eq!(timers.pending(), 0, "a dropped deadline leaves no entry");
        });
    }

    #[test]
    fn rearming_moves_the_deadline_and_past_deadlines_fire_at_once() {
        runtime().block_on(async {
            let timers = Rc::new(SharedTimers::default());
            let start = Instant::now();
            let mut deadline = pin!(SharedDeadline::new(&timers));
            deadline.as_mut().arm(start + Duration::from_millis(50));
            poll_fn(|cx| {
                assert!(deadline.as_mut().poll_fire(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            // Activity moved the deadline: the relay re-arms when the old one fires.
            poll_fn(|cx| deadline.as_mut().poll_fire(cx)).await;
            assert!(start.elapsed() >= Duration::from_millis(50));
            deadline.as_mut().arm(start + Duration::from_millis(120));
            poll_fn(|cx| deadline.as_mut().poll_fire(cx)).await;
            assert!(start.elapsed() >= Duration::from_millis(120));
            assert_eq!(timers.pending(), 0);

            fire_at(&timers, start).await;
        });
    }
}
