//! Cache keys. The primary key is the client's host with the path and query sent upstream
//! (after the route's rewrite), and, on authenticated requests, the identity the upstream saw,
//! so two people never share an entry. The full key adds the request's values of the fields
//! the stored response's `Vary` names.

use super::policy::values;

/// Request fields that carry who is asking: part of the key of an authenticated request.
const IDENTITY: [&str; 2] = ["authorization", "cookie"];

/// The primary key; `None` for a target or host that is not plain text (never cached).
/// `identity_fields` are the identity headers ringway itself sets (`[auth]`), looked up in
/// the upstream head with Authorization and Cookie when `authenticated`.
pub fn primary(
    host: &str,
    target: &[u8],
    upstream_head: &[httparse::Header<'_>],
    authenticated: bool,
    identity_fields: &[String],
) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    let mut key = String::with_capacity(host.len() + target.len() + 2);
    for c in host.chars() {
        key.push(c.to_ascii_lowercase());
    }
    key.push(' ');
    key.push_str(target);
    if authenticated {
        key.push_str("\0id");
        let names = IDENTITY
            .iter()
            .copied()
            .chain(identity_fields.iter().map(|s| s.as_str()));
        for name in names {
            for v in values(upstream_head, name) {
                key.push('\0');
                key.push_str(name);
                key.push('=');
                push_escaped(&mut key, v);
            }
        }
    }
    Some(key)
}

/// The full key: `primary` and the request's values of each field in `vary`.
pub fn full(primary: &str, vary: &[Box<str>], request: &[httparse::Header<'_>]) -> Box<str> {
    if vary.is_empty() {
        return primary.into();
    }
    let mut key = String::with_capacity(primary.len() + 64);
    key.push_str(primary);
    for name in vary {
        key.push_str("\0v:");
        key.push_str(name);
        key.push('=');
        for (i, v) in values(request, name).enumerate() {
            if i > 0 {
                key.push(',');
            }
            push_escaped(&mut key, crate::http::trim(v));
        }
    }
    key.into()
}

/// The field names a response's `Vary` lists, lower-case, sorted, each once.
pub fn vary_names(response: &[httparse::Header<'_>]) -> Vec<Box<str>> {
    let mut names: Vec<Box<str>> = values(response, "vary")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(crate::http::trim)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase().into())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Field bytes in a key: text as is, other bytes as `%XX`, so distinct values stay distinct.
fn push_escaped(key: &mut String, v: &[u8]) {
    for &b in v {
        if b.is_ascii_graphic() || b == b' ' {
            key.push(b as char);
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::test_fields as h;

    #[test]
    fn identity_only_when_authenticated() {
        let head = h(&[("Authorization", "Basic YTpi"), ("X-User", "alice")]);
        let ids = vec!["x-user".to_string()];
        let anon = primary("Example.org", b"/a?b", &head, false, &ids).unwrap();
        assert_eq!(anon, "example.org /a?b");
        let alice = primary("example.org", b"/a?b", &head, true, &ids).unwrap();
        let bob_head = h(&[("Authorization", "Basic Yjpj"), ("X-User", "bob")]);
        let bob = primary("example.org", b"/a?b", &bob_head, true, &ids).unwrap();
        assert_ne!(alice, bob);
        assert!(primary("h", b"/\xff", &head, false, &ids).is_none());
    }

    #[test]
    fn vary_values_make_the_full_key() {
        let resp = h(&[("Vary", "Accept-Encoding, accept"), ("vary", "Accept")]);
        let names = vary_names(&resp);
        assert_eq!(names, vec!["accept".into(), "accept-encoding".into()] as Vec<Box<str>>);
        let a = full("p", &names, &h(&[("Accept", "text/html")]));
        let b = full("p", &names, &h(&[("Accept", "application/json")]));
        let none = full("p", &names, &[]);
        assert!(a != b && a != none && b != none);
    }
}
