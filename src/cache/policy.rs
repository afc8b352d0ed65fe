//! The caching rules of a shared cache (RFC 9111), read from header fields: whether a response
//! may be stored, for how long it is fresh, and what a request asks of the cache. Only what a
//! reverse proxy's cache needs: no heuristic freshness (a response without explicit freshness
//! is kept only under the route's `cache_ttl`), and a directive qualified with field names
//! (`private="x"`, `no-cache="x"`) is taken as the unqualified one.

use std::time::{Duration, SystemTime};

/// The Cache-Control directives a shared cache acts on.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub immutable: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    /// Any Cache-Control field at all.
    pub present: bool,
}

/// Parses every Cache-Control value of a message (names are case-insensitive; unknown
/// directives are ignored; a malformed number makes the directive count as 0 seconds, the
/// safe reading).
pub fn directives<'a>(values: impl Iterator<Item = &'a [u8]>) -> Directives {
    let mut d = Directives::default();
    for value in values {
        d.present = true;
        for part in value.split(|&b| b == b',') {
            let part = crate::http::trim(part);
            let (name, arg) = match memchr::memchr(b'=', part) {
                Some(i) => (crate::http::trim(&part[..i]), Some(crate::http::trim(&part[i + 1..]))),
                None => (part, None),
            };
            let secs = || {
                let a = arg.unwrap_or(b"");
                let a = a.strip_prefix(b"\"").and_then(|a| a.strip_suffix(b"\"")).unwrap_or(a);
                std::str::from_utf8(a)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("no-store") {
                d.no_store = true;
            } else if is("no-cache") {
                d.no_cache = true;
            } else if is("private") {
                d.private = true;
            } else if is("public") {
                d.public = true;
            } else if is("must-revalidate") || is("proxy-revalidate") {
                d.must_revalidate = true;
            } else if is("immutable") {
                d.immutable = true;
            } else if is("max-age") {
                d.max_age = Some(secs());
            } else if is("s-maxage") {
                d.s_maxage = Some(secs());
            }
        }
    }
    d
}

/// Values of every field called `name` (case-insensitive).
pub fn values<'h, 'b>(headers: &'h [httparse::Header<'b>], name: &'h str) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

pub fn first<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    values(headers, name).next()
}

/// Whether the request carries a cookie named in `names` (exact names, in any `Cookie` field).
pub fn carries_cookie(headers: &[httparse::Header<'_>], names: &[String]) -> bool {
    !names.is_empty()
        && values(headers, "cookie")
            .flat_map(crate::http::cookie_pairs)
            .any(|(name, _)| names.iter().any(|n| n.as_bytes() == name))
}

/// What a request asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Serve a fresh stored response, store what comes back.
    Normal,
    /// `no-cache`, `max-age=0` or `Pragma: no-cache`: check with the upstream first (a stored
    /// response is revalidated even while fresh, unless it is `immutable`).
    Revalidate,
    /// `no-store`: neither served from nor stored in the cache.
    Bypass,
}

pub fn request_ask(headers: &[httparse::Header<'_>]) -> Ask {
    let d = directives(values(headers, "cache-control"));
    if d.no_store {
        return Ask::Bypass;
    }
    let pragma_no_cache = !d.present
        && values(headers, "pragma").any(|v| memchr::memmem::find(&v.to_ascii_lowercase(), b"no-cache").is_some());
    if d.no_cache || d.max_age == Some(0) || pragma_no_cache {
        Ask::Revalidate
    } else {
        Ask::Normal
    }
}

/// How long a stored response stays fresh, and what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub lifetime: Duration,
    /// Its age when received (the Age field, or the Date field's lag, whichever is larger).
    pub initial_age: Duration,
    /// `no-cache`: never served without revalidating.
    pub always_revalidate: bool,
    pub immutable: bool,
}

/// Status codes that may be stored with explicit freshness (RFC 9110 §15.1, heuristically
/// cacheable ones, which a shared cache may keep when told how long).
const STORABLE: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// What the request looked like, as far as storing its response goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// The request carried Authorization or a cookie the route names (`cache_bypass_cookies`),
    /// or passed the route's authentication.
    pub authenticated: bool,
}

/// Whether a response may be stored, and its freshness: `None` when a shared cache must not
/// keep it. `ttl` is the route's `cache_ttl`, for 200 responses without caching headers.
pub fn storable(
    status: u16,
    headers: &[httparse::Header<'_>],
    req: RequestFacts,
    ttl: Option<Duration>,
    now: SystemTime,
) -> Option<Freshness> {
    let d = directives(values(headers, "cache-control"));
    if d.no_store || d.private {
        return None;
    }
    if values(headers, "vary").any(|v| v.contains(&b'*')) {
        return None;
    }
    // RFC 9111 §3.5: a response to an authenticated request is shared only when it says so.
    if req.authenticated && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return None;
    }
    // A cookie is one person's: kept (without the Set-Cookie field) only when marked public.
    if first(headers, "set-cookie").is_some() && !d.public {
        return None;
    }
    let date = first(headers, "date").and_then(http_date);
    let expires = first(headers, "expires");
    let lifetime = if let Some(s) = d.s_maxage.or(d.max_age) {
        Duration::from_secs(s)
    } else if let Some(e) = expires {
        // An invalid Expires means "already expired".
        let base = date.unwrap_or(now);
        http_date(e)
            .and_then(|e| e.duration_since(base).ok())
            .unwrap_or(Duration::ZERO)
    } else if d.present || first(headers, "pragma").is_some() {
        // Caching headers without a lifetime: only revalidation could reuse it.
        Duration::ZERO
    } else {
        // No caching headers at all: the route's micro-cache, for 200 only.
        let ttl = ttl.filter(|_| status == 200)?;
        return Some(Freshness {
            lifetime: ttl,
            initial_age: Duration::ZERO,
            always_revalidate: false,
            immutable: false,
        });
    };
    if !STORABLE.contains(&status) {
        return None;
    }
    let has_validator = first(headers, "etag").is_some() || first(headers, "last-modified").is_some();
    if (lifetime.is_zero() || d.no_cache) && !has_validator {
        return None;
    }
    let age_field = first(headers, "age")
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let apparent = date.and_then(|d| now.duration_since(d).ok()).unwrap_or_default();
    Some(Freshness {
        lifetime,
        initial_age: age_field.max(apparent),
        always_revalidate: d.no_cache,
        immutable: d.immutable,
    })
}

/// An HTTP date (IMF-fixdate, or the two obsolete forms).
pub fn http_date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()
}

/// Header fields from (name, value) pairs, for unit tests.
#[cfg(test)]
pub fn test_fields<'a>(list: &'a [(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
    list.iter().map(|(n, v)| crate::http::test_header(n, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::test_fields as h;
    use super::*;

    fn store(status: u16, list: &[(&str, &str)], auth: bool, ttl: Option<u64>) -> Option<Freshness> {
        let facts = RequestFacts { authenticated: auth };
        storable(status, &h(list), facts, ttl.map(Duration::from_secs), SystemTime::now())
    }

    #[test]
    fn lifetimes() {
        let f = store(200, &[("Cache-Control", "public, max-age=60")], false, None).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(60));
        let f = store(200, &[("cache-control", "max-age=60, s-maxage=5")], false, None).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(5));
        let f = store(200, &[("Cache-Control", "max-age=600, immutable")], false, None).unwrap();
        assert!(f.immutable);
        let f = store(
            200,
            &[
                ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
            ],
            false,
            None,
        )
        .unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(60));
        // An invalid Expires is in the past: nothing to reuse without a validator.
        assert!(store(200, &[("Expires", "0")], false, None).is_none());
        let f = store(200, &[("Expires", "0"), ("ETag", "\"a\"")], false, None).unwrap();
        assert_eq!(f.lifetime, Duration::ZERO);
    }

    #[test]
    fn refusals() {
        assert!(store(200, &[("Cache-Control", "no-store, max-age=60")], false, None).is_none());
        assert!(store(200, &[("Cache-Control", "private, max-age=60")], false, None).is_none());
        assert!(store(200, &[("Cache-Control", "max-age=60"), ("Vary", "*")], false, None).is_none());
        assert!(store(
            200,
            &[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")],
            false,
            None
        )
        .is_none());
        assert!(store(
            200,
            &[("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=b")],
            false,
            None
        )
        .is_some());
        assert!(store(200, &[("Cache-Control", "max-age=60")], true, None).is_none());
        assert!(store(200, &[("Cache-Control", "public, max-age=60")], true, None).is_some());
        assert!(store(500, &[("Cache-Control", "max-age=60")], false, None).is_none());
        assert!(store(200, &[("Cache-Control", "no-cache")], false, None).is_none());
        assert!(
            store(200, &[("Cache-Control", "no-cache"), ("ETag", "\"x\"")], false, None)
                .unwrap()
                .always_revalidate
        );
    }

    #[test]
    fn micro_cache_only_without_headers() {
        assert_eq!(
            store(200, &[], false, Some(1)).unwrap().lifetime,
            Duration::from_secs(1)
        );
        assert!(store(200, &[], false, None).is_none());
        assert!(store(404, &[], false, Some(1)).is_none());
        assert!(store(200, &[("Cache-Control", "max-age=0")], false, Some(1)).is_none());
        assert!(store(200, &[], true, Some(1)).is_none());
    }

    #[test]
    fn named_cookies() {
        let names = vec!["grafana_session".to_string()];
        let carries = |list: &[(&str, &str)]| carries_cookie(&h(list), &names);
        assert!(carries(&[("Cookie", "grafana_session=abc")]));
        assert!(carries(&[("Cookie", "theme=dark; grafana_session=abc; x=1")]));
        assert!(carries(&[("Cookie", "theme=dark"), ("cookie", "grafana_session=abc")]));
        assert!(!carries(&[(
            "Cookie",
            "grafana_session_expiry=5; my_grafana_session=1"
        )]));
        assert!(!carries(&[("Cookie", "Grafana_Session=abc")]));
        assert!(!carries(&[("X-Cookie", "grafana_session=abc")]));
        assert!(!carries_cookie(&h(&[("Cookie", "grafana_session=abc")]), &[]));
    }

    #[test]
    fn requests() {
        assert_eq!(request_ask(&h(&[("Cache-Control", "no-store")])), Ask::Bypass);
        assert_eq!(request_ask(&h(&[("Cache-Control", "max-age=0")])), Ask::Revalidate);
        assert_eq!(request_ask(&h(&[("Pragma", "no-cache")])), Ask::Revalidate);
        assert_eq!(request_ask(&h(&[("Accept", "*/*")])), Ask::Normal);
    }
}
