//! Giving memory back to the system. mimalloc keeps pages a thread freed for its next
//! allocations; after a burst of connections closes on a worker that then stays quiet, that is
//! the burst's whole peak held for as long as the quiet lasts. [`collect`] asks the allocator to
//! return what this thread freed; [`Collector`] decides when, from the worker's count of open
//! connections sampled once a second, so the request path pays nothing.

/// Returns memory this thread freed to the system (mimalloc purges its free pages and frees the
/// segments it no longer needs). Takes a few hundred microseconds after a large burst.
pub fn collect() {
    // SAFETY: mi_collect takes no pointers and only walks the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Collects when a worker's open connections have fallen well below their level since the last
/// collection: after a burst, not during one, and never on a worker whose load is steady.
#[derive(Default)]
pub struct Collector {
    /// The most connections open at once since the last collection.
    peak: usize,
}

/// A fall smaller than this is ordinary churn, not the end of a burst.
const MIN_FALL: usize = 64;

impl Collector {
    /// Notes the current count; `true` when the allocator should collect now: the count fell to
    /// half its peak or less, by at least [`MIN_FALL`] connections.
    pub fn should_collect(&mut self, open: usize) -> bool {
        self.peak = self.peak.max(open);
        if self.peak >= open + MIN_FALL && open <= self.peak / 2 {
            self.peak = open;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_after_a_burst_falls_not_during_it() {
        let mut c = Collector::default();
        assert!(!c.should_collect(10));
        assert!(!c.should_collect(4000));
        assert!(!c.should_collect(2500));
        assert!(c.should_collect(1900));
        // The peak is now 1900: a further fall to 1000 collects again, a small one does not.
        assert!(!c.should_collect(1800));
        assert!(c.should_collect(900));
        assert!(c.should_collect(0), "900 to 0 is the end of a burst too");
        assert!(!c.should_collect(0));
    }

    #[test]
    fn small_worker_never_collects() {
        let mut c = Collector::default();
        for n in [0, 30, 5, 60, 0, 63, 0] {
            assert!(!c.should_collect(n));
        }
    }

    #[test]
    fn collect_runs() {
        let v = vec![1u8; 1 << 20];
        drop(v);
        collect();
    }
}
