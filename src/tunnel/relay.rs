//! What both relays share: the two directions run as two futures polled by one task, next to one
//! timer that enforces the idle timeout and the maximum lifetime.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use monoio::time::{sleep_until, Instant, Sleep};

use super::{TunnelEnd, TunnelLimits};

/// When the tunnel started and when a byte last moved either way.
pub(crate) struct Activity {
    started: Instant,
    last: Cell<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Activity {
            started: now,
            last: Cell::new(now),
        }
    }

    /// Records that bytes moved (one clock read per relayed chunk, no timer update).
    pub(crate) fn touch(&self) {
        self.last.set(Instant::now());
    }

    fn idle_end(&self, limits: &TunnelLimits) -> Option<Instant> {
        self.last.get().checked_add(limits.idle_timeout)
    }

    fn lifetime_end(&self, limits: &TunnelLimits) -> Option<Instant> {
        self.started.checked_add(limits.max_lifetime?)
    }

    fn next_deadline(&self, limits: &TunnelLimits) -> Option<Instant> {
        match (self.idle_end(limits), self.lifetime_end(limits)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn expired(&self, limits: &TunnelLimits, now: Instant) -> Option<TunnelEnd> {
        if self.lifetime_end(limits).is_some_and(|end| end <= now) {
            return Some(TunnelEnd::MaxLifetime);
        }
        if self.idle_end(limits).is_some_and(|end| end <= now) {
            return Some(TunnelEnd::IdleTimeout);
        }
        None
    }
}

/// Runs both directions until both have ended cleanly (`BothClosed`), one fails, or the timer
/// fires. The timer is re-armed lazily: bytes only touch a `Cell`, and the sleep is moved forward
/// when it fires early.
///
/// The legs are pinned by the caller where they are created (passing them by value would let
/// the state machine keep a second slot for each), and the timer lives in its own allocation:
/// this future is held for the whole life of a mostly idle tunnel, so its size is its cost.
pub(crate) async fn run_both<A, B>(
    mut c2u: Pin<&mut A>,
    mut u2c: Pin<&mut B>,
    limits: &TunnelLimits,
    activity: &Activity,
) -> TunnelEnd
where
    A: Future<Output = Result<(), TunnelEnd>>,
    B: Future<Output = Result<(), TunnelEnd>>,
{
    let (mut c2u_done, mut u2c_done) = (false, false);
    let mut timer: Option<Pin<Box<Sleep>>> = activity.next_deadline(limits).map(|d| Box::pin(sleep_until(d)));
    poll_fn(|cx| {
        if !c2u_done {
            if let Poll::Ready(result) = c2u.as_mut().poll(cx) {
                if let Err(end) = result {
                    return Poll::Ready(end);
                }
                c2u_done = true;
            }
        }
        if !u2c_done {
            if let Poll::Ready(result) = u2c.as_mut().poll(cx) {
                if let Err(end) = result {
                    return Poll::Ready(end);
                }
                u2c_done = true;
            }
        }
        if c2u_done && u2c_done {
            return Poll::Ready(TunnelEnd::BothClosed);
        }
        while let Some(sleep) = timer.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                break;
            }
            if let Some(end) = activity.expired(limits, Instant::now()) {
                return Poll::Ready(end);
            }
            match activity.next_deadline(limits) {
                Some(deadline) => sleep.as_mut().reset(deadline),
                None => timer = None,
            }
        }
        Poll::Pending
    })
    .await
}

/// Chunks a direction may relay back to back before it lets the worker's other tasks run.
const CHUNKS_PER_TURN: u32 = 16;

/// Keeps one busy tunnel from starving the worker: readiness waits and reads that complete at
/// once never return `Pending`, so a steady stream would otherwise never yield.
pub(crate) struct Budget(u32);

impl Budget {
    pub(crate) fn new() -> Self {
        Budget(CHUNKS_PER_TURN)
    }

    pub(crate) async fn spend(&mut self) {
        self.0 -= 1;
        if self.0 == 0 {
            self.0 = CHUNKS_PER_TURN;
            let mut yielded = false;
            poll_fn(|cx| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
        }
    }
}
