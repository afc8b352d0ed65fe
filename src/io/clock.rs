//! The time, read at most once per poll of a client connection.
//!
//! One proxied request asks for the time about a dozen times (the deadline of each read and
//! write, its duration for metrics and the log, the upstream pool's idle stamps), each a vDSO
//! `clock_gettime`. Within one poll of a connection's future those readings would be
//! microseconds apart, so the first is kept and the rest reuse it. `deadline::Scoped` opens a
//! fresh window at the start of every poll and closes it at the end, so a kept value is never
//! older than the poll that read it, and code outside a connection's poll (tunnels, health
//! checks, the accept loop) always reads the real clock.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    /// `Some(cached)` while a connection is being polled (`Some(None)` until first read).
    static WINDOW: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// Now, as of the current poll of the current connection (the real clock outside one).
pub fn now() -> Instant {
    WINDOW.with(|w| match w.get() {
        Some(Some(t)) => t,
        Some(None) => {
            let t = Instant::now();
            w.set(Some(Some(t)));
            t
        }
        None => Instant::now(),
    })
}

/// Opens a window for one poll; the returned guard closes it (restoring an enclosing one,
/// refreshed) when the poll ends, also when it unwinds.
pub fn window() -> Window {
    Window(WINDOW.with(|w| w.replace(Some(None))).is_some())
}

pub struct Window(bool);

impl Drop for Window {
    fn drop(&mut self) {
        WINDOW.with(|w| w.set(self.0.then_some(None)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_reading_per_window_and_real_time_outside() {
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > outside, "outside a window every call reads the clock");
        let w = window();
        let first = now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(now(), first, "inside a window the first reading is kept");
        drop(w);
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > first);
        let _w = window();
        assert!(now() > first, "a new window reads the clock again");
    }
}
