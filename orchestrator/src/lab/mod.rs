//! The virtual shelf: a whole Bramble installation on one machine, with no hardware.
//! A controller on SQLite with netboot, a virtual PoE switch speaking SNMP, a private
//! nfs-ganesha exporting per-Pi roots, and simulated Pis (real boot-ROM behaviour over
//! real sockets) in network namespaces, each cabled to its slot's storage interface by a
//! veth pair. The shelf is racked and deployed through the normal HTTP API.
//!
//! The controller, its DHCP and TFTP servers, nfs-ganesha with its rpcbind and the
//! virtual switch live in a network namespace of the lab's own (`<prefix>ctl`, see
//! [`netns`]), so the lab binds no port in the machine's namespace but its API listener
//! (bound there beforehand, on `127.0.0.1`, for its users).
//!
//! The first [`LabOptions::real`] slots may hold QEMU Pis instead of simulators
//! (`bramble_lab::qemupi`): they boot the real kernel of [`REAL_IMAGE`], a debootstrapped
//! base taken from the image build cache, from the same DHCP, TFTP and NFS, and answer
//! SSH with the lab's own key ([`ssh`]).
//!
//! Used by `bramble lab up` (see `cli::lab`), the end-to-end tests and the boot-storm
//! benchmark. The controller can be stopped, crashed and restarted while the switch,
//! the NFS server and the Pis keep running, as in a real machine room.
//!
//! By default the controller runs in this process. With [`ControllerMode::Process`] it
//! is a child process of its own ([`process`]) that can be `kill -9`ed, and with
//! [`LabOptions::database`], [`LabOptions::cluster`] and [`LabOptions::management`]
//! several labs (distinct prefixes, shelves, switch names and serials) run as a cluster
//! of controllers on one PostgreSQL inventory, each controller serving its own switch
//! and shelf, every switch reachable from every controller over a shared management
//! network ([`mgmt`]).
//!
//! **Invariant:** every namespace and link a lab makes starts with its prefix, and every
//! process it starts records a pid under its state directory, so [`cleanup`] can remove
//! whatever a crashed lab left.

pub mod forward;
pub mod links;
pub mod mgmt;
pub mod process;
pub mod ssh;
pub mod stp;
pub mod wiring;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_images::{Base, Catalogue, ImageStore, NoProgress, SystemRunner, fixture};
use bramble_lab::ganesha::{GaneshaOptions, GaneshaServer};
use bramble_lab::{NetnsRuntime, Veth, VethLinks};
use bramble_switch::sim::{SimHandle, SimOptions, SimSwitch};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{Role, generate_token};
use crate::config::{Config, NfsBackend, Overrides, RawConfig};
use crate::db::Page;
use crate::jobs::CrashPlan;
use crate::lifecycle::PiState;
use crate::links::StorageLinks;
use crate::model::{Job, Pi, Shelf};
use crate::server::{Controller, ServeError};
pub use wiring::{
    Cabling, PiNetns, PiTiming, QemuSlots, SERIAL_BASE, SlotPi, model_for, qemu_state_dir,
    serial_for,
};

use links::LastingLinks;
use process::{ControllerProcess, Launch};

/// The image QEMU Pis are deployed with: a real Debian build (kernel, initramfs for an
/// NFS root, sshd), from the image build cache.
pub const REAL_IMAGE: &str = "debian-bookworm-arm64";

/// Most QEMU Pis one lab runs: each takes a core and ~360 MB while it boots.
pub const MAX_REAL: u16 = 4;

/// The image build cache [`REAL_IMAGE`] is taken from (and built into on a miss):
/// `BRAMBLE_IMAGE_CACHE`, else `/var/cache/bramble/images`.
pub fn default_image_cache() -> PathBuf {
    std::env::var_os("BRAMBLE_IMAGE_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/bramble/images"), PathBuf::from)
}

/// Synthetic images the lab registers (see `bramble_images::fixture`): two, so a
/// reinstall visibly changes the kernel a Pi boots.
pub const LAB_IMAGES: [(&str, &str); 2] =
    [("lab-bookworm", "bookworm"), ("lab-bullseye", "bullseye")];

const COMMUNITY: &str = "bramble-lab";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab setup: {0}")]
    Setup(String),
    #[error("the lab's image store")]
    Images(#[from] bramble_images::ImagesError),
    #[error("the lab's NFS server")]
    Nfs(#[source] bramble_lab::LabError),
    #[error("the lab's controller")]
    Controller(#[from] ServeError),
    #[error("the lab's API: {0}")]
    Api(String),
    #[error("{0}")]
    Timeout(String),
    #[error("cannot start the lab controller {exe}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the lab controller process exited ({status}); last lines of {log}:\n{tail}")]
    Exited { status: String, log: PathBuf, tail: String },
    #[error("the lab's management network")]
    Management(#[source] bramble_lab::CmdError),
    #[error("relaying a service into the lab's namespace")]
    Forward(#[from] forward::ForwardError),
}

/// Where the lab's controller runs.
#[derive(Debug, Clone, Default)]
pub enum ControllerMode {
    /// On a runtime inside the lab's namespace, in this process (crash plans work).
    #[default]
    InProcess,
    /// As `<exe> lab controller`, a child process ([`process`]): it can be killed.
    Process { exe: PathBuf },
}

/// The controller's `[cluster]` settings.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub name: String,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub pis: u16,
    pub shelf: String,
    pub state_dir: PathBuf,
    /// Prefix of every namespace and link (at most 6 bytes).
    pub prefix: String,
    pub storage_supernet: String,
    pub listen: SocketAddr,
    pub pi: PiTiming,
    /// `[jobs]` settings of the lab's controller, as TOML lines.
    pub jobs_toml: String,
    /// Image deployed to every simulated Pi once racked (`None`: leave them ready, no
    /// OS); QEMU Pis get [`REAL_IMAGE`] then.
    pub deploy: Option<String>,
    /// How many slots, from port 1, hold QEMU Pis (at most [`MAX_REAL`]).
    pub real: u16,
    /// The image build cache [`REAL_IMAGE`] comes from when `real` > 0.
    pub image_cache: PathBuf,
    /// QEMU Pis (by port) whose kernel takes its address from the controller's DHCP
    /// (`ip=dhcp` after the generated static `ip=`; the last one counts).
    pub real_dhcp: Vec<u16>,
    /// Where the controller runs.
    pub controller: ControllerMode,
    /// The inventory: `None` for a SQLite file of the lab's own, emptied at every start;
    /// else a `postgres://` URL, which the lab never empties (other labs may share it).
    pub database: Option<String>,
    /// The controller's `[cluster]` section (`None`: no section).
    pub cluster: Option<ClusterOptions>,
    /// More configuration, as TOML sections (`[webhooks]`, say).
    pub extra_toml: String,
    /// `[switches] reconcile_seconds`.
    pub reconcile_seconds: u64,
    /// The name the lab's switch is registered under.
    pub switch_name: String,
    /// Board serials are `serial_base | port` (and MACs follow them).
    pub serial_base: u32,
    /// A seat on a management network shared with other labs: the switch answers on
    /// its address, reachable from their controllers (`None`: only on the loopback of
    /// the lab's namespace).
    pub management: Option<mgmt::Seat>,
    /// TCP services on the machine's loopback the controller must reach from its
    /// namespace, at the same address (a PostgreSQL `database` on the loopback is added
    /// by itself).
    pub forward: Vec<SocketAddr>,
    /// The switch's spanning-tree forward delay: a Pi port that is not an edge port
    /// drops its frames for twice this after power-on (real switches: 15 s).
    pub stp_forward_delay: Duration,
}

impl LabOptions {
    /// A lab of `pis` Pis with real boot-ROM timings, under `state_dir`.
    pub fn new(pis: u16, state_dir: &Path) -> Self {
        LabOptions {
            pis,
            shelf: "lab".into(),
            state_dir: state_dir.to_path_buf(),
            prefix: "blab".into(),
            storage_supernet: "10.46.0.0/16".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pi: PiTiming { dhcp_interval: Duration::from_secs(5) },
            jobs_toml: "lease_seconds = 5\npoll_interval_ms = 100\nrack_group_size = 8\nrack_group_pause_ms = 2000\nrack_await_seconds = 90\nsettle_ms = 1000\nboot_timeout_seconds = 120\nmax_parallel = 16\n".into(),
            deploy: Some(LAB_IMAGES[0].0.into()),
            real: 0,
            image_cache: default_image_cache(),
            real_dhcp: Vec::new(),
            controller: ControllerMode::InProcess,
            database: None,
            cluster: None,
            extra_toml: String::new(),
            reconcile_seconds: 30,
            switch_name: "lab-switch".into(),
            serial_base: SERIAL_BASE,
            management: None,
            forward: Vec::new(),
            stp_forward_delay: bramble_switch::sim::stp::DEFAULT_FORWARD_DELAY,
        }
    }

    /// Refuses a prefix that is not 1-6 lowercase letters and more QEMU Pis than
    /// [`MAX_REAL`] or than the shelf has slots.
    fn validate(&self) -> Result<(), LabError> {
        let p = &self.prefix;
        if p.is_empty() || p.len() > 6 || !p.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(LabError::Setup(format!("prefix {p:?} must be 1-6 lowercase letters")));
        }
        if self.real > MAX_REAL.min(self.pis) {
            return Err(LabError::Setup(format!(
                "{} QEMU Pis asked for; at most {MAX_REAL}, and no more than the {} slots",
                self.real, self.pis
            )));
        }
        Ok(())
    }

    /// Where the QEMU Pis keep their boot files, console logs and pid files.
    pub fn qemu_dir(&self) -> PathBuf {
        self.state_dir.join("qemu")
    }

    /// The loopback services relayed into the lab's namespace: [`LabOptions::forward`]
    /// and a PostgreSQL `database` on this machine's loopback.
    fn relayed(&self) -> Vec<SocketAddr> {
        let db = self.database.as_deref().and_then(forward::database_addr);
        let mut all: Vec<SocketAddr> = self.forward.iter().copied().chain(db).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A controller of the lab, running.
enum RunningController {
    InProcess { stop: oneshot::Sender<()>, task: JoinHandle<Result<(), ServeError>> },
    Process(ControllerProcess),
}

/// A running lab.
pub struct Lab {
    pub opts: LabOptions,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    /// An operator token.
    pub token: String,
    /// The public line of the lab's SSH key, deployed to every Pi (its private half is
    /// [`ssh::identity`] under the state directory).
    pub ssh_key: String,
    pub cabling: Arc<Cabling>,
    pub switch: SimHandle,
    links: Arc<VethLinks>,
    /// The lab's end of its management network cable.
    management: Option<Veth>,
    ganesha: Option<GaneshaServer>,
    controller: Option<RunningController>,
    background: Vec<JoinHandle<()>>,
    switch_stop: Option<oneshot::Sender<()>>,
    switch_addr: SocketAddr,
    http: reqwest::Client,
    /// Last, so it is dropped after everything running inside it.
    /// The lab's own network namespace, with the runtime the controller, the switch and
    /// their sockets live on.
    ctl: NetnsRuntime,
}

impl Lab {
    /// Builds the lab: images, NFS server, virtual switch, controller, and the shelf
    /// (switch registered and shelf enrolled through the API; not yet racked).
    pub async fn up(mut opts: LabOptions) -> Result<Lab, LabError> {
        opts.validate()?;
        if matches!(opts.controller, ControllerMode::Process { .. }) && opts.listen.port() == 0 {
            // A process restarted after `kill -9` serves where the first one did.
            opts.listen = api_listener(opts.listen)?
                .local_addr()
                .map_err(|e| LabError::Setup(format!("API address: {e}")))?;
        }
        if opts.real > 0 {
            bramble_lab::require_tools(&[
                (bramble_lab::qemupi::QEMU, "qemu-system-arm"),
                ("tc", "iproute2"),
                ("ssh", "openssh-client"),
            ])
            .map_err(|e| LabError::Setup(bramble_report::chain(&e)))?;
        }
        cleanup(&opts.prefix, &opts.state_dir);
        // Every lab starts from an empty inventory; image bases are kept as a cache.
        for stale in [
            "bramble.db",
            "bramble.db-wal",
            "bramble.db-shm",
            "images/roots",
            "ganesha-exports",
            "pis.json",
            "qemu",
        ] {
            let path = opts.state_dir.join(stale);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(LabError::Setup(format!("cannot remove {}: {e}", path.display())));
            }
        }
        std::fs::create_dir_all(opts.state_dir.join("firmware"))
            .map_err(|e| LabError::Setup(format!("state dir: {e}")))?;
        let ssh_key = ssh::generate(&opts.state_dir)?;
        let mut bases = prepare_images(&opts.state_dir).await?;
        if opts.real > 0 {
            // Before ganesha starts: its mount namespace would keep a build's mounts.
            bases.push(prepare_real_base(&opts.image_cache, &opts.state_dir).await?);
        }
        fixture::write_firmware(&opts.state_dir.join("firmware"))?;
        let ctl = NetnsRuntime::new(&controller_netns(&opts.prefix))
            .map_err(|e| LabError::Setup(bramble_report::chain(&e)))?;
        let management = match &opts.management {
            Some(seat) => {
                Some(mgmt::attach(seat, &opts.prefix, ctl.name()).map_err(LabError::Management)?)
            }
            None => None,
        };
        if matches!(opts.controller, ControllerMode::InProcess) {
            relay_into(&ctl, &opts.relayed()).await?;
        }
        let ganesha = {
            let o = GaneshaOptions {
                nfsv3: true,
                netns: Some(ctl.name().to_string()),
                ..GaneshaOptions::new(
                    opts.state_dir.join("ganesha"),
                    exports_dir(&opts.state_dir).join("exports.conf"),
                )
            };
            tokio::task::spawn_blocking(move || GaneshaServer::start(o))
                .await
                .map_err(|e| LabError::Setup(e.to_string()))?
                .map_err(LabError::Nfs)?
        };
        let sim_opts = SimOptions {
            forward_delay: opts.stp_forward_delay,
            ..SimOptions::new(opts.pis.max(1), COMMUNITY)
        };
        let sim = SimSwitch::new(sim_opts).map_err(|e| LabError::Setup(e.to_string()))?;
        let switch = sim.handle();
        // The switch's loopback is the controller namespace's own, as a management
        // network only the controller reaches; on a shared management network it
        // answers on the lab's seat there too.
        let bind: SocketAddr = if opts.management.is_some() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([127, 0, 0, 1], 0).into()
        };
        let socket = ctl
            .spawn(tokio::net::UdpSocket::bind(bind))
            .await
            .map_err(|e| LabError::Setup(e.to_string()))?
            .map_err(|e| LabError::Setup(format!("switch socket: {e}")))?;
        let mut switch_addr = socket.local_addr().map_err(|e| LabError::Setup(e.to_string()))?;
        if let Some(seat) = &opts.management {
            switch_addr.set_ip(seat.address.into());
        }
        let (switch_stop, stopped) = oneshot::channel::<()>();
        let switch_task = ctl.spawn(async move {
            if let Err(e) = sim
                .serve(socket, async move {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "virtual switch stopped");
            }
        });
        let links = Arc::new(VethLinks::in_netns(&opts.prefix, ctl.name()));
        // A controller process makes lasting links, found by name.
        let slots: Arc<dyn PiNetns> = match opts.controller {
            ControllerMode::InProcess => links.clone(),
            ControllerMode::Process { .. } => Arc::new(LastingLinks::new(&opts.prefix, ctl.name())),
        };
        let qemu =
            QemuSlots { count: opts.real, dir: opts.qemu_dir(), dhcp: opts.real_dhcp.clone() };
        let hold = stp::ForwardingHold::new(ctl.name(), &opts.prefix)
            .map_err(|e| LabError::Setup(format!("spanning-tree sink link: {e}")))?;
        let cabling = Arc::new(
            Cabling::new(slots, opts.pi.clone(), &ssh_key, qemu)
                .serials_from(opts.serial_base)
                .with_forwarding_hold(hold),
        );
        let mut lab = Lab {
            api: String::new(),
            token: generate_token(),
            ssh_key,
            cabling: cabling.clone(),
            switch: switch.clone(),
            links,
            management,
            ganesha: Some(ganesha),
            controller: None,
            background: vec![switch_task],
            switch_stop: Some(switch_stop),
            switch_addr,
            http: crate::tls::client::http(),
            opts,
            ctl,
        };
        let config = lab.config()?;
        let db = crate::db::Db::connect(&config.database_url)
            .await
            .map_err(|e| LabError::Setup(e.to_string()))?;
        for base in &bases {
            crate::catalogue::register_base(&db, base)
                .await
                .map_err(|e| LabError::Setup(e.to_string()))?;
        }
        db.create_token(&lab.token, Role::Operator, None, "lab")
            .await
            .map_err(|e| LabError::Setup(e.to_string()))?;
        db.close().await;
        lab.start_controller(None).await?;
        lab.enroll().await?;
        lab.background.push(tokio::spawn(cabling.follow(switch)));
        Ok(lab)
    }

    /// The lab controller's configuration.
    pub fn config(&self) -> Result<Config, LabError> {
        let raw: RawConfig = toml::from_str(&self.config_toml())
            .map_err(|e| LabError::Setup(format!("lab config: {e}")))?;
        let config = Config::from_raw(raw, "lab", &Overrides::default())
            .map_err(|e| LabError::Setup(e.to_string()))?;
        debug_assert!(matches!(config.images.nfs, NfsBackend::Ganesha { .. }));
        Ok(config)
    }

    /// The lab controller's configuration file, whole (a controller process reads it).
    pub fn config_toml(&self) -> String {
        let o = &self.opts;
        let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut text = format!(
            "listen = {}\nstate_dir = {}\n",
            quoted(&o.listen.to_string()),
            quoted(&o.state_dir.display().to_string())
        );
        if let Some(db) = &o.database {
            text += &format!("database = {}\n", quoted(db));
        }
        text += &format!(
            "[addressing]\nstorage_supernet = \"{}\"\n[jobs]\n{}\n\
             [images]\nnfs = \"ganesha\"\nganesha_dir = \"{}\"\nganesha_pid_file = \"{}\"\n\
             ganesha_log_file = \"{}\"\n\
             [switches]\nreconcile_seconds = {}\n\
             [netboot]\nenabled = true\nrefresh_seconds = 2\ntftp_listen = [\"0.0.0.0:69\"]\n",
            o.storage_supernet,
            o.jobs_toml,
            exports_dir(&o.state_dir).display(),
            o.state_dir.join("ganesha/ganesha.pid").display(),
            o.state_dir.join("ganesha/ganesha.log").display(),
            o.reconcile_seconds,
        );
        // Rescue roots come from an image the lab already has, so no second real image is
        // built: the real one when QEMU Pis are in the lab, else a synthetic one.
        let rescue = if o.real > 0 { REAL_IMAGE } else { LAB_IMAGES[0].0 };
        text += &format!("[rescue]\nimage = {}\n", quoted(rescue));
        if let Some(c) = &o.cluster {
            text += &format!(
                "[cluster]\nname = {}\nheartbeat_ms = {}\nlease_ms = {}\n",
                quoted(&c.name),
                c.heartbeat_ms,
                c.lease_ms
            );
        }
        text + &o.extra_toml
    }

    /// Starts (or restarts) the controller on the lab's database; `crash` injects a crash
    /// (the controller then stops as if killed, see [`CrashPlan`]; in-process only).
    pub async fn start_controller(
        &mut self,
        crash: Option<Arc<dyn CrashPlan>>,
    ) -> Result<(), LabError> {
        match self.opts.controller.clone() {
            ControllerMode::InProcess => self.start_in_process(crash).await,
            ControllerMode::Process { .. } if crash.is_some() => {
                Err(LabError::Setup("crash plans need the in-process controller".into()))
            }
            ControllerMode::Process { exe } => self.start_process(&exe).await,
        }
    }

    /// Starts the controller as a child process, from a configuration file under the
    /// state directory, and waits until its API answers.
    async fn start_process(&mut self, exe: &Path) -> Result<(), LabError> {
        let dir = &self.opts.state_dir;
        let (config, log) = (dir.join("controller.toml"), dir.join("controller.log"));
        std::fs::write(&config, self.config_toml())
            .map_err(|e| LabError::Setup(format!("{}: {e}", config.display())))?;
        self.api = format!("http://{}", self.opts.listen);
        let relayed = self.opts.relayed();
        let launch = Launch {
            exe,
            config: &config,
            prefix: &self.opts.prefix,
            forward: &relayed,
            log: &log,
        };
        let process = ControllerProcess::start(launch, &self.api, Duration::from_secs(60)).await?;
        self.controller = Some(RunningController::Process(process));
        Ok(())
    }

    async fn start_in_process(
        &mut self,
        crash: Option<Arc<dyn CrashPlan>>,
    ) -> Result<(), LabError> {
        let config = self.config()?;
        // Bound here, in the machine's namespace, so the lab's users reach the API.
        let listener = api_listener(config.listen)?;
        let addr = listener.local_addr().map_err(|e| LabError::Setup(e.to_string()))?;
        self.api = format!("http://{addr}");
        let links = self.links.clone() as Arc<dyn StorageLinks>;
        let (stop, stopped) = oneshot::channel::<()>();
        let (opened, open) = oneshot::channel::<()>();
        let task = self.ctl.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Http)?;
            let mut controller = Controller::open(config).await?.with_storage_links(links);
            if let Some(plan) = crash {
                controller.runner = controller.runner.with_crash_plan(plan);
            }
            let _ = opened.send(());
            controller
                .run(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        // A controller that cannot start (its database, or its DHCP and TFTP sockets, say)
        // stops at once: say why. `open` fails only if the task ended before opening.
        let _ = open.await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if task.is_finished() {
            return match task.await {
                Ok(Err(e)) => Err(LabError::Controller(e)),
                Ok(Ok(())) => Err(LabError::Setup("the controller stopped at once".into())),
                Err(e) => Err(LabError::Setup(format!("the controller task failed: {e}"))),
            };
        }
        self.controller = Some(RunningController::InProcess { stop, task });
        Ok(())
    }

    /// Stops the controller gracefully (jobs in flight finish first).
    pub async fn stop_controller(&mut self) -> Result<(), LabError> {
        match self.controller.take() {
            Some(RunningController::InProcess { stop, task }) => {
                let _ = stop.send(());
                task.await.map_err(|e| LabError::Setup(e.to_string()))??;
            }
            Some(RunningController::Process(p)) => p.stop(Duration::from_secs(60)).await?,
            None => {}
        }
        Ok(())
    }

    /// `kill -9` of the controller process ([`ControllerMode::Process`] only): SIGKILL,
    /// nothing else; the switch, the NFS server and the Pis keep running.
    pub async fn kill_controller(&mut self) -> Result<(), LabError> {
        match self.controller.take() {
            Some(RunningController::Process(p)) => p.kill().await,
            other => {
                self.controller = other;
                Err(LabError::Setup("only a controller process can be killed".into()))
            }
        }
    }

    /// The controller process's id, while one runs.
    pub fn controller_pid(&self) -> Option<u32> {
        match &self.controller {
            Some(RunningController::Process(p)) => p.pid(),
            _ => None,
        }
    }

    /// Waits until the controller stopped by itself (an injected crash); true if it did.
    pub async fn wait_controller_crash(&mut self, limit: Duration) -> bool {
        let Some(RunningController::InProcess { task, .. }) = self.controller.as_mut() else {
            return false;
        };
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Err(ServeError::Crashed))) => {
                self.controller = None;
                true
            }
            Ok(_) => {
                self.controller = None;
                false
            }
            Err(_) => false,
        }
    }

    /// The switch's SNMP address, inside the controller's namespace (see
    /// [`Lab::controller_netns`]): a peer like snmpwalk runs there (`ip netns exec`).
    pub fn switch_addr(&self) -> SocketAddr {
        self.switch_addr
    }

    /// The name of the namespace the controller, NFS server and switch live in.
    pub fn controller_netns(&self) -> &str {
        self.ctl.name()
    }

    /// The command line running `remote` as root on the Pi at storage `address` with
    /// the lab's key, from the controller's namespace (see [`ssh::ssh_argv`]).
    pub fn ssh_argv(&self, address: &str, remote: &[&str]) -> Vec<String> {
        ssh::ssh_argv(self.ctl.name(), &ssh::identity(&self.opts.state_dir), address, remote)
    }

    /// Runs `task` inside the controller's namespace (for a client of the switch, say:
    /// its sockets stay there), and waits for it.
    pub async fn in_controller_netns<F>(&self, task: F) -> Result<F::Output, LabError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.ctl.spawn(task).await.map_err(|e| LabError::Setup(e.to_string()))
    }

    async fn enroll(&self) -> Result<(), LabError> {
        let trunk = self.opts.pis + 1;
        let switch = &self.opts.switch_name;
        let sw = json!({ "name": switch, "address": self.switch_addr.to_string(), "trunk_port": trunk,
            "credentials": { "version": "v2c", "community": COMMUNITY } });
        self.call(reqwest::Method::POST, "/v1/switches", Some(sw), &[201]).await?;
        let shelf = json!({ "name": self.opts.shelf, "switch": switch, "first_port": 1, "last_port": self.opts.pis });
        let shelf: Shelf =
            self.request(reqwest::Method::POST, "/v1/shelves", Some(shelf), &[201]).await?;
        for slot in shelf.slots {
            self.cabling.plug(
                slot.port,
                slot.vlan,
                &crate::jobs::reimage::hostname_for(
                    Some(&self.opts.shelf),
                    Some(slot.port),
                    None,
                    "",
                ),
            );
        }
        Ok(())
    }

    /// Racks the shelf through the API and waits for the job; returns the job.
    pub async fn rack(&self, limit: Duration) -> Result<Job, LabError> {
        let job: Job = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/shelves/{}/rack", self.opts.shelf),
                None,
                &[202],
            )
            .await?;
        self.wait_job(job.id.as_str(), limit).await
    }

    /// Starts a reinstall of every ready Pi of the shelf with `image` ([`REAL_IMAGE`] on
    /// the QEMU Pis); returns the jobs.
    pub async fn deploy_all(&self, image: &str) -> Result<Vec<Job>, LabError> {
        let mut jobs = Vec::new();
        for pi in self.pis().await? {
            if pi.state == PiState::Ready {
                let real = pi.port.is_some_and(|port| self.cabling.qemu_slots().holds(port));
                let image = if real { REAL_IMAGE } else { image };
                jobs.push(self.reimage(pi.id.as_str(), image).await?);
            }
        }
        Ok(jobs)
    }

    /// Starts a reinstall of `pi` with `image` and the lab's SSH key.
    pub async fn reimage(&self, pi: &str, image: &str) -> Result<Job, LabError> {
        let body = json!({ "image": image, "ssh_keys": [self.ssh_key] });
        self.request(reqwest::Method::POST, &format!("/v1/pis/{pi}/reimage"), Some(body), &[202])
            .await
    }

    /// The shelf's Pis as the API lists them.
    pub async fn pis(&self) -> Result<Vec<Pi>, LabError> {
        let page: Page<Pi> = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/pis?shelf={}&limit=500", self.opts.shelf),
                None,
                &[200],
            )
            .await?;
        Ok(page.items)
    }

    /// Polls a job until it ends; errors if it does not within `limit`.
    pub async fn wait_job(&self, id: &str, limit: Duration) -> Result<Job, LabError> {
        let deadline = Instant::now() + limit;
        loop {
            let job: Result<Job, _> =
                self.request(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None, &[200]).await;
            match job {
                Ok(j) if !j.state.is_active() => return Ok(j),
                Ok(_) | Err(LabError::Api(_)) if Instant::now() < deadline => {}
                Ok(j) => {
                    return Err(LabError::Timeout(format!(
                        "job {id} still {} at step {} after {limit:?}",
                        j.state,
                        j.current_step.as_deref().unwrap_or("-")
                    )));
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One API call as the lab's operator, its answer as JSON (for tests that look at
    /// any route); `ok` lists the accepted statuses.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<Value, LabError> {
        self.request(method, path, body, ok).await
    }

    /// One API call as the lab's operator, its answer read into the API's type `T`.
    async fn request<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<T, LabError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| LabError::Api(format!("{method} {path}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        if !ok.contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(LabError::Api(format!("{method} {path}: HTTP {status}: {text}")));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| LabError::Api(format!("{method} {path}: unexpected answer: {e}")))
    }

    /// Stops everything and removes every namespace, link and process the lab made.
    pub async fn down(mut self) {
        if let Err(e) = self.stop_controller().await {
            tracing::warn!(error = %e, "lab controller did not stop cleanly");
        }
        self.cabling.unplug_all().await;
        if let Some(stop) = self.switch_stop.take() {
            let _ = stop.send(());
        }
        for t in self.background.drain(..) {
            t.abort();
            let _ = t.await;
        }
        drop(self.ganesha.take());
        drop(self.management.take());
        let (prefix, dir) = (self.opts.prefix.clone(), self.opts.state_dir.clone());
        // The links remove their own pairs and namespaces when the last holder drops
        // them, the controller namespace goes with its runtime; `cleanup` then catches
        // anything a crash left.
        let Lab { cabling, links, ctl, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            drop(cabling);
            drop(links);
            drop(ctl);
            cleanup(&prefix, &dir);
        })
        .await;
    }
}

/// Writes a small status file so a reader never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The controller namespace of a lab with `prefix`.
pub fn controller_netns(prefix: &str) -> String {
    format!("{prefix}ctl")
}

/// Relays `services` of the machine's loopback into the namespace of `ctl` (see
/// [`forward`]), for as long as its runtime runs.
async fn relay_into(ctl: &NetnsRuntime, services: &[SocketAddr]) -> Result<(), LabError> {
    let outside = tokio::runtime::Handle::current();
    for addr in services.iter().copied() {
        let bound =
            ctl.spawn(forward::bind(addr)).await.map_err(|e| LabError::Setup(e.to_string()))?;
        ctl.spawn(forward::relay(bound?, outside.clone()));
    }
    Ok(())
}

/// The API's listener, bound in the caller's (the machine's) namespace.
fn api_listener(addr: SocketAddr) -> Result<std::net::TcpListener, LabError> {
    let bound = |e| LabError::Setup(format!("API listener {addr}: {e}"));
    let listener = std::net::TcpListener::bind(addr).map_err(bound)?;
    listener.set_nonblocking(true).map_err(bound)?;
    Ok(listener)
}

fn exports_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ganesha-exports")
}

/// Registers the lab's synthetic images in the store under `state_dir/images`.
async fn prepare_images(state_dir: &Path) -> Result<Vec<Base>, LabError> {
    let dir = state_dir.join("images");
    tokio::task::spawn_blocking(move || {
        let store = ImageStore::open(&dir, &SystemRunner)?;
        LAB_IMAGES
            .iter()
            .map(|(name, flavour)| fixture::ensure(&store, &SystemRunner, name, flavour))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| LabError::Setup(e.to_string()))?
    .map_err(LabError::Images)
}

/// [`REAL_IMAGE`] from the build cache at `cache` (built there on a miss, which takes
/// minutes), copied into the lab's store (`cp -a --reflink=auto`, kept across labs).
async fn prepare_real_base(cache: &Path, state_dir: &Path) -> Result<Base, LabError> {
    let (cache, dir) = (cache.to_path_buf(), state_dir.join("images"));
    tokio::task::spawn_blocking(move || {
        let catalogue = Catalogue::builtin()?;
        let recipe = catalogue.get(REAL_IMAGE)?;
        let cache = ImageStore::open(&cache, &SystemRunner)?;
        tracing::info!(image = REAL_IMAGE, cache = %cache.dir().display(), "taking the real base from the build cache");
        let base = bramble_images::build_cached(recipe, &cache, &NoProgress)?;
        ImageStore::open(&dir, &SystemRunner)?.import(&base, &SystemRunner)
    })
    .await
    .map_err(|e| LabError::Setup(e.to_string()))?
    .map_err(LabError::Images)
}

/// Removes what a lab with `prefix` left behind: the QEMU Pis, the controller and Pi
/// namespaces, storage links, and the NFS server recorded under `state_dir`. Safe to run
/// when nothing is left.
pub fn cleanup(prefix: &str, state_dir: &Path) {
    if let Ok(dirs) = std::fs::read_dir(state_dir.join("qemu")) {
        for dir in dirs.filter_map(Result::ok) {
            bramble_lab::qemupi::cleanup_stale(&dir.path());
        }
    }
    bramble_lab::ganesha::cleanup_stale(&state_dir.join("ganesha"));
    let controller = controller_netns(prefix);
    let owned = |name: &str| {
        name == controller
            || name.strip_prefix(prefix).is_some_and(|rest| {
                rest.trim_end_matches("pi").chars().all(|c| c.is_ascii_digit()) && !rest.is_empty()
            })
    };
    if let Ok(out) = std::process::Command::new("ip").args(["netns", "list"]).output() {
        for ns in
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next())
        {
            if owned(ns) {
                let _ = bramble_lab::run_ip(&["netns", "delete", ns]);
            }
        }
    }
    if let Ok(out) = std::process::Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line
                .split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or(""))
                .unwrap_or("");
            if owned(name) {
                let _ = bramble_lab::run_ip(&["link", "delete", name]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bramble_lab::Netns;

    fn listed(name: &str) -> bool {
        let out = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn cleanup_removes_a_crashed_labs_controller_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = super::controller_netns("zzcln");
        Netns::new(&name).expect("namespace").leak();
        assert!(listed(&name));
        super::cleanup("zzcln", dir.path());
        assert!(!listed(&name), "{name} left behind");
    }
}
