//! Server selection algorithms, pure over the server list: each takes the weights, the caller's
//! per-worker state (cells) and a predicate saying which servers may be chosen right now (up, not
//! yet tried by this request, under the connection cap). None means no server qualifies.

use std::cell::Cell;

/// Smooth weighted round-robin (nginx's): every pick adds each eligible server's weight to its
/// running score, takes the highest, and subtracts the total from the winner. Weights 5,1,1 give
/// `a a b a c a a`, never a burst of five to one server.
pub fn smooth_wrr(current: &[Cell<i64>], weights: &[u32], ok: impl Fn(usize) -> bool) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<(usize, i64)> = None;
    for (i, w) in weights.iter().enumerate() {
        if !ok(i) {
            continue;
        }
        let w = i64::from(*w);
        let c = current[i].get() + w;
        current[i].set(c);
        total += w;
        if best.is_none_or(|(_, b)| c > b) {
            best = Some((i, c));
        }
    }
    let (i, c) = best?;
    current[i].set(c - total);
    Some(i)
}

/// Whether server `a` is less loaded than `b`, in-flight requests relative to weight
/// (`la / wa < lb / wb`, compared without division).
#[inline]
fn lighter(a: usize, b: usize, load: &impl Fn(usize) -> u32, weights: &[u32]) -> bool {
    u64::from(load(a)) * u64::from(weights[b]) < u64::from(load(b)) * u64::from(weights[a])
}

/// Fewest in-flight requests per unit of weight. The scan starts at `start` (rotated by the
/// caller) so ties spread instead of all going to the first server.
pub fn least_conn(
    start: usize,
    weights: &[u32],
    load: impl Fn(usize) -> u32,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = weights.len();
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if ok(i) && best.is_none_or(|b| lighter(i, b, &load, weights)) {
            best = Some(i);
        }
    }
    best
}

/// Power of two choices: two distinct random eligible servers, the less loaded wins. O(1) when most
/// servers are eligible; a random slot that is not eligible probes forward to the next one.
pub fn p2c(rng: &Cell<u64>, weights: &[u32], load: impl Fn(usize) -> u32, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let n = weights.len();
    if n == 0 {
        return None;
    }
    let r = next_random(rng);
    let probe = |from: usize| (0..n).map(|k| (from + k) % n).find(|&i| ok(i));
    let a = probe((r as usize) % n)?;
    // The second draw starts past the first so the two differ whenever two servers qualify.
    let b = if n > 1 {
        probe((a + 1 + ((r >> 32) as usize) % (n - 1)) % n)?
    } else {
        a
    };
    Some(if lighter(b, a, &load, weights) { b } else { a })
}

/// xorshift64*: cheap, per-worker, good enough to spread choices.
pub fn next_random(state: &Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

pub use crate::config::hash_ring::{hash64, HashRing};

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(n: usize) -> Vec<Cell<i64>> {
        (0..n).map(|_| Cell::new(0)).collect()
    }

    #[test]
    fn smooth_wrr_interleaves() {
        let c = cells(3);
        let seq: Vec<usize> = (0..7).map(|_| smooth_wrr(&c, &[5, 1, 1], |_| true).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        // The next cycle repeats exactly.
        let again: Vec<usize> = (0..7).map(|_| smooth_wrr(&c, &[5, 1, 1], |_| true).unwrap()).collect();
        assert_eq!(again, seq);
    }

    #[test]
    fn smooth_wrr_follows_weights_and_skips_ineligible() {
        let c = cells(3);
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[smooth_wrr(&c, &[1, 2, 3], |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[smooth_wrr(&c, &[1, 2, 3], |i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 0]);
        assert_eq!(smooth_wrr(&c, &[1, 2, 3], |_| false), None);
    }

    #[test]
    fn least_conn_prefers_light_servers_by_weight() {
        let load = [4u32, 1, 3];
        assert_eq!(least_conn(0, &[1, 1, 1], |i| load[i], |_| true), Some(1));
        // Server 2 has weight 4: 3/4 beats 1/1.
        assert_eq!(least_conn(0, &[1, 1, 4], |i| load[i], |_| true), Some(2));
        assert_eq!(least_conn(0, &[1, 1, 1], |i| load[i], |i| i != 1), Some(2));
        // Ties go to the first server at or after the rotating start.
        assert_eq!(least_conn(2, &[1, 1, 1], |_| 0, |_| true), Some(2));
    }

    #[test]
    fn p2c_never_picks_ineligible_and_favours_idle() {
        let rng = Cell::new(0x9e37_79b9_7f4a_7c15);
        let load = [100u32, 0, 100, 100];
        let mut idle_wins = 0;
        for _ in 0..1000 {
            let s = p2c(&rng, &[1; 4], |i| load[i], |i| i != 3).unwrap();
            assert_ne!(s, 3);
            idle_wins += usize::from(s == 1);
        }
        // Server 1 wins whenever it is one of the two distinct draws: about half the time here
        // (probing past the ineligible slot favours server 0), far above a fair 1/3.
        assert!(idle_wins > 430, "{idle_wins}");
        assert_eq!(p2c(&rng, &[1; 4], |i| load[i], |_| false), None);
    }
}
