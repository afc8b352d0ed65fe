//! ringway: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring, or epoll where
//! io_uring is blocked or not wanted).
//!
//! The binary loads a TOML file into an immutable [`config::Plan`], binds the listeners and starts
//! one pinned worker per core; everything on the request path lives in the worker that accepted
//! the connection. The request path, file by file: `server` (accept) → `proxy` (read head,
//! decide) → `route` + `rewrite` → `forward` (upstream exchange, body relay; large plaintext
//! bodies in `body_splice`) → `upstream` (pool);
//! upgraded connections continue in `tunnel`. TLS (listeners and `https://` upstreams) is `tls`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod client;
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
