//! Process start-up and end: bind every listener (or take them over from a running ringway),
//! run one pinned worker thread per core, each with its own monoio runtime (io_uring, or epoll
//! where io_uring is blocked or not wanted: see `driver`), its own listening sockets and its own
//! pools, then drain
//! on SIGTERM/SIGINT or when a successor took over. Workers share only the immutable plan.
//!
//! Process states: `Starting` (bind or take over) → `Serving` (READY=1 sent) → `Draining` (no
//! accepts; each connection's next response says `Connection: close`; connections still idle
//! shortly before `shutdown_timeout` are closed) → exit 0 once every
//! worker is done or `shutdown_timeout` passed.

mod contain;
pub mod detach;
pub mod driver;
mod fdpass;
pub mod handover;
mod listener;
pub mod notify;
mod proxy_header;
mod shutdown;
mod worker;

pub use crate::io::drain::{Drain, NO_SLOT};

use crate::config::Plan;
use handover::{ControlSocket, Handed, Offer, Takeover};
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How this process starts, from the command line.
#[derive(Default)]
pub struct Start {
    /// `--takeover PATH`: take the listeners of the ringway serving this control socket.
    pub takeover: Option<PathBuf>,
    /// `--detach`: the waiting parent, told once this process serves.
    pub ready_pipe: Option<detach::ReadyPipe>,
}

/// What the supervisor thread waits for.
enum Event {
    Signal(&'static str),
    TakenOver(u32),
    WorkerDone,
}

/// Binds, serves, and returns once drained (or a worker failed to start).
pub fn run(plan: Plan, start: Start) -> io::Result<()> {
    let plan = Arc::new(plan);
    let workers = plan.server.workers;
    let (events, inbox) = mpsc::channel::<Event>();
    // Signals are caught from the start, so a SIGTERM during start-up drains instead of killing.
    watch_signals(events.clone())?;

    let mut takeover = match &start.takeover {
        Some(path) => Some(Takeover::start(path)?),
        None => None,
    };
    // sockets[worker] = (socket, listener index)
    let mut sockets: Vec<Vec<(TcpListener, usize)>> = (0..workers).map(|_| Vec::new()).collect();
    let mut offer = Offer {
        workers,
        listeners: Vec::new(),
    };
    let mut inherited: Vec<Handed> = match &mut takeover {
        Some(t) => {
            if t.old_workers != workers {
                eprintln!(
                    "ringway: takeover: pid {} ran {} workers, this one runs {workers}; every inherited socket is still accepted on",
                    t.old_pid, t.old_workers
                );
            }
            std::mem::take(&mut t.listeners)
        }
        None => Vec::new(),
    };
    for (index, l) in plan.listeners.iter().enumerate() {
        let taken = inherited
            .iter()
            .position(|h| h.serves(l.bind))
            .map(|i| inherited.remove(i));
        let per_worker = match taken {
            Some(h) => {
                let n = h.fds.len();
                let mut got: Vec<TcpListener> = h.fds.into_iter().map(TcpListener::from).collect();
                if n < workers {
                    got.extend(listener::bind_more(h.local, workers - n)?);
                }
                eprintln!("ringway: took over {} ({n} sockets)", h.local);
                handover::spread(got, workers)
            }
            None => listener::bind_all(l.bind, workers)?
                .into_iter()
                .map(|s| vec![s])
                .collect(),
        };
        let addr = per_worker[0][0].local_addr()?;
        eprintln!("ringway: listening on {addr}");
        let mut fds: Vec<OwnedFd> = Vec::new();
        for (w, socks) in per_worker.into_iter().enumerate() {
            for s in socks {
                // The supervisor keeps a duplicate of every socket for a future successor.
                fds.push(OwnedFd::from(s.try_clone()?));
                sockets[w].push((s, index));
            }
        }
        offer.listeners.push(Handed {
            configured: l.bind,
            local: addr,
            fds,
        });
    }
    for h in &inherited {
        eprintln!(
            "ringway: takeover: {} is no longer configured; it closes when pid {} has drained",
            h.local,
            takeover.as_ref().map_or(0, |t| t.old_pid)
        );
    }
    drop(inherited);
    // A successor's control socket is bound beside the path and moved over it after the hand-over.
    let control = match (&plan.server.control_socket, &start.takeover) {
        (Some(path), Some(_)) => Some(ControlSocket::bind_beside(path)?),
        (Some(path), None) => Some(ControlSocket::bind(path)?),
        (None, _) => None,
    };

    // One health board and one prober per checked server for the whole process.
    let board = Arc::new(crate::upstream::Board::new(&plan));
    // Log level, counters, access log and SIGUSR1 before any other thread runs; the admin
    // server answers from here on (/readyz says no until every worker accepts).
    let shared = crate::observe::Shared::new(plan.clone(), board.clone())?;
    for h in &offer.listeners {
        shared.add_listener(h.local);
    }
    crate::upstream::health::start(&plan, &board)?;
    // Cache purges asked for on the admin endpoint, read by every worker.
    let purges = Arc::new(crate::cache::PurgeBoard::default());
    if let Some(bind) = plan.admin {
        let addr = crate::admin::start(bind, shared.clone(), purges.clone(), start.takeover.is_some())?;
        eprintln!("ringway: admin on http://{addr}/");
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut drains = Vec::new();
    for (id, socks) in sockets.into_iter().enumerate() {
        let (plan, board, shared, purges) = (plan.clone(), board.clone(), shared.clone(), purges.clone());
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let ready = ready_tx.clone();
        let (handle, signal) = shutdown::drain_pair()?;
        drains.push(handle);
        let done = DoneGuard(events.clone());
        std::thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || {
                let _done = done;
                worker::run(id, core, plan, board, shared, purges, socks, ready, signal)
            })?;
    }
    drop(ready_tx);
    let mut drivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(r) => drivers.push(r?),
            Err(_) => return Err(io::Error::other("a worker ended during start-up")),
        }
    }
    let report = driver::report(&drivers);
    if !report.reason.is_empty() {
        eprintln!("ringway: epoll driver: {}", report.reason);
    }
    let driver_words = report.ready_words();
    let _ = shared.drivers.set(report);

    let mut control_path = None;
    let offer = Arc::new(std::sync::Mutex::new(Some(offer)));
    if let Some(mut control) = control {
        if let (Some(t), Some(path)) = (takeover, &plan.server.control_socket) {
            // systemd follows the new main process before the old one may exit.
            notify::notify(&format!("MAINPID={}", std::process::id()));
            let old = t.old_pid;
            match t.finish() {
                Ok(()) => eprintln!("ringway: took over from pid {old}; it drains and exits"),
                Err(e) => eprintln!("ringway: takeover: pid {old} did not confirm ({e}); serving anyway"),
            }
            control.move_to(path)?;
        }
        control_path = Some(control.path().to_path_buf());
        let tx = events.clone();
        control.serve(offer.clone(), move |pid| {
            let _ = tx.send(Event::TakenOver(pid));
        })?;
    } else if let Some(t) = takeover {
        notify::notify(&format!("MAINPID={}", std::process::id()));
        let old = t.old_pid;
        match t.finish() {
            Ok(()) => eprintln!("ringway: took over from pid {old}; it drains and exits (no control_socket here: this process cannot be taken over)"),
            Err(e) => eprintln!("ringway: takeover: pid {old} did not confirm ({e}); serving anyway"),
        }
    }
    if control_path.is_none() {
        // Nobody can take over: the duplicates would only keep queues open at shutdown.
        offer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
    shared.set_ready(true);
    notify::notify("READY=1");
    eprintln!("ringway: ready ({workers} workers, {driver_words})");
    if let Some(p) = start.ready_pipe {
        p.ok();
    }

    let mut running = workers;
    let why = loop {
        match inbox.recv() {
            Ok(Event::Signal(name)) => {
                notify::notify("STOPPING=1");
                // Stopping for good: the control socket file goes too. After a takeover the
                // path belongs to the successor and is left alone.
                if let Some(p) = &control_path {
                    let _ = std::fs::remove_file(p);
                }
                break name.to_string();
            }
            Ok(Event::TakenOver(pid)) => break format!("taken over by pid {pid}"),
            Ok(Event::WorkerDone) => {
                running -= 1;
                if running == 0 {
                    return Err(io::Error::other("every worker ended"));
                }
            }
            Err(_) => return Ok(()),
        }
    };
    // Stop offering (and holding) the listening sockets before the workers close theirs.
    offer.lock().unwrap_or_else(|p| p.into_inner()).take();
    // /readyz says no while draining, so a load balancer stops sending here.
    shared.set_ready(false);
    drain(&plan, &drains, &inbox, running, &why);
    Ok(())
}

/// Drains every worker and waits up to `shutdown_timeout` (a second signal ends the wait).
fn drain(plan: &Plan, drains: &[shutdown::DrainHandle], inbox: &mpsc::Receiver<Event>, mut running: usize, why: &str) {
    let limit = plan.server.shutdown_timeout;
    eprintln!("ringway: {why}: draining (up to {})", show(limit));
    let deadline = Instant::now() + limit;
    for d in drains {
        d.start();
    }
    while running > 0 {
        match inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::WorkerDone) => running -= 1,
            Ok(Event::Signal(name)) => {
                eprintln!("ringway: {name} again: closing the remaining connections now");
                return;
            }
            Ok(Event::TakenOver(_)) => {}
            Err(_) => {
                eprintln!(
                    "ringway: shutdown_timeout ({}) reached with {running} worker(s) still busy; closing their connections",
                    show(limit)
                );
                return;
            }
        }
    }
    eprintln!("ringway: drained; exiting");
}

fn show(d: Duration) -> String {
    format!("{d:?}")
}

/// Tells the supervisor a worker thread ended, however it ended (a panic included).
struct DoneGuard(mpsc::Sender<Event>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Event::WorkerDone);
    }
}

fn watch_signals(events: mpsc::Sender<Event>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let name = if s == SIGINT { "SIGINT" } else { "SIGTERM" };
                if events.send(Event::Signal(name)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
