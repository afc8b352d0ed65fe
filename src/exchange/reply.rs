//! A reply ringway writes itself, handed to the client protocol's response head: the same
//! `HeadSink` the response step fills from an upstream's head, so each protocol frames replies
//! exactly as it frames proxied responses (HTTP/1.1 text, HTTP/2 HEADERS).

use super::client_side::{BodyLength, HeadSink};
pub use crate::http::reply::{Reply, ReplyBody};
use crate::http::write::reason_phrase;

/// Hands `r`'s head to `out`: status, its own fields, the content type of a text body, and
/// the length the body states; the body follows as [`Reply::body_parts`].
pub fn hand_head<H: HeadSink>(r: &Reply, out: &mut H) {
    out.start(r.status, r.reason.as_deref().unwrap_or(reason_phrase(r.status)));
    for (name, value) in &r.fields {
        out.field(&[], name.as_bytes(), value);
    }
    let length = match &r.body {
        ReplyBody::Text(t) if t.is_empty() => BodyLength::Exactly(0),
        ReplyBody::Text(t) => {
            out.field(&[], b"Content-Type", b"text/plain; charset=utf-8");
            BodyLength::Exactly(t.len() as u64 + 1)
        }
        ReplyBody::Bytes { data, .. } => BodyLength::Exactly(data.len() as u64),
        ReplyBody::None => BodyLength::Unstated,
    };
    out.finish(&[], length, r.close);
}
