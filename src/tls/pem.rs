//! Reading PEM files: certificate chains (leaf first), private keys and CA bundles. Each failure
//! becomes a [`TlsError`] naming the file.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// All `CERTIFICATE` blocks of a file, in file order. Other blocks (a key in the same file) are
/// skipped. An empty result is an error.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key of a file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        // PKCS#8 "ENCRYPTED PRIVATE KEY" is skipped as unknown; legacy "Proc-Type: 4,ENCRYPTED"
        // headers break the base64. Either way the useful message is "it is encrypted".
        let encrypted = contains(&bytes, b"ENCRYPTED");
        match e {
            pem::Error::NoItemsFound => TlsError::NoKey {
                path: path.to_owned(),
                encrypted,
            },
            _ if encrypted => TlsError::NoKey {
                path: path.to_owned(),
                encrypted,
            },
            e => pem_error(path, e),
        }
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    // The crate's Display prints markers as byte arrays; say it in words instead.
    let detail = match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!(
                "missing \"-----END {}-----\" line",
                String::from_utf8_lossy(&end_marker)
            )
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("bad BEGIN line {:?}", String::from_utf8_lossy(&line))
        }
        e => e.to_string(),
    };
    TlsError::Pem {
        path: path.to_owned(),
        detail,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
