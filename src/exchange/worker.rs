//! One worker's state, shared by all its client connections whatever their protocol: the plan,
//! the upstream pool and balancing state, buffer and pipe pools, access state, the drain
//! registry, the worker's counters and its share of the response cache. The steps below
//! `exchange` never see it: each is handed the parts it needs.

use crate::auth::WorkerAccess;
use crate::cache::{PurgeBoard, WorkerCache};
use crate::config::Plan;
use crate::io::drain::Drain;
use crate::io::owned::BufPool;
use crate::io::park::ParkSet;
use crate::observe::WorkerObserve;
use crate::tunnel::{PipePool, DEFAULT_MAX_IDLE_PIPES, DEFAULT_PIPE_SIZE};
use crate::upstream::{Board, ConnPool, Upstreams};
use std::sync::Arc;

/// Everything a worker's connections share: the plan and this worker's own pools.
pub struct WorkerCtx {
    pub plan: Arc<Plan>,
    pub pool: ConnPool,
    /// Server choice: this worker's balancing state over the process-wide health board.
    pub upstreams: Upstreams,
    /// Head-sized buffers: the upstream request head (with a small body) and the client's
    /// response head (with the start of the body).
    pub heads: BufPool,
    /// Client request heads (and bytes that came with them), lent to a connection from its
    /// first byte of a request until the head is consumed: an idle connection holds none.
    pub requests: BufPool,
    /// Body-sized buffers for reading the upstream response and streaming request bodies.
    pub bodies: BufPool,
    /// Pipes lent to splice tunnels while bytes are in flight.
    pub pipes: PipePool,
    /// This worker's access state: rate-limit buckets, remembered logins.
    pub access: WorkerAccess,
    /// Draining state (shutdown or takeover) and each connection's slot: keep-alive then ends.
    pub drain: Drain,
    /// Idle plain keep-alive connections held outside any task until bytes arrive.
    pub park: ParkSet,
    /// This worker's counters and access log.
    pub observe: WorkerObserve,
    /// This worker's share of the response cache, when a route caches.
    pub cache: Option<WorkerCache>,
}

impl WorkerCtx {
    pub fn new(plan: Arc<Plan>, board: Arc<Board>, observe: WorkerObserve, purges: Arc<PurgeBoard>) -> Self {
        WorkerCtx {
            cache: plan.cache.map(|c| WorkerCache::new(&c, plan.server.workers, purges)),
            observe,
            pool: ConnPool::new(&plan),
            upstreams: Upstreams::new(&plan, board),
            heads: BufPool::new(16 * 1024, 128 * 1024, 32),
            requests: BufPool::new(4096, 16 * 1024, 64),
            bodies: BufPool::new(64 * 1024, 64 * 1024, 16),
            pipes: PipePool::new(DEFAULT_PIPE_SIZE, DEFAULT_MAX_IDLE_PIPES),
            access: WorkerAccess::new(&plan),
            drain: Drain::default(),
            park: ParkSet::default(),
            plan,
        }
    }

    /// Starts draining: idle keep-alive clients are closed, and so are idle upstream connections
    /// (none are pooled from now on). The successor opens its own; a draining process holding
    /// them would only keep the servers' slots (or threads) busy until it exits, which can stall
    /// a server that serves connections from a bounded set of workers.
    pub fn begin_drain(&self) {
        self.drain.begin();
        self.pool.clear();
    }
}
