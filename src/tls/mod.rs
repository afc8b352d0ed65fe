//! TLS for listeners (termination, SNI certificate choice) and for `https://` upstreams
//! (verified connections), on rustls 0.23 with the `ring` provider chosen explicitly and
//! monoio-rustls streams. Configuration is built once at start-up; workers only clone it.
//!
//! A TLS connection here goes: TCP accepted/connected → handshake (server side: under a deadline,
//! inside the connection's own task) → [`ServerStream`]/[`ClientStream`], which implement monoio's
//! `AsyncReadRent` + `AsyncWriteRent` like a `TcpStream` → `shutdown()` sends close_notify.
//!
//! Things a caller must know about the streams (monoio-rustls 0.4; both panics are reproduced by
//! the ignored `known_limit_*` tests in `tests/tls.rs`, upstream: monoio-rs/monoio-tls#11):
//! - Never drop a pending `read`/`write` future and then use the stream again (a timeout or the
//!   losing arm of a `select!`): its buffer was lent to that operation and the next call panics.
//!   Timeouts are fine where the stream is dropped afterwards.
//! - Do not read and write concurrently through `into_split()` halves (a wss relay): a corrupt
//!   record arriving while a write is blocked makes the read half send an alert through the
//!   write buffer the write holds, and that panics, so any client can end the worker. Sequential
//!   request/response use is safe.
//! - Each stream owns two 16 KiB buffers for its whole life (about 24 KB RSS per idle server
//!   stream after one small exchange, measured with 500 connections), and the inner `TcpStream`
//!   is not reachable, so readiness-based "no buffer while idle" tricks do not apply to TLS.
//! - `shutdown()` sends close_notify and may return `NotConnected` if the peer already left.
//! - The runtime needs `enable_timer()` for the handshake deadline.

mod error;
mod pem;
mod server;
mod sni;
mod upstream;
mod x509;

use std::path::PathBuf;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::crypto::CryptoProvider;

pub use error::TlsError;
pub use server::ServerTls;
pub use upstream::UpstreamTls;

/// One certificate of a listener: a PEM chain (the server certificate first, then intermediates)
/// and its PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client's connection after the TLS handshake with a listener.
pub type ServerStream = monoio_rustls::ServerTlsStream<TcpStream>;

/// A connection to an `https://` upstream after the TLS handshake.
pub type ClientStream = monoio_rustls::ClientTlsStream<TcpStream>;

/// TLS 1.3 preferred, 1.2 for older clients and upstreams; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The only application protocol ringway speaks, offered and accepted through ALPN.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider, named explicitly rather than taken from the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
