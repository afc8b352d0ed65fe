//! Purge requests from the admin endpoint to the workers. The admin thread appends a prefix
//! and bumps a generation number; each worker compares the generation with the last one it
//! applied when it next looks in its cache (one atomic load on the request path) and, only
//! when it changed, takes the short lock to read the new prefixes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Prefixes remembered for workers that have not applied them yet; a worker further behind
/// drops its whole cache instead.
const KEPT: usize = 1024;

#[derive(Default)]
pub struct PurgeBoard {
    generation: AtomicU64,
    /// (generation, prefix), oldest first.
    prefixes: Mutex<Vec<(u64, String)>>,
}

/// What a worker must drop to catch up.
pub enum Catch {
    Nothing,
    Prefixes(Vec<String>),
    Everything,
}

impl PurgeBoard {
    /// Asks every worker to drop the entries whose path starts with `prefix`.
    pub fn request(&self, prefix: &str) {
        let mut list = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let g = self.generation.load(Ordering::Relaxed) + 1;
        list.push((g, prefix.to_string()));
        if list.len() > KEPT {
            let extra = list.len() - KEPT;
            list.drain(..extra);
        }
        self.generation.store(g, Ordering::Release);
    }

    /// What changed since generation `seen`; updates `seen`.
    pub fn since(&self, seen: &mut u64) -> Catch {
        let g = self.generation.load(Ordering::Acquire);
        if g == *seen {
            return Catch::Nothing;
        }
        let list = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let catch = match list.first() {
            Some(&(oldest, _)) if oldest <= *seen + 1 => Catch::Prefixes(
                list.iter()
                    .filter(|(n, _)| *n > *seen)
                    .map(|(_, p)| p.clone())
                    .collect(),
            ),
            _ => Catch::Everything,
        };
        *seen = list.last().map(|(n, _)| *n).unwrap_or(g);
        catch
    }
}
