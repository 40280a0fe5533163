//! The controller's netboot wiring: runs `bramble-netboot`'s DHCP and TFTP servers over
//! the inventory. Leases and sightings go to the database ([`leases`], [`sightings`]),
//! boot events to each Pi's timeline ([`events`]), TFTP clients are resolved to their
//! slot's root ([`resolver`]), all answered from one cache of slots and Pis
//! ([`directory`]).
//!
//! Storage interfaces follow the slots: [`Netboot::sync_interfaces`], run at start and on
//! a timer, makes sure every slot's interface exists (through [`StorageLinks`]: VLAN
//! sub-interfaces in production, veth pairs in tests) and is served by DHCP.

pub mod config;
pub mod directory;
pub mod events;
pub mod identity;
pub mod leases;
pub mod metrics;
pub mod resolver;
pub mod sightings;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bramble_netboot::console::{ConsoleError, ConsoleReceiver};
use bramble_netboot::dhcp::{DhcpError, DhcpServer, ServerOptions, SlotKey, StorageIface};
use bramble_netboot::tftp::{TftpConfig, TftpServer};
use bramble_report::chain;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bootplan::BootPlanner;
use crate::db::{Db, DbError};
use crate::ids::SlotId;
use crate::links::{LinkError, StorageLinks, VlanLinks};
use crate::metrics::Metrics;
use config::NetbootConfig;
use directory::Directory;

#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    #[error("cannot start the DHCP server")]
    Dhcp(#[source] DhcpError),
    #[error("cannot serve DHCP on interface {ifname} of slot {slot}")]
    DhcpInterface {
        ifname: String,
        slot: SlotId,
        #[source]
        source: DhcpError,
    },
    #[error("cannot receive the console of slot {slot}")]
    Console {
        slot: SlotId,
        #[source]
        source: ConsoleError,
    },
    #[error("cannot set up the storage interface of slot {slot} (VLAN {vlan})")]
    Link {
        slot: SlotId,
        vlan: u16,
        #[source]
        source: LinkError,
    },
    #[error("setting up the storage interface of slot {slot} (VLAN {vlan}) panicked")]
    LinkTask { slot: SlotId, vlan: u16 },
    #[error("cannot bind the TFTP socket {addr}")]
    TftpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read slots and Pis for netboot")]
    Db(#[from] DbError),
}

struct Inner {
    dhcp: DhcpServer,
    /// The Pis' netconsole, on the same interfaces (`None` when `[console]` is off).
    console: Option<ConsoleReceiver>,
    directory: Arc<Directory>,
    links: Arc<dyn StorageLinks>,
    /// Slots served now, with their interface name and VLAN.
    served: Mutex<HashMap<SlotId, (String, u16)>>,
    /// One sync pass at a time (the refresh timer and a rack job may both ask).
    sync: tokio::sync::Mutex<()>,
}

/// The running DHCP and TFTP servers of one controller.
pub struct Netboot {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Netboot {
    /// Starts both servers as `cfg` says over `db`'s inventory, registers their counters
    /// with `metrics`, and serves every slot's storage interface (made by `links`); TFTP
    /// serves each slot what `plans` says it boots.
    pub async fn start(
        db: &Db,
        cfg: &NetbootConfig,
        metrics: &Metrics,
        links: Arc<dyn StorageLinks>,
        plans: Arc<BootPlanner>,
        controller: &str,
    ) -> Result<Netboot, NetbootError> {
        // Only the slots of switches this controller serves.
        let directory = Arc::new(Directory::serving(db.clone(), controller));
        directory.refresh().await?;
        let sightings = identity::Sightings::new(db.clone(), directory.clone());
        let (sink, sink_counters, sink_task) =
            events::DbEventSink::start_with(db.clone(), directory.clone(), Some(sightings.clone()));
        let store = Arc::new(leases::DbLeaseStore::with_sightings(db.clone(), sightings));
        let opts = ServerOptions {
            pxe_reply_delay: cfg.reply_delay,
            server_port: cfg.dhcp_port,
            ..ServerOptions::default()
        };
        let dhcp =
            DhcpServer::start(opts, store, sink.clone()).await.map_err(NetbootError::Dhcp)?;
        for net in &cfg.flat {
            dhcp.add_flat(net.clone()).map_err(NetbootError::Dhcp)?;
        }
        let (stop, stopped) = watch::channel(false);
        let console = cfg.console.enabled.then(|| {
            let limits = crate::db::console::ConsoleLimits {
                keep_boots: i64::from(cfg.console.keep_boots),
                boot_bytes: cfg.console.boot_bytes as i64,
            };
            let sink = crate::console::DbConsoleSink::new(db.clone(), directory.clone(), limits);
            let store = sink.counters();
            let receiver = ConsoleReceiver::start(cfg.console.receiver_options(), Arc::new(sink));
            metrics.add_collector(Arc::new(metrics::ConsoleCollector {
                receiver: receiver.counters(),
                store,
            }));
            receiver
        });
        let inner = Arc::new(Inner {
            dhcp,
            console,
            directory: directory.clone(),
            links,
            served: Mutex::new(HashMap::new()),
            sync: tokio::sync::Mutex::new(()),
        });
        let mut tasks = vec![sink_task];
        sync_interfaces(&inner).await;

        let resolver = Arc::new(resolver::DbBootResolver::new(directory.clone(), plans));
        let tftp = TftpServer::new(TftpConfig::new(cfg.firmware_dir.clone()), resolver, sink);
        for addr in &cfg.tftp_listen {
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|source| NetbootError::TftpBind { addr: *addr, source })?;
            let rx = stopped.clone();
            let server = tftp.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) = server.serve(socket, wait_true(rx)).await {
                    tracing::error!(error = %error, "tftp server stopped");
                }
            }));
        }
        metrics.add_collector(Arc::new(metrics::NetbootCollector {
            dhcp: inner.dhcp.counters(),
            tftp: tftp.metrics(),
            events: sink_counters,
        }));
        tasks.push(tokio::spawn(reconcile(inner.clone(), cfg.refresh, stopped)));
        tracing::info!(interfaces = inner.dhcp.interfaces().len(), tftp = ?cfg.tftp_listen, "netboot started");
        Ok(Netboot { inner, stop, tasks })
    }

    /// Reloads slots and Pis, serves new slots and withdraws retired ones (what the timer
    /// does); returns how many interfaces are served.
    pub async fn sync_interfaces(&self) -> Result<usize, NetbootError> {
        self.inner.directory.refresh().await?;
        Ok(sync_interfaces(&self.inner).await)
    }

    /// A handle other parts of the controller keep to sync storage interfaces. It does
    /// not keep the servers alive: [`Netboot::stop`] ends them whoever holds one.
    pub fn handle(&self) -> NetbootHandle {
        NetbootHandle(Arc::downgrade(&self.inner))
    }

    /// The DHCP server, to inspect its interfaces and counters.
    pub fn dhcp(&self) -> &DhcpServer {
        &self.inner.dhcp
    }

    /// Runs until `shutdown` resolves, then stops both servers.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop().await;
    }

    /// Stops the servers; queued boot events are written before this returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.into_iter();
        let sink_task = tasks.next();
        for t in tasks {
            let _ = t.await;
        }
        // The last reference to the DHCP server (and through it the event sink) goes
        // here, which ends the drain task once it has written what was queued.
        drop(self.inner);
        if let Some(t) = sink_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }
}

/// A clonable handle on running netboot: the rack-shelf job uses it to serve a new
/// shelf's storage interfaces without waiting for the refresh timer. It holds netboot
/// weakly, so that once stopped the DHCP server closes its sockets and the boot-event
/// drain ends at once (a strong handle kept them, and the controller's stop waited out
/// the drain's 5-second limit).
#[derive(Clone)]
pub struct NetbootHandle(std::sync::Weak<Inner>);

impl NetbootHandle {
    /// Reloads slots and Pis and serves new slots; returns how many interfaces are served
    /// (none once netboot has stopped).
    pub async fn sync_interfaces(&self) -> Result<usize, NetbootError> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(0);
        };
        inner.directory.refresh().await?;
        Ok(sync_interfaces(&inner).await)
    }
}

/// Serves storage interfaces for slots not served yet and withdraws those of slots that
/// are gone (retired). Failures are logged per slot: one broken VLAN must not keep the
/// others from booting.
async fn sync_interfaces(inner: &Arc<Inner>) -> usize {
    let _one_pass = inner.sync.lock().await;
    let snap = inner.directory.snapshot();
    let served = |inner: &Inner| inner.served.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for slot in &snap.slots {
        let now_served = served(inner);
        if now_served.contains_key(&slot.id) {
            continue;
        }
        // One trunk carries one layer-2 domain: switches of two domains on one
        // controller could reuse a VLAN id, and only the first slot gets it.
        if let Some((other, _)) = now_served.iter().find(|(_, (_, vlan))| *vlan == slot.vlan) {
            tracing::error!(slot = %slot.id, other_slot = %other, vlan = slot.vlan,
                "two served slots share a storage VLAN (switches of two layer-2 domains on one trunk); not served");
            continue;
        }
        match serve_slot(inner, slot).await {
            Ok(ifname) => {
                tracing::info!(slot = %slot.id, interface = %ifname, vlan = slot.vlan, "serving storage interface");
                let mut map = inner.served.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(slot.id.clone(), (ifname, slot.vlan));
            }
            Err(error) => {
                tracing::error!(error = %chain(&error), "storage interface not served")
            }
        }
    }
    let current: HashSet<&SlotId> = snap.slots.iter().map(|s| &s.id).collect();
    for (slot, (ifname, vlan)) in served(inner).into_iter().filter(|(id, _)| !current.contains(id))
    {
        inner.dhcp.remove_interface(&ifname);
        if let Some(console) = &inner.console {
            console.remove_interface(&ifname);
        }
        let links = inner.links.clone();
        match tokio::task::spawn_blocking(move || links.remove(vlan)).await {
            Ok(Ok(())) => {
                tracing::info!(slot = %slot, interface = %ifname, "storage interface withdrawn")
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %chain(&error), "could not remove storage interface")
            }
            Err(_) => tracing::warn!(interface = %ifname, "removing storage interface panicked"),
        }
        inner.served.lock().unwrap_or_else(|e| e.into_inner()).remove(&slot);
    }
    inner.dhcp.interfaces().len()
}

async fn serve_slot(
    inner: &Arc<Inner>,
    slot: &directory::SlotEntry,
) -> Result<String, NetbootError> {
    let links = inner.links.clone();
    let (vlan, ip, id) = (slot.vlan, slot.controller_ip, slot.id.clone());
    // `ip` commands block; keep them off the async workers.
    let ensured = tokio::task::spawn_blocking(move || links.ensure(vlan, ip))
        .await
        .map_err(|_| NetbootError::LinkTask { slot: id.clone(), vlan })?;
    let ifname = ensured.map_err(|source| NetbootError::Link { slot: id.clone(), vlan, source })?;
    let iface = StorageIface::new(&ifname, ip, ip, SlotKey(id.0.clone())).map_err(|source| {
        NetbootError::DhcpInterface {
            ifname: ifname.clone(),
            slot: id.clone(),
            source: DhcpError::Config { source },
        }
    })?;
    inner.directory.set_interface(&ifname, &id);
    inner.dhcp.add_storage(iface).map_err(|source| NetbootError::DhcpInterface {
        ifname: ifname.clone(),
        slot: id.clone(),
        source,
    })?;
    if let Some(console) = &inner.console {
        console
            .add_interface(&ifname, SlotKey(id.0.clone()), Some(slot.pi_ip))
            .map_err(|source| NetbootError::Console { slot: id, source })?;
    }
    Ok(ifname)
}

/// The reconciler: on a timer, reloads slots and Pis and serves new slots.
async fn reconcile(
    inner: Arc<Inner>,
    every: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|v| *v) => return,
        }
        if let Err(error) = inner.directory.refresh().await {
            tracing::warn!(error = %chain(&error), "netboot refresh failed");
            continue;
        }
        sync_interfaces(&inner).await;
    }
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Starts netboot for `bramble serve` when `[netboot] enabled`, with VLAN
/// sub-interfaces of the configured trunk.
pub async fn start_configured(
    db: &Db,
    cfg: &NetbootConfig,
    metrics: &Metrics,
    plans: Arc<BootPlanner>,
    controller: &str,
) -> Result<Option<Netboot>, NetbootError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let links = Arc::new(VlanLinks::new(&cfg.storage_trunk));
    Netboot::start(db, cfg, metrics, links, plans, controller).await.map(Some)
}
