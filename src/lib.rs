//! ringway: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring, or epoll where
//! io_uring is blocked or not wanted).
//!
//! The binary loads a TOML file into an immutable [`config::Plan`], binds the listeners and starts
//! one pinned worker per core; everything on the request path lives in the worker that accepted
//! the connection. Layers, each importing only those below it: `server` (accept) → `client`
//! (one connection's protocol) → `exchange` (route, access, rewrite, forward, response) →
//! `upstream`, `auth`, `tunnel`, `compress`, `body` → `http` → `io`; `config` and `observe` at
//! the side.
//! docs/architecture.md follows one request through them, file by file.

pub mod admin;
pub mod auth;
pub mod body;
pub mod cache;
pub mod client;
pub mod compress;
pub mod config;
pub mod exchange;
pub mod http;
pub mod inspect;
pub mod io;
pub mod observe;
pub mod proxy_protocol;
pub mod server;
pub mod tls;
pub mod tunnel;
pub mod upstream;
