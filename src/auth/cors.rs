//! CORS for a route: the preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered
//! by the proxy; other requests from an allowed Origin get the allow headers on the response.
//! The upstream's own Access-Control-* headers are dropped on such routes so the two never
//! disagree in one response.

use crate::config::CorsPlan;

impl CorsPlan {
    /// The value for Access-Control-Allow-Origin, when `origin` may read responses.
    pub fn allowed<'o>(&self, origin: &'o [u8]) -> Option<&'o [u8]> {
        if self.any_origin || self.allow_origin.iter().any(|o| o.as_bytes() == origin) {
            Some(origin)
        } else {
            None
        }
    }

    /// Fields for an actual (non-preflight) response to an allowed origin, in order.
    pub fn response_fields(&self, origin: &[u8], mut f: impl FnMut(&'static str, &[u8])) {
        self.common_fields(origin, &mut f);
        if !self.expose_headers.is_empty() {
            f("Access-Control-Expose-Headers", self.expose_headers.as_bytes());
        }
    }

    /// Fields for the proxy's answer to a preflight from an allowed origin, in order.
    pub fn preflight_fields(&self, origin: &[u8], mut f: impl FnMut(&'static str, &[u8])) {
        self.common_fields(origin, &mut f);
        if !self.allow_methods.is_empty() {
            f("Access-Control-Allow-Methods", self.allow_methods.as_bytes());
        }
        if !self.allow_headers.is_empty() {
            f("Access-Control-Allow-Headers", self.allow_headers.as_bytes());
        }
        if let Some(age) = self.max_age {
            f(
                "Access-Control-Max-Age",
                itoa::Buffer::new().format(age.as_secs()).as_bytes(),
            );
        }
    }

    fn common_fields(&self, origin: &[u8], f: &mut impl FnMut(&'static str, &[u8])) {
        // With credentials the origin must be echoed, never `*`; echoing always is simplest and
        // correct as long as caches are told the answer depends on Origin.
        f("Access-Control-Allow-Origin", origin);
        if self.allow_credentials {
            f("Access-Control-Allow-Credentials", b"true");
        }
        f("Vary", b"Origin");
    }
}

/// Response headers an upstream may send that the route's CORS settings replace.
pub fn is_cors_header(name: &[u8]) -> bool {
    name.len() > 15 && name[..15].eq_ignore_ascii_case(b"access-control-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_and_response_headers() {
        let c = CorsPlan {
            allow_origin: vec!["https://app.example.com".into()],
            any_origin: false,
            allow_methods: "GET, POST".into(),
            allow_headers: "Authorization".into(),
            expose_headers: String::new(),
            allow_credentials: false,
            max_age: Some(std::time::Duration::from_secs(600)),
        };
        assert!(c.allowed(b"https://evil.example.com").is_none());
        let o = c.allowed(b"https://app.example.com").unwrap();
        let mut fields = Vec::new();
        c.preflight_fields(o, |n, v| fields.push(format!("{n}: {}", String::from_utf8_lossy(v))));
        assert_eq!(
            fields,
            [
                "Access-Control-Allow-Origin: https://app.example.com",
                "Vary: Origin",
                "Access-Control-Allow-Methods: GET, POST",
                "Access-Control-Allow-Headers: Authorization",
                "Access-Control-Max-Age: 600",
            ]
        );
        assert!(is_cors_header(b"ACCESS-CONTROL-ALLOW-ORIGIN"));
        assert!(!is_cors_header(b"Access-Control"));
    }
}
