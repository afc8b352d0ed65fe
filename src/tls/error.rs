//! Start-up errors of the TLS layer. Every variant names the file it is about, so `ringway check`
//! and start-up can print it as is and exit 2.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why certificates, keys or CA files could not be turned into a TLS configuration.
#[derive(Debug)]
pub enum TlsError {
    /// The file is missing or cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// The file is not well-formed PEM.
    Pem { path: PathBuf, detail: String },
    /// The certificate file holds no `CERTIFICATE` block.
    NoCertificate { path: PathBuf },
    /// The first certificate of the file cannot be parsed as X.509.
    BadCertificate { path: PathBuf, detail: String },
    /// The key file holds no private key block that rustls understands.
    NoKey { path: PathBuf, encrypted: bool },
    /// The key parses as PEM but the crypto provider cannot use it (unsupported curve or type).
    UnsupportedKey { path: PathBuf, detail: String },
    /// The private key is not the key of the first certificate of the chain.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// A CA file holds no certificate usable as a trust anchor.
    NoCaCertificate { path: PathBuf, ignored: usize },
    /// No system root certificates could be loaded.
    NoSystemRoots { detail: String },
    /// A TLS listener was given no certificate at all.
    NoCertificates,
    /// rustls refused the configuration (should not happen with the fixed settings used here).
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsError::Pem { path, detail } => {
                write!(f, "{}: malformed PEM: {detail}", path.display())
            }
            TlsError::NoCertificate { path } => write!(
                f,
                "{}: no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" block)",
                path.display()
            ),
            TlsError::BadCertificate { path, detail } => {
                write!(
                    f,
                    "{}: the first certificate cannot be parsed: {detail}",
                    path.display()
                )
            }
            TlsError::NoKey { path, encrypted: true } => write!(
                f,
                "{}: the private key is encrypted; store it unencrypted (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
            TlsError::NoKey { path, encrypted: false } => write!(
                f,
                "{}: no private key found (expected a PKCS#8 \"PRIVATE KEY\", PKCS#1 \
                 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\" block)",
                path.display()
            ),
            TlsError::UnsupportedKey { path, detail } => write!(
                f,
                "{}: unsupported private key ({detail}); use RSA (2048 bits or more), \
                 ECDSA P-256/P-384 or Ed25519",
                path.display()
            ),
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "{} does not match the certificate in {} (the certificate file must start with \
                 the server's own certificate, followed by its intermediates)",
                key.display(),
                cert.display()
            ),
            TlsError::NoCaCertificate { path, ignored } => write!(
                f,
                "{}: no usable CA certificate ({ignored} certificate(s) could not be parsed)",
                path.display()
            ),
            TlsError::NoSystemRoots { detail } => write!(
                f,
                "no system root certificates found ({detail}); set `ca` for this upstream"
            ),
            TlsError::NoCertificates => {
                write!(f, "a TLS listener needs at least one certificate and key")
            }
            TlsError::Config(e) => write!(f, "TLS configuration rejected by rustls: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            TlsError::Config(e) => Some(e),
            _ => None,
        }
    }
}
