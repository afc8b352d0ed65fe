//! Passive ejection, per worker (shared-nothing): a server that fails `max_fails` times in a row
//! (connect refused, unreachable, connect or response timeout) is skipped by this worker for
//! `cooldown`, or until the active prober reports a passed check, whichever comes first.

use crate::config::PassivePlan;
use std::cell::Cell;
use std::time::Instant;

#[derive(Default)]
pub struct Passive {
    fails: Cell<u32>,
    /// Ejected until this instant, unless the board's pass count moves past the recorded one.
    ejected: Cell<Option<(Instant, u64)>>,
}

impl Passive {
    /// Whether this worker may send to the server. `passes` is the board's current pass count.
    #[inline]
    pub fn allows(&self, passes: u64) -> bool {
        match self.ejected.get() {
            None => true,
            Some((until, seen)) => {
                if passes > seen || Instant::now() >= until {
                    self.ejected.set(None);
                    self.fails.set(0);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Counts a failure; returns true when this one ejected the server.
    pub fn failed(&self, plan: &PassivePlan, passes: u64) -> bool {
        let n = self.fails.get().saturating_add(1);
        self.fails.set(n);
        if n >= plan.max_fails && self.ejected.get().is_none() {
            self.ejected.set(Some((Instant::now() + plan.cooldown, passes)));
            return true;
        }
        false
    }

    #[inline]
    pub fn succeeded(&self) {
        if self.fails.get() != 0 {
            self.fails.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ejects_after_max_fails_and_returns_on_a_pass_or_cooldown() {
        let plan = PassivePlan {
            max_fails: 3,
            cooldown: Duration::from_secs(60),
        };
        let p = Passive::default();
        assert!(!p.failed(&plan, 7));
        p.succeeded();
        assert!(!p.failed(&plan, 7));
        assert!(!p.failed(&plan, 7));
        assert!(p.failed(&plan, 7));
        assert!(!p.allows(7));
        // An active check passed since: back at once.
        assert!(p.allows(8));

        let short = PassivePlan {
            max_fails: 1,
            cooldown: Duration::from_millis(20),
        };
        assert!(p.failed(&short, 8));
        assert!(!p.allows(8));
        std::thread::sleep(Duration::from_millis(30));
        assert!(p.allows(8));
    }
}
