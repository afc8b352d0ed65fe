//! Parking an idle plain keep-alive connection: after [`PARK_AFTER`] without a byte, the
//! connection's task ends and the connection goes to the worker's park set (`io::park`) as its
//! socket and a closure holding its identity and guards. When bytes arrive the worker's park
//! task calls the closure, which continues the connection in a new task exactly where the wait
//! ended: straight into its next active period (`serve_active` takes what arrived).

use super::{serve_requests, ClientStream};
use crate::client::counted::Counted;
use crate::exchange::WorkerCtx;
use crate::http::client_info::ClientInfo;
use crate::io::park::Resume;
use crate::observe::ConnGauge;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// How long an idle connection waits in its task before it is parked: a busy keep-alive client
/// sends its next request well within it and never pays for a park and a resume.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// Parks a connection that served a request and has been idle for [`PARK_AFTER`], to continue
/// with the idle timeout `idle` when bytes arrive. Its keep-alive deadline stays in the drain
/// registry. Where it cannot be parked (draining, no fd left to duplicate it) it is closed,
/// as an idle keep-alive connection may be.
pub(super) fn park_idle<C: ClientStream + 'static, G: 'static>(
    ctx: Rc<WorkerCtx>,
    client: Counted<C>,
    info: ClientInfo,
    guards: (G, ConnGauge),
    idle: Duration,
) {
    if ctx.drain.is_closing_idle() {
        return;
    }
    let Ok(fd) = client.into_inner().park() else {
        return;
    };
    // Before anything else runs: the fd number the drain registry shuts down at the deadline.
    ctx.drain.set_fd(info.slot, fd.as_raw_fd());
    let worker = ctx.clone();
    let resume: Resume = Box::new(move |fd| {
        ctx.drain.end_wait(info.slot);
        let client = C::unpark(fd).ok()?;
        let peer = info.peer;
        let conn = serve_requests(ctx, Counted::new(client), info, guards, Some(idle));
        Some((peer, Box::pin(crate::io::deadline::scoped(conn))))
    });
    // On failure the closure is dropped with the socket: the connection closes.
    let _ = worker.park.park(fd, resume);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_parked_connection_keeps_stays_small() {
        // The resume closure's captures: context, identity, the worker's open guard (two `Rc`s
        // and a slot), the gauge, the idle timeout.
        type Captured = (
            Rc<WorkerCtx>,
            ClientInfo,
            ((Rc<()>, Rc<()>, usize), ConnGauge),
            Duration,
        );
        let size = std::mem::size_of::<Captured>();
        eprintln!(
            "parked closure: {size} B, ClientInfo {} B",
            std::mem::size_of::<ClientInfo>()
        );
        assert!(size <= 192, "{size}");
    }
}
