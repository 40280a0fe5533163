//! PEM files as rustls takes them: certificate chains, private keys, CA bundles, and
//! the certified key a server presents (key checked against its certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in `path`, in order (a server's own first, then its chain).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key in `path`.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_path_buf() },
        e => TlsError::Pem { path: path.to_path_buf(), message: e.to_string() },
    })
}

/// The certificates of a CA bundle as a trust store.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| TlsError::Certificate {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The chain in `cert` with the key in `key`, refused unless the key is the
/// certificate's.
pub fn certified_key(cert: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(cert)?;
    let der = key(key_path)?;
    let provider = super::provider();
    let signing = provider.key_provider.load_private_key(der).map_err(|e| TlsError::Rustls {
        path: key_path.to_path_buf(),
        message: format!("unusable private key: {e}"),
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert: cert.to_path_buf(), key: key_path.to_path_buf() })
        }
        Err(e) => Err(TlsError::Certificate { path: cert.to_path_buf(), message: e.to_string() }),
    }
}
