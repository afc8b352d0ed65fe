//! The never-compress rules. A request is offered compression only when it can take a re-framed
//! body: not HEAD, not a range request (byte offsets would point into the compressed bytes),
//! not HTTP/1.0 (no chunked framing), not an upgrade. A response is compressed only when it has
//! a body of a listed type, at least `min_size` long (or of unknown length), with no coding
//! already applied and no `Cache-Control: no-transform`, and a status that carries a
//! representation (not 204, 206 or 304; 1xx and 101 never get here).

use crate::config::{CompressPlan, Encoding};
use crate::http::{tokens, trim, Framing};

/// What the request allows: the encoding its `Accept-Encoding` picks, or `None`.
pub fn offer(headers: &[httparse::Header<'_>], is_head: bool, http10: bool, upgrade: bool) -> Option<Encoding> {
    if is_head || http10 || upgrade || headers.iter().any(|h| h.name.eq_ignore_ascii_case("range")) {
        return None;
    }
    let accepted = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept-encoding"))
        .map(|h| h.value);
    super::negotiate::choose(accepted)
}

/// Whether a response with this status, framing and headers may be compressed.
pub fn response_allows(plan: &CompressPlan, status: u16, framing: Framing, headers: &[httparse::Header<'_>]) -> bool {
    if !(200..600).contains(&status) || matches!(status, 204 | 206 | 304) {
        return false;
    }
    match framing {
        Framing::None => return false,
        Framing::Length(n) if n < plan.min_size.max(1) => return false,
        _ => {}
    }
    let mut typed = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-encoding") || name.eq_ignore_ascii_case("content-range") {
            return false;
        }
        if name.eq_ignore_ascii_case("cache-control") && tokens(h.value).any(is_no_transform) {
            return false;
        }
        if name.eq_ignore_ascii_case("content-type") {
            let essence = trim(h.value.split(|&b| b == b';').next().unwrap_or(b""));
            typed = plan.types.iter().any(|t| t.matches(essence));
        }
    }
    typed
}

fn is_no_transform(directive: &[u8]) -> bool {
    let name = directive.split(|&b| b == b'=').next().unwrap_or(b"");
    trim(name).eq_ignore_ascii_case(b"no-transform")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_header as h;

    #[test]
    fn request_rules() {
        let gzip = [h("Accept-Encoding", "gzip")];
        assert_eq!(offer(&gzip, false, false, false), Some(Encoding::Gzip));
        assert_eq!(offer(&gzip, true, false, false), None, "HEAD");
        assert_eq!(offer(&gzip, false, true, false), None, "HTTP/1.0");
        assert_eq!(offer(&gzip, false, false, true), None, "upgrade");
        let ranged = [h("Accept-Encoding", "gzip"), h("Range", "bytes=0-9")];
        assert_eq!(offer(&ranged, false, false, false), None, "Range");
        assert_eq!(offer(&[], false, false, false), None, "no Accept-Encoding");
    }

    #[test]
    fn response_rules() {
        let plan = CompressPlan::default();
        let js = h("Content-Type", "application/javascript; charset=utf-8");
        let big = Framing::Length(4096);
        assert!(response_allows(&plan, 200, big, &[js]));
        assert!(response_allows(&plan, 404, Framing::Chunked, &[js]));
        assert!(response_allows(&plan, 200, Framing::UntilClose, &[js]));
        assert!(
            !response_allows(&plan, 200, Framing::Length(1023), &[js]),
            "below min_size"
        );
        assert!(response_allows(&plan, 200, Framing::Length(1024), &[js]));
        assert!(!response_allows(&plan, 200, Framing::None, &[js]), "no body");
        for status in [204, 206, 304] {
            assert!(!response_allows(&plan, status, big, &[js]), "{status}");
        }
        let refused = [
            h("Content-Encoding", "gzip"),
            h("Content-Range", "bytes 0-9/10"),
            h("Cache-Control", "public, No-Transform"),
        ];
        for extra in refused {
            assert!(!response_allows(&plan, 200, big, &[js, extra]), "{}", extra.name);
        }
        assert!(response_allows(
            &plan,
            200,
            big,
            &[js, h("Cache-Control", "max-age=60")]
        ));
        assert!(!response_allows(&plan, 200, big, &[h("Content-Type", "image/png")]));
        assert!(!response_allows(&plan, 200, big, &[]), "no Content-Type");
    }
}
