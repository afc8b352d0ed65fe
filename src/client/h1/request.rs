//! The HTTP/1.1 reader's half of a request: parse a complete head with httparse into the
//! protocol-neutral [`RequestHead`] (borrowing the client's buffer: no header byte is copied)
//! and hand it to the exchange's steps.

use crate::auth::WorkerAccess;
use crate::config::Plan;
use crate::exchange::{decide, Decision, Reply, RequestHead};
use crate::http::client_info::ClientInfo;
use crate::http::{has_bare_cr_or_lf, RequestError};
use crate::observe::Record;
use std::mem::MaybeUninit;

const MAX_HEADERS: usize = 128;

/// Parses `head` into `slots`; refuses what httparse refuses and bare CR or LF. The request id
/// is resolved first, so even a refused request is logged under the client's id.
fn parse<'b, 'h>(
    head: &'b [u8],
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
    rec: &mut Record,
) -> Result<RequestHead<'h>, RequestError>
where
    'b: 'h,
{
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(RequestError::Malformed("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(RequestError::Malformed("unsupported HTTP version")),
        Err(_) => return Err(RequestError::Malformed("malformed request head")),
    }
    rec.request_id.resolve(req.headers);
    if has_bare_cr_or_lf(head) {
        return Err(RequestError::Malformed("bare CR or LF in the request head"));
    }
    Ok(RequestHead {
        method: req.method.unwrap_or(""),
        target: req.path.unwrap_or("").as_bytes(),
        version: req.version.unwrap_or(1),
        headers: req.headers,
        raw: head,
    })
}

/// Parses a complete head and runs the exchange's steps without I/O on it (see
/// [`crate::exchange::decide`]), noting the route and request id in `rec`.
pub fn decide_head(
    plan: &Plan,
    access: &WorkerAccess,
    info: &ClientInfo,
    head: &[u8],
    out: &mut Vec<u8>,
    rec: &mut Record,
) -> Decision {
    // Left uninitialised: zeroing 128 header slots on every request costs more than parsing a
    // typical head; httparse writes each slot it hands back.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    match parse(head, &mut slots, rec) {
        Ok(req) => decide(plan, access, info, &req, out, rec),
        Err(e) => Decision::Reply(Reply::refused(e)),
    }
}

/// [`decide_head`] without a record: what `ringway route`, the benches and the fuzz targets see.
pub fn decide_bytes(plan: &Plan, access: &WorkerAccess, info: &ClientInfo, head: &[u8], out: &mut Vec<u8>) -> Decision {
    decide_head(plan, access, info, head, out, &mut Record::new(false))
}
