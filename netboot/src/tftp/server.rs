//! The request loop: receives requests on the listening socket, decides per request
//! (resolve the client, apply the name policy, open the file) in its own task, then runs
//! the transfer on a fresh socket and reports each step as a boot event.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::metrics::{Refusal, TftpMetrics};
use super::options::{Limits, Negotiated, negotiate};
use super::packet::{self, ClientPacket, DecodeError, ErrorCode, Request};
use super::path::map_request;
use super::resolve::{BootResolver, SlotBoot};
use super::source::{self, OpenError};
use super::transfer::{DEFAULT_RETRIES, Transfer};
use super::window::Outcome;
use crate::events::{BootEvent, BootEventSink, BootStage, ClientRef};

/// Largest request datagram read; longer ones are truncated and fail to decode.
const MAX_REQUEST: usize = 2048;

/// Server settings.
#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// Directory holding the shared first-stage `bootcode.bin`.
    pub firmware_dir: PathBuf,
    pub limits: Limits,
    /// Retransmissions of a block (or OACK) before the transfer is abandoned.
    pub max_retries: u32,
}

impl TftpConfig {
    pub fn new(firmware_dir: impl Into<PathBuf>) -> Self {
        TftpConfig {
            firmware_dir: firmware_dir.into(),
            limits: Limits::default(),
            max_retries: DEFAULT_RETRIES,
        }
    }
}

/// The listening socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening socket has no local address")]
    LocalAddr(#[source] std::io::Error),
}

/// A TFTP server shared by every listening socket it serves.
pub struct TftpServer {
    config: TftpConfig,
    resolver: Arc<dyn BootResolver>,
    sink: Arc<dyn BootEventSink>,
    metrics: Arc<TftpMetrics>,
    /// Clients (address and port) with a request in progress: a retransmitted request
    /// must not start a second transfer.
    active: DashMap<SocketAddr, ()>,
}

impl TftpServer {
    pub fn new(
        config: TftpConfig,
        resolver: Arc<dyn BootResolver>,
        sink: Arc<dyn BootEventSink>,
    ) -> Arc<Self> {
        Arc::new(TftpServer {
            config,
            resolver,
            sink,
            metrics: Arc::default(),
            active: DashMap::new(),
        })
    }

    /// The counters, for export.
    pub fn metrics(&self) -> Arc<TftpMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Serves requests arriving on `socket` until `shutdown` completes. Requests still
    /// being decided are then dropped; transfers already running on their threads finish
    /// or time out on their own (at most `(max_retries + 1) * timeout` after the client
    /// goes quiet). Transfers answer from the socket's local address, so a socket bound to
    /// 0.0.0.0 answers from whatever source address the route to the client picks.
    pub async fn serve(
        self: Arc<Self>,
        socket: UdpSocket,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let local = socket.local_addr().map_err(ServeError::LocalAddr)?;
        tracing::info!(%local, "tftp server listening");
        let socket = Arc::new(socket);
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_REQUEST];
        tokio::pin!(shutdown);
        loop {
            let (len, peer) = tokio::select! {
                () = &mut shutdown => break,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(got) => got,
                    Err(error) => {
                        tracing::debug!(%error, "tftp receive failed");
                        continue;
                    }
                },
            };
            while tasks.try_join_next().is_some() {}
            if self.active.insert(peer, ()).is_some() {
                tracing::debug!(%peer, "duplicate request while a transfer is running; ignored");
                continue;
            }
            let server = Arc::clone(&self);
            let (listener, datagram) = (Arc::clone(&socket), buf[..len].to_vec());
            tasks.spawn(async move {
                server.handle(&listener, local.ip(), peer, &datagram).await;
                server.active.remove(&peer);
            });
        }
        tasks.shutdown().await;
        tracing::info!(%local, "tftp server stopped");
        Ok(())
    }

    async fn handle(&self, listener: &UdpSocket, local: IpAddr, peer: SocketAddr, datagram: &[u8]) {
        let request = match packet::decode(datagram) {
            Ok(ClientPacket::Read(request)) => request,
            Ok(ClientPacket::Write(request)) => {
                let file = String::from_utf8_lossy(&request.filename).into_owned();
                tracing::info!(%peer, %file, "write request refused");
                return self.refuse(listener, peer, Refusal::WriteRequest).await;
            }
            Ok(_) => return tracing::trace!(%peer, "stray packet on the listening socket"),
            Err(DecodeError::NulInName) => {
                return self.refuse(listener, peer, Refusal::NulByte).await;
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "malformed request");
                return self.refuse(listener, peer, Refusal::Malformed).await;
            }
        };
        let Some(slot) = self.resolver.resolve(peer.ip()).await else {
            tracing::info!(%peer, "request from an unknown client refused");
            return self.refuse(listener, peer, Refusal::UnknownClient).await;
        };
        let file = String::from_utf8_lossy(&request.filename).into_owned();
        let client = client_ref(&slot, peer);
        match self.open(&request, &slot).await {
            Ok(src) => {
                self.record(&client, BootStage::TftpRead { file: file.clone() });
                let outcome = self.transfer(local, peer, &request, src).await;
                self.finish(&client, file, outcome);
            }
            Err(OpenError::Refused(reason)) => {
                tracing::info!(%peer, serial = ?slot.serial, %file, reason = reason.name(), "request refused");
                self.record(&client, BootStage::TftpError { file, reason: reason.name().into() });
                self.refuse(listener, peer, reason).await;
            }
            Err(error) => {
                tracing::error!(%peer, serial = ?slot.serial, %file, error = %bramble_report::chain(&error), "cannot serve file");
                self.record(&client, BootStage::TftpError { file, reason: error.to_string() });
                let reply = packet::encode_error(ErrorCode::NotDefined, "internal error");
                let _ = listener.send_to(&reply, peer).await;
            }
        }
    }

    async fn open(&self, request: &Request, slot: &SlotBoot) -> Result<source::Source, OpenError> {
        let target = map_request(&request.filename, slot).map_err(OpenError::Refused)?;
        source::open(&target, slot, &self.config.firmware_dir).await
    }

    async fn transfer(
        &self,
        local: IpAddr,
        peer: SocketAddr,
        request: &Request,
        mut src: source::Source,
    ) -> Outcome {
        self.metrics.started();
        let params = negotiate(&request.options, src.size, &self.config.limits);
        let socket = match transfer_socket(local, peer, &params) {
            Ok(socket) => socket,
            Err(e) => {
                return Outcome::Io { detail: format!("transfer socket: {e}") };
            }
        };
        let (metrics, max_retries) = (Arc::clone(&self.metrics), self.config.max_retries);
        let job = tokio::task::spawn_blocking(move || {
            let transfer =
                Transfer { socket, peer, params: &params, max_retries, metrics: &metrics };
            transfer.run(&mut src)
        });
        job.await.unwrap_or_else(|e| Outcome::Io { detail: format!("transfer thread: {e}") })
    }

    fn finish(&self, client: &ClientRef, file: String, outcome: Outcome) {
        let peer = client.addr;
        let stage = match outcome {
            Outcome::Complete { bytes } => {
                self.metrics.completed(bytes);
                tracing::debug!(?peer, %file, bytes, "transfer complete");
                BootStage::TftpComplete { file, bytes }
            }
            Outcome::EarlyTerminate { ref message, .. } => {
                self.metrics.early_terminated();
                tracing::debug!(?peer, %file, %message, "client ended the transfer early");
                BootStage::TftpEarlyTerminate { file }
            }
            other => {
                self.metrics.failed();
                let reason = other.reason().unwrap_or_default();
                tracing::warn!(?peer, %file, %reason, "transfer failed");
                BootStage::TftpError { file, reason }
            }
        };
        self.record(client, stage);
    }

    async fn refuse(&self, listener: &UdpSocket, peer: SocketAddr, reason: Refusal) {
        self.metrics.refused(reason);
        let (code, message) = match reason {
            Refusal::NotFound | Refusal::NotAFile => (ErrorCode::FileNotFound, "file not found"),
            Refusal::Malformed | Refusal::NulByte => {
                (ErrorCode::IllegalOperation, "malformed request")
            }
            Refusal::WriteRequest => (ErrorCode::AccessViolation, "read-only server"),
            Refusal::UnknownClient => (ErrorCode::AccessViolation, "unknown client"),
            _ => (ErrorCode::AccessViolation, "access denied"),
        };
        if let Err(error) = listener.send_to(&packet::encode_error(code, message), peer).await {
            tracing::debug!(%peer, %error, "could not send error reply");
        }
    }

    fn record(&self, client: &ClientRef, stage: BootStage) {
        self.sink.record(BootEvent { at: SystemTime::now(), client: client.clone(), stage });
    }
}

/// A fresh socket (new TID) on the server's address, connected to the client.
fn transfer_socket(
    local: IpAddr,
    peer: SocketAddr,
    params: &Negotiated,
) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(local, 0))?;
    socket.connect(peer)?;
    socket.set_read_timeout(Some(params.timeout))?;
    Ok(socket)
}

fn client_ref(slot: &SlotBoot, peer: SocketAddr) -> ClientRef {
    ClientRef {
        interface: None,
        mac: Some(slot.mac.to_string()),
        serial: slot.serial,
        addr: Some(peer.ip()),
    }
}
