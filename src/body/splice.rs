//! Large plaintext bodies relayed with splice(2): socket → pipe → socket, the bytes never
//! entering userspace (DESIGN.md: about 0.25 CPU-s/GB against 0.35 for a 64 KiB copy loop).
//! Only when both ends are plain TCP and the body goes out unchanged: Content-Length bodies both
//! ways, and close-delimited responses passed on as is; chunked and TLS bodies keep the copy path. A pipe is borrowed from the worker's pool for the body and given back at its
//! end; the same readiness-then-splice steps as the tunnels (never io_uring's splice opcode).

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::io::fd as sys;
use crate::tls::{Session, TlsStream};
use crate::tunnel::{Budget, PipePool};
use crate::upstream::UpstreamConn;

/// Bodies with fewer bytes left than this after the response head go through the copy path:
/// the head read already holds up to 64 KiB, and a pipe round trip does not pay for a few more.
pub const SPLICE_MIN_BODY: u64 = 64 * 1024;

/// A client connection as the body relay sees it: splice reaches plain TCP only.
pub trait SpliceClient {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// Bytes spliced from (`received`) or to (`sent`) the client, for the byte counts that
    /// userspace reads and writes otherwise keep (the client connection's byte counter).
    fn spliced(&self, _received: u64, _sent: u64) {}
}

impl SpliceClient for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<S: Session> SpliceClient for TlsStream<S> {}

/// The two plain sockets of an exchange, `(upstream, client)`, when neither side is TLS.
pub fn plain_pair<'a, C: SpliceClient>(
    upstream: &'a UpstreamConn,
    client: &'a C,
) -> Option<(&'a TcpStream, &'a TcpStream)> {
    match upstream {
        UpstreamConn::Plain(u) => Some((u, client.plain_tcp()?)),
        UpstreamConn::Tls(_) => None,
    }
}

/// How a spliced body ended short.
#[derive(Debug)]
pub enum BodyError {
    /// The sending side closed before `len` bytes, failed, or sent nothing for `read_timeout`.
    Read(io::Error),
    /// The receiving side failed or took nothing for `send_timeout`.
    Write(io::Error),
    /// No pipe could be had (fd or pipe budget spent); nothing was moved, so the caller can
    /// relay the body with its copy loop instead.
    NoPipe(io::Error),
}

/// Relays `len` bytes (or, with `None`, everything until `from` closes) from `from` to `to`:
/// response bodies upstream → client, request bodies client → upstream. Never reads past `len`,
/// so keep-alive connections stay in step. Returns the bytes relayed. Each wait is bounded:
/// `read_timeout` for bytes to arrive, `send_timeout` for room on the other side.
pub async fn splice_body(
    from: &TcpStream,
    to: &TcpStream,
    pipes: &PipePool,
    len: Option<u64>,
    read_timeout: Duration,
    send_timeout: Duration,
) -> Result<u64, BodyError> {
    // Splice needs non-blocking sockets; monoio under io_uring keeps them blocking, so the old
    // flags come back when the body is done (the connections go on serving HTTP).
    let mut pipe = pipes.lend().map_err(BodyError::NoPipe)?;
    let _from = sys::NonBlocking::set(sys::socket_fd(from)).map_err(BodyError::Read)?;
    let _to = sys::NonBlocking::set(sys::socket_fd(to)).map_err(BodyError::Write)?;
    let mut budget = Budget::new();
    let mut moved = 0u64;
    loop {
        let want = match len {
            Some(len) if moved >= len => return Ok(moved),
            Some(len) => ((len - moved).min(pipe.capacity() as u64)) as usize,
            None => pipe.capacity(),
        };
        match sys::splice(sys::socket_fd(from), pipe.write_end(), want) {
            Ok(0) if len.is_none() => return Ok(moved),
            Ok(0) => return Err(BodyError::Read(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => pipe.filled = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(from.readable(false), read_timeout)
                    .await
                    .map_err(BodyError::Read)?;
                continue;
            }
            Err(e) => return Err(BodyError::Read(e)),
        }
        while pipe.filled > 0 {
            match sys::splice(pipe.read_end(), sys::socket_fd(to), pipe.filled) {
                Ok(0) => return Err(BodyError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    pipe.filled -= n;
                    moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(to.writable(false), send_timeout).await.map_err(BodyError::Write)?;
                }
                Err(e) => return Err(BodyError::Write(e)),
            }
        }
        budget.spend().await;
    }
}

/// A readiness wait bounded by `t`, on the connection's own timer (`deadline`) like its other
/// reads and writes.
async fn wait(ready: impl std::future::Future<Output = io::Result<()>>, t: Duration) -> io::Result<()> {
    match crate::io::deadline::timeout(t, std::pin::pin!(ready)).await {
        Ok(res) => res,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}
