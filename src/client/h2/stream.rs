//! One HTTP/2 stream, start to end, in a task of its own on the connection's worker: map the
//! request into the neutral head (`request`), run the exchange's steps exactly as HTTP/1.1 does
//! (decide: route, access, rewrite; forward auth; forward with its retries and timeouts), with
//! this stream as the exchange's `ClientSide` (`side`), then end the stream and log it.

use super::body::StreamIo;
use super::request;
use super::side::{reply, H2Side};
use super::ConnState;
use crate::exchange::forward::forward;
use crate::exchange::{access, decide, Decision, WorkerCtx};
use crate::http::client_info::ClientInfo;
use crate::observe::metrics::Global;
use crate::observe::{event, Level, Record};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use std::rc::Rc;

/// Serves one stream; `state` counts the connection's streams in flight and resets.
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    info: Rc<ClientInfo>,
    state: Rc<ConnState>,
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let _open = Open(state.clone());
    serve_stream(ctx, info, state, req, respond).await
}

/// Counts the stream as open while its task lives.
struct Open(Rc<ConnState>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
    }
}

/// Whether the client has reset the stream (checked without waiting).
fn was_reset(respond: &mut SendResponse<Bytes>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(respond.poll_reset(&mut cx), std::task::Poll::Ready(_))
}

async fn serve_stream(
    ctx: Rc<WorkerCtx>,
    info: Rc<ClientInfo>,
    state: Rc<ConnState>,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let plan = ctx.plan.clone();
    let limits = &plan.server;
    ctx.observe.metrics.add_global(Global::H2Streams, 1);
    let (parts, recv) = req.into_parts();
    let mut rec = Record::new(ctx.observe.logging());
    if ctx.observe.logging() {
        let mut line = Vec::with_capacity(256);
        request::log_head(&parts, &mut line);
        rec.begin(&line);
    } else {
        rec.begin(b"");
    }
    let derived = match request::derive(&parts, !recv.is_end_stream()) {
        Ok(d) => d,
        Err(why) => {
            event(
                Level::Debug,
                format_args!("HTTP/2 client {}: {why}; stream reset", info.peer),
            );
            respond.send_reset(Reason::PROTOCOL_ERROR);
            rec.status = 400;
            ctx.observe.finish(&plan, &mut rec, &info, (0, 0));
            return;
        }
    };
    let mut fields = Vec::with_capacity(parts.headers.len() + 2);
    request::fields(&parts, &derived, &mut fields);
    rec.request_id.resolve(&fields);
    let head = request::head(&parts, &fields);
    let mut out = ctx.heads.get();
    let decision = decide(&plan, &ctx.access, &info, &head, &mut out, &mut rec);
    let decision = match decision {
        Decision::Authorize(outgoing, sub) => match Box::pin(access::authorize(&plan, &sub, &mut out)).await {
            Ok(()) => Decision::Forward(outgoing),
            Err(answer) => Decision::Answer(answer),
        },
        d => d,
    };
    // A stream reset already (rapid reset) costs the upstream nothing.
    if was_reset(&mut respond) {
        state.resets.set(state.resets.get() + 1);
        ctx.heads.put(out);
        return;
    }
    let mut client = StreamIo::new(recv, derived.chunked, respond, parts.method == http::Method::HEAD);
    match decision {
        Decision::Reply(r) | Decision::Answer(r) => {
            ctx.heads.put(out);
            rec.status = r.status;
            let _ = reply(&mut client, r, limits.header_timeout).await;
        }
        Decision::Authorize(..) => unreachable!("resolved above"),
        Decision::Forward(outgoing) => {
            let mut side = H2Side::new(&mut client);
            // Next::Tunnel cannot come back: `H2Side::switch` refuses with a 502.
            let _ = Box::pin(forward(&ctx, &mut side, outgoing, out, &mut rec)).await;
        }
    }
    client.finish();
    ctx.observe.finish(&plan, &mut rec, &info, client.totals());
}
