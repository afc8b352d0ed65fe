//! One HTTP/2 client connection (the h2 crate): its task runs the connection (frames, HPACK,
//! flow control, SETTINGS and PING) and accepts streams; each stream is a task of its own on the
//! same worker (`stream`), sharing nothing but the worker's context. No lock, no thread hand-off.
//!
//! Connection states: `Handshake` (client preface and SETTINGS under `header_timeout`) → `Open`
//! (streams accepted, up to `h2_max_concurrent_streams` at once) → `Closing` (GOAWAY sent:
//! when draining, idle too long, or a client resetting streams in a loop; streams in flight
//! finish) → closed once the last stream is done.
//!
//! Limits against misbehaving clients: the header list is capped at `max_head_size` while it is
//! decoded (HPACK bombs, CONTINUATION floods); streams the client resets before they are served
//! cost no upstream request, and a connection resetting most of its streams is closed with
//! ENHANCE_YOUR_CALM (rapid reset); stream and connection windows bound what a client may send
//! ahead; each stream's queue of DATA waiting for window is bounded (`body`), and a stalled
//! reader is ended by the route's `send_timeout`, a silent sender by its `read_timeout`.

mod body;
pub mod io;
mod request;
mod side;
mod stream;

use crate::exchange::WorkerCtx;
use crate::http::client_info::ClientInfo;
use crate::observe::metrics::Global;
use crate::observe::{event, ConnGauge, Level};
use bytes::Bytes;
use h2::Reason;
use io::{NonBlocking, PollIo};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a client sends first on an HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// DATA a stream may queue in h2 beyond what the client's window lets out.
const SEND_BUFFER: usize = 64 * 1024;
/// Client resets past which a connection is checked for rapid reset, and how often it may reset
/// (a stream in `RESET_SHARE`) before it is closed.
const RESETS_TOLERATED: u64 = 100;
const RESET_SHARE: u64 = 2;
/// How often the connection looks at the drain state and its idle time.
const TICK: Duration = Duration::from_millis(250);

/// Counts shared by a connection and its stream tasks.
#[derive(Default)]
pub(crate) struct ConnState {
    pub open: Cell<usize>,
    pub streams: Cell<u64>,
    /// Streams the client reset before their response started.
    pub resets: Cell<u64>,
}

/// Open HTTP/2 connections, for the metrics.
struct H2Gauge(Rc<WorkerCtx>);

impl Drop for H2Gauge {
    fn drop(&mut self) {
        self.0.observe.metrics.sub_global(Global::OpenH2Connections, 1);
    }
}

/// Serves one HTTP/2 connection. `guard` lives as long as the connection.
pub async fn serve<S: NonBlocking, G: 'static>(ctx: Rc<WorkerCtx>, stream: S, info: ClientInfo, guard: G) {
    let _guard = guard;
    let _gauge = ConnGauge::new(&ctx.observe);
    ctx.observe.metrics.add_global(Global::OpenH2Connections, 1);
    let _h2_gauge = H2Gauge(ctx.clone());
    let plan = ctx.plan.clone();
    let limits = &plan.server;
    let peer = info.peer;
    let io = match PollIo::new(stream) {
        Ok(io) => io,
        Err(_) => return,
    };
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.h2.max_concurrent_streams)
        .initial_window_size(limits.h2.stream_window)
        .initial_connection_window_size(limits.h2.connection_window)
        .max_header_list_size(limits.max_head_size as u32)
        .max_send_buffer_size(SEND_BUFFER);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(limits.header_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            event(Level::Debug, format_args!("HTTP/2 client {peer}: {e}; closed"));
            return;
        }
        Err(_) => return,
    };
    let info = Rc::new(info);
    let state = Rc::new(ConnState::default());
    // Idle (no stream open) for longer than this: GOAWAY. Before the first stream, header_timeout.
    let idle_limit = plan
        .routes
        .iter()
        .map(|r| r.idle_timeout)
        .max()
        .unwrap_or(Duration::from_secs(75));
    let mut idle_since = Instant::now();
    let mut closing = false;
    let mut tick = Box::pin(monoio::time::sleep(TICK));
    loop {
        let accepted = monoio::select! {
            a = conn.accept() => a,
            _ = &mut tick => {
                tick.as_mut().reset(monoio::time::Instant::now() + TICK);
                let now = Instant::now();
                if state.open.get() > 0 {
                    idle_since = now;
                }
                let limit = if state.streams.get() == 0 { limits.header_timeout } else { idle_limit };
                if !closing && (ctx.drain.is_draining() || now.duration_since(idle_since) >= limit) {
                    // GOAWAY with the last stream id: streams in flight finish, no new ones.
                    conn.graceful_shutdown();
                    closing = true;
                }
                continue;
            }
        };
        match accepted {
            Some(Ok((req, respond))) => {
                state.streams.set(state.streams.get() + 1);
                state.open.set(state.open.get() + 1);
                let task = stream::serve(ctx.clone(), info.clone(), state.clone(), req, respond);
                monoio::spawn(crate::io::deadline::scoped(task));
                let resets = state.resets.get();
                if resets > RESETS_TOLERATED && resets * RESET_SHARE > state.streams.get() {
                    event(
                        Level::Info,
                        format_args!("HTTP/2 client {peer}: {resets} streams reset before their response; closed"),
                    );
                    conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    closing = true;
                }
            }
            Some(Err(e)) => {
                event(Level::Debug, format_args!("HTTP/2 client {peer}: {e}; closed"));
                break;
            }
            None => break,
        }
    }
}

/// Whether a plaintext connection opens with the HTTP/2 preface (h2c with prior knowledge). Only
/// peeks: an HTTP/1.1 client's bytes stay in the socket for its own reader. Waits at most
/// `timeout` for the first bytes; anything else is HTTP/1.1's to judge.
pub async fn opens_with_preface(tcp: &monoio::net::TcpStream, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match crate::io::socket::peek(crate::io::fd::socket_fd(tcp), &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => return false,
        };
        if buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if n == 0 {
            match monoio::time::timeout(left, tcp.readable(false)).await {
                Ok(Ok(())) => {
                    // Readable with nothing to peek: the peer closed.
                    if matches!(crate::io::socket::peek(crate::io::fd::socket_fd(tcp), &mut buf), Ok(0)) {
                        return false;
                    }
                }
                _ => return false,
            }
        } else {
            // Part of the preface is here and the rest on its way: readiness would not wait.
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
