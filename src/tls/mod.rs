//! TLS for listeners (termination, SNI certificate choice) and for `https://` upstreams
//! (verified connections), on rustls 0.23 with the `ring` provider chosen explicitly, and our own
//! readiness-driven stream ([`TlsStream`], see `stream.rs`). Configuration is built once at
//! start-up; workers only clone it.
//!
//! A TLS connection here goes: TCP accepted/connected → handshake (server side: under a deadline,
//! inside the connection's own task) → [`ServerStream`]/[`ClientStream`], which implement monoio's
//! `AsyncReadRent` + `AsyncWriteRent` like a `TcpStream` → `shutdown()` sends close_notify.
//!
//! The stream is cancellation-safe (no buffer is ever lent to a pending kernel operation) and
//! its two directions may be driven concurrently by a relay; monoio-rustls 0.4, used before,
//! panicked in both cases (monoio-rs/monoio-tls#11; regression tests in `tests/tls.rs`).
//!
//! Idle cost, measured (debug build, 1 worker, 1000 connections, RSS growth / 1000): an idle TLS
//! keep-alive connection after one request ~18.9 KB (plaintext: ~8.4 KB); an idle wss tunnel
//! (TLS client, plain upstream) ~16.8 KB (plain splice tunnel: ~3.5 KB). The difference is
//! rustls' own state: its connection struct and a 4 KiB receive buffer (rustls shrinks it back to
//! 4 KiB on every read that finds it empty; there is no API to release it entirely). Nothing of
//! ours is held while idle.
//! - The runtime needs `enable_timer()` for the handshake deadline.

mod error;
mod pem;
mod server;
mod sni;
mod stream;
mod upstream;
mod x509;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use error::TlsError;
pub use server::ServerTls;
pub use stream::{Session, TlsStream};
pub use upstream::UpstreamTls;

/// One certificate of a listener: a PEM chain (the server certificate first, then intermediates)
/// and its PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client's connection after the TLS handshake with a listener.
pub type ServerStream = TlsStream<rustls::ServerConnection>;

/// A connection to an `https://` upstream after the TLS handshake.
pub type ClientStream = TlsStream<rustls::ClientConnection>;

/// TLS 1.3 preferred, 1.2 for older clients and upstreams; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// HTTP/1.1 through ALPN: always offered, and the only protocol offered with `http2 = false`.
const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider, named explicitly rather than taken from the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
