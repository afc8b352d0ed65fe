//! ringway: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring, epoll fallback).
//!
//! The binary (`src/main.rs`) loads a TOML file into an immutable [`config::Plan`], binds the
//! listeners and starts one pinned worker per core; everything on the request path lives in the
//! worker that accepted the connection.

pub mod tls;
