//! Deadlines for the reads and writes of one client connection, without a timer per operation.
//!
//! `monoio::time::timeout` puts an entry into the timer wheel when the operation goes pending and
//! takes it out when it completes: on a keep-alive connection that is four inserts and four
//! removals per request, and every timeout future carries a 640-byte `Sleep` that is moved with it.
//! Here a connection owns one lazily armed timer instead. An operation only checks that the timer
//! will fire no later than its own deadline; a timer armed earlier is left alone and, when it
//! fires early, simply re-armed for the deadline still pending. So a busy connection re-arms its
//! timer about once per timeout period, not four times per request.
//!
//! The connection's timer is found through [`scoped`], which makes it current while the
//! connection's future is being polled (a task-local in effect). Outside such a scope (tunnels,
//! health checks) [`timeout`] falls back to a one-off timer.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::time::{sleep_until, Instant, Sleep};

/// The deadline passed before the operation completed.
#[derive(Debug)]
pub struct Elapsed;

/// One connection's timer: a `Sleep` created on first use and re-armed in place.
#[derive(Default)]
pub struct ConnTimer {
    sleep: RefCell<Option<Pin<Box<Sleep>>>>,
    /// When the sleep is set to fire, while it has not been seen firing.
    armed: Cell<Option<Instant>>,
}

impl ConnTimer {
    /// Ready once `deadline` has passed; otherwise makes sure the task is woken by then.
    fn poll_until(&self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.sleep.borrow_mut();
        loop {
            // An earlier alarm is good enough: it wakes us, and we re-arm then.
            let rearm = self.armed.get().is_none_or(|at| at > deadline);
            let sleep = match slot.as_mut() {
                Some(sleep) => {
                    if rearm {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => slot.insert(Box::pin(sleep_until(deadline))),
            };
            if rearm {
                self.armed.set(Some(deadline));
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let fired_for = self.armed.take();
                    // Armed for exactly this deadline (the wheel's tick may round it), or past it.
                    if fired_for.is_some_and(|at| at >= deadline) || Instant::now() >= deadline {
                        return Poll::Ready(());
                    }
                    // It fired for an earlier deadline: loop to arm ours.
                }
            }
        }
    }
}

impl ConnTimer {
    /// Frees the timer's `Sleep` (640 bytes) until the connection's next timed operation: an
    /// idle keep-alive connection's wait is timed by the worker's idle sweep (`drain`).
    pub fn release(&self) {
        self.sleep.borrow_mut().take();
        self.armed.set(None);
    }
}

/// The timer of the connection being polled, if any.
pub fn current_timer() -> Option<Rc<ConnTimer>> {
    current()
}

thread_local! {
    static CURRENT: Cell<Option<Rc<ConnTimer>>> = const { Cell::new(None) };
}

fn current() -> Option<Rc<ConnTimer>> {
    CURRENT.with(|c| {
        let t = c.take();
        let copy = t.clone();
        c.set(t);
        copy
    })
}

/// Restores the previous current timer when a poll ends, also when it unwinds.
struct Restore(Option<Rc<ConnTimer>>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0.take()));
    }
}

/// One client connection's future, polled with its own timer current for every [`timeout`]
/// inside it. The future is boxed, so this wrapper is Unpin without unsafe pin projection, and the
/// connection's state is stored once (an `async fn` wrapper could keep a second copy of it).
pub struct Scoped<F> {
    timer: Rc<ConnTimer>,
    fut: Pin<Box<F>>,
}

pub fn scoped<F: Future>(fut: F) -> Scoped<F> {
    Scoped {
        timer: Rc::default(),
        fut: Box::pin(fut),
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(this.timer.clone()))));
        let _clock = crate::io::clock::window();
        this.fut.as_mut().poll(cx)
    }
}

/// `fut` with a time limit `t`: on the current connection's timer inside [`scoped`], else on a
/// timer of its own. Callers pin the operation where it stands (`pin!(op)`) and lend it: an
/// owned `fut` would be moved into this future and once more to be pinned.
pub async fn timeout<F: Future + Unpin>(t: Duration, mut fut: F) -> Result<F::Output, Elapsed> {
    // One async layer only: every layer would move `fut` (an I/O future) once more.
    let shared = current();
    let own;
    let timer = match &shared {
        Some(timer) => &**timer,
        None => {
            own = ConnTimer::default();
            &own
        }
    };
    let deadline = Instant::from_std(crate::io::clock::now()) + t;
    poll_fn(|cx| {
        if let Poll::Ready(v) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(Ok(v));
        }
        timer.poll_until(deadline, cx).map(|()| Err(Elapsed))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    fn block_on<F: Future>(fut: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(fut)
    }

    #[test]
    fn completes_before_the_deadline() {
        let r = block_on(scoped(async {
            timeout(
                Duration::from_secs(5),
                pin!(monoio::time::sleep(Duration::from_millis(5))),
            )
            .await
        }));
        assert!(r.is_ok());
    }

    #[test]
    fn elapses_on_time_inside_and_outside_a_scope() {
        for scope in [true, false] {
            let run = async {
                let start = Instant::now();
                let r = timeout(
                    Duration::from_millis(30),
                    pin!(monoio::time::sleep(Duration::from_secs(5))),
                )
                .await;
                (r.is_err(), start.elapsed())
            };
            let (elapsed, took) = if scope { block_on(scoped(run)) } else { block_on(run) };
            assert!(elapsed);
            assert!(
                took >= Duration::from_millis(30) && took < Duration::from_secs(2),
                "{took:?}"
            );
        }
    }

    #[test]
    fn a_long_deadline_armed_first_does_not_delay_a_short_one() {
        let took = block_on(scoped(async {
            // Arms the connection timer far out, then a short operation must still time out soon.
            let ok = timeout(
                Duration::from_secs(60),
                pin!(monoio::time::sleep(Duration::from_millis(1))),
            )
            .await;
            assert!(ok.is_ok());
            let start = Instant::now();
            let r = timeout(
                Duration::from_millis(20),
                pin!(monoio::time::sleep(Duration::from_secs(5))),
            )
            .await;
            assert!(r.is_err());
            start.elapsed()
        }));
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn an_early_alarm_is_re_armed_for_the_later_deadline() {
        let (r, took) = block_on(scoped(async {
            // A short deadline arms the timer, then completes; the next operation's longer deadline
            // must survive the stale alarm firing underneath it.
            let ok = timeout(
                Duration::from_millis(10),
                pin!(monoio::time::sleep(Duration::from_millis(1))),
            )
            .await;
            assert!(ok.is_ok());
            let start = Instant::now();
            let r = timeout(
                Duration::from_millis(80),
                pin!(monoio::time::sleep(Duration::from_millis(40))),
            )
            .await;
            (r, start.elapsed())
        }));
        assert!(r.is_ok(), "timed out after {took:?}");
    }

    #[test]
    fn two_operations_in_one_task_keep_their_own_deadlines() {
        let (short, long) = block_on(scoped(async {
            let a = timeout(
                Duration::from_millis(20),
                Box::pin(monoio::time::sleep(Duration::from_secs(5))),
            );
            let b = timeout(
                Duration::from_millis(200),
                Box::pin(monoio::time::sleep(Duration::from_millis(60))),
            );
            let (a, b) = monoio::join!(a, b);
            (a.is_err(), b.is_ok())
        }));
        assert!(short && long);
    }
}
