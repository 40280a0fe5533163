//! The running DHCP server: one receive task per served interface, a lease committer
//! that batches writes to the store, and a handle to add and remove interfaces while
//! racking goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::DhcpError;
use super::config::{FlatNetwork, ServerOptions, StorageIface};
use super::counters::{Counters, DropReason};
use super::engine::{Action, Engine, Outcome, Reply, Role};
use super::socket::bind_to_device;
use super::store::{Lease, LeaseStore};
use crate::events::{BootEvent, BootEventSink, BootStage, ClientRef};

/// Largest number of leases committed in one store call.
const MAX_BATCH: usize = 512;

struct CommitJob {
    lease: Lease,
    done: oneshot::Sender<bool>,
}

struct Shared {
    engine: Mutex<Engine>,
    counters: Arc<Counters>,
    store: Arc<dyn LeaseStore>,
    sink: Arc<dyn BootEventSink>,
    commits: mpsc::Sender<CommitJob>,
}

/// A running server. Dropping it stops every task and closes every socket.
pub struct DhcpServer {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    committer: JoinHandle<()>,
}

impl DhcpServer {
    /// Loads the stored leases and starts the committer. Serves no interface yet.
    pub async fn start(
        opts: ServerOptions,
        store: Arc<dyn LeaseStore>,
        sink: Arc<dyn BootEventSink>,
    ) -> Result<Self, DhcpError> {
        let leases =
            store.load_leases().await.map_err(|source| DhcpError::LoadLeases { source })?;
        let mut engine = Engine::new(opts);
        engine.restore(&leases, SystemTime::now());
        tracing::info!(leases = leases.len(), "dhcp server starting");
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let committer = tokio::spawn(run_committer(rx, store.clone(), counters.clone()));
        let shared =
            Arc::new(Shared { engine: Mutex::new(engine), counters, store, sink, commits: tx });
        Ok(DhcpServer { shared, tasks: Mutex::new(HashMap::new()), committer })
    }

    /// Starts serving a storage /30 (replacing its previous configuration, if any).
    pub fn add_storage(&self, iface: StorageIface) -> Result<(), DhcpError> {
        self.add(Role::Storage(iface))
    }

    /// Starts serving a flat network (validated first).
    pub fn add_flat(&self, net: FlatNetwork) -> Result<(), DhcpError> {
        let net = net.validate().map_err(|source| DhcpError::Config { source })?;
        self.add(Role::Flat(net))
    }

    /// Stops serving an interface and forgets its in-memory bindings (stored leases stay).
    pub fn remove_interface(&self, ifname: &str) -> bool {
        if let Some(task) = lock(&self.tasks).remove(ifname) {
            task.abort();
        }
        self.shared.engine().remove_interface(ifname)
    }

    pub fn interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.tasks).keys().cloned().collect();
        names.sort();
        names
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    fn add(&self, role: Role) -> Result<(), DhcpError> {
        let ifname = match &role {
            Role::Storage(s) => s.ifname.clone(),
            Role::Flat(f) => f.ifname.clone(),
        };
        let port = self.shared.engine().options().server_port;
        let socket = bind_to_device(&ifname, port)
            .map_err(|source| DhcpError::Bind { ifname: ifname.clone(), source })?;
        self.shared.engine().set_interface(role);
        let task =
            tokio::spawn(serve_interface(self.shared.clone(), ifname.clone(), Arc::new(socket)));
        if let Some(old) = lock(&self.tasks).insert(ifname.clone(), task) {
            old.abort();
        }
        tracing::info!(interface = %ifname, port, "dhcp serving interface");
        Ok(())
    }
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        for (_, task) in lock(&self.tasks).drain() {
            task.abort();
        }
        self.committer.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere while
    // holding the lock does not make it unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    fn record(&self, client: ClientRef, stage: BootStage) {
        self.sink.record(BootEvent { at: SystemTime::now(), client, stage });
    }
}

async fn serve_interface(shared: Arc<Shared>, ifname: String, socket: Arc<UdpSocket>) {
    // Larger than any valid packet so oversized ones are seen as such, not truncated.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match socket.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(error) => {
                tracing::warn!(interface = %ifname, %error, "dhcp receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        Counters::bump(&shared.counters.received);
        let outcome = shared.engine().handle(&ifname, &buf[..n], SystemTime::now());
        dispatch(&shared, &socket, outcome).await;
    }
}

async fn dispatch(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, outcome: Outcome) {
    let c = &shared.counters;
    match outcome.request {
        Some(dhcproto::v4::MessageType::Discover) => Counters::bump(&c.discovers),
        Some(dhcproto::v4::MessageType::Request) => Counters::bump(&c.requests),
        Some(dhcproto::v4::MessageType::Inform) => Counters::bump(&c.informs),
        Some(dhcproto::v4::MessageType::Release) => Counters::bump(&c.releases),
        Some(_) => Counters::bump(&c.declines),
        None => {}
    }
    let client = outcome.seen.as_ref().map(|(client, _)| client.clone()).unwrap_or(ClientRef {
        interface: None,
        mac: None,
        serial: None,
        addr: None,
    });
    if let Some((client, stage)) = outcome.seen {
        shared.record(client, stage);
    }
    if let Some(sighting) = outcome.sighting {
        let store = shared.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.record_sighting(&sighting).await {
                tracing::warn!(mac = %sighting.mac, error = %error, "could not record dhcp sighting");
            }
        });
    }
    match outcome.action {
        Action::Drop(reason) => {
            tracing::debug!(reason = reason.name(), "dhcp packet dropped");
            c.drop_packet(reason);
        }
        Action::Reply(reply) if reply.delay.is_zero() => send(shared, socket, reply, client).await,
        Action::Reply(reply) => {
            let (shared, socket) = (shared.clone(), socket.clone());
            tokio::spawn(async move {
                tokio::time::sleep(reply.delay).await;
                send(&shared, &socket, reply, client).await;
            });
        }
        Action::CommitThenReply { lease, reply } => {
            let (shared, socket) = (shared.clone(), socket.clone());
            tokio::spawn(commit_then_reply(shared, socket, lease, reply, client));
        }
        Action::Release { key, addr } => {
            let store = shared.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.release_lease(&key, addr).await {
                    tracing::warn!(mac = %key.mac, %addr, error = %error, "could not store dhcp release");
                }
            });
        }
        Action::Decline(decline) => {
            let store = shared.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.record_decline(&decline).await {
                    tracing::warn!(mac = %decline.key.mac, error = %error, "could not store dhcp decline");
                }
            });
        }
    }
}

/// Waits for the lease to be durable, then replies; replies nothing if storing failed.
async fn commit_then_reply(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    lease: Lease,
    reply: Reply,
    client: ClientRef,
) {
    let (done, stored) = oneshot::channel();
    let job = CommitJob { lease: lease.clone(), done };
    let ok = shared.commits.send(job).await.is_ok() && stored.await.unwrap_or(false);
    if !ok {
        shared.counters.drop_packet(DropReason::StoreFailed);
        return;
    }
    shared.engine().confirm(&lease);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    send(&shared, &socket, reply, client).await;
}

async fn send(shared: &Shared, socket: &UdpSocket, reply: Reply, client: ClientRef) {
    let c = &shared.counters;
    if reply.bytes.is_empty() {
        c.drop_packet(DropReason::SendFailed);
        return;
    }
    if let Err(error) = socket.send_to(&reply.bytes, reply.dest).await {
        tracing::warn!(dest = %reply.dest, %error, "could not send dhcp reply");
        c.drop_packet(DropReason::SendFailed);
        return;
    }
    match reply.kind {
        dhcproto::v4::MessageType::Offer => Counters::bump(&c.offers),
        dhcproto::v4::MessageType::Nak => Counters::bump(&c.naks),
        _ => Counters::bump(&c.acks),
    }
    shared.record(client, reply.stage);
}

/// Group commit: takes whatever leases are waiting (up to [`MAX_BATCH`]), stores them in
/// one call, then releases their replies. Nothing is acknowledged before its batch is.
async fn run_committer(
    mut rx: mpsc::Receiver<CommitJob>,
    store: Arc<dyn LeaseStore>,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let leases: Vec<Lease> = jobs.iter().map(|j| j.lease.clone()).collect();
        let ok = match store.commit_leases(&leases).await {
            Ok(()) => {
                Counters::bump(&counters.store_batches);
                counters
                    .store_leases
                    .fetch_add(leases.len() as u64, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::error!(leases = leases.len(), error = %error, "lease commit failed; not acknowledging");
                false
            }
        };
        for job in jobs {
            let _ = job.done.send(ok);
        }
    }
}
