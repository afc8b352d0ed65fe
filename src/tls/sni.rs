//! Certificate choice by SNI: an exact name first, then a wildcard covering exactly one more label
//! (`*.example.org` covers `app.example.org`, not `example.org` nor `a.b.example.org`), else the
//! default (the first certificate of the listener). Names come from each certificate's SAN.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug)]
pub(crate) struct SniResolver {
    /// Index 0 is the default.
    certs: Vec<Arc<CertifiedKey>>,
    exact: HashMap<String, usize>,
    /// `*.example.org` is stored under `example.org`.
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    pub fn new() -> Self {
        SniResolver {
            certs: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    /// Adds a certificate under its lower-case SAN names. Returns the names that an earlier
    /// certificate already claimed (the earlier one keeps them).
    pub fn add(&mut self, cert: Arc<CertifiedKey>, names: &[String]) -> Vec<String> {
        let index = self.certs.len();
        self.certs.push(cert);
        let mut taken = Vec::new();
        for name in names {
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent),
                None => (&mut self.exact, name.as_str()),
            };
            if map.contains_key(key) {
                taken.push(name.clone());
            } else {
                map.insert(key.to_owned(), index);
            }
        }
        taken
    }

    /// Index of the certificate for a (lower-case, as rustls hands it over) SNI name.
    fn pick(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni else { return 0 };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent).copied())
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.get(self.pick(hello.server_name())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    fn dummy() -> Arc<CertifiedKey> {
        // Only the identity of the entry matters here, not the certificate.
        let pair = rcgen::KeyPair::generate().unwrap();
        let der = PrivatePkcs8KeyDer::from(pair.serialize_der()).into();
        let key = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(vec![CertificateDer::from(vec![])], key))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut r = SniResolver::new();
        assert!(r.add(dummy(), &names(&["example.com", "www.example.com"])).is_empty());
        assert!(r.add(dummy(), &names(&["*.example.org", "example.org"])).is_empty());
        assert!(r.add(dummy(), &names(&["admin.example.org"])).is_empty());
        for (sni, want) in [
            (None, 0),
            (Some("example.com"), 0),
            (Some("www.example.com"), 0),
            (Some("example.org"), 1),
            (Some("app.example.org"), 1),
            (Some("app.example.org."), 1),
            (Some("admin.example.org"), 2),
            (Some("a.b.example.org"), 0),
            (Some("xexample.org"), 0),
            (Some("unknown.net"), 0),
            (Some("localhost"), 0),
        ] {
            assert_eq!(r.pick(sni), want, "{sni:?}");
        }
    }

    #[test]
    fn first_certificate_keeps_a_shared_name() {
        let mut r = SniResolver::new();
        r.add(dummy(), &names(&["a.example.com"]));
        let taken = r.add(dummy(), &names(&["a.example.com", "*.example.com", "b.example.com"]));
        assert_eq!(taken, names(&["a.example.com"]));
        assert_eq!(r.pick(Some("a.example.com")), 0);
        assert_eq!(r.pick(Some("b.example.com")), 1);
        assert_eq!(r.pick(Some("c.example.com")), 1);
    }
}
