//! The HTTP client side: [`ClientTls`] says whom to trust (the system's roots, or only
//! the CAs of a PEM file) and which client certificate to present, and builds the
//! rustls configuration and the `reqwest` client from it. The CLI, the webhook sender,
//! the lab and the tests all make their clients here, so every one of them speaks
//! HTTPS the same way.
//!
//! The system's roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) are read
//! at the first HTTPS handshake, once per process: a client that only ever speaks
//! plain HTTP, or runs where no CA bundle is installed, never needs them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsError;

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a client verifies servers and proves itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the CAs in this PEM bundle; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The certificate to present to a server that asks for one.
    pub identity: Option<Identity>,
}

impl ClientTls {
    /// The rustls configuration: HTTP/1.1, the verifier and the identity. Reads the
    /// CA and identity files now, so a bad file is an error here, not at first use.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = super::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls {
                path: "(protocol versions)".into(),
                message: e.to_string(),
            })?;
        let builder = match &self.ca_file {
            Some(path) => builder.with_root_certificates(super::pem::roots(path)?),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SystemRoots { provider })),
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let chain = super::pem::certs(&id.cert)?;
                let key = super::pem::key(&id.key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => {
                        TlsError::KeyMismatch { cert: id.cert.clone(), key: id.key.clone() }
                    }
                    e => TlsError::Rustls { path: id.key.clone(), message: e.to_string() },
                })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A `reqwest` builder whose TLS is [`Self::rustls_config`]; add timeouts and the
    /// like, then build.
    pub fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder, TlsError> {
        Ok(reqwest::Client::builder().tls_backend_preconfigured(self.rustls_config()?))
    }
}

/// `reqwest::Client::new()` for Bramble's processes and tests: HTTPS verified against
/// the system's roots. (This workspace's `reqwest` has no crypto provider of its own,
/// so its `Client::new()` would panic.)
pub fn http() -> reqwest::Client {
    ClientTls::default()
        .reqwest_builder()
        .and_then(|b| {
            b.build()
                .map_err(|e| TlsError::Rustls { path: "(client)".into(), message: e.to_string() })
        })
        .expect("a client without CA or identity files always builds")
}

/// The platform verifier over the system's roots, loaded at the first handshake.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
}

static SYSTEM_VERIFIER: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, String>> =
    OnceLock::new();

impl SystemRoots {
    fn verifier(&self) -> Result<&Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
        SYSTEM_VERIFIER
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new(self.provider.clone())
                    .map(Arc::new)
                    .map_err(|e| format!("{e}; pass a CA file (--ca-file, [webhooks] ca_file)"))
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
