//! The consistent-hash ring of a `balance = "hash"` upstream, built once with the plan; the
//! hash that places servers on it and keys along it.

/// 64-bit FNV-1a followed by a splitmix64 finaliser, so short, similar keys (cookie values, IPs)
/// still land far apart on the ring. Stable across runs and machines.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Points per unit of weight: enough that three servers split keys within a few percent.
const POINTS_PER_WEIGHT: u32 = 160;

/// A consistent-hash ring (ketama style): each server owns `weight × 160` points derived from its
/// name, a key goes to the first eligible point at or after its hash. A server that leaves only
/// gives up its own points, so only its keys move; everyone else's stay where they were.
pub struct HashRing {
    /// (point, server), sorted by point.
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// `names` identify servers (the address as written): the same config gives the same ring in
    /// every worker and every restart.
    pub fn build(names: &[&str], weights: &[u32]) -> Self {
        let mut points = Vec::new();
        for (i, (name, w)) in names.iter().zip(weights).enumerate() {
            for v in 0..w * POINTS_PER_WEIGHT {
                let label = format!("{name}#{v}");
                points.push((hash64(label.as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        HashRing { points }
    }

    /// The server for `key`: the owner of the first point at or after it whose server is eligible.
    pub fn lookup(&self, key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < key);
        let mut last_rejected = u32::MAX;
        for k in 0..n {
            let s = self.points[(start + k) % n].1;
            // Neighbouring points often belong to the same server: test each run once.
            if s == last_rejected {
                continue;
            }
            if ok(s as usize) {
                return Some(s as usize);
            }
            last_rejected = s;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_moves_only_the_departed_servers_keys() {
        let ring = HashRing::build(&["a:1", "b:1", "c:1"], &[1, 1, 1]);
        let keys: Vec<u64> = (0..3000).map(|k| hash64(format!("session-{k}").as_bytes())).collect();
        let before: Vec<usize> = keys.iter().map(|&k| ring.lookup(k, |_| true).unwrap()).collect();
        let mut share = [0; 3];
        for &s in &before {
            share[s] += 1;
        }
        for s in share {
            assert!((800..1200).contains(&s), "uneven ring: {share:?}");
        }
        let after: Vec<usize> = keys.iter().map(|&k| ring.lookup(k, |s| s != 1).unwrap()).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b == 1 {
                assert_ne!(*a, 1);
            } else {
                assert_eq!(a, b, "a key of a surviving server moved");
            }
        }
        // The same names give the same ring, whatever else changes.
        let again = HashRing::build(&["a:1", "b:1", "c:1"], &[1, 1, 1]);
        assert!(keys
            .iter()
            .all(|&k| ring.lookup(k, |_| true) == again.lookup(k, |_| true)));
    }

    #[test]
    fn ring_respects_weights() {
        let ring = HashRing::build(&["a:1", "b:1"], &[1, 3]);
        let on_b = (0..4000)
            .filter(|k| ring.lookup(hash64(format!("k{k}").as_bytes()), |_| true) == Some(1))
            .count();
        assert!((2700..3300).contains(&on_b), "{on_b}");
    }
}
