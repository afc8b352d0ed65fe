//! Process start-up: bind every listener, then run one pinned worker thread per core, each with
//! its own monoio runtime (io_uring, or epoll with MONOIO_FORCE_LEGACY_DRIVER=1), its own
//! listening sockets and its own pools. Workers share only the immutable plan.

mod contain;
mod listener;
mod worker;

use crate::config::Plan;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

/// Binds and runs until every worker ends (they do not, short of a fatal error).
pub fn run(plan: Plan) -> io::Result<()> {
    let plan = Arc::new(plan);
    let workers = plan.server.workers;
    // One health board and one prober per checked server for the whole process.
    let board = Arc::new(crate::upstream::Board::new(&plan));
    crate::upstream::health::start(&plan, &board)?;
    // sockets[worker][listener]
    let mut sockets: Vec<Vec<(std::net::TcpListener, SocketAddr)>> = (0..workers).map(|_| Vec::new()).collect();
    for l in &plan.listeners {
        let bound = listener::bind_all(l.bind, workers)?;
        let addr = bound[0].local_addr()?;
        eprintln!("ringway: listening on {addr}");
        for (w, s) in bound.into_iter().enumerate() {
            sockets[w].push((s, addr));
        }
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (id, socks) in sockets.into_iter().enumerate() {
        let plan = plan.clone();
        let board = board.clone();
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || worker::run(id, core, plan, board, socks, ready))?;
        handles.push(h);
    }
    drop(ready_tx);
    let mut started = 0;
    for r in ready_rx.iter() {
        r?;
        started += 1;
        if started == workers {
            break;
        }
    }
    eprintln!("ringway: ready ({workers} workers, {} driver)", worker::driver_name());
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
