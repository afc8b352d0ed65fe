//! Responses ringway writes itself (refusals, redirects, access answers, upstream failures), as
//! status, fields and a small body, in no protocol's syntax: each client protocol frames them
//! through its own response head (`exchange::reply::hand_head`).

use super::RequestError;
use std::borrow::Cow;

/// A response ringway writes itself.
pub struct Reply {
    pub status: u16,
    /// An HTTP/1.1 reason phrase other than the standard one (an auth service's own).
    pub reason: Option<String>,
    /// The route that produced it, if any (redirects), for `ringway route`.
    pub route: Option<usize>,
    /// Fields of its own, in order (Location, Retry-After, WWW-Authenticate, CORS, or those of an
    /// auth service's answer); the length and connection fields are the framing's.
    pub fields: Vec<(Cow<'static, str>, Vec<u8>)>,
    pub body: ReplyBody,
    /// The client connection ends after it (HTTP/1.1).
    pub close: bool,
}

/// What follows a reply's head.
pub enum ReplyBody {
    /// A line of text, sent as `text/plain` with a closing newline; empty: a zero length.
    Text(Cow<'static, str>),
    /// Bytes as they are, with their length; `send` is false in the answer to a HEAD request.
    Bytes { data: Vec<u8>, send: bool },
    /// No body and no length stated (204, 304).
    None,
}

impl Reply {
    /// A reply with a text body and no fields of its own.
    pub fn text(status: u16, body: impl Into<Cow<'static, str>>, close: bool) -> Self {
        Reply {
            status,
            reason: None,
            route: None,
            fields: Vec::new(),
            body: ReplyBody::Text(body.into()),
            close,
        }
    }

    pub fn refused(e: RequestError) -> Self {
        Reply::text(e.status(), e.reason(), true)
    }

    /// Adds a field of its own.
    pub fn with(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.fields.push((Cow::Borrowed(name), value.into()));
        self
    }

    /// The first value of one of its own fields (by name, any case).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The body bytes to send after the head, in two parts (a text body's newline apart, so
    /// nothing is copied to add it).
    pub fn body_parts(&self) -> (&[u8], &[u8]) {
        match &self.body {
            ReplyBody::Text(t) if t.is_empty() => (b"", b""),
            ReplyBody::Text(t) => (t.as_bytes(), b"\n"),
            ReplyBody::Bytes { data, send: true } => (data, b""),
            ReplyBody::Bytes { send: false, .. } | ReplyBody::None => (b"", b""),
        }
    }
}
