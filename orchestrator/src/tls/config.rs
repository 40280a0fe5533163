//! The `[tls]` section: [`RawTls`] as written, [`TlsConfig`] once checked. Checking
//! reads the files, so a controller never starts with a certificate it cannot serve:
//! errors name the file and the key (`tls.cert`, `tls.key`, `tls.client_ca`).

use std::path::PathBuf;

use serde::Deserialize;

use super::TlsError;
use crate::config::ConfigError;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file: the server's certificate, then any intermediates.
    pub cert: Option<PathBuf>,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA bundle. When set, every client must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
}

/// The checked section: the files existed, parsed and matched at load time. The
/// server re-reads `cert` and `key` on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Checks a parsed `[tls]` section. `origin` names the file in errors.
    pub fn from_raw(raw: RawTls, origin: &str) -> Result<TlsConfig, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let cert = raw.cert.ok_or_else(|| invalid("tls.cert", "is missing".into()))?;
        let key = raw.key.ok_or_else(|| invalid("tls.key", "is missing".into()))?;
        super::pem::certs(&cert).map_err(|e| invalid("tls.cert", e.to_string()))?;
        super::pem::certified_key(&cert, &key).map_err(|e| {
            let which = match &e {
                TlsError::KeyMismatch { .. } => "tls.key",
                TlsError::Read { path, .. }
                | TlsError::NoKey { path }
                | TlsError::Pem { path, .. }
                | TlsError::Rustls { path, .. }
                    if *path == key =>
                {
                    "tls.key"
                }
                _ => "tls.cert",
            };
            invalid(which, e.to_string())
        })?;
        if let Some(ca) = &raw.client_ca {
            super::pem::roots(ca).map_err(|e| invalid("tls.client_ca", e.to_string()))?;
        }
        Ok(TlsConfig { cert, key, client_ca: raw.client_ca })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::TestPki;

    fn check(raw: RawTls) -> Result<TlsConfig, String> {
        TlsConfig::from_raw(raw, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_matching_pair_and_a_ca_bundle_are_accepted() {
        let pki = TestPki::new();
        let c = check(RawTls {
            cert: Some(pki.server_cert.clone()),
            key: Some(pki.server_key.clone()),
            client_ca: Some(pki.ca_cert.clone()),
        })
        .unwrap();
        assert_eq!(c.client_ca.as_ref(), Some(&pki.ca_cert));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let pki = TestPki::new();
        let garbage = pki.dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let missing = pki.dir.join("missing.pem");
        let cases = [
            (None, Some(&pki.server_key), None, "`tls.cert` is missing"),
            (Some(&pki.server_cert), None, None, "`tls.key` is missing"),
            (Some(&missing), Some(&pki.server_key), None, "`tls.cert` cannot read"),
            (Some(&garbage), Some(&pki.server_key), None, "`tls.cert`"),
            (Some(&pki.server_cert), Some(&garbage), None, "`tls.key`"),
            (Some(&pki.server_cert), Some(&pki.server_cert), None, "`tls.key`"),
            (Some(&pki.server_cert), Some(&pki.client_key), None, "does not belong"),
            (Some(&pki.server_cert), Some(&pki.server_key), Some(&garbage), "`tls.client_ca`"),
            (Some(&pki.server_cert), Some(&pki.server_key), Some(&missing), "`tls.client_ca`"),
        ];
        for (cert, key, ca, want) in cases {
            let raw = RawTls { cert: cert.cloned(), key: key.cloned(), client_ca: ca.cloned() };
            let err = check(raw).unwrap_err();
            assert!(err.contains(want) && err.contains("t.toml"), "want {want:?} in {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RawTls>("cert = \"a\"\nkey = \"b\"\nca = \"c\"").unwrap_err();
        assert!(err.to_string().contains("ca"), "{err}");
    }
}
