//! Keeps a bug in one connection from stopping its worker. monoio does not catch panics in tasks
//! (for speed), so a panic would unwind through the runtime and end every connection on that
//! thread; wrapped, it ends only the connection that hit it (its sockets close on drop).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// `F` is Unpin so the wrapper needs no pin projection: a connection future already lives in a
/// box (`proxy::serve` returns one), so wrapping it adds no second allocation.
pub struct Contained<F> {
    /// None once it panicked.
    inner: Option<F>,
    peer: std::net::SocketAddr,
}

impl<F: Future<Output = ()> + Unpin> Contained<F> {
    pub fn new(fut: F, peer: std::net::SocketAddr) -> Self {
        Contained { inner: Some(fut), peer }
    }
}

impl<F: Future<Output = ()> + Unpin> Future for Contained<F> {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fut) = self.inner.as_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                // The panic message is already on stderr (default hook); dropping the task's
                // state may panic again, which must not escape either.
                let state = self.inner.take();
                let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
                eprintln!("ringway: connection from {}: internal error; closed", self.peer);
                Poll::Ready(())
            }
        }
    }
}
