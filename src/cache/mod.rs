//! The response cache, one per worker: each worker owns `[cache] size / workers` bytes of
//! entries in its own context, so nothing here is shared or locked on the request path.
//! `policy` holds the RFC 9111 rules, `key` the cache keys, `store` the entries with LRU
//! eviction by bytes, `fill` the copy of a body taken while it streams to the client, and
//! `purge` the admin endpoint's requests. Concurrent misses for one key are coalesced here: the
//! first request fills the entry, the others wait for it (`Turn`).
//!
//! The exchange drives it (`exchange::cached`): look up, serve a hit, or forward and fill.

pub mod fill;
pub mod key;
pub mod policy;
pub mod purge;
pub mod store;

pub use fill::Fill;
pub use purge::PurgeBoard;
pub use store::{Entry, Fields};

use crate::config::CachePlan;
use purge::Catch;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use store::Store;

/// One worker's cache.
pub struct WorkerCache {
    store: RefCell<Store>,
    /// Keys being filled now, with the requests waiting for them.
    pending: RefCell<HashMap<Box<str>, Rc<Pending>>>,
    pub max_object: usize,
    purges: Arc<PurgeBoard>,
    purged_to: Cell<u64>,
}

/// What a lookup found.
pub struct Found {
    /// The full key for this request.
    pub key: Box<str>,
    /// The `Vary` names it was built with.
    pub vary: Rc<[Box<str>]>,
    pub entry: Option<Rc<Entry>>,
}

impl WorkerCache {
    pub fn new(plan: &CachePlan, workers: usize, purges: Arc<PurgeBoard>) -> WorkerCache {
        let share = (plan.size / workers.max(1) as u64).max(1);
        WorkerCache {
            store: RefCell::new(Store::new(share as usize)),
            pending: RefCell::new(HashMap::new()),
            max_object: plan.max_object.min(share) as usize,
            purges,
            purged_to: Cell::new(0),
        }
    }

    /// Applies purges the admin endpoint asked for since the last look.
    fn catch_up(&self) {
        let mut seen = self.purged_to.get();
        match self.purges.since(&mut seen) {
            Catch::Nothing => return,
            Catch::Prefixes(list) => {
                let mut s = self.store.borrow_mut();
                for p in list {
                    s.purge(&p);
                }
            }
            Catch::Everything => {
                let mut s = self.store.borrow_mut();
                s.purge("");
            }
        }
        self.purged_to.set(seen);
    }

    /// Finds the entry for a request with primary key `primary` and header fields `request`.
    pub fn lookup(&self, primary: &str, request: &[httparse::Header<'_>]) -> Found {
        self.catch_up();
        let mut s = self.store.borrow_mut();
        let vary = s.vary_of(primary).unwrap_or_else(|| Rc::from(Vec::new()));
        let key = key::full(primary, &vary, request);
        let entry = s.get(&key);
        Found { key, vary, entry }
    }

    /// Stores a response; returns how many entries were evicted for it.
    pub fn insert(&self, primary: &str, vary: Rc<[Box<str>]>, key: Box<str>, entry: Entry) -> u64 {
        self.store.borrow_mut().insert(primary, vary, key, entry)
    }

    /// Replaces a stale entry with its revalidated copy.
    pub fn refresh(&self, key: &str, entry: Entry) {
        self.store.borrow_mut().refresh(key, entry)
    }

    pub fn remove(&self, key: &str) {
        self.store.borrow_mut().remove(key);
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.store.borrow().used()
    }

    /// Whether this request fills `key` or waits for the request already filling it.
    pub fn turn<'c>(&'c self, key: &str) -> Turn<'c> {
        let mut pending = self.pending.borrow_mut();
        if let Some(p) = pending.get(key) {
            return Turn::Wait(Wait(p.clone()));
        }
        let p = Rc::new(Pending::default());
        pending.insert(key.into(), p.clone());
        Turn::Lead(Lead {
            cache: self,
            key: key.into(),
            pending: p,
        })
    }
}

#[derive(Default)]
pub struct Pending {
    done: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

pub enum Turn<'c> {
    /// Fill the entry; the others are released when this is dropped.
    Lead(Lead<'c>),
    /// Another request is filling it.
    Wait(Wait),
}

/// The request filling a key; dropping it (stored, not storable, failed) releases the waiters.
pub struct Lead<'c> {
    cache: &'c WorkerCache,
    key: Box<str>,
    pending: Rc<Pending>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.cache.pending.borrow_mut().remove(&self.key);
        self.pending.done.set(true);
        for w in self.pending.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// Waits until the filling request ends.
pub struct Wait(Rc<Pending>);

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.done.get() {
            return Poll::Ready(());
        }
        let mut wakers = self.0.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
