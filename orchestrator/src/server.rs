//! `bramble serve`: the controller process. It opens the inventory, serves the API on an
//! already-bound listener and runs netboot (DHCP, TFTP), the job runner and its
//! executors until the shutdown future resolves.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bramble_images::nfs::{GaneshaControl, GaneshaExporter, KernelExporter, NfsExporter};
use bramble_images::{CommandRunner, SystemRunner};
use tokio::net::TcpListener;

use crate::api::{AppState, app};
use crate::bootplan::BootPlanner;
use crate::cluster::{BeatEnd, ClusterError, Membership, Singleton, SqliteLock};
use crate::config::{Config, NfsBackend};
use crate::db::{Db, DbError};
use crate::fabric::Fabric;
use crate::jobs::{Hardware, ImagesHost, RunEnd, Runner, StorageSync};
use crate::links::StorageLinks;
use crate::netboot::{Netboot, NetbootHandle};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("cannot serve HTTPS")]
    Tls(#[from] crate::tls::TlsError),
    #[error("netboot (DHCP/TFTP) failed to start")]
    Netboot(#[from] crate::netboot::NetbootError),
    #[error("cannot open the image store or NFS exporter")]
    Images(#[from] bramble_images::ImagesError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A test's crash plan stopped the job runner: the controller stopped as if killed.
    #[error("the job runner crashed (injected)")]
    Crashed,
    /// Another instance registered under this controller's name (this one had stopped
    /// beating long enough to be taken for dead), so this one stopped.
    #[error("another instance took over controller name {0:?}; stopped")]
    Superseded(String),
}

/// Everything a running controller is made of, before it runs.
pub struct Controller {
    pub state: AppState,
    pub runner: Runner,
    /// The shared parts the executors use (switch drivers, image store, timings).
    pub hardware: Arc<Hardware>,
    links: Option<Arc<dyn StorageLinks>>,
    storage: Arc<LateStorage>,
    membership: Membership,
    /// Held for as long as this controller serves a SQLite inventory.
    _sqlite_lock: Option<SqliteLock>,
}

/// The netboot service once it runs; rack jobs sync storage interfaces through it.
#[derive(Default)]
struct LateStorage(OnceLock<NetbootHandle>);

#[async_trait]
impl StorageSync for LateStorage {
    async fn sync(&self) -> Result<usize, String> {
        match self.0.get() {
            Some(h) => h.sync_interfaces().await.map_err(|e| bramble_report::chain(&e)),
            None => Ok(0),
        }
    }
}

impl Controller {
    /// Opens the database (migrating it), the image store and the switch fabric, and
    /// assembles the API state and the job runner with an executor for every kind.
    pub async fn open(config: Config) -> Result<Controller, ServeError> {
        // SQLite serves one controller: refuse a second before touching the file.
        let sqlite_lock = SqliteLock::acquire(&config.database_url)?;
        let db = Db::connect(&config.database_url).await?;
        let membership = Membership::join(&db, &config.cluster, sqlite_lock.is_some()).await?;
        let adopted = db.adopt_unserved_switches(membership.name()).await?;
        if adopted > 0 {
            tracing::info!(controller = %membership.name(), switches = adopted, "adopted switches that no controller served");
        }
        crate::catalogue::seed(&db).await?;
        let images = open_images(&config)?;
        let live = crate::reload::LiveConfig::new(config.clone());
        let fabric = Arc::new(
            Fabric::new(db.clone(), config.switches.snmp, config.public_vlan).live(live.clone()),
        );
        let storage = Arc::new(LateStorage::default());
        let boot = Arc::new(
            BootPlanner::new(
                config.netboot.roots_dir.clone(),
                images.as_ref().and_then(|i| i.exporter.clone()),
                images.as_ref().map(|i| i.store.clone()),
            )
            .with_netconsole(config.netboot.console.netconsole_port()),
        );
        let boot_metrics = Arc::new(crate::diagnosis::metrics::BootMetrics::default());
        let hardware = Arc::new(Hardware {
            db: db.clone(),
            fabric,
            config: live.clone(),
            images,
            boot,
            storage: storage.clone(),
            boot_metrics: boot_metrics.clone(),
        });
        // Jobs are claimed under the controller's name: the name jobs are routed to.
        let runner_id = config.cluster.name.clone();
        let runner = Runner::new(db.clone(), runner_id, config.job_lease, config.job_poll)
            .with_max_parallel(config.jobs.max_parallel);
        let runner = crate::jobs::with_executors(runner, &hardware);
        let executable: HashSet<_> = runner.kinds().into_iter().collect();
        let state = AppState::new(db, live, executable);
        state.metrics.add_collector(boot_metrics);
        Ok(Controller {
            state,
            runner,
            hardware,
            links: None,
            storage,
            membership,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// Serves storage networks through `links` instead of the configured trunk's VLAN
    /// sub-interfaces (the virtual shelf and tests use veth pairs).
    pub fn with_storage_links(mut self, links: Arc<dyn StorageLinks>) -> Self {
        self.links = Some(links);
        self
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and jobs.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Controller { state, runner, links, storage, hardware, membership, _sqlite_lock } = self;
        // HTTPS when `[tls]` is set: read the certificate before anything starts.
        let tls = match &state.config.get().tls {
            Some(cfg) => Some(Arc::new(crate::tls::ServerTls::new(cfg, &state.metrics)?)),
            None => None,
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let name = membership.name().to_string();
        let lease = membership.config().lease;
        // What runs at start; the parts that read a reloadable key hold `state.config`.
        let config = state.config.get();
        // DHCP and TFTP when `[netboot] enabled`; they stop on the same shutdown.
        let netboot_cfg = &config.netboot;
        let plans = hardware.boot.clone();
        let netboot = match (links, netboot_cfg.enabled) {
            (Some(links), true) => Some(
                Netboot::start(&state.db, netboot_cfg, &state.metrics, links, plans, &name).await?,
            ),
            (None, true) => {
                crate::netboot::start_configured(
                    &state.db,
                    netboot_cfg,
                    &state.metrics,
                    plans,
                    &name,
                )
                .await?
            }
            (_, false) => None,
        };
        if let Some(n) = &netboot {
            let _ = storage.0.set(n.handle());
        }
        let netboot = netboot.map(|n| tokio::spawn(n.run(wait_true(rx.clone()))));
        let (crash_tx, mut crash_rx) = tokio::sync::watch::channel(false);
        // The heartbeat; losing the name to another instance stops this controller.
        let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
        let beat = tokio::spawn({
            let membership = membership.clone();
            let stop = wait_true(rx.clone());
            async move {
                let end = membership.beat(stop).await;
                let _ = lost_tx.send(end == BeatEnd::Lost);
                end
            }
        });
        let runner = tokio::spawn({
            let stop = wait_true(rx.clone());
            async move {
                let end = runner.run(stop).await;
                let _ = crash_tx.send(end == RunEnd::Crashed);
                end
            }
        });
        // The roots of the Pis this controller serves stay exported (a switch moved
        // here), and only those (a switch moved away).
        let exports = hardware.images.as_ref().and_then(|i| i.exporter.clone()).map(|exporter| {
            let sync = crate::exports::ExportSync::new(
                state.db.clone(),
                &name,
                exporter,
                hardware.boot.clone(),
            );
            tokio::spawn(sync.run(config.netboot.refresh, wait_true(rx.clone())))
        });
        // Switches read back against the inventory, drift repaired, power draw watched.
        let reconciler = config.switches.reconcile_every.map(|every| {
            let r = crate::reconciler::Reconciler::new(
                state.db.clone(),
                hardware.fabric.clone(),
                every,
            )
            .serving(&name, lease);
            tokio::spawn(r.run(wait_true(rx.clone())))
        });
        // Job notifications read the event log on their own; jobs never wait for them.
        // One controller of the cluster delivers them: the holder of their lease.
        let webhooks = config.webhooks.clone().map(|cfg| {
            let singleton =
                Singleton::new(state.db.clone(), crate::webhooks::notifier::LEASE, &name, lease);
            let held = singleton.held();
            let (db, executable) = (state.db.clone(), state.executable.clone());
            let live = state.config.clone();
            let deliver = move |stop| {
                crate::webhooks::Notifier::new(db.clone(), cfg.clone())
                    .live(live.clone())
                    .with_executable(executable.clone())
                    .while_leader(held.clone())
                    .run(crate::cluster::stopped(stop))
            };
            tokio::spawn(singleton.run(deliver, wait_true(rx.clone())))
        });
        // Boot timelines older than `[events] boot_retention_days` pruned on a timer.
        let retention = crate::retention::Retention::new(state.db.clone(), &config.events)
            .map(|r| tokio::spawn(r.live(state.config.clone()).run(wait_true(rx.clone()))));
        // Snapshots pruned, and directories whose row is gone deleted, where they live.
        let snapshots = hardware.images.clone().map(|images| {
            let sweeper =
                crate::snapshots::Sweeper::new(state.db.clone(), images, config.snapshots.clone())
                    .live(state.config.clone());
            tokio::spawn(sweeper.run(wait_true(rx.clone())))
        });
        let addr = listener.local_addr().ok();
        tracing::info!(addr = ?addr, tls = tls.is_some(), "controller listening");
        if let Some(addr) = addr {
            crate::tls::server::warn_if_exposed(addr, tls.is_some());
        }
        let stop_rx = rx.clone();
        let graceful = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = crash_rx.wait_for(|c| *c) => {}
                _ = lost_rx.wait_for(|l| *l) => {}
            }
            let _ = tx.send(true);
        };
        // With TLS, the same graceful `axum::serve` over a listener that hands it
        // connections once their handshake is done (see `tls::server`).
        let served = match &tls {
            Some(tls) => {
                tokio::spawn(tls.reload_on_hangup(wait_true(stop_rx))?);
                let listener = tls.listen(listener).map_err(ServeError::Http)?;
                axum::serve(listener, app(state.clone())).with_graceful_shutdown(graceful).await
            }
            None => {
                axum::serve(listener, app(state.clone())).with_graceful_shutdown(graceful).await
            }
        };
        let crashed = matches!(runner.await, Ok(RunEnd::Crashed));
        if let Some(netboot) = netboot {
            let _ = netboot.await;
        }
        for task in [webhooks, reconciler, retention, exports, snapshots].into_iter().flatten() {
            let _ = task.await;
        }
        let superseded = matches!(beat.await, Ok(BeatEnd::Lost));
        // A crash stands for a kill: the controller just stops beating.
        if !crashed && !superseded {
            membership.stop().await;
        }
        state.db.close().await;
        if crashed {
            return Err(ServeError::Crashed);
        }
        if superseded {
            return Err(ServeError::Superseded(name));
        }
        served.map_err(ServeError::Http)
    }
}

/// The image store and, when configured, the NFS server exporting roots.
fn open_images(config: &Config) -> Result<Option<Arc<ImagesHost>>, bramble_images::ImagesError> {
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let exporter: Option<Arc<dyn NfsExporter>> = match &config.images.nfs {
        NfsBackend::None => None,
        NfsBackend::Ganesha { dir, pid_file, log_file } => {
            let control = match pid_file {
                Some(p) => {
                    GaneshaControl::Reload { pid_file: p.clone(), log_file: log_file.clone() }
                }
                None => GaneshaControl::DBus { bus_address: None },
            };
            Some(Arc::new(GaneshaExporter::new(runner.clone(), dir.clone(), control)?))
        }
        NfsBackend::Kernel { exports_file } => {
            Some(Arc::new(KernelExporter::new(runner.clone(), exports_file.clone())?))
        }
    };
    Ok(Some(Arc::new(ImagesHost::open(&config.images.store_dir, exporter)?)))
}

async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
