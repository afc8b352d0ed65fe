//! A request that passed the steps without I/O, on its way upstream: which route and upstream,
//! what the forward and response steps must know of the client's request.

use crate::http::Framing;
use std::net::SocketAddr;

/// A request that passed every check, with its upstream head already written.
pub struct Outgoing {
    pub route: usize,
    pub upstream: usize,
    /// The server of the current attempt, chosen in the exchange.
    pub server: usize,
    /// Hash key for `balance = "hash"`.
    pub affinity: Option<u64>,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send again.
    pub idempotent: bool,
    /// Where the Host value naming the server sits in the upstream head (`preserve_host = false`).
    pub host_at: Option<(usize, usize)>,
    pub framing: Framing,
    pub expect_continue: bool,
    pub is_head: bool,
    pub client_keep_alive: bool,
    pub client_http10: bool,
    /// The client's Host, kept only when responses need their Location mapped back.
    pub request_host: Option<String>,
    /// The Origin the access step lets read the response: the route's CORS fields go on the
    /// client's response head. None (no allocation) unless the route has CORS.
    pub cors_origin: Option<Vec<u8>>,
    /// The request asked for an allowed protocol upgrade and carries Upgrade upstream.
    pub upgrade: bool,
    /// The listener that accepted the client (its `hsts` applies to the response).
    pub listener: usize,
    /// For an upstream with `send_proxy_protocol`: the client's address and the one it reached,
    /// written in the PROXY header of the new upstream connection.
    pub proxy_header: Option<(SocketAddr, SocketAddr)>,
    /// The encoding the client accepts, when its route compresses and the request allows it
    /// (`compress::offer`); the response decides whether it is used.
    pub compress: Option<crate::compress::Encoding>,
    /// A GET or HEAD without a body on a route with `cache = true`: what the cache step needs
    /// of the client's request.
    pub cache: Option<Box<CacheRequest>>,
}

/// The client's side of a request the cache may answer.
pub struct CacheRequest {
    /// The Host the client asked for (the key's first part).
    pub host: String,
    /// The client's path and query (what purges match).
    pub path: String,
}
