//! The response body compressed, whatever protocol the client speaks. `response_head` decided
//! the encoding (`ResponsePlan::compress`) and wrote the head for it; a client side's
//! `send_response` calls [`relay_compressed`] with a `compress::CompressedSink` that frames the
//! compressed bytes its own way (HTTP/1.1: chunks, `client/h1/response_body.rs`; HTTP/2: DATA
//! frames, `client/h2/side.rs`). What it needs: the upstream connection with the head and any
//! body bytes read so far in `rbuf`, the route's `read_timeout`, and the `[compress]` levels
//! from the plan. The encoder is created here, once per compressed response, and the bytes in
//! and out are counted per encoding for the metrics.

use super::client_side::Cut;
use super::response_head::ResponsePlan;
use super::worker::WorkerCtx;
use crate::cache::Fill;
use crate::compress::{CompressedSink, Encoder, Encoding, Totals};
use crate::config::RoutePlan;
use crate::upstream::UpstreamConn;

/// Relays the response body compressed with `encoding` to `sink`; Ok(true) when the upstream's
/// message ended cleanly (its connection may be reused). Any failure is a [`Cut`]: the sink was
/// never told the body ended, and the client side must not let the client take it as complete.
/// A `fill` (the cache's copy) gets the compressed bytes, so the compressed variant is stored.
#[allow(clippy::too_many_arguments)]
pub async fn relay_compressed<S: CompressedSink>(
    ctx: &WorkerCtx,
    upstream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    resp: &ResponsePlan,
    route: &RoutePlan,
    encoding: Encoding,
    sink: &mut S,
    fill: Option<&mut Fill>,
) -> Result<bool, Cut> {
    let mut enc = Encoder::new(encoding, &ctx.plan.compress).map_err(|_| Cut)?;
    let mut totals = Totals::default();
    let res = Box::pin(crate::compress::relay(
        upstream,
        rbuf,
        resp.head_len,
        resp.framing,
        &mut enc,
        route.read_timeout,
        &mut totals,
        &mut Copied { sink, fill },
    ))
    .await;
    ctx.observe
        .metrics
        .compressed(encoding, totals.bytes_in, totals.bytes_out);
    res.map_err(|_| Cut)
}

/// A sink that also hands every compressed byte to the cache's copy.
struct Copied<'a, S> {
    sink: &'a mut S,
    fill: Option<&'a mut Fill>,
}

impl<S: CompressedSink> CompressedSink for Copied<'_, S> {
    async fn send(&mut self, data: &[u8], last: bool) -> std::io::Result<()> {
        if let Some(f) = self.fill.as_deref_mut() {
            f.feed(data);
        }
        self.sink.send(data, last).await
    }
}
