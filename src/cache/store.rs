//! One worker's stored responses, bounded by bytes with least-recently-used eviction. An entry
//! is found by its full key: the primary key (host, path and query, identity on authenticated
//! routes) followed by the request's values of the fields the stored response's `Vary` names.
//! The `Vary` names of the latest response for each primary key are kept beside the entries,
//! so a lookup knows which request fields make its full key.

use super::policy::Freshness;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Header fields as (name, value) pairs.
pub type Fields = Vec<(Box<[u8]>, Box<[u8]>)>;

/// A stored response, ready to be sent again.
pub struct Entry {
    pub status: u16,
    pub reason: Box<str>,
    /// The client's head fields as the response step built them, less the ones that belong to
    /// one request or connection (framing, Set-Cookie, CORS, HSTS, Age).
    pub fields: Fields,
    pub body: Bytes,
    pub fresh: Freshness,
    /// When it was received (or last revalidated).
    pub stored: Instant,
    pub etag: Option<Box<[u8]>>,
    pub last_modified: Option<Box<[u8]>>,
    /// The client's path and query, which purges match.
    pub path: Box<str>,
}

/// Bookkeeping bytes counted per entry besides its fields and body.
const ENTRY_OVERHEAD: usize = 256;

impl Entry {
    pub fn size(&self) -> usize {
        let fields: usize = self.fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        ENTRY_OVERHEAD + fields + self.body.len() + self.path.len() + self.reason.len()
    }

    pub fn age(&self, now: Instant) -> Duration {
        self.fresh.initial_age + now.saturating_duration_since(self.stored)
    }

    /// Fresh: may be served without asking the upstream.
    pub fn is_fresh(&self, now: Instant) -> bool {
        !self.fresh.always_revalidate && self.age(now) < self.fresh.lifetime
    }

    /// Can be revalidated with a conditional request.
    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

struct Slot {
    entry: Rc<Entry>,
    tick: u64,
    primary_len: usize,
}

/// The variants stored under one primary key.
struct Variants {
    vary: Rc<[Box<str>]>,
    keys: Vec<Box<str>>,
}

/// A worker's entries and their recency.
pub struct Store {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<Box<str>, Slot>,
    /// Least recently used first.
    order: BTreeMap<u64, Box<str>>,
    variants: HashMap<Box<str>, Variants>,
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        Store {
            capacity,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            variants: HashMap::new(),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `Vary` names of what is stored under `primary` (None: nothing is).
    pub fn vary_of(&self, primary: &str) -> Option<Rc<[Box<str>]>> {
        self.variants.get(primary).map(|v| v.vary.clone())
    }

    /// The entry under `key`, marked as just used.
    pub fn get(&mut self, key: &str) -> Option<Rc<Entry>> {
        let slot = self.entries.get_mut(key)?;
        self.tick += 1;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(self.tick, k);
        }
        slot.tick = self.tick;
        Some(slot.entry.clone())
    }

    /// Stores `entry` under `key` (which starts with `primary`), replacing what was there;
    /// returns how many other entries were evicted to make room. An entry larger than the
    /// whole store is not kept.
    pub fn insert(&mut self, primary: &str, vary: Rc<[Box<str>]>, key: Box<str>, entry: Entry) -> u64 {
        debug_assert!(key.starts_with(primary));
        self.remove(&key);
        let size = entry.size();
        if size > self.capacity {
            return 0;
        }
        // A response that varies on other fields than the stored ones replaces all of them.
        if self.variants.get(primary).is_some_and(|v| v.vary != vary) {
            self.remove_primary(primary);
        }
        let mut evicted = 0;
        while self.used + size > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.remove(&oldest);
            evicted += 1;
        }
        self.tick += 1;
        self.used += size;
        self.order.insert(self.tick, key.clone());
        self.variants
            .entry(primary.into())
            .or_insert_with(|| Variants { vary, keys: Vec::new() })
            .keys
            .push(key.clone());
        let slot = Slot {
            entry: Rc::new(entry),
            tick: self.tick,
            primary_len: primary.len(),
        };
        self.entries.insert(key, slot);
        evicted
    }

    /// Drops the entry under `key`, if any.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.entries.remove(key) else {
            return false;
        };
        self.used -= slot.entry.size();
        self.order.remove(&slot.tick);
        let primary = &key[..slot.primary_len];
        if let Some(v) = self.variants.get_mut(primary) {
            v.keys.retain(|k| &**k != key);
            if v.keys.is_empty() {
                self.variants.remove(primary);
            }
        }
        true
    }

    fn remove_primary(&mut self, primary: &str) {
        if let Some(v) = self.variants.remove(primary) {
            for k in v.keys {
                if let Some(slot) = self.entries.remove(&k) {
                    self.used -= slot.entry.size();
                    self.order.remove(&slot.tick);
                }
            }
        }
    }

    /// Puts a revalidated entry in place of the stale one (same key and size class).
    pub fn refresh(&mut self, key: &str, entry: Entry) {
        let Some(slot) = self.entries.get_mut(key) else { return };
        self.used = self.used - slot.entry.size() + entry.size();
        slot.entry = Rc::new(entry);
    }

    /// Drops every entry whose client path starts with `prefix`; returns how many.
    pub fn purge(&mut self, prefix: &str) -> usize {
        let doomed: Vec<Box<str>> = self
            .entries
            .iter()
            .filter(|(_, s)| s.entry.path.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.remove(k);
        }
        doomed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, len: usize) -> Entry {
        Entry {
            status: 200,
            reason: "OK".into(),
            fields: Vec::new(),
            body: Bytes::from(vec![b'x'; len]),
            fresh: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::ZERO,
                always_revalidate: false,
                immutable: false,
            },
            stored: Instant::now(),
            etag: None,
            last_modified: None,
            path: path.into(),
        }
    }

    fn none() -> Rc<[Box<str>]> {
        Rc::from(Vec::new())
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let one = entry("/a", 1000).size();
        let mut s = Store::new(one * 3);
        for p in ["/a", "/b", "/c"] {
            assert_eq!(s.insert(p, none(), p.into(), entry(p, 1000)), 0);
        }
        assert!(s.get("/a").is_some());
        assert_eq!(s.insert("/d", none(), "/d".into(), entry("/d", 1000)), 1);
        assert!(s.get("/b").is_none(), "the least recently used goes first");
        assert!(s.get("/a").is_some() && s.get("/c").is_some() && s.get("/d").is_some());
        assert!(s.used() <= one * 3);
        // Larger than the whole store: not kept, nothing evicted.
        assert_eq!(s.insert("/e", none(), "/e".into(), entry("/e", one * 4)), 0);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn variants_and_purge() {
        let mut s = Store::new(1 << 20);
        let vary: Rc<[Box<str>]> = Rc::from(vec!["accept".into()]);
        s.insert("/x", vary.clone(), "/x\0accept=a".into(), entry("/x", 10));
        s.insert("/x", vary.clone(), "/x\0accept=b".into(), entry("/x", 10));
        assert_eq!(s.len(), 2);
        assert_eq!(s.vary_of("/x").as_deref(), Some(&*vary));
        // The response now varies on something else: the old variants go.
        s.insert("/x", none(), "/x".into(), entry("/x", 10));
        assert_eq!(s.len(), 1);
        s.insert("/y/1", none(), "/y/1".into(), entry("/y/1", 10));
        assert_eq!(s.purge("/y/"), 1);
        assert_eq!(s.len(), 1);
        assert!(s.remove("/x"));
        assert!(s.is_empty() && s.used() == 0 && s.vary_of("/x").is_none());
    }
}
