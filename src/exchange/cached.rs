//! The cache step of an exchange on a route with `cache = true` (GET and HEAD without a body):
//! before forwarding, look the request up (`before`): a fresh entry is sent from memory through
//! the client's `ClientSide`; a miss for a key another request is already filling waits for it;
//! a stale entry with a validator makes the request conditional. After the upstream's head
//! (`after_head`): a 304 to that conditional refreshes and serves the entry; a storable response
//! gets a `Fill` that copies its body as it streams to the client; `commit` stores the copy once
//! the body ended whole. Every response on such a route carries `Cache-Status` (RFC 9211).

use super::client_side::{BodyLength, ClientSide, HeadSink};
use super::outgoing::{CacheRequest, Outgoing};
use super::response_head::ResponsePlan;
use super::worker::WorkerCtx;
use crate::cache::policy::{self, Ask, Freshness, RequestFacts};
use crate::cache::{key, Entry, Fields, Fill, Lead, Turn, WorkerCache};
use crate::config::RoutePlan;
use crate::io::deadline::timeout;
use crate::observe::metrics::Global;
use crate::observe::Record;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::SystemTime;

const HIT: &[u8] = b"ringway; hit";
const MISS: &[u8] = b"ringway; fwd=miss";
const STALE: &[u8] = b"ringway; fwd=stale";
const REVALIDATED: &[u8] = b"ringway; fwd=stale; fwd-status=304";

/// Fields of the upstream's head that are not stored: they belong to one response or one
/// client (the age is computed on each hit; HSTS is the listener's).
const NOT_STORED: [&str; 3] = ["set-cookie", "age", "strict-transport-security"];

/// Fields a 304 updates in the stored head.
const REFRESHED: [&str; 5] = ["cache-control", "expires", "date", "etag", "last-modified"];

/// The client's head as the response step built it, kept to be stored with the body.
#[derive(Default)]
pub struct Recorded {
    status: u16,
    reason: String,
    fields: Fields,
}

/// A request on a caching route on its way upstream.
pub struct Pass<'c> {
    cache: &'c WorkerCache,
    primary: String,
    /// The key it was looked up under (the stale entry's, when there is one).
    found_key: Box<str>,
    stale: Option<Rc<Entry>>,
    /// Filling this key: concurrent misses wait until this is dropped.
    lead: Option<Lead<'c>>,
    facts: RequestFacts,
    path: String,
    /// A GET that the cache may keep the answer of.
    may_store: bool,
    ttl: Option<std::time::Duration>,
    head: Recorded,
    /// Set once the response turned out storable: where and how it is kept.
    keep: Option<Keep>,
}

struct Keep {
    key: Box<str>,
    vary: Rc<[Box<str>]>,
    fresh: Freshness,
    etag: Option<Box<[u8]>>,
    last_modified: Option<Box<[u8]>>,
}

/// What `before` decided.
pub enum Before<'c> {
    /// Answered from the cache; whether the client connection stays open.
    Served(bool),
    Forward(Option<Box<Pass<'c>>>),
}

/// Parses the upstream request head in `out` (written by `decide`).
fn parse_head<'b, 'h>(
    out: &'b [u8],
    fields: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Option<(&'b [u8], &'h [httparse::Header<'b>])> {
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, out, fields) {
        Ok(httparse::Status::Complete(_)) => Some((req.path?.as_bytes(), req.headers)),
        _ => None,
    }
}

/// Looks the request up; serves a fresh entry, waits for a fill in progress, or prepares the
/// request to go upstream (conditional when a stale entry can be revalidated).
pub async fn before<'c, S: ClientSide>(
    ctx: &'c WorkerCtx,
    side: &mut S,
    o: &Outgoing,
    req: &CacheRequest,
    out: &mut Vec<u8>,
    rec: &mut Record,
) -> Before<'c> {
    let Some(cache) = ctx.cache.as_ref() else {
        return Before::Forward(None);
    };
    let plan = &*ctx.plan;
    let route = &plan.routes[o.route];
    let metrics = &ctx.observe.metrics;
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let Some((target, headers)) = parse_head(out, &mut fields) else {
        return Before::Forward(None);
    };
    let ask = policy::request_ask(headers);
    if ask == Ask::Bypass {
        return Before::Forward(None);
    }
    // A cookie the route names identifies a person as Authorization does: the request gets a
    // key of its own and its response is shared only where it says so.
    let facts = RequestFacts {
        authenticated: route.access.auth.is_some()
            || policy::first(headers, "authorization").is_some()
            || policy::carries_cookie(headers, &route.cache_bypass_cookies),
    };
    let identity = &plan.access.identity_headers;
    let Some(mut primary) = key::primary(&req.host, target, headers, facts.authenticated, identity) else {
        return Before::Forward(None);
    };
    if route.compress {
        // What ringway compresses with depends only on this offer: one entry per encoding, so
        // a response is compressed once, not per request.
        primary.push_str("\0enc=");
        primary.push_str(o.compress.map_or("identity", |e| e.token()));
    }
    let conditional = [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    ]
    .iter()
    .any(|n| policy::first(headers, n).is_some());
    let mut found = cache.lookup(&primary, headers);
    metrics.set_global(Global::CacheBytes, cache.used() as u64);
    let mut lead = None;
    // Only a GET can fill an entry; concurrent ones for the same key wait for the first.
    if !o.is_head && !found.entry.as_ref().is_some_and(|e| usable(e, ask)) {
        match cache.turn(&found.key) {
            Turn::Lead(l) => lead = Some(l),
            Turn::Wait(w) => {
                // Bounded like the upstream's answer would be; then look again.
                let _ = timeout(route.response_timeout, w).await;
                found = cache.lookup(&primary, headers);
            }
        }
    }
    if let Some(e) = found.entry.as_ref().filter(|e| usable(e, ask)) {
        metrics.add_global(Global::CacheHits, 1);
        let keep = serve(ctx, side, o, route, e, HIT, rec).await;
        return Before::Served(keep);
    }
    let stale = found.entry.take().filter(|e| e.has_validator() && !conditional);
    metrics.add_global(
        if stale.is_some() {
            Global::CacheStale
        } else {
            Global::CacheMisses
        },
        1,
    );
    let pass = Pass {
        cache,
        primary,
        found_key: found.key,
        stale,
        lead,
        facts,
        path: req.path.clone(),
        may_store: !o.is_head,
        ttl: route.cache_ttl,
        head: Recorded::default(),
        keep: None,
    };
    if let Some(e) = &pass.stale {
        add_conditionals(out, e);
    }
    Before::Forward(Some(Box::new(pass)))
}

/// Whether an entry may answer this request without the upstream.
fn usable(e: &Entry, ask: Ask) -> bool {
    let fresh = e.is_fresh(crate::io::clock::now());
    match ask {
        Ask::Normal => fresh,
        // A reload checks with the upstream, except for what says it never changes.
        Ask::Revalidate => fresh && e.fresh.immutable,
        Ask::Bypass => false,
    }
}

/// Adds the entry's validators as the last fields of the upstream head in `out`.
fn add_conditionals(out: &mut Vec<u8>, e: &Entry) {
    let Some(end) = memchr::memmem::find(out, b"\r\n\r\n") else {
        return;
    };
    let mut lines = Vec::with_capacity(128);
    if let Some(etag) = &e.etag {
        crate::http::write::header(&mut lines, b"If-None-Match", etag);
    }
    if let Some(lm) = &e.last_modified {
        crate::http::write::header(&mut lines, b"If-Modified-Since", lm);
    }
    let at = end + 2;
    out.splice(at..at, lines);
}

/// Sends a stored response with its age and `status` as Cache-Status; whether the client
/// connection stays open.
async fn serve<S: ClientSide>(
    ctx: &WorkerCtx,
    side: &mut S,
    o: &Outgoing,
    route: &RoutePlan,
    e: &Entry,
    status: &[u8],
    rec: &mut Record,
) -> bool {
    rec.status = e.status;
    let h = side.head();
    h.start(e.status, &e.reason);
    for (name, value) in &e.fields {
        h.field(&[], name, value);
    }
    let age = e.age(crate::io::clock::now()).as_secs();
    h.field(&[], b"Age", itoa::Buffer::new().format(age).as_bytes());
    h.field(&[], b"Cache-Status", status);
    if let (Some(cors), Some(origin)) = (&route.access.cors, o.cors_origin.as_deref()) {
        cors.response_fields(origin, |name, value| h.per_request(&[], name.as_bytes(), value));
    }
    if let Some(hsts) = ctx.plan.listeners.get(o.listener).and_then(|l| l.hsts.as_deref()) {
        h.field(&[], b"Strict-Transport-Security", hsts.as_bytes());
    }
    let length = match e.status {
        204 | 304 => BodyLength::Unstated,
        _ => BodyLength::Exactly(e.body.len() as u64),
    };
    let close = !o.client_keep_alive || ctx.drain.is_draining();
    h.finish(&[], length, close);
    let sent = side.send_stored(&e.body, !o.is_head, route.send_timeout).await;
    sent.is_ok() && !close
}

/// Passes the response step's head on to the client's sink, keeps a copy of it for the cache,
/// and adds `Cache-Status` before the head ends.
pub struct Tap<'a, H> {
    pub inner: &'a mut H,
    pub pass: Option<&'a mut Recorded>,
    pub status: &'static [u8],
}

impl<'a, H: HeadSink> Tap<'a, H> {
    pub fn new(inner: &'a mut H, pass: Option<&'a mut Pass<'_>>) -> Self {
        let status = match &pass {
            Some(p) if p.stale.is_some() => STALE,
            _ => MISS,
        };
        Tap {
            inner,
            pass: pass.map(|p| &mut p.head),
            status,
        }
    }

    fn record(&mut self, name: &[u8], value: &[u8]) {
        if let Some(r) = self.pass.as_deref_mut() {
            if !NOT_STORED.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name)) {
                r.fields.push((name.into(), value.into()));
            }
        }
    }
}

impl<H: HeadSink> HeadSink for Tap<'_, H> {
    fn start(&mut self, status: u16, reason: &str) {
        if let Some(r) = self.pass.as_deref_mut() {
            r.status = status;
            r.reason.clear();
            r.reason.push_str(reason);
            r.fields.clear();
        }
        self.inner.start(status, reason)
    }

    fn keep(&mut self, raw: &[u8], h: &httparse::Header<'_>) {
        self.record(h.name.as_bytes(), h.value);
        self.inner.keep(raw, h)
    }

    fn field(&mut self, raw: &[u8], name: &[u8], value: &[u8]) {
        self.record(name, value);
        self.inner.field(raw, name, value)
    }

    fn per_request(&mut self, raw: &[u8], name: &[u8], value: &[u8]) {
        // Not stored: the next request may come from another origin.
        self.inner.per_request(raw, name, value)
    }

    fn finish(&mut self, raw: &[u8], length: BodyLength, close: bool) {
        if self.pass.is_some() {
            self.inner.field(raw, b"Cache-Status", self.status);
        }
        self.inner.finish(raw, length, close)
    }
}

/// What to do with the upstream's response.
pub enum After {
    /// A 304 refreshed the stale entry and it was sent; whether the client stays.
    Served(bool),
    /// Relay it, copying the body into this fill when it is storable.
    Relay(Option<Fill>),
}

/// Decides, from the upstream's head in `rbuf`, whether the response refreshes the stale
/// entry (304), is stored while relayed, or only relayed (and the stale entry dropped).
#[allow(clippy::too_many_arguments)]
pub async fn after_head<S: ClientSide>(
    ctx: &WorkerCtx,
    side: &mut S,
    pass: &mut Pass<'_>,
    o: &Outgoing,
    out: &[u8],
    rbuf: &[u8],
    resp: &ResponsePlan,
    rec: &mut Record,
) -> After {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut fields);
    if !matches!(parsed.parse(&rbuf[..resp.head_len]), Ok(httparse::Status::Complete(_))) {
        return After::Relay(None);
    }
    let headers = parsed.headers;
    let route = &ctx.plan.routes[o.route];
    let now = SystemTime::now();
    if let (304, Some(old)) = (resp.status, pass.stale.as_ref()) {
        let entry = refreshed(old, headers, pass.facts, pass.ttl, now);
        let keep = serve(ctx, side, o, route, &entry, REVALIDATED, rec).await;
        pass.cache.refresh(&pass.found_key, entry);
        return After::Served(keep);
    }
    let fresh = pass
        .may_store
        .then(|| policy::storable(resp.status, headers, pass.facts, pass.ttl, now))
        .flatten();
    // A compressed body is copied as the client gets it (encoder output, no framing).
    let framing = match resp.compress {
        Some(_) => crate::http::Framing::UntilClose,
        None => resp.framing,
    };
    let fill = fresh.and_then(|f| Some((f, Fill::new(framing, pass.cache.max_object)?)));
    let Some((fresh, fill)) = fill else {
        if pass.stale.is_some() {
            pass.cache.remove(&pass.found_key);
        }
        // Nothing will be stored: the waiting requests go upstream now, not after this body.
        pass.lead = None;
        return After::Relay(None);
    };
    let mut vary = key::vary_names(headers);
    if resp.compress.is_some() {
        // ringway chose the encoding from its offer, which the primary key already holds.
        vary.retain(|n| &**n != "accept-encoding");
    }
    let vary: Rc<[Box<str>]> = vary.into();
    let mut req_fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let Some((_, req_headers)) = parse_head(out, &mut req_fields) else {
        return After::Relay(None);
    };
    pass.keep = Some(Keep {
        key: key::full(&pass.primary, &vary, req_headers),
        vary,
        fresh,
        etag: policy::first(headers, "etag").map(Into::into),
        last_modified: policy::first(headers, "last-modified").map(Into::into),
    });
    After::Relay(Some(fill))
}

/// The stale entry brought up to date by a 304's fields.
fn refreshed(
    old: &Entry,
    headers: &[httparse::Header<'_>],
    facts: RequestFacts,
    ttl: Option<std::time::Duration>,
    now: SystemTime,
) -> Entry {
    // Each field the 304 carries replaces the stored ones of that name.
    let updated = |n: &[u8]| {
        REFRESHED
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(n) && policy::first(headers, r).is_some())
    };
    let mut fields: Fields = old.fields.iter().filter(|(n, _)| !updated(n)).cloned().collect();
    for name in REFRESHED {
        for v in policy::values(headers, name) {
            fields.push((name.as_bytes().into(), v.into()));
        }
    }
    let list: Vec<httparse::Header<'_>> = fields
        .iter()
        .map(|(n, v)| httparse::Header {
            name: std::str::from_utf8(n).unwrap_or(""),
            value: v,
        })
        .collect();
    let fresh = policy::storable(old.status, &list, facts, ttl, now).unwrap_or(Freshness {
        initial_age: std::time::Duration::ZERO,
        ..old.fresh
    });
    let etag = policy::first(&list, "etag").map(Into::into);
    let last_modified = policy::first(&list, "last-modified").map(Into::into);
    Entry {
        status: old.status,
        reason: old.reason.clone(),
        fields,
        body: old.body.clone(),
        fresh,
        stored: crate::io::clock::now(),
        etag,
        last_modified,
        path: old.path.clone(),
    }
}

/// Stores the response whose body `fill` copied, if it arrived whole.
pub fn commit(ctx: &WorkerCtx, pass: Box<Pass<'_>>, fill: Fill, relayed_whole: bool) {
    let pass = *pass;
    let Some(keep) = pass.keep else { return };
    let Some(body) = fill.finish(relayed_whole) else { return };
    let head = pass.head;
    let entry = Entry {
        status: head.status,
        reason: head.reason.into(),
        fields: head.fields,
        body: body.into(),
        fresh: keep.fresh,
        stored: crate::io::clock::now(),
        etag: keep.etag,
        last_modified: keep.last_modified,
        path: pass.path.into(),
    };
    if pass.stale.is_some() && pass.found_key != keep.key {
        pass.cache.remove(&pass.found_key);
    }
    let evicted = pass.cache.insert(&pass.primary, keep.vary, keep.key, entry);
    let m = &ctx.observe.metrics;
    m.add_global(Global::CacheEvictions, evicted);
    m.set_global(Global::CacheBytes, pass.cache.used() as u64);
}
