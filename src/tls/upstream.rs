//! Client side, towards `https://` upstreams: certificates are verified against the upstream's
//! `ca` file or the system roots, with SNI and name checks for the upstream's host (or IP address).
//! Skipping verification exists only when asked for explicitly.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{pem, provider, ClientStream, TlsError, ALPN_HTTP11, VERSIONS};

/// TLS settings for one upstream. Cloning shares the configuration (and its session cache).
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// `ca = None` trusts the system roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`),
    /// loaded once per process. `insecure = true` skips certificate verification entirely (the
    /// handshake signatures are still checked); `ca` is then not read.
    pub fn new(ca: Option<&Path>, insecure: bool) -> Result<UpstreamTls, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Config)?;
        let builder = match (insecure, ca) {
            (true, _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
            (false, Some(path)) => builder.with_root_certificates(ca_roots(path)?),
            (false, None) => builder.with_root_certificates(system_roots()?),
        };
        let mut config = builder.with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
        })
    }

    /// Client handshake with SNI and certificate name check for `server_name` (a DNS name, or an
    /// IP address, bracketed or not, which is checked against the certificate's IP SANs and sends
    /// no SNI). Errors say which upstream and why, e.g. "certificate is not signed by a trusted CA".
    pub async fn connect(&self, tcp: TcpStream, server_name: &str) -> io::Result<ClientStream> {
        let host = server_name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upstream host {server_name:?} is not a valid DNS name or IP address"),
            )
        })?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| explain(server_name, io::Error::other(e)))?;
        let mut stream = ClientStream::new(tcp, conn)?;
        stream.handshake().await.map_err(|e| explain(server_name, e))?;
        Ok(stream)
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").finish_non_exhaustive()
    }
}

/// Adds the upstream's name to a handshake error, and plain words for the usual rustls reasons.
fn explain(server_name: &str, e: io::Error) -> io::Error {
    let reason = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "certificate is not signed by a trusted CA (check the upstream's `ca` and that the \
             server sends its intermediates)"
                .to_owned()
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => {
            "certificate has a bad signature".to_owned()
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)) => {
            "certificate revocation status is unknown".to_owned()
        }
        Some(rustls::Error::InvalidCertificate(reason)) => reason.to_string(),
        _ => e.to_string(),
    };
    io::Error::new(
        e.kind(),
        format!("TLS handshake with upstream {server_name} failed: {reason}"),
    )
}

fn ca_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(pem::read_certs(path)?);
    if added == 0 {
        return Err(TlsError::NoCaCertificate {
            path: path.to_owned(),
            ignored,
        });
    }
    Ok(Arc::new(roots))
}

/// The system roots, read once per process and shared by every upstream that uses them.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        match (added, found.errors.first()) {
            (0, Some(e)) => Err(e.to_string()),
            (0, None) => Err("none in the platform's certificate store".to_owned()),
            _ => Ok(Arc::new(roots)),
        }
    });
    roots.clone().map_err(|detail| TlsError::NoSystemRoots { detail })
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are still
/// verified so the connection is at least bound to the key the server presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
