//! Graceful shutdown inside one worker. The supervisor thread tells each worker to drain by
//! writing a byte to that worker's end of a socket pair (a cross-thread wake-up that works with
//! both monoio drivers); from then on the worker's `io::drain::Drain` says so.

use std::io;

use std::os::unix::net::UnixStream as StdUnixStream;

/// The supervisor's side of one worker's drain signal.
pub struct DrainHandle(StdUnixStream);

/// The worker's side: resolves once the supervisor asks for a drain (or is gone).
pub struct DrainSignal(StdUnixStream);

pub fn drain_pair() -> io::Result<(DrainHandle, DrainSignal)> {
    let (a, b) = StdUnixStream::pair()?;
    b.set_nonblocking(true)?;
    Ok((DrainHandle(a), DrainSignal(b)))
}

impl DrainHandle {
    pub fn start(&self) {
        use std::io::Write;
        let _ = (&self.0).write_all(b"d");
    }
}

impl DrainSignal {
    /// Registers the socket with the calling worker's runtime (so start-up can report failure).
    pub fn register(self) -> io::Result<Registered> {
        Ok(Registered(monoio::net::UnixStream::from_std(self.0)?))
    }
}

/// A [`DrainSignal`] inside its worker's runtime.
pub struct Registered(monoio::net::UnixStream);

impl Registered {
    /// Resolves once the supervisor calls [`DrainHandle::start`] (or is gone).
    pub async fn wait(mut self) {
        use monoio::io::AsyncReadRent;
        let (_res, _buf) = self.0.read(vec![0u8; 1]).await;
    }
}
