//! Server side: the listener's certificate pairs are loaded and checked once at start-up into one
//! rustls `ServerConfig`; each accepted connection then runs its handshake under a deadline.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monoio::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};

use super::sni::SniResolver;
use super::{pem, provider, x509, CertPair, ServerStream, TlsError, ALPN_H2, ALPN_HTTP11, VERSIONS};

/// TLS settings of one listener. Cloning shares the configuration.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Loads PEM full chains and RSA/ECDSA/Ed25519 keys; SNI picks among certificates by exact and
    /// wildcard (`*.example.org`) names from each certificate's SAN; the first pair is the default
    /// for clients without SNI or with an unknown name. ALPN offers `http/1.1`. TLS 1.2 and 1.3.
    ///
    /// Errors: missing or unreadable file, no certificate or key in a file, key not matching the
    /// certificate. Warnings (returned beside the configuration): a certificate expired or not yet
    /// valid, without any DNS name, or naming a host that an earlier certificate already serves.
    pub fn load(pairs: &[CertPair]) -> Result<(ServerTls, Vec<String>), TlsError> {
        if pairs.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        let provider = provider();
        let now = unix_now();
        let mut resolver = SniResolver::new();
        let mut warnings = Vec::new();
        for (index, pair) in pairs.iter().enumerate() {
            let (certified, info) = load_pair(pair, &provider)?;
            let what = describe(&pair.cert, &info.dns_names);
            match info.validity {
                Some((_, after)) if after.unix() < now => {
                    warnings.push(format!("{what} expired on {after}"));
                }
                Some((before, _)) if before.unix() > now => {
                    warnings.push(format!("{what} is not valid before {before}"));
                }
                Some(_) => {}
                None => warnings.push(format!("{what}: its validity period cannot be read")),
            }
            if info.dns_names.is_empty() {
                warnings.push(match index {
                    0 => format!(
                        "{what} has no DNS name; it only serves clients without SNI or with \
                         an unknown name"
                    ),
                    _ => format!("{what} has no DNS name, so it is never chosen"),
                });
            }
            for name in resolver.add(Arc::new(certified), &info.dns_names) {
                warnings.push(format!(
                    "{what}: {name} is also named by an earlier certificate, which is used for it"
                ));
            }
        }

        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok((
            ServerTls {
                config: Arc::new(config),
            },
            warnings,
        ))
    }

    /// The same settings with ALPN offering `h2` before `http/1.1` (`[[listener]] http2`).
    pub fn offering_h2(mut self) -> ServerTls {
        Arc::make_mut(&mut self.config).alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        self
    }

    /// Server-side handshake. A client that has not completed it by `timeout` (including one that
    /// sends nothing, or stalls halfway) gets an error of kind `TimedOut` and its socket is closed.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> io::Result<ServerStream> {
        let conn = rustls::ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        let mut stream = ServerStream::new(tcp, conn)?;
        match monoio::time::timeout(timeout, stream.handshake()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake not completed within {timeout:?}"),
            )),
        }
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Reads one chain and its key and checks that they belong together.
fn load_pair(pair: &CertPair, provider: &CryptoProvider) -> Result<(CertifiedKey, x509::CertInfo), TlsError> {
    let chain = pem::read_certs(&pair.cert)?;
    let info = x509::inspect(&chain[0]).map_err(|detail| TlsError::BadCertificate {
        path: pair.cert.clone(),
        detail,
    })?;
    let key = provider
        .key_provider
        .load_private_key(pem::read_key(&pair.key)?)
        .map_err(|e| TlsError::UnsupportedKey {
            path: pair.key.clone(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok((certified, info)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::KeyMismatch {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: pair.cert.clone(),
            detail: e.to_string(),
        }),
    }
}

/// "certificate /etc/x.pem (example.com, www.example.com, …)" for warnings.
fn describe(path: &Path, names: &[String]) -> String {
    let mut shown = names.iter().take(3).map(String::as_str).collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        shown.push_str(", …");
    }
    match shown.is_empty() {
        true => format!("certificate {}", path.display()),
        false => format!("certificate {} ({shown})", path.display()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
