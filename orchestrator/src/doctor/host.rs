//! What doctor observes, behind [`Host`]: the database (migrations compared without
//! applying them, then the inventory), interfaces, sockets and their holders, the NFS
//! server, the image store's filesystem, the switches' SNMP agents and the clock.
//! [`SystemHost`] is the real machine; the rules in [`super::rules`] see only the facts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bramble_images::fsutil;
use bramble_switch::SwitchError;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use super::rules::{
    DbFacts, NfsFacts, PidState, PortFacts, Proto, Schema, SnmpAnswer, StoreFacts, TrunkFacts,
    VlanSupport,
};
use crate::config::NfsBackend;
use crate::db::{Backend, Db};
use crate::fabric::SnmpTiming;
use crate::secret::SnmpCredentials;

/// Where the NFS server is asked whether it answers.
const NFS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2049);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the inventory says, read once its schema is current.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Enrolled slots (every shelf's ports).
    pub slots: u64,
    /// The newest event's timestamp (Unix ms).
    pub newest_event_ms: Option<i64>,
    /// PostgreSQL's clock minus this machine's (ms); `None` on SQLite.
    pub db_offset_ms: Option<i64>,
    pub switches: Vec<RegisteredSwitch>,
}

/// A switch of the inventory with its stored credentials (secrets stay [`crate::secret::Secret`]s).
#[derive(Debug, Clone)]
pub struct RegisteredSwitch {
    pub name: String,
    pub address: String,
    pub driver: String,
    pub credentials: SnmpCredentials,
}

/// The machine as doctor sees it.
#[async_trait]
pub trait Host: Send + Sync {
    /// The database's migration state and, when current, its inventory. PostgreSQL is
    /// not asked when `offline`.
    async fn database(&self, url: &str, offline: bool) -> (DbFacts, Option<Inventory>);
    fn trunk(&self, name: &str) -> TrunkFacts;
    fn port(&self, proto: Proto, port: u16) -> PortFacts;
    /// The NFS backend; whether it runs and answers is not asked when `offline`.
    fn nfs(&self, backend: &NfsBackend, offline: bool) -> NfsFacts;
    fn store(&self, dir: &Path) -> StoreFacts;
    async fn switch(&self, switch: &RegisteredSwitch, timing: SnmpTiming) -> SnmpAnswer;
    /// Unix time in ms.
    fn now_ms(&self) -> i64;
    /// The API's certificate, and whether `key` is its key (reads the files).
    fn tls(&self, cert: &Path, key: &Path) -> Result<crate::tls::CertSummary, String> {
        crate::tls::inspect(cert, Some(key)).map_err(|e| bramble_report::chain(&e))
    }
}

/// This machine.
#[derive(Debug, Default)]
pub struct SystemHost;

impl SystemHost {
    pub fn new() -> Self {
        SystemHost
    }
}

#[async_trait]
impl Host for SystemHost {
    async fn database(&self, url: &str, offline: bool) -> (DbFacts, Option<Inventory>) {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let shown = crate::db::redact_url(url);
        let open_url = match (backend, crate::db::sqlite_path(url)) {
            (Backend::Postgres, _) if offline => return (DbFacts::NotAsked, None),
            (Backend::Postgres, _) | (Backend::Sqlite, None) => url.to_string(),
            (Backend::Sqlite, Some(path)) if !path.exists() => {
                return (DbFacts::NoFile { path }, None);
            }
            // Opened without `mode=rwc`: doctor never creates the file.
            (Backend::Sqlite, Some(path)) => format!("sqlite://{}?mode=rw", path.display()),
        };
        let unreachable = |e: &dyn std::fmt::Display| DbFacts::Unreachable {
            url: shown.clone(),
            error: e.to_string(),
        };
        let applied = match applied_migrations(&open_url, backend).await {
            Ok(a) => a,
            Err(e) => return (unreachable(&e), None),
        };
        let known: Vec<i64> = crate::db::migrator(backend)
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        let current = super::rules::schema(&known, &applied) == Schema::Current;
        let facts = DbFacts::Open { url: shown.clone(), known, applied };
        if !current {
            return (facts, None);
        }
        // Current: connecting migrates nothing.
        match inventory(url).await {
            Ok(inv) => (facts, Some(inv)),
            Err(e) => (unreachable(&bramble_report::chain(&*e)), None),
        }
    }

    fn trunk(&self, name: &str) -> TrunkFacts {
        let dir = Path::new("/sys/class/net").join(name);
        let read =
            |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default().trim().to_string();
        TrunkFacts {
            name: name.to_string(),
            exists: dir.exists(),
            ethernet: read("type") == "1",
            up: matches!(read("operstate").as_str(), "up" | "unknown"),
            vlan: vlan_support(),
        }
    }

    fn port(&self, proto: Proto, port: u16) -> PortFacts {
        super::sockets::holders(proto, port)
    }

    fn nfs(&self, backend: &NfsBackend, offline: bool) -> NfsFacts {
        let answering = || (!offline).then(|| (NFS_ADDR, answers(NFS_ADDR)));
        match backend {
            NfsBackend::None => NfsFacts::None,
            NfsBackend::Ganesha { pid_file, .. } => NfsFacts::Ganesha {
                installed: installed("ganesha.nfsd"),
                process: (!offline).then(|| pid_state(pid_file.as_deref(), "ganesha.nfsd")),
                answering: answering(),
            },
            NfsBackend::Kernel { .. } => NfsFacts::Kernel {
                exportfs: installed("exportfs"),
                nfsd: Path::new("/proc/fs/nfsd").exists(),
                answering: answering(),
            },
        }
    }

    fn store(&self, dir: &Path) -> StoreFacts {
        let exists = dir.is_dir();
        // A store made at first start is judged by the filesystem it will be made on.
        let probed = dir.ancestors().find(|d| d.is_dir()).unwrap_or(Path::new("/")).to_path_buf();
        let strategy =
            bramble_images::provision::strategy::probe(&probed, &bramble_images::SystemRunner)
                .map_err(|e| bramble_report::chain(&e));
        StoreFacts {
            dir: dir.to_path_buf(),
            exists,
            filesystem: fsutil::fs_magic(&probed)
                .map(fs_name)
                .unwrap_or_else(|_| "an unknown filesystem".into()),
            strategy,
            free: fsutil::free_bytes(&probed).map_err(|e| bramble_report::chain(&e)),
            base_sizes: base_sizes(dir),
            roots: roots_on_disk(&dir.join("roots")),
        }
    }

    async fn switch(&self, switch: &RegisteredSwitch, timing: SnmpTiming) -> SnmpAnswer {
        let Ok(addr) = switch.address.parse::<SocketAddr>() else {
            return SnmpAnswer::Error(format!("unusable address {:?}", switch.address));
        };
        let mut cfg = bramble_switch::SessionConfig::new(addr, switch.credentials.to_driver());
        cfg.timeout = timing.timeout;
        cfg.retries = timing.retries;
        match bramble_switch::detect::identify(cfg).await {
            Ok((id, kind)) => SnmpAnswer::Identified {
                sys_object_id: id.sys_object_id,
                sys_descr: id.sys_descr,
                kind,
            },
            Err(SwitchError::Timeout { .. }) => SnmpAnswer::Silent,
            Err(SwitchError::Auth { detail, .. }) => SnmpAnswer::Refused(detail),
            Err(e) => SnmpAnswer::Error(e.to_string()),
        }
    }

    fn now_ms(&self) -> i64 {
        crate::time::now_millis()
    }
}

/// `(version, succeeded)` of every applied migration; none when the table is missing.
async fn applied_migrations(url: &str, backend: Backend) -> Result<Vec<(i64, bool)>, BoxError> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    let result = crate::db::schema::applied(&pool, backend).await;
    pool.close().await;
    Ok(result?.into_iter().map(|a| (a.version, a.success)).collect())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads what the checks need from a database whose schema is current.
async fn inventory(url: &str) -> Result<Inventory, BoxError> {
    let db = Db::connect(url).await?;
    let result = read_inventory(&db).await;
    db.close().await;
    result
}

async fn read_inventory(db: &Db) -> Result<Inventory, BoxError> {
    let slots: i64 = db.q("SELECT COUNT(*) FROM slots").fetch_one(db.pool()).await?.try_get(0)?;
    let newest: Option<i64> =
        db.q("SELECT MAX(at) FROM events").fetch_one(db.pool()).await?.try_get(0)?;
    let db_offset_ms = match db.backend() {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let sent = crate::time::now_millis();
            let started = Instant::now();
            let server: i64 = db
                .q("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
                .fetch_one(db.pool())
                .await?
                .try_get(0)?;
            let midpoint = sent + i64::try_from(started.elapsed().as_millis() / 2).unwrap_or(0);
            Some(server - midpoint)
        }
    };
    let mut switches = Vec::new();
    for sw in db.list_switches().await? {
        if let Some(credentials) = db.switch_credentials(&sw.id).await? {
            switches.push(RegisteredSwitch {
                name: sw.name,
                address: sw.address,
                driver: sw.driver,
                credentials,
            });
        }
    }
    Ok(Inventory {
        slots: u64::try_from(slots).unwrap_or(0),
        newest_event_ms: newest,
        db_offset_ms,
        switches,
    })
}

/// Whether the kernel can make 802.1Q interfaces: loaded, built in, loadable, or not.
fn vlan_support() -> VlanSupport {
    if Path::new("/proc/net/vlan").exists() || Path::new("/sys/module/8021q").exists() {
        return VlanSupport::Loaded;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = PathBuf::from("/lib/modules").join(release.trim());
    let lists = |f: &str| {
        std::fs::read_to_string(modules.join(f))
            .is_ok_and(|t| t.lines().any(|l| l.contains("/8021q.ko")))
    };
    if lists("modules.builtin") {
        VlanSupport::Builtin
    } else if lists("modules.dep") {
        VlanSupport::Loadable
    } else {
        VlanSupport::Absent
    }
}

/// Whether `tool` is on PATH or in the system's sbin directories (doctor may run as a
/// user whose PATH lacks them).
fn installed(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

/// The process a pid file names, or (without one) the first process called `comm`.
fn pid_state(pid_file: Option<&Path>, comm: &str) -> PidState {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    match pid_file {
        Some(f) => match std::fs::read_to_string(f).ok().and_then(|t| t.trim().parse::<u32>().ok())
        {
            Some(pid) if alive(pid) => PidState::Alive(pid),
            Some(pid) => PidState::Gone(pid),
            None => PidState::Missing,
        },
        None => std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .map_or(PidState::Missing, PidState::Alive),
    }
}

/// Whether `addr` accepts a TCP connection within [`CONNECT_TIMEOUT`].
fn answers(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok()
}

/// A filesystem's name from its `statfs` magic.
fn fs_name(magic: i64) -> String {
    match magic {
        fsutil::BTRFS_MAGIC => "btrfs".into(),
        0x5846_5342 => "xfs".into(),
        0xef53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        other => format!("filesystem 0x{other:x}"),
    }
}

/// `size_bytes` of every base in the store (`bases/<image>/<version>/manifest.json`).
fn base_sizes(store: &Path) -> Vec<u64> {
    let entries = |d: &Path| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path());
    entries(&store.join("bases"))
        .flat_map(|image| entries(&image).collect::<Vec<_>>())
        .filter_map(|version| bramble_images::Manifest::load(&version.join("manifest.json")).ok())
        .map(|m| m.size_bytes)
        .collect()
}

/// Per-Pi roots in `roots/` (not snapshots, half-made or rescue roots).
fn roots_on_disk(roots: &Path) -> u64 {
    let n = std::fs::read_dir(roots)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && !name.ends_with(".new") && !name.ends_with("_rescue")
        })
        .count();
    u64::try_from(n).unwrap_or(0)
}
