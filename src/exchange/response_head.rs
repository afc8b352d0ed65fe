//! The response step: read the upstream's head (skipping 1xx), check it, and hand the client's
//! version of it to the client protocol's `HeadSink`: hop-by-hop headers dropped, Location,
//! Content-Location and Set-Cookie paths mapped back under the route's prefix, the route's
//! header rules, CORS and HSTS, and what the client is told of the body's length. `101
//! Switching Protocols` is accepted only for a request that asked to upgrade.
//!
//! Compression is decided here, once per response: the request's offer (`Outgoing::compress`,
//! from `compress::offer` in `decide`) is kept when `compress::response_allows` says the
//! response may be compressed; the head then carries `compress::write_headers`' fields
//! (Content-Encoding, Vary, weak ETag), no Content-Length, and `BodyLength::UntilEnd`, and
//! `ResponsePlan::compress` tells the client side to send the body through
//! `exchange::compressed::relay_compressed`.

use super::client_side::{BodyLength, HeadSink};
use super::outgoing::Outgoing;
use super::rewrite::{map_cookie_path, map_location};
use crate::config::{Plan, RoutePlan};
use crate::http::headers::{classify, Known};
use crate::http::response::inspect as inspect_response;
use crate::http::Framing;
use crate::io::owned::read_into;
use crate::upstream::{FailureKind, UpstreamConn};
use std::io;
use std::mem::MaybeUninit;

/// What the client will get, decided from the upstream's response head.
pub struct ResponsePlan {
    pub status: u16,
    pub framing: Framing,
    pub reusable: bool,
    /// Bytes of `rbuf` taken by the head.
    pub head_len: usize,
    /// Re-frame the body as chunked for the client (close-delimited upstream body, 1.1 client).
    pub chunk_for_client: bool,
    /// Pass a chunked upstream body through verbatim (1.1 client) or decode it (1.0 client).
    pub pass_chunked: bool,
    pub close_client: bool,
    /// The body is compressed with this encoding and its length left open (`relay_compressed`).
    pub compress: Option<crate::compress::Encoding>,
}

pub async fn read_response_head<H: HeadSink>(
    upstream: &mut UpstreamConn,
    rbuf: &mut Vec<u8>,
    out: &mut H,
    plan: &Plan,
    route: &RoutePlan,
    o: &Outgoing,
    any_byte: &mut bool,
) -> Result<ResponsePlan, FailureKind> {
    let deadline = crate::io::clock::now() + route.response_timeout;
    loop {
        let cap = rbuf.capacity();
        if rbuf.len() == cap {
            return Err(FailureKind::BadResponse("response head too large"));
        }
        let wait = deadline.saturating_duration_since(crate::io::clock::now());
        let res = read_into(upstream, rbuf, cap - rbuf.len(), 0, wait).await;
        match res {
            Ok(0) => {
                return Err(if rbuf.is_empty() {
                    FailureKind::ClosedEarly
                } else {
                    FailureKind::BadResponse("connection closed inside the response head")
                })
            }
            Ok(_) => *any_byte = true,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(FailureKind::ResponseTimeout(route.response_timeout))
            }
            Err(e)
                if rbuf.is_empty()
                    && matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
            {
                return Err(FailureKind::ClosedEarly)
            }
            Err(e) => return Err(FailureKind::Io(e)),
        }
        loop {
            match build_response_head(rbuf, out, plan, route, o)? {
                HeadParse::Partial => break,
                HeadParse::Interim(n) => {
                    // 1xx before the final response: ringway already answered 100-continue itself.
                    rbuf.drain(..n);
                    if rbuf.is_empty() {
                        break;
                    }
                }
                HeadParse::Final(plan) => return Ok(plan),
            }
        }
    }
}

/// The worker started draining while this response was on its way: the client's head says
/// `Connection: close`, so the client sends its next request elsewhere instead of onto a
/// connection about to close. The head is built again from the same upstream bytes.
pub fn last_response_head<H: HeadSink>(
    rbuf: &[u8],
    out: &mut H,
    plan: &Plan,
    route: &RoutePlan,
    o: &mut Outgoing,
    resp: ResponsePlan,
) -> ResponsePlan {
    if resp.close_client || !o.client_keep_alive || resp.status == 101 {
        return resp;
    }
    o.client_keep_alive = false;
    match build_response_head(rbuf, out, plan, route, o) {
        Ok(HeadParse::Final(r)) => r,
        // Unreachable in practice (the same bytes parsed a moment ago); keep the first head.
        _ => {
            o.client_keep_alive = true;
            let _ = build_response_head(rbuf, out, plan, route, o);
            resp
        }
    }
}

pub enum HeadParse {
    Partial,
    Interim(usize),
    Final(ResponsePlan),
}

/// Parses the upstream response head and hands the client's version of it to `out`.
pub fn build_response_head<H: HeadSink>(
    rbuf: &[u8],
    out: &mut H,
    plan: &Plan,
    route: &RoutePlan,
    o: &Outgoing,
) -> Result<HeadParse, FailureKind> {
    // Uninitialised slots, as for request heads (`proxy::decide`).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let mut res = httparse::Response::new(&mut []);
    let head_len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, rbuf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(HeadParse::Partial),
            Err(_) => return Err(FailureKind::BadResponse("unparsable response head")),
        };
    let status = res.code.unwrap_or(0);
    if status == 101 {
        if !o.upgrade {
            return Err(FailureKind::BadResponse(
                "101 Switching Protocols to a request that did not ask to upgrade",
            ));
        }
        return Ok(HeadParse::Final(switching_head(rbuf, &res, head_len, route, out)));
    }
    if (100..200).contains(&status) {
        return Ok(HeadParse::Interim(head_len));
    }
    if !(200..600).contains(&status) {
        return Err(FailureKind::BadResponse("status code out of range"));
    }
    let facts =
        inspect_response(status, res.version.unwrap_or(1), res.headers, o.is_head).map_err(FailureKind::BadResponse)?;
    let authority = plan.upstreams[o.upstream].servers[o.server].authority.as_str();
    let compress = o
        .compress
        .filter(|_| crate::compress::response_allows(&plan.compress, status, facts.framing, res.headers));

    let mut close_client = !o.client_keep_alive;
    let (chunk_for_client, pass_chunked) = match facts.framing {
        Framing::Chunked => (false, !o.client_http10),
        Framing::UntilClose => (!o.client_http10, false),
        _ => (false, false),
    };
    if o.client_http10 && matches!(facts.framing, Framing::Chunked | Framing::UntilClose) {
        close_client = true;
    }

    out.start(status, res.reason.unwrap_or(""));
    let rules = &route.response_headers;
    let hsts = plan.listeners.get(o.listener).and_then(|l| l.hsts.as_deref());
    for h in res.headers.iter() {
        let kind = classify(h.name);
        if kind.is_hop_by_hop()
            || kind == Known::ContentLength
            || facts.connection_names.contains(h.name)
            || rules.drops(h.name.as_bytes())
            || (route.access.cors.is_some() && crate::auth::cors::is_cors_header(h.name.as_bytes()))
            || (hsts.is_some() && h.name.eq_ignore_ascii_case("strict-transport-security"))
            || (compress.is_some() && crate::compress::replaces(h.name))
        {
            continue;
        }
        let mapped = match kind {
            Known::Location | Known::ContentLocation => std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| map_location(route, v, authority, o.request_host.as_deref())),
            Known::SetCookie => std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| map_cookie_path(route, v)),
            _ => None,
        };
        match mapped {
            Some(value) => out.field(rbuf, h.name.as_bytes(), value.as_bytes()),
            None => out.keep(rbuf, h),
        }
    }
    if let Some(encoding) = compress {
        let dropped = |name: &str| rules.drops(name.as_bytes());
        crate::compress::write_headers(encoding, res.headers, dropped, |name, value| {
            out.field(rbuf, name, value)
        });
    }
    for rule in rules.set.iter().chain(&rules.add) {
        out.field(rbuf, rule.name.as_bytes(), rule.value.as_bytes());
    }
    if let (Some(cors), Some(origin)) = (&route.access.cors, o.cors_origin.as_deref()) {
        cors.response_fields(origin, |name, value| out.per_request(rbuf, name.as_bytes(), value));
    }
    if let Some(value) = hsts {
        out.field(rbuf, b"Strict-Transport-Security", value.as_bytes());
    }
    let length = match facts.framing {
        _ if compress.is_some() => BodyLength::UntilEnd,
        Framing::Length(len) => BodyLength::Exactly(len),
        Framing::None => match facts.content_length {
            Some(len) => BodyLength::Exactly(len),
            None if status != 204 && status != 304 && !o.is_head => BodyLength::Exactly(0),
            None => BodyLength::Unstated,
        },
        Framing::Chunked | Framing::UntilClose => BodyLength::UntilEnd,
    };
    out.finish(rbuf, length, close_client);
    Ok(HeadParse::Final(ResponsePlan {
        status,
        framing: facts.framing,
        reusable: facts.reusable,
        head_len,
        chunk_for_client,
        pass_chunked,
        close_client,
        compress,
    }))
}

/// The client's copy of a `101 Switching Protocols` head: Upgrade kept (the client protocol
/// adds `Connection: upgrade`).
fn switching_head<H: HeadSink>(
    rbuf: &[u8],
    res: &httparse::Response<'_, '_>,
    head_len: usize,
    route: &RoutePlan,
    out: &mut H,
) -> ResponsePlan {
    out.start(101, res.reason.unwrap_or("Switching Protocols"));
    let rules = &route.response_headers;
    for h in res.headers.iter() {
        let kind = classify(h.name);
        if (kind.is_hop_by_hop() && kind != Known::Upgrade)
            || kind == Known::ContentLength
            || rules.drops(h.name.as_bytes())
        {
            continue;
        }
        out.field(rbuf, h.name.as_bytes(), h.value);
    }
    for rule in rules.set.iter().chain(&rules.add) {
        out.field(rbuf, rule.name.as_bytes(), rule.value.as_bytes());
    }
    out.finish(rbuf, BodyLength::Unstated, false);
    ResponsePlan {
        status: 101,
        framing: Framing::None,
        reusable: false,
        head_len,
        chunk_for_client: false,
        pass_chunked: false,
        close_client: false,
        compress: None,
    }
}
