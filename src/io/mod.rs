//! The bottom of the data path: owned-buffer reads and writes with deadlines (`owned`), one
//! lazily armed timer per connection (`deadline`), the time read once per poll (`clock`),
//! handing freed memory back to the system (`memory`), idle connections held outside any task
//! (`park`, over `epoll`), and boxing a future where it is built
//! (`box_future`).

pub mod clock;
pub mod deadline;
pub mod drain;
mod epoll;
pub mod fd;
pub mod memory;
pub mod owned;
pub mod park;
pub mod socket;

/// Boxes the future `make` returns, built in the box's memory: `Box::pin(make())` builds it on
/// the stack first and then copies all of its state (kilobytes for a request's exchange) into
/// the box, although a future not yet polled holds only its arguments.
#[inline(always)]
pub fn box_future<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
