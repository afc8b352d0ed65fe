//! Per-worker choice of a server within an upstream: which servers are eligible (active health
//! from the shared [`Board`], this worker's passive ejections, servers this request already
//! failed on, the per-server connection cap), the configured algorithm among them, and waiting
//! for a free slot up to `queue_timeout` when every eligible server is at its cap.

use super::balance::{least_conn, p2c, smooth_wrr};
use super::health::Board;
use super::passive::Passive;
use super::{FailureKind, UpstreamError};
use crate::config::{Balance, Plan, UpstreamPlan};
use crate::observe::{event, Level};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Group {
    /// Requests this worker has in flight per server.
    inflight: Vec<Cell<u32>>,
    /// Smooth weighted round-robin scores.
    current: Vec<Cell<i64>>,
    passive: Vec<Passive>,
    rng: Cell<u64>,
    rotate: Cell<usize>,
    /// Requests waiting for a slot under the connection cap.
    waiters: RefCell<Vec<Waker>>,
}

/// This worker's balancing state for every upstream.
pub struct Upstreams {
    groups: Vec<Group>,
    board: Arc<Board>,
}

/// Why no server could be chosen.
#[derive(Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Every server is down (health checks or passive ejection) or already failed this request.
    NoneHealthy,
    /// Servers are up, but each is at `max_connections_per_server`.
    Saturated,
}

/// Servers this request already failed on. Empty (no allocation) on the common path.
#[derive(Default)]
pub struct Tried(Vec<u64>);

impl Tried {
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn add(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
}

/// One request's slot on a server: counted in flight until dropped.
pub struct Lease<'a> {
    owner: &'a Upstreams,
    upstream: usize,
    pub server: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let g = &self.owner.groups[self.upstream];
        let c = &g.inflight[self.server];
        c.set(c.get() - 1);
        // Wake every waiter: each re-checks; a waiter that gave up left only a stale waker.
        let waiters = std::mem::take(&mut *g.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

impl Upstreams {
    pub fn new(plan: &Plan, board: Arc<Board>) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let groups = plan
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let n = u.servers.len();
                Group {
                    inflight: (0..n).map(|_| Cell::new(0)).collect(),
                    current: (0..n).map(|_| Cell::new(0)).collect(),
                    passive: (0..n).map(|_| Passive::default()).collect(),
                    rng: Cell::new(seed.wrapping_mul(i as u64 * 2 + 1) | 1),
                    rotate: Cell::new(0),
                    waiters: RefCell::new(Vec::new()),
                }
            })
            .collect();
        Upstreams { groups, board }
    }

    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Up for this worker: the active checks say so and this worker has not ejected it.
    #[inline]
    fn is_up(&self, u: usize, s: usize) -> bool {
        self.board.is_up(u, s) && self.groups[u].passive[s].allows(self.board.passes(u, s))
    }

    /// Chooses a server now, without waiting. `affinity` is the request's hash key (hash only).
    pub fn try_pick(
        &self,
        up: &UpstreamPlan,
        u: usize,
        affinity: Option<u64>,
        tried: &Tried,
    ) -> Result<usize, Unavailable> {
        let g = &self.groups[u];
        let cap = up.max_conns_per_worker;
        let ok = |s: usize| !tried.contains(s) && (cap == 0 || g.inflight[s].get() < cap) && self.is_up(u, s);
        let load = |s: usize| g.inflight[s].get();
        let w = &up.weights;
        let pick = match (&up.balance, &up.ring, affinity) {
            (Balance::Hash(_), Some(ring), Some(key)) => ring.lookup(key, ok),
            (Balance::LeastConn, ..) => {
                let start = g.rotate.get();
                g.rotate.set(start.wrapping_add(1) % w.len().max(1));
                least_conn(start, w, load, ok)
            }
            (Balance::P2c, ..) => p2c(&g.rng, w, load, ok),
            _ => smooth_wrr(&g.current, w, ok),
        };
        match pick {
            Some(s) => Ok(s),
            None if cap > 0 && (0..w.len()).any(|s| !tried.contains(s) && self.is_up(u, s)) => {
                Err(Unavailable::Saturated)
            }
            None => Err(Unavailable::NoneHealthy),
        }
    }

    /// Takes a slot on a server, waiting up to `queue_timeout` while every eligible server is at
    /// its connection cap. Errors are the client's 503.
    pub async fn acquire<'a>(
        &'a self,
        plan: &Plan,
        u: usize,
        affinity: Option<u64>,
        tried: &Tried,
    ) -> Result<Lease<'a>, UpstreamError> {
        let up = &plan.upstreams[u];
        let mut deadline: Option<Instant> = None;
        loop {
            match self.try_pick(up, u, affinity, tried) {
                Ok(s) => {
                    let c = &self.groups[u].inflight[s];
                    c.set(c.get() + 1);
                    return Ok(Lease {
                        owner: self,
                        upstream: u,
                        server: s,
                    });
                }
                Err(Unavailable::NoneHealthy) => return Err(UpstreamError::group(up, FailureKind::NoHealthyServer)),
                Err(Unavailable::Saturated) => {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + up.queue_timeout);
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(UpstreamError::group(
                            up,
                            FailureKind::Saturated(up.max_connections_per_server, up.queue_timeout),
                        ));
                    }
                    // Boxed: only a saturated group waits here, and inline this state would make
                    // every request's future larger.
                    let _ = Box::pin(monoio::time::timeout(left, Released::new(&self.groups[u].waiters))).await;
                }
            }
        }
    }

    /// A connect failure or timeout on `s`: counts towards passive ejection.
    pub fn failed(&self, plan: &Plan, u: usize, s: usize) {
        let up = &plan.upstreams[u];
        let Some(p) = &up.passive else { return };
        if self.groups[u].passive[s].failed(p, self.board.passes(u, s)) {
            event(
                Level::Warn,
                format_args!(
                    "upstream {} ({}) ejected by worker {:?} for {} after {} failures in a row",
                    up.name,
                    up.servers[s].authority,
                    std::thread::current().name().unwrap_or("?"),
                    crate::config::units::format_duration(p.cooldown),
                    p.max_fails
                ),
            );
        }
    }

    /// The server answered: its run of failures is over.
    #[inline]
    pub fn answered(&self, u: usize, s: usize) {
        self.groups[u].passive[s].succeeded();
    }

    pub fn inflight(&self, u: usize, s: usize) -> u32 {
        self.groups[u].inflight[s].get()
    }
}

/// Resolves after the next slot release (or spuriously; callers re-check).
struct Released<'a> {
    waiters: &'a RefCell<Vec<Waker>>,
    registered: bool,
}

impl<'a> Released<'a> {
    fn new(waiters: &'a RefCell<Vec<Waker>>) -> Self {
        Released {
            waiters,
            registered: false,
        }
    }
}

impl Future for Released<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        self.registered = true;
        self.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
