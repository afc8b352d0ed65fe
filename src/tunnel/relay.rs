//! What both relays share: the two directions run as two futures polled by one task, next to a
//! timer that enforces the idle timeout and the maximum lifetime.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;

use monoio::time::Instant;

use super::timer::RelayTimer;
use super::{TunnelEnd, TunnelLimits};

/// The two ends of a tunnel, to report a failure against the right one.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Client,
    Upstream,
}

impl Side {
    pub(crate) fn failed(self, e: io::Error) -> TunnelEnd {
        match self {
            Side::Client => TunnelEnd::ClientError(e),
            Side::Upstream => TunnelEnd::UpstreamError(e),
        }
    }

    pub(crate) fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

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
/// fires. The timer is re-armed lazily: bytes only touch a `Cell`, and the timer is moved forward
/// when it fires early.
///
/// The caller pins the directions and the timer in its own state and lends them here: an async
/// fn taking futures by value would store them twice (arguments stay in an async fn's state).
pub(crate) fn drive<'a, A, B, T>(
    mut c2u: Pin<&'a mut A>,
    mut u2c: Pin<&'a mut B>,
    mut timer: Pin<&'a mut T>,
    limits: &'a TunnelLimits,
    activity: &'a Activity,
) -> impl Future<Output = TunnelEnd> + 'a
where
    A: Future<Output = Result<(), TunnelEnd>>,
    B: Future<Output = Result<(), TunnelEnd>>,
    T: RelayTimer,
{
    if let Some(deadline) = activity.next_deadline(limits) {
        timer.as_mut().arm(deadline);
    }
    let (mut c2u_done, mut u2c_done) = (false, false);
    poll_fn(move |cx| {
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
        while timer.as_mut().poll_fire(cx).is_ready() {
            if let Some(end) = activity.expired(limits, Instant::now()) {
                return Poll::Ready(end);
            }
            match activity.next_deadline(limits) {
                Some(deadline) => timer.as_mut().arm(deadline),
                None => break,
            }
        }
        Poll::Pending
    })
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
