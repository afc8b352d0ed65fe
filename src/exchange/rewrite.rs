//! Path rewriting: the safety check on the client's path, the prefix strip/replace on the way up,
//! and the reverse mapping of `Location`, `Content-Location` and `Set-Cookie; Path=` on the way
//! back (what Apache calls ProxyPassReverse and nginx proxy_redirect / proxy_cookie_path).

use crate::config::{PathRewrite, RoutePlan};
use std::borrow::Cow;

/// Why a request path was refused (all answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    DotSegment,
    BadEscape,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with /",
            PathError::DotSegment => "the request path contains a . or .. segment",
            PathError::BadEscape => "the request path contains an invalid or NUL percent-escape",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Refuses paths with `.`/`..` segments — also when spelled `%2e`, or separated by `\`, `%2f` or
/// `%5c`, since upstreams decode those — and decodes escaped unreserved characters (RFC 3986
/// normalisation), so `/%61dmin/` is routed, and sent, as `/admin/`.
pub fn check_path(path: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Segment state: 0 empty so far, 1 ".", 2 "..", 3 anything else.
    let mut seg = 0u8;
    let mut needs_decode = false;
    let mut i = 0;
    while i < path.len() {
        let mut b = path[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                path.get(i + 1).and_then(|&c| hex(c)),
                path.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(PathError::BadEscape);
            };
            b = h << 4 | l;
            if b == 0 {
                return Err(PathError::BadEscape);
            }
            needs_decode |= is_unreserved(b);
            if b != b'.' && b != b'/' && b != b'\\' {
                b = b'x'; // any other escaped byte is an ordinary segment character
            }
            i += 2;
        }
        match b {
            b'/' | b'\\' => {
                if seg == 1 || seg == 2 {
                    return Err(PathError::DotSegment);
                }
                seg = 0;
            }
            b'.' => seg = if seg < 2 { seg + 1 } else { 3 },
            _ => seg = 3,
        }
        i += 1;
    }
    if seg == 1 || seg == 2 {
        return Err(PathError::DotSegment);
    }
    if !needs_decode {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let b = hex(path[i + 1]).unwrap() << 4 | hex(path[i + 2]).unwrap();
            if is_unreserved(b) {
                out.push(b);
            } else {
                out.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

/// Appends the upstream path for `path` (which matched `matched` bytes of the route key).
pub fn upstream_path(route: &RoutePlan, path: &[u8], matched: usize, out: &mut Vec<u8>) {
    let rest = match route.rewrite {
        PathRewrite::Keep => {
            out.extend_from_slice(path);
            return;
        }
        PathRewrite::Strip => &path[matched..],
        PathRewrite::Replace(ref r) => {
            out.extend_from_slice(r.as_bytes());
            &path[matched..]
        }
    };
    if rest.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    } else {
        out.extend_from_slice(rest);
    }
}

fn starts_on_boundary(path: &str, key: &str) -> bool {
    path.starts_with(key) && (path.len() == key.len() || path.as_bytes()[key.len()] == b'/' || key.is_empty())
}

/// Maps an upstream-side absolute path back to the public one; None when it is not under the
/// upstream key, or is already public (an app told its prefix answers with public paths).
pub fn map_back(route: &RoutePlan, path: &str) -> Option<String> {
    if !route.rewrites_path() || !path.starts_with('/') {
        return None;
    }
    if route.rewrite == PathRewrite::Strip && starts_on_boundary(path, &route.key) && !route.key.is_empty() {
        return None;
    }
    let up = route.upstream_key();
    if !starts_on_boundary(path, up) {
        return None;
    }
    let rest = &path[up.len()..];
    let mut out = String::with_capacity(route.key.len() + rest.len() + 1);
    out.push_str(&route.key);
    if rest.is_empty() || !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    Some(out)
}

/// Rewrites a `Location` / `Content-Location` value. `upstream_authority` is the upstream server's
/// `host:port`; `request_host` the Host the client used. Returns None when the value stays.
pub fn map_location(
    route: &RoutePlan,
    value: &str,
    upstream_authority: &str,
    request_host: Option<&str>,
) -> Option<String> {
    if !route.rewrites_path() {
        return None;
    }
    if value.starts_with('/') && !value.starts_with("//") {
        return map_back(route, value);
    }
    // Absolute (or scheme-relative) URL: split off scheme and authority.
    let (scheme_end, after) = if let Some(rest) = value.strip_prefix("//") {
        (0, rest)
    } else {
        let colon = value.find("://")?;
        (colon + 3, &value[colon + 3..])
    };
    let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..auth_end];
    let path_and_more = &after[auth_end..];
    let (path, tail) = match path_and_more.find(['?', '#']) {
        Some(i) => path_and_more.split_at(i),
        None => (path_and_more, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    if authority.eq_ignore_ascii_case(upstream_authority) {
        // Pointing at the upstream's own address: the client can't reach it; make it relative.
        let mapped = map_back(route, path).unwrap_or_else(|| path.to_string());
        return Some(format!("{mapped}{tail}"));
    }
    if request_host.is_some_and(|h| authority.eq_ignore_ascii_case(h)) {
        let mapped = map_back(route, path)?;
        let head = if scheme_end == 0 { "//" } else { &value[..scheme_end] };
        return Some(format!("{head}{authority}{mapped}{tail}"));
    }
    None
}

/// Rewrites the `Path=` attribute of a `Set-Cookie` value; None when it stays.
pub fn map_cookie_path(route: &RoutePlan, value: &str) -> Option<String> {
    if !route.rewrites_path() {
        return None;
    }
    let mut offset = value.find(';')?;
    while offset < value.len() {
        let next = value[offset + 1..]
            .find(';')
            .map(|i| offset + 1 + i)
            .unwrap_or(value.len());
        let attr = &value[offset + 1..next];
        let trimmed = attr.trim_start();
        // By bytes: an attribute may start with a multi-byte character (no str slicing inside it).
        if trimmed.len() >= 5 && trimmed.as_bytes()[..5].eq_ignore_ascii_case(b"path=") {
            let path_start = offset + 1 + (attr.len() - trimmed.len()) + 5;
            let path = value[path_start..next].trim_end();
            let mapped = map_back(route, path)?;
            return Some(format!(
                "{}{}{}",
                &value[..path_start],
                mapped,
                &value[path_start + path.len()..]
            ));
        }
        offset = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn route(extra: &str) -> RoutePlan {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:3000\"]\n\
             [[route]]\nprefix = \"/grafana/\"\nupstream = \"a\"\n{extra}"
        );
        let mut plan = load_str(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{}", e[0]));
        plan.routes.remove(0)
    }

    #[test]
    fn path_safety_table() {
        let refused = [
            "/public/../admin",
            "/..",
            "/.",
            "/a/./b",
            "/%2e%2e/admin",
            "/%2E./x",
            "/a%2f..%2fb",
            "/a/..%5cb",
            "/a\\..\\b",
            "/a/.%2e",
            "x",
            "/bad%zz",
            "/nul%00",
            "/trunc%2",
        ];
        for p in refused {
            assert!(check_path(p.as_bytes()).is_err(), "{p} must be refused");
        }
        let allowed = ["/", "/a/b", "/...", "/a..b/.c", "/.well-known/x", "/a//b", "/%20x"];
        for p in allowed {
            assert!(check_path(p.as_bytes()).is_ok(), "{p} must be allowed");
        }
        assert_eq!(&*check_path(b"/%61dmin/%2Fx").unwrap(), b"/admin/%2Fx");
    }

    #[test]
    fn strip_and_replace() {
        let strip = route("strip_prefix = true");
        let rep = route("replace_prefix = \"/other/\"");
        let keep = route("");
        let cases: [(&RoutePlan, &str, &str); 5] = [
            (&strip, "/grafana/api/x", "/api/x"),
            (&strip, "/grafana/", "/"),
            (&rep, "/grafana/api", "/other/api"),
            (&rep, "/grafana/", "/other/"),
            (&keep, "/grafana/api", "/grafana/api"),
        ];
        for (r, input, want) in cases {
            let mut out = Vec::new();
            upstream_path(r, input.as_bytes(), r.key.len(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn location_mapping() {
        let strip = route("strip_prefix = true");
        let m = |v: &str| map_location(&strip, v, "127.0.0.1:3000", Some("example.com"));
        assert_eq!(m("/login").as_deref(), Some("/grafana/login"));
        assert_eq!(m("/").as_deref(), Some("/grafana/"));
        assert_eq!(m("/grafana/login"), None, "already public");
        assert_eq!(
            m("http://127.0.0.1:3000/login?x=1").as_deref(),
            Some("/grafana/login?x=1")
        );
        assert_eq!(
            m("https://example.com/d/abc").as_deref(),
            Some("https://example.com/grafana/d/abc")
        );
        assert_eq!(m("https://other.org/x"), None);
        assert_eq!(m("relative/path"), None);
        let rep = route("replace_prefix = \"/other/\"");
        assert_eq!(
            map_location(&rep, "/other/x", "h:1", None).as_deref(),
            Some("/grafana/x")
        );
        assert_eq!(map_location(&rep, "/elsewhere", "h:1", None), None);
        assert_eq!(map_location(&route(""), "/x", "h:1", None), None);
    }

    #[test]
    fn cookie_paths() {
        let strip = route("strip_prefix = true");
        assert_eq!(
            map_cookie_path(&strip, "s=1; Path=/; HttpOnly").as_deref(),
            Some("s=1; Path=/grafana/; HttpOnly")
        );
        assert_eq!(
            map_cookie_path(&strip, "s=1; path=/api").as_deref(),
            Some("s=1; path=/grafana/api")
        );
        assert_eq!(map_cookie_path(&strip, "s=1; HttpOnly"), None);
        assert_eq!(map_cookie_path(&strip, "s=1"), None);
        // Fuzz regression: a multi-byte character where "Path=" would end.
        assert_eq!(map_cookie_path(&strip, "a=/;pOa=\u{4cf};x"), None);
        assert_eq!(
            map_cookie_path(&strip, "s=1; \u{4cf}\u{4cf}; Path=/x").as_deref(),
            Some("s=1; \u{4cf}\u{4cf}; Path=/grafana/x")
        );
    }
}
