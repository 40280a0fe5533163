//! TLS on the network side, with rustls and the `ring` provider (no OpenSSL).
//!
//! - [`config`]: the `[tls]` section (`cert`, `key`, `client_ca`), checked at load.
//! - [`pem`]: reading PEM certificates and keys (the one place files become DER).
//! - [`cert`]: [`inspect`], what a certificate file says (subject, expiry, key match),
//!   for `bramble doctor` and the expiry gauge.
//! - [`server`]: the HTTPS listener `bramble serve` runs on, with the certificate
//!   reloaded on SIGHUP, and the plain-HTTP warning.
//! - [`client`]: the HTTP client the CLI, the webhook sender and the tests use: it
//!   verifies against the system's roots or a configured CA file, and can present a
//!   client certificate.
//! - [`testpki`]: a throwaway CA and certificates made with the `openssl` command,
//!   for tests.
//!
//! **Invariant:** every rustls configuration here is built on [`provider`]: no code
//! path depends on a process-wide default provider.

use std::path::PathBuf;
use std::sync::Arc;

pub mod cert;
pub mod client;
pub mod config;
pub mod pem;
pub mod server;
pub mod testpki;

pub use cert::{CertSummary, inspect};
pub use client::ClientTls;
pub use config::{RawTls, TlsConfig};
pub use server::ServerTls;

/// The crypto provider every rustls configuration in Bramble is built on.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be used. Messages name the file and never carry key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path} is not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: certificate cannot be parsed: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {message}")]
    Rustls { path: PathBuf, message: String },
    #[error("cannot listen for SIGHUP")]
    Signal(#[source] std::io::Error),
}
