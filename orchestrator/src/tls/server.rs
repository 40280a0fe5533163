//! HTTPS for `bramble serve`.
//!
//! [`ServerTls`] holds the rustls server configuration. Its certificate comes from a
//! resolver ([`ReloadingCert`]) that keeps the current `CertifiedKey` behind a lock:
//! [`ServerTls::reload`] (on SIGHUP, see [`ServerTls::reload_on_hangup`]) re-reads the
//! files and swaps it in, or keeps the old one when the new files are bad. A
//! connection's certificate is fixed at its handshake, so open connections carry on;
//! new handshakes get the new certificate.
//!
//! [`TlsListener`] is an `axum::serve::Listener`: `axum::serve` runs on it exactly as
//! on a plain `TcpListener`, graceful shutdown included (stop accepting, let every
//! connection finish its request). Handshakes run in a task of their own, each with a
//! timeout, so a slow or failing client never holds up the others; a failed handshake
//! is logged at debug and counted (`bramble_tls_handshake_failures_total`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{CertSummary, TlsConfig, TlsError};
use crate::metrics::{Collector, Metrics, Sample};

/// How long a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const EXPIRY_GAUGE: &str = "bramble_tls_cert_expiry_timestamp_seconds";
const HANDSHAKE_FAILURES: &str = "bramble_tls_handshake_failures_total";

/// The certificate being served and what it says.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    summary: CertSummary,
}

/// The resolver: every handshake gets the certificate current at that moment.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Served>,
}

impl ReloadingCert {
    fn served(&self) -> std::sync::RwLockReadGuard<'_, Served> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served().key.clone())
    }
}

impl Collector for ReloadingCert {
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![(
            EXPIRY_GAUGE,
            "gauge",
            "When the served TLS certificate expires (its not_after), seconds since the Unix epoch",
        )]
    }

    fn collect(&self) -> Vec<Sample> {
        vec![Sample::new(EXPIRY_GAUGE, self.served().summary.not_after_unix() as f64)]
    }
}

/// Reads `cert` and `key` into what the resolver serves.
fn load(config: &TlsConfig) -> Result<Served, TlsError> {
    let key = super::pem::certified_key(&config.cert, &config.key)?;
    let summary = super::inspect(&config.cert, None)?;
    Ok(Served { key, summary })
}

/// The server side of TLS, built from a checked `[tls]` section.
pub struct ServerTls {
    config: TlsConfig,
    cert: Arc<ReloadingCert>,
    acceptor: TlsAcceptor,
    handshake_failures: Arc<AtomicU64>,
}

impl ServerTls {
    /// Reads the certificate, key and client CA, and registers the expiry gauge and the
    /// handshake-failure counter with `metrics`.
    pub fn new(config: &TlsConfig, metrics: &Metrics) -> Result<ServerTls, TlsError> {
        let cert = Arc::new(ReloadingCert { current: RwLock::new(load(config)?) });
        let provider = super::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls { path: config.cert.clone(), message: e.to_string() })?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(super::pem::roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::Rustls { path: ca.clone(), message: e.to_string() })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_cert_resolver(cert.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        metrics.add_collector(cert.clone());
        let handshake_failures = metrics.counter(
            HANDSHAKE_FAILURES,
            "TLS handshakes that failed or timed out (bad client certificate, wrong CA, plain HTTP, ...)",
        );
        Ok(ServerTls {
            config: config.clone(),
            cert,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            handshake_failures,
        })
    }

    /// What the certificate being served says.
    pub fn current(&self) -> CertSummary {
        self.cert.served().summary.clone()
    }

    /// Re-reads the certificate and key files. On success new handshakes get the new
    /// certificate; on error the old one stays and the error says why.
    pub fn reload(&self) -> Result<CertSummary, TlsError> {
        let served = load(&self.config)?;
        let summary = served.summary.clone();
        *self.cert.current.write().unwrap_or_else(|e| e.into_inner()) = served;
        Ok(summary)
    }

    /// [`Self::reload`], logged: the new certificate at info, a refusal at error.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(s) => tracing::info!(
                cert = %self.config.cert.display(),
                subject = %s.subject,
                serial = %s.serial,
                not_after = %crate::time::rfc3339(s.not_after_unix() * 1000),
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                cert = %self.config.cert.display(),
                key = %self.config.key.display(),
                error = %e,
                "TLS certificate not reloaded; still serving the previous one"
            ),
        }
    }

    /// Listens for SIGHUP now and returns the task that reloads the certificate on
    /// each one until `stop` resolves. (Other SIGHUP listeners in the process, such as
    /// the configuration reload, get the same signals independently.)
    pub fn reload_on_hangup(
        self: &Arc<Self>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<impl Future<Output = ()> + Send + 'static, TlsError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).map_err(TlsError::Signal)?;
        let me = self.clone();
        Ok(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    got = hangups.recv() => match got {
                        Some(()) => me.reload_logged(),
                        None => break,
                    },
                }
            }
        })
    }

    /// Serves TLS on `tcp`: a listener for `axum::serve`.
    pub fn listen(&self, tcp: TcpListener) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, self.acceptor.clone(), tx, self.handshake_failures.clone()));
        Ok(TlsListener { rx, local_addr })
    }
}

/// Accepts TCP connections and runs their handshakes, each in a task of its own, until
/// the [`TlsListener`] is dropped (then pending handshakes are abandoned).
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    failures: Arc<AtomicU64>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (acceptor, tx, failures) = (acceptor.clone(), tx.clone(), failures.clone());
                    handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(e)) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
                            }
                        }
                    });
                }
                Err(e) => accept_error(e).await,
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            _ = tx.closed() => break,
        }
    }
}

/// As `axum::serve` does: a connection reset before accept is nothing; anything else
/// (out of file descriptors) is logged and waited out.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Connections whose handshake completed, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// Whether serving on `addr` without TLS exposes the API beyond this machine.
pub fn exposed_without_tls(addr: SocketAddr, tls: bool) -> bool {
    !tls && !addr.ip().is_loopback()
}

/// Logs a warning when [`exposed_without_tls`].
pub fn warn_if_exposed(addr: SocketAddr, tls: bool) {
    if exposed_without_tls(addr, tls) {
        tracing::warn!(
            %addr,
            tls = false,
            "serving the API over plain HTTP on a non-loopback address: tokens and data cross the network unencrypted; set [tls] cert and key (docs/tls.md)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_beyond_loopback_is_exposed() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(!exposed_without_tls(at("127.0.0.1:8080"), false));
        assert!(!exposed_without_tls(at("127.0.0.2:8080"), false));
        assert!(!exposed_without_tls(at("[::1]:8080"), false));
        assert!(exposed_without_tls(at("0.0.0.0:8080"), false));
        assert!(exposed_without_tls(at("[::]:8080"), false));
        assert!(exposed_without_tls(at("192.0.2.7:8080"), false));
        assert!(!exposed_without_tls(at("0.0.0.0:8443"), true));
    }

    #[test]
    fn a_bad_reload_keeps_the_served_certificate_and_a_good_one_replaces_it() {
        let pki = crate::tls::testpki::TestPki::new();
        let cert = pki.dir.join("live.pem");
        let key = pki.dir.join("live.key");
        std::fs::copy(&pki.server_cert, &cert).unwrap();
        std::fs::copy(&pki.server_key, &key).unwrap();
        let config = TlsConfig { cert: cert.clone(), key: key.clone(), client_ca: None };
        let metrics = Metrics::default();
        let tls = ServerTls::new(&config, &metrics).unwrap();
        let first = tls.current();
        assert_eq!(first.serial, hex::encode([0x03, 0xe9]), "serial 1001");
        assert!(
            metrics.render(&[]).contains(&format!("{EXPIRY_GAUGE} {}", first.not_after_unix()))
        );

        // The renewed certificate with the old key: refused, the old one still served.
        let (new_cert, new_key) =
            pki.issue("server2", "bramble server 2", 90, 1002, crate::tls::testpki::Usage::Server);
        std::fs::copy(&new_cert, &cert).unwrap();
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert_eq!(tls.current(), first);

        std::fs::copy(&new_key, &key).unwrap();
        let second = tls.reload().unwrap();
        assert_eq!(second.subject, "CN=bramble server 2");
        assert!(second.not_after > first.not_after);
        assert!(
            metrics.render(&[]).contains(&format!("{EXPIRY_GAUGE} {}", second.not_after_unix()))
        );
    }
}
