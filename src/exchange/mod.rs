//! One request's exchange, whatever protocol the client speaks. The steps, in order:
//! `decide` (check the head, `route`, `access`, rewrite into the upstream head in
//! `upstream_head` with paths mapped by `rewrite`) → `forward` (server choice, send, request
//! body, with retries and failover) → `response_head` (the upstream's head rewritten for the
//! client) → the body → log (`observe`). A client protocol produces a [`RequestHead`], calls
//! these, and implements [`client_side::ClientSide`] for the parts that frame bytes; it never
//! routes, checks or rewrites on its own.

pub mod access;
pub mod client_side;
pub mod decide;
pub mod forward;
pub mod outgoing;
pub mod reply;
pub mod request;
pub mod response_head;
pub mod rewrite;
pub mod route;
pub mod upstream_head;
pub mod worker;

pub use decide::{decide, Decision};
pub use reply::Reply;
pub use request::RequestHead;
pub use worker::WorkerCtx;
