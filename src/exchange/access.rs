//! The access step: address rules, rate limit, CORS preflight and authentication
//! (`auth::check`); for forward auth, the subrequest to the auth service before anything goes
//! upstream.

use super::reply::Reply;
use super::request::RequestHead;
use crate::auth::{self, WorkerAccess};
use crate::config::Plan;
use crate::http::client_info::ClientInfo;
use crate::http::request::RequestFacts;
use crate::http::Framing;
use std::net::IpAddr;

/// What the request may carry upstream, and the auth service to ask first if any; or the
/// answer the client gets instead (401, 403, 429, a CORS preflight).
pub type Allowed<'a> = (auth::Granted<'a>, Option<auth::forward::Subrequest>);

pub fn check<'a>(
    plan: &'a Plan,
    route: usize,
    access: &WorkerAccess,
    info: &ClientInfo,
    req: &RequestHead<'a>,
    facts: &RequestFacts<'a>,
    client: IpAddr,
) -> Result<Allowed<'a>, Reply> {
    let access_req = auth::Request {
        method: req.method,
        path: facts.target.path,
        query: facts.target.query,
        host: facts.host,
        headers: req.headers,
        client,
        scheme: info.scheme(),
        close: facts.framing != Framing::None || !facts.keep_alive,
        is_head: facts.is_head,
    };
    match auth::check(plan, route, access, &access_req) {
        auth::Verdict::Allow(g) => Ok((g, None)),
        auth::Verdict::Authorize(g, s) => Ok((g, Some(s))),
        auth::Verdict::Reply(a) => Err(a),
    }
}

/// Forward auth: asks the auth service; on 2xx the headers it lends are appended to the
/// upstream head in `out` and the request goes on, otherwise its answer goes to the client.
pub async fn authorize(plan: &Plan, sub: &auth::forward::Subrequest, out: &mut Vec<u8>) -> Result<(), Reply> {
    match auth::forward::authorize(&plan.access, sub, out).await {
        None => Ok(()),
        Some(answer) => Err(answer),
    }
}
