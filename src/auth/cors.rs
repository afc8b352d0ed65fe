//! CORS for a route: the preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered
//! by the proxy; other requests from an allowed Origin get the allow headers on the response.
//! The upstream's own Access-Control-* headers are dropped on such routes so the two never
//! disagree in one response.

use crate::config::CorsPlan;
use crate::http::write::header;

impl CorsPlan {
    /// The value for Access-Control-Allow-Origin, when `origin` may read responses.
    pub fn allowed<'o>(&self, origin: &'o [u8]) -> Option<&'o [u8]> {
        if self.any_origin || self.allow_origin.iter().any(|o| o.as_bytes() == origin) {
            Some(origin)
        } else {
            None
        }
    }

    /// Headers for an actual (non-preflight) response to an allowed origin.
    pub fn write_response_headers(&self, out: &mut Vec<u8>, origin: &[u8]) {
        self.write_common(out, origin);
        if !self.expose_headers.is_empty() {
            header(out, b"Access-Control-Expose-Headers", self.expose_headers.as_bytes());
        }
    }

    /// Headers for the proxy's answer to a preflight from an allowed origin.
    pub fn write_preflight_headers(&self, out: &mut Vec<u8>, origin: &[u8]) {
        self.write_common(out, origin);
        if !self.allow_methods.is_empty() {
            header(out, b"Access-Control-Allow-Methods", self.allow_methods.as_bytes());
        }
        if !self.allow_headers.is_empty() {
            header(out, b"Access-Control-Allow-Headers", self.allow_headers.as_bytes());
        }
        if let Some(age) = self.max_age {
            crate::http::write::header_u64(out, b"Access-Control-Max-Age", age.as_secs());
        }
    }

    fn write_common(&self, out: &mut Vec<u8>, origin: &[u8]) {
        // With credentials the origin must be echoed, never `*`; echoing always is simplest and
        // correct as long as caches are told the answer depends on Origin.
        header(out, b"Access-Control-Allow-Origin", origin);
        if self.allow_credentials {
            header(out, b"Access-Control-Allow-Credentials", b"true");
        }
        header(out, b"Vary", b"Origin");
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
        let mut out = Vec::new();
        c.write_preflight_headers(&mut out, o);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Access-Control-Allow-Origin: https://app.example.com\r\n"));
        assert!(s.contains("Access-Control-Allow-Methods: GET, POST\r\n"));
        assert!(s.contains("Access-Control-Max-Age: 600\r\n"));
        assert!(is_cors_header(b"ACCESS-CONTROL-ALLOW-ORIGIN"));
        assert!(!is_cors_header(b"Access-Control"));
    }
}
