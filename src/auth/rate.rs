//! Rate limits: a token bucket per client address per route, kept by each worker for itself.
//! The operator writes the process-wide rate; each of the N workers refills at rate/N with a
//! burst of burst/N, so the sum over workers is what was written and nothing is shared.

use crate::config::RateSpec;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Above this many tracked addresses on one route, buckets that are full again are dropped
/// (a full bucket is the same as no bucket), bounding memory under address churn.
const MAX_TRACKED: usize = 65_536;

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    rate: f64,
    burst: f64,
    map: HashMap<IpAddr, Bucket>,
}

/// One worker's buckets, indexed by route number (0-based).
pub struct RateLimiter {
    routes: Vec<Option<RefCell<Buckets>>>,
}

impl RateLimiter {
    pub fn new<'a>(specs: impl Iterator<Item = Option<&'a RateSpec>>, workers: usize) -> Self {
        let n = workers.max(1) as f64;
        RateLimiter {
            routes: specs
                .map(|s| {
                    s.map(|s| {
                        RefCell::new(Buckets {
                            rate: s.per_second / n,
                            burst: (s.burst / n).max(1.0),
                            map: HashMap::new(),
                        })
                    })
                })
                .collect(),
        }
    }

    /// Takes one token; Err carries the whole seconds until one is available (for Retry-After).
    pub fn take(&self, route: usize, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let Some(Some(cell)) = self.routes.get(route) else {
            return Ok(());
        };
        let mut b = cell.borrow_mut();
        let (rate, burst) = (b.rate, b.burst);
        if b.map.len() >= MAX_TRACKED && !b.map.contains_key(&ip) {
            b.map
                .retain(|_, k| k.tokens + now.saturating_duration_since(k.at).as_secs_f64() * rate < burst);
            if b.map.len() >= MAX_TRACKED {
                b.map.clear();
            }
        }
        let k = b.map.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        let refill = now.saturating_duration_since(k.at).as_secs_f64() * rate;
        k.tokens = (k.tokens + refill).min(burst);
        k.at = now;
        if k.tokens >= 1.0 {
            k.tokens -= 1.0;
            Ok(())
        } else if rate <= 0.0 {
            Err(60)
        } else {
            Err((((1.0 - k.tokens) / rate).ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_split_across_workers() {
        let spec = RateSpec {
            per_second: 10.0,
            burst: 20.0,
        };
        // Two workers: each gets 5/s and a burst of 10.
        let r = RateLimiter::new([None, Some(&spec)].into_iter(), 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(r.take(1, ip, t0).is_ok());
        }
        assert_eq!(r.take(1, ip, t0), Err(1));
        // Another address has its own bucket; a route without a limit never refuses.
        assert!(r.take(1, "192.0.2.2".parse().unwrap(), t0).is_ok());
        assert!(r.take(0, ip, t0).is_ok());
        // 200 ms at 5/s refills one token.
        assert!(r.take(1, ip, t0 + Duration::from_millis(200)).is_ok());
        assert!(r.take(1, ip, t0 + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn slow_rates_say_how_long_to_wait() {
        let spec = RateSpec {
            per_second: 0.1,
            burst: 1.0,
        };
        let r = RateLimiter::new([Some(&spec)].into_iter(), 1);
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        assert!(r.take(0, ip, t0).is_ok());
        assert_eq!(r.take(0, ip, t0), Err(10));
    }
}
