//! Which I/O driver the workers run on, as `/metrics` and the status page show it. Filled once
//! by the supervisor from the runtimes the workers really built (see `server::driver`).

use super::metrics::{escape, family};

/// How many workers run on each driver and, when any runs on epoll, why.
#[derive(Clone, Debug, Default)]
pub struct DriverReport {
    pub io_uring_workers: usize,
    pub epoll_workers: usize,
    /// A short stable word (`seccomp`, `configured`, …); empty when every worker runs io_uring.
    pub reason_code: &'static str,
    /// Why, with what the operator can do (printed before the ready line).
    pub reason: String,
    /// Why, in a few words (on the ready line).
    pub summary: String,
}

impl DriverReport {
    /// `io_uring`, `epoll`, or both with their worker counts when a worker could not set up its
    /// ring after others did (the locked-memory limit on older kernels).
    pub fn name(&self) -> String {
        match (self.io_uring_workers, self.epoll_workers) {
            (_, 0) => "io_uring".to_string(),
            (0, _) => "epoll".to_string(),
            (u, e) => format!("io_uring ({u} workers) and epoll ({e} workers)"),
        }
    }

    /// The ready line's words: `io_uring driver`, or `epoll driver: why`.
    pub fn ready_words(&self) -> String {
        match self.summary.as_str() {
            "" => format!("{} driver", self.name()),
            why => format!("{} driver: {why}", self.name()),
        }
    }

    /// The `ringway_io_driver` family: workers per driver, the epoll line labelled with why.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "ringway_io_driver",
            "gauge",
            "Workers running on each I/O driver; reason says why epoll serves instead of io_uring.",
        );
        out.push_str(&format!(
            "ringway_io_driver{{driver=\"io_uring\",reason=\"\"}} {}\n",
            self.io_uring_workers
        ));
        out.push_str(&format!(
            "ringway_io_driver{{driver=\"epoll\",reason=\"{}\"}} {}\n",
            escape(self.reason_code),
            self.epoll_workers
        ));
    }
}
