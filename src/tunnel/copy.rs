//! Relay for streams splice cannot reach (TLS: the bytes must pass through userspace to be
//! decrypted and encrypted). Each direction reads into an owned buffer and writes it all out.
//!
//! Idle cost, honestly: with completion-based I/O a pending read owns its buffer, so an idle
//! tunnel holds one `COPY_BUF_MIN` buffer per direction (2 × 16 KiB) for as long as it is open,
//! on top of whatever the streams themselves buffer (rustls keeps its own). The splice relay
//! holds nothing while idle; prefer it whenever both ends are plain TCP.

use std::cell::Cell;
use std::pin::pin;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable};
use monoio::time::Sleep;

use super::relay::{drive, Activity, Budget, Side};
use super::{TunnelEnd, TunnelLimits, TunnelStats};

/// Buffer a direction starts with and returns to when traffic is light (one TLS record).
pub const COPY_BUF_MIN: usize = 16 * 1024;
/// Buffer a direction grows to while reads keep filling it (bulk transfers: fewer syscalls).
pub const COPY_BUF_MAX: usize = 64 * 1024;

/// Relays bytes both ways between two byte streams until both directions have ended, either
/// side fails, or a limit in `limits` is reached; then drops (closes) both streams. End of
/// stream on one side becomes `shutdown()` of the other side's write half.
///
/// Requires a runtime built with `enable_timer()`.
pub async fn copy_relay<C, U>(client: C, upstream: U, limits: &TunnelLimits) -> TunnelStats
where
    C: AsyncReadRent + AsyncWriteRent + Split,
    U: AsyncReadRent + AsyncWriteRent + Split,
{
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let to_upstream = Cell::new(0);
    let to_client = Cell::new(0);
    let activity = Activity::new();
    let c2u = pin!(copy_one_way(
        client_read,
        upstream_write,
        Side::Client,
        &to_upstream,
        &activity,
    ));
    let u2c = pin!(copy_one_way(
        upstream_read,
        client_write,
        Side::Upstream,
        &to_client,
        &activity,
    ));
    let timer = pin!(None::<Sleep>);
    let end = drive(c2u, u2c, timer, limits, &activity).await;
    TunnelStats {
        client_to_upstream: to_upstream.get(),
        upstream_to_client: to_client.get(),
        end,
    }
}

/// Owns its halves: when this direction ends, dropping them releases its share of the streams.
async fn copy_one_way<R, W>(
    mut from: R,
    mut to: W,
    from_side: Side,
    moved: &Cell<u64>,
    activity: &Activity,
) -> Result<(), TunnelEnd>
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buf = Vec::with_capacity(COPY_BUF_MIN);
    let mut budget = Budget::new();
    loop {
        let (read, filled) = from.read(buf).await;
        let n = read.map_err(|e| from_side.failed(e))?;
        if n == 0 {
            to.shutdown()
                .await
                .map_err(|e| from_side.other().failed(e))?;
            return Ok(());
        }
        let (written, sent) = to.write_all(filled).await;
        written.map_err(|e| from_side.other().failed(e))?;
        to.flush().await.map_err(|e| from_side.other().failed(e))?;
        moved.set(moved.get() + n as u64);
        activity.touch();
        buf = resize(sent, n);
        budget.spend().await;
    }
}

/// Grows the buffer while reads fill it and shrinks it back when a read comes back short, so a
/// direction that goes quiet waits with the small buffer.
fn resize(buf: Vec<u8>, last_read: usize) -> Vec<u8> {
    let capacity = buf.capacity();
    if last_read == capacity && capacity < COPY_BUF_MAX {
        Vec::with_capacity(COPY_BUF_MAX)
    } else if last_read < COPY_BUF_MIN && capacity > COPY_BUF_MIN {
        Vec::with_capacity(COPY_BUF_MIN)
    } else {
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_grows_on_full_reads_and_shrinks_on_short_ones() {
        let small = Vec::with_capacity(COPY_BUF_MIN);
        let cap = small.capacity();
        let big = resize(small, cap);
        assert!(big.capacity() >= COPY_BUF_MAX);
        let cap = big.capacity();
        let still_big = resize(big, cap);
        assert!(still_big.capacity() >= COPY_BUF_MAX);
        let back = resize(still_big, 100);
        assert!(back.capacity() < COPY_BUF_MAX);
        let same = resize(back, COPY_BUF_MIN - 1);
        assert!(same.capacity() < COPY_BUF_MAX);
    }
}
