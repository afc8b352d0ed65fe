//! The response head of a compressed response: `Content-Encoding` named, `Vary` gaining
//! `Accept-Encoding` (merged into the upstream's, so caches keep both variants apart), and a
//! strong `ETag` made weak, since the compressed bytes are not the bytes the tag was made for.
//! Content-Length is dropped and the body sent chunked by the caller.

use crate::config::Encoding;
use crate::http::tokens;

/// Upstream header fields [`write_headers`] writes in an edited form instead.
pub fn replaces(name: &str) -> bool {
    name.eq_ignore_ascii_case("vary") || name.eq_ignore_ascii_case("etag")
}

/// Hands `field(name, value)` the Content-Encoding, the merged Vary and the weakened ETags, so
/// any client protocol can write them its own way; upstream fields for which `dropped(name)`
/// holds (the route's header rules remove or replace them) are left out.
pub fn write_headers(
    encoding: Encoding,
    headers: &[httparse::Header<'_>],
    dropped: impl Fn(&str) -> bool,
    mut field: impl FnMut(&[u8], &[u8]),
) {
    field(b"Content-Encoding", encoding.token().as_bytes());
    let mut vary: Vec<u8> = Vec::new();
    let mut covered = false;
    let kept = |h: &&httparse::Header<'_>, name: &str| h.name.eq_ignore_ascii_case(name) && !dropped(h.name);
    for h in headers.iter().filter(|h| kept(h, "vary")) {
        for t in tokens(h.value) {
            covered |= t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding");
            if !vary.is_empty() {
                vary.extend_from_slice(b", ");
            }
            vary.extend_from_slice(t);
        }
    }
    if !covered {
        if !vary.is_empty() {
            vary.extend_from_slice(b", ");
        }
        vary.extend_from_slice(b"Accept-Encoding");
    }
    field(b"Vary", &vary);
    for h in headers.iter().filter(|h| kept(h, "etag")) {
        if h.value.starts_with(b"W/") {
            field(b"ETag", h.value);
        } else {
            let mut weak = Vec::with_capacity(h.value.len() + 2);
            weak.extend_from_slice(b"W/");
            weak.extend_from_slice(h.value);
            field(b"ETag", &weak);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edited head, with the upstream fields named in `dropped` removed by route rules.
    fn edit_without(fields: &[(&'static str, &'static str)], dropped: &[&str]) -> String {
        let headers: Vec<httparse::Header<'_>> = fields
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        let mut out = Vec::new();
        let dropped = |name: &str| dropped.iter().any(|d| d.eq_ignore_ascii_case(name));
        write_headers(Encoding::Gzip, &headers, dropped, |name, value| {
            crate::http::write::header(&mut out, name, value)
        });
        String::from_utf8(out).expect("ascii")
    }

    fn edit(fields: &[(&'static str, &'static str)]) -> String {
        edit_without(fields, &[])
    }

    #[test]
    fn vary_and_etag_table() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"),
            (
                &[("Vary", "Origin"), ("ETag", "\"abc\"")],
                "Content-Encoding: gzip\r\nVary: Origin, Accept-Encoding\r\nETag: W/\"abc\"\r\n",
            ),
            (
                &[("vary", "Origin, Cookie"), ("VARY", "Accept")],
                "Content-Encoding: gzip\r\nVary: Origin, Cookie, Accept, Accept-Encoding\r\n",
            ),
            (
                &[("Vary", "accept-encoding"), ("ETag", "W/\"x\"")],
                "Content-Encoding: gzip\r\nVary: accept-encoding\r\nETag: W/\"x\"\r\n",
            ),
            (&[("Vary", "*")], "Content-Encoding: gzip\r\nVary: *\r\n"),
        ];
        for (fields, want) in cases {
            assert_eq!(edit(fields), *want, "{fields:?}");
        }
        assert!(replaces("ETag") && replaces("vary") && !replaces("Content-Type"));
        let fields = [("Vary", "Origin"), ("ETag", "\"v\"")];
        assert_eq!(
            edit_without(&fields, &["vary", "etag"]),
            "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
        );
    }
}
