//! What the exchange needs of the client connection, whatever protocol it speaks. The forward
//! step (`forward.rs`) drives an exchange through [`ClientSide`]; each client protocol
//! implements it with its own framing (HTTP/1.1: `client/h1/exchange.rs`). The response head is
//! handed over field by field through [`HeadSink`], so no step here writes protocol bytes.

use super::reply::Reply;
use super::response_head::ResponsePlan;
use super::worker::WorkerCtx;
use crate::cache::Fill;
use crate::config::RoutePlan;
use crate::upstream::UpstreamConn;
use std::io;
use std::time::Duration;

/// Receives the client's response head as the response step builds it from the upstream's.
/// Every call gets `raw`, the upstream head the fields were parsed from, so a sink that writes
/// text can copy runs of unchanged lines from it instead of field by field.
pub trait HeadSink {
    /// Starts a head (dropping any built before: a retry or a drain's last response).
    fn start(&mut self, status: u16, reason: &str);
    /// A field passed on as the upstream sent it.
    fn keep(&mut self, raw: &[u8], h: &httparse::Header<'_>);
    /// A field of ringway's own, or one rewritten (Location, Set-Cookie).
    fn field(&mut self, raw: &[u8], name: &[u8], value: &[u8]);
    /// A field for this request only, from the access step (CORS): never stored with a cached
    /// response.
    fn per_request(&mut self, raw: &[u8], name: &[u8], value: &[u8]) {
        self.field(raw, name, value)
    }
    /// Ends the head: what it says of the body's length, and whether the connection ends
    /// after this response.
    fn finish(&mut self, raw: &[u8], length: BodyLength, close: bool);
}

/// What a response head says of its body's length.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BodyLength {
    /// Exactly this many bytes (`Content-Length`).
    Exactly(u64),
    /// Streamed until it ends (HTTP/1.1: chunked; HTTP/2: until END_STREAM).
    UntilEnd,
    /// Nothing to state: 204, 304, or a HEAD response without a length.
    Unstated,
}

/// The request body could not be passed on whole.
pub enum BodyAbort {
    /// Writing to the upstream failed.
    Upstream(io::Error),
    /// The client sent a bad body or went away; the reply to send it, if one is owed.
    Client(Option<Reply>),
}

/// The response body could not be relayed whole: the client must not take it as complete.
pub struct Cut;

/// A stored body goes to the client in slices of this size, each under the route's send
/// timeout (which bounds a stall, not a whole body).
pub const STORED_SLICE: usize = 256 * 1024;

/// A stored body cut into `STORED_SLICE` pieces (sharing its memory), each with whether it is
/// the last; nothing for an empty body. The framing of each piece is the client protocol's.
pub fn stored_slices(body: &bytes::Bytes) -> impl Iterator<Item = (bytes::Bytes, bool)> + '_ {
    (0..body.len()).step_by(STORED_SLICE).map(move |at| {
        let end = body.len().min(at + STORED_SLICE);
        (body.slice(at..end), end == body.len())
    })
}

/// The client connection as one exchange sees it.
#[allow(async_fn_in_trait)] // the futures run on their worker's thread only: no Send bound
pub trait ClientSide {
    type Head: HeadSink;

    /// Where the response step builds the client's response head.
    fn head(&mut self) -> &mut Self::Head;

    /// True when the whole request body is in hand (sent with the head upstream, or none).
    fn body_done(&self) -> bool;

    /// Tells the client to send its body (HTTP/1.1 `Expect: 100-continue`).
    async fn send_continue(&mut self, t: Duration) -> io::Result<()>;

    /// Streams the rest of the request body to the upstream.
    async fn send_request_body(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        route: &RoutePlan,
    ) -> Result<(), BodyAbort>;

    /// Sends the head built in [`Self::head`] and the response body as it arrives from the
    /// upstream (`rbuf` holds the bytes read so far, the head first). Ok(true) when the
    /// upstream's message ended cleanly, so its connection may be reused. With a `fill`, every
    /// body byte read from the upstream is also handed to it (for the cache), and nothing is
    /// spliced past it while it is active.
    async fn send_response(
        &mut self,
        ctx: &WorkerCtx,
        upstream: &mut UpstreamConn,
        rbuf: &mut Vec<u8>,
        resp: &ResponsePlan,
        route: &RoutePlan,
        fill: Option<&mut Fill>,
    ) -> Result<bool, Cut>;

    /// Sends the head built in [`Self::head`] (which states the length) and a body held in
    /// memory: a cached response. `with_body` is false for HEAD.
    async fn send_stored(&mut self, body: &bytes::Bytes, with_body: bool, t: Duration) -> io::Result<()>;

    /// The upstream agreed to switch protocols: send the head, the bytes it sent after it, and
    /// the bytes the client sent early to the upstream. A protocol without upgrades refuses.
    async fn switch(
        &mut self,
        upstream: &mut UpstreamConn,
        rbuf: &[u8],
        resp: &ResponsePlan,
        route: &RoutePlan,
    ) -> io::Result<()>;

    /// Sends a response ringway writes itself (refusals, upstream failures).
    async fn send_reply(&mut self, r: Reply, t: Duration) -> io::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_slices_cover_the_body_once() {
        let body = bytes::Bytes::from((0..STORED_SLICE * 5 / 2).map(|i| i as u8).collect::<Vec<u8>>());
        let slices: Vec<_> = stored_slices(&body).collect();
        let sizes: Vec<usize> = slices.iter().map(|(s, _)| s.len()).collect();
        assert_eq!(sizes, [STORED_SLICE, STORED_SLICE, STORED_SLICE / 2]);
        let lasts: Vec<bool> = slices.iter().map(|(_, l)| *l).collect();
        assert_eq!(lasts, [false, false, true]);
        let joined: Vec<u8> = slices.iter().flat_map(|(s, _)| s.iter().copied()).collect();
        assert_eq!(joined, body);
        assert_eq!(stored_slices(&bytes::Bytes::new()).count(), 0);
        let exact = bytes::Bytes::from(vec![1u8; STORED_SLICE]);
        assert_eq!(
            stored_slices(&exact).map(|(s, l)| (s.len(), l)).collect::<Vec<_>>(),
            [(STORED_SLICE, true)]
        );
    }
}
