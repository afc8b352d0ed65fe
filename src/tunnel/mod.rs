//! Upgraded connections (WebSocket and other `101 Switching Protocols` streams) relayed as opaque
//! byte tunnels. Plain TCP goes through [`splice_relay`] (kernel pipes, no userspace copy, nothing
//! held while idle); streams that need userspace, such as TLS, go through [`ready_relay`] (readiness
//! waits, a pooled buffer only while bytes are in flight). [`copy_relay`] is the older owned-buffer
//! relay, which holds two buffers while idle.
//!
//! A tunnel's life (both relays):
//!
//! ```text
//!   Open ──(EOF from A: shutdown(SHUT_WR) on B, B→A keeps flowing)──► HalfClosed
//!   Open / HalfClosed ──(EOF from the other side too)──────────────► BothClosed
//!   Open / HalfClosed ──(read/write error, e.g. reset)─────────────► ClientError | UpstreamError
//!   Open / HalfClosed ──(no byte either way for idle_timeout)──────► IdleTimeout
//!   Open / HalfClosed ──(max_lifetime since the relay started)─────► MaxLifetime
//! ```
//!
//! Every end closes both streams (they are dropped when the relay returns). The caller relays
//! any bytes it already buffered (early client bytes, bytes after the 101 head) before calling.
//!
//! What an idle splice tunnel holds: its two sockets, one readiness wait per direction, one entry
//! in the worker's shared deadline map (see `timer.rs`) and one task of about 1 KB (the relay
//! state is about 700 bytes; `relay_state_stays_small` keeps it there): no pipe, no buffer, no
//! thread. Measured with `loadtest/ws_idle.sh`: about 1.4 KB of RSS per idle WebSocket. Files:
//! `splice.rs` (plain TCP), `ready.rs` (TLS, readiness + pooled buffer), `copy.rs` (owned-buffer
//! streams), `relay.rs` (both directions + limits), `pool.rs` (per-worker pipes and timer),
//! `timer.rs`; its syscalls are wrapped in `io::fd`.

mod copy;
mod pool;
mod ready;
mod relay;
mod splice;

mod timer;

use std::fmt;
use std::io;

pub use copy::{copy_relay, COPY_BUF_MAX, COPY_BUF_MIN};
pub use pool::{PipePool, DEFAULT_MAX_IDLE_PIPES, DEFAULT_PIPE_SIZE};
pub use ready::{ready_relay, RelayEnd};
pub(crate) use relay::Budget;
pub use splice::{splice_relay, splice_tunnel};

/// Per-route limits of a tunnel.
pub use crate::config::TunnelLimits;

/// Why a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides sent end of stream and everything was delivered.
    BothClosed,
    /// No byte moved either way for `idle_timeout`.
    IdleTimeout,
    /// `max_lifetime` elapsed.
    MaxLifetime,
    /// Reading from or writing to the client failed (reset, broken pipe...). A failure to get a
    /// relay pipe while client bytes were waiting is reported here too ("no pipe to relay").
    ClientError(io::Error),
    /// Reading from or writing to the upstream failed; also "no pipe to relay" for upstream bytes.
    UpstreamError(io::Error),
}

impl TunnelEnd {
    /// Whether the tunnel ended in an orderly way (not an error).
    pub fn is_clean(&self) -> bool {
        !matches!(self, TunnelEnd::ClientError(_) | TunnelEnd::UpstreamError(_))
    }
}

impl fmt::Display for TunnelEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelEnd::BothClosed => f.write_str("both sides closed the tunnel"),
            TunnelEnd::IdleTimeout => f.write_str("tunnel idle timeout reached"),
            TunnelEnd::MaxLifetime => f.write_str("tunnel maximum lifetime reached"),
            TunnelEnd::ClientError(e) => write!(f, "tunnel client connection failed: {e}"),
            TunnelEnd::UpstreamError(e) => write!(f, "tunnel upstream connection failed: {e}"),
        }
    }
}

/// What a finished tunnel relayed, and why it ended.
#[derive(Debug)]
pub struct TunnelStats {
    /// Bytes delivered to the upstream.
    pub client_to_upstream: u64,
    /// Bytes delivered to the client.
    pub upstream_to_client: u64,
    pub end: TunnelEnd,
}
