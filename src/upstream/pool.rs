//! Keep-alive pool of idle upstream connections, one per worker (no locks): LIFO per server so
//! the warmest connection is reused first; entries idle longer than the upstream's
//! `keepalive_timeout` are closed instead of reused.

use super::UpstreamConn;
use crate::config::Plan;
use std::cell::RefCell;
use std::time::Instant;

struct Idle {
    stream: UpstreamConn,
    since: Instant,
}

pub struct ConnPool {
    /// `slots[upstream][server]`.
    slots: RefCell<Vec<Vec<Vec<Idle>>>>,
}

impl ConnPool {
    pub fn new(plan: &Plan) -> Self {
        let slots = plan
            .upstreams
            .iter()
            .map(|u| u.servers.iter().map(|_| Vec::new()).collect())
            .collect();
        ConnPool {
            slots: RefCell::new(slots),
        }
    }

    pub fn take(&self, plan: &Plan, upstream: usize, server: usize) -> Option<UpstreamConn> {
        let max_idle = plan.upstreams[upstream].keepalive_timeout;
        let mut slots = self.slots.borrow_mut();
        let list = &mut slots[upstream][server];
        while let Some(idle) = list.pop() {
            if idle.since.elapsed() < max_idle {
                return Some(idle.stream);
            }
            // Older entries sit below this one: they are older still.
            list.clear();
        }
        None
    }

    pub fn put(&self, plan: &Plan, upstream: usize, server: usize, stream: UpstreamConn) {
        let cap = plan.upstreams[upstream].keepalive;
        let mut slots = self.slots.borrow_mut();
        let list = &mut slots[upstream][server];
        if list.len() >= cap {
            if cap == 0 {
                return;
            }
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    pub fn idle_count(&self) -> usize {
        self.slots.borrow().iter().flatten().map(Vec::len).sum()
    }
}
