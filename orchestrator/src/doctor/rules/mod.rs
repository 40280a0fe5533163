//! The verdict of every check, computed from observed facts only: no I/O here, so each
//! rule is tested with facts written by hand (`tests.rs`). What the facts are and how
//! they are observed is [`super::host`]'s business.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Check;

mod remote;
mod storage;

pub use remote::*;
pub use storage::*;

/// How many slots a `copy` store serves before doctor warns: every reimage copies a
/// whole root, so racking and reinstalling many Pis takes long and fills the disk.
pub const COPY_WARN_SLOTS: u64 = 16;
/// Disk a copy-on-write root (snapshot or reflink) is given: what its Pi writes.
pub const COW_ROOT_BYTES: u64 = 64 << 20;
/// Clock difference with the PostgreSQL server that warns, and that fails.
pub const DB_SKEW_WARN_MS: i64 = 5_000;
pub const DB_SKEW_FAIL_MS: i64 = 60_000;
/// How far the clock may be behind the newest inventory record before it is wrong
/// (another controller of the cluster may write a little ahead).
pub const INVENTORY_SLACK_MS: i64 = 60_000;

/// The configuration file: parsed, or why not.
pub fn config(origin: &str, parsed: Result<(), String>) -> Check {
    match parsed {
        Ok(()) => Check::ok("config", format!("{origin}: loaded, every value valid")),
        Err(e) => Check::fail(
            "config",
            e,
            "fix the file; every key is in docs/doctor.md and the packaged /etc/bramble/bramble.toml",
        ),
    }
}

/// What the database looks like before anything is applied to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFacts {
    /// A SQLite inventory whose file does not exist yet.
    NoFile {
        path: PathBuf,
    },
    /// PostgreSQL not asked (`--offline`).
    NotAsked,
    Unreachable {
        url: String,
        error: String,
    },
    Open {
        url: String,
        /// Versions the binary carries.
        known: Vec<i64>,
        /// Versions recorded as applied, and whether each succeeded.
        applied: Vec<(i64, bool)>,
    },
}

/// The migration state of an open database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    Current,
    /// `serve` would apply these.
    Pending(Vec<i64>),
    /// Applied versions this binary does not know: a newer release migrated it.
    Newer(Vec<i64>),
    /// A migration recorded as failed half-way.
    Dirty(Vec<i64>),
}

/// Compares applied migrations with the known ones.
pub fn schema(known: &[i64], applied: &[(i64, bool)]) -> Schema {
    let dirty: Vec<i64> = applied.iter().filter(|(_, ok)| !ok).map(|(v, _)| *v).collect();
    if !dirty.is_empty() {
        return Schema::Dirty(dirty);
    }
    let newer: Vec<i64> = applied.iter().map(|(v, _)| *v).filter(|v| !known.contains(v)).collect();
    if !newer.is_empty() {
        return Schema::Newer(newer);
    }
    let pending: Vec<i64> =
        known.iter().copied().filter(|v| !applied.iter().any(|(a, _)| a == v)).collect();
    if pending.is_empty() { Schema::Current } else { Schema::Pending(pending) }
}

pub fn database(facts: &DbFacts) -> Check {
    const NAME: &str = "database";
    match facts {
        DbFacts::NoFile { path } => Check::warn(
            NAME,
            format!("no database at {} yet", path.display()),
            "nothing to do: it is created at first start",
        ),
        DbFacts::NotAsked => Check::skip(NAME, "PostgreSQL not asked (--offline)"),
        DbFacts::Unreachable { url, error } => Check::fail(
            NAME,
            format!("cannot open {url}: {error}"),
            "check `database` in the config, that the server runs and that this user may connect",
        ),
        DbFacts::Open { url, known, applied } => match schema(known, applied) {
            Schema::Current => Check::ok(
                NAME,
                format!("{url} reachable; schema current (version {})", known.last().unwrap_or(&0)),
            ),
            Schema::Pending(p) => Check::warn(
                NAME,
                format!("{url} reachable; {} migration(s) not applied yet: {}", p.len(), list(&p)),
                format!(
                    "nothing to do: serve will apply {} migration(s) at start; back the database up first",
                    p.len()
                ),
            ),
            Schema::Newer(n) => Check::fail(
                NAME,
                format!(
                    "{url} has migration(s) {} this binary does not know: a newer bramble migrated it",
                    list(&n)
                ),
                "run the newer bramble, or restore the backup taken before the upgrade",
            ),
            Schema::Dirty(d) => Check::fail(
                NAME,
                format!("{url}: migration(s) {} failed half-way", list(&d)),
                "restore the backup taken before the upgrade, then start again",
            ),
        },
    }
}

fn list(v: &[i64]) -> String {
    v.iter().map(|n| format!("{n:04}")).collect::<Vec<_>>().join(", ")
}

/// Whether the kernel can make 802.1Q VLAN interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanSupport {
    /// `8021q` loaded (or `/proc/net/vlan` present).
    Loaded,
    /// Built into the kernel.
    Builtin,
    /// A module the kernel can load (`modules.dep` lists it).
    Loadable,
    Absent,
}

/// The storage trunk as the machine shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkFacts {
    pub name: String,
    pub exists: bool,
    /// ARPHRD_ETHER: only Ethernet carries VLAN tags.
    pub ethernet: bool,
    pub up: bool,
    pub vlan: VlanSupport,
}

pub fn trunk(netboot: bool, facts: Option<&TrunkFacts>) -> Check {
    const NAME: &str = "trunk";
    let Some(t) = facts.filter(|_| netboot) else {
        return Check::skip(
            NAME,
            "netboot is disabled ([netboot] enabled = false): no storage trunk is used",
        );
    };
    if !t.exists {
        return Check::fail(
            NAME,
            format!("no interface {} ([netboot] storage_trunk)", t.name),
            "set storage_trunk to the interface cabled to the switches' trunk port",
        );
    }
    if !t.ethernet {
        return Check::fail(
            NAME,
            format!("{} is not an Ethernet interface: it cannot carry VLAN tags", t.name),
            "set storage_trunk to the Ethernet interface cabled to the switches' trunk port",
        );
    }
    if t.vlan == VlanSupport::Absent {
        return Check::fail(
            NAME,
            format!(
                "{} exists, but this kernel has no 802.1Q support (no 8021q module): storage VLAN interfaces cannot be made",
                t.name
            ),
            "run a kernel with CONFIG_VLAN_8021Q (Debian's has it: apt install linux-image-amd64); virtual test labs use veth pairs instead and do not need it",
        );
    }
    let how = match t.vlan {
        VlanSupport::Loaded => "8021q loaded",
        VlanSupport::Builtin => "802.1Q built into the kernel",
        _ => "8021q loadable",
    };
    if !t.up {
        return Check::warn(
            NAME,
            format!("{} can carry VLANs ({how}) but its link is down", t.name),
            format!("cable it to the switches' trunk port and `ip link set {} up`", t.name),
        );
    }
    Check::ok(NAME, format!("{} is up and can carry VLAN interfaces ({how})", t.name))
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command, e.g. `dnsmasq`, or `bramble serve`.
    pub command: String,
    /// Runs this very binary: this controller (a previous or running instance).
    pub ours: bool,
}

/// Who has a port bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortFacts {
    Free,
    /// Bound, by these processes (empty: doctor cannot see the holder).
    Held(Vec<Holder>),
    Unknown(String),
}

/// What a port is for: `dhcp`, `tftp`, `api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        })
    }
}

/// `name` is the row (`port dhcp`), `why` what the port serves.
pub fn port(name: &str, proto: Proto, port: u16, used: bool, facts: &PortFacts) -> Check {
    if !used {
        return Check::skip(name, format!("{proto} {port} not used: netboot is disabled"));
    }
    match facts {
        PortFacts::Free => Check::ok(name, format!("{proto} {port} is free")),
        PortFacts::Held(holders) if !holders.is_empty() && holders.iter().all(|h| h.ours) => {
            let h = &holders[0];
            Check::ok(
                name,
                format!("{proto} {port} held by {} (pid {}), this controller", h.command, h.pid),
            )
        }
        PortFacts::Held(holders) => match holders.iter().find(|h| !h.ours) {
            Some(h) => Check::fail(
                name,
                format!("{} (pid {}) holds {proto} {port}", h.command, h.pid),
                format!(
                    "stop and disable {} (or move it to another port or namespace): bramble serves {proto} {port}",
                    h.command
                ),
            ),
            None => Check::fail(
                name,
                format!("{proto} {port} is in use by a process doctor cannot see"),
                "run doctor as root to name it, then stop it",
            ),
        },
        PortFacts::Unknown(e) => Check::warn(
            name,
            format!("cannot tell whether {proto} {port} is free: {e}"),
            "run doctor as root",
        ),
    }
}

/// A process named by a pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidState {
    Alive(u32),
    /// The pid file names a process that is gone.
    Gone(u32),
    /// No pid file, or none configured and no such process found.
    Missing,
}

/// The configured NFS backend as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsFacts {
    None,
    Ganesha {
        installed: bool,
        /// `None` when not asked (`--offline`).
        process: Option<PidState>,
        /// `None` when not asked; else whether `addr` accepted a TCP connection.
        answering: Option<(SocketAddr, bool)>,
    },
    Kernel {
        exportfs: bool,
        /// Whether the kernel has an NFS server (`/proc/fs/nfsd`).
        nfsd: bool,
        answering: Option<(SocketAddr, bool)>,
    },
}

pub fn nfs(facts: &NfsFacts) -> Check {
    const NAME: &str = "nfs";
    match facts {
        NfsFacts::None => Check::warn(
            NAME,
            "no NFS backend ([images] nfs = \"none\"): roots are not exported, Pis cannot boot",
            "set [images] nfs = \"ganesha\" (apt install nfs-ganesha nfs-ganesha-vfs) or \"kernel\" (nfs-kernel-server)",
        ),
        NfsFacts::Ganesha { installed: false, .. } => Check::fail(
            NAME,
            "nfs-ganesha is not installed (no ganesha.nfsd)",
            "apt install nfs-ganesha nfs-ganesha-vfs",
        ),
        NfsFacts::Ganesha { process: Some(PidState::Gone(pid)), .. } => Check::fail(
            NAME,
            format!("ganesha.nfsd is not running (its pid file names pid {pid}, which is gone)"),
            "start it (systemctl start nfs-ganesha) and check its log",
        ),
        NfsFacts::Ganesha { process: Some(PidState::Missing), .. } => Check::fail(
            NAME,
            "ganesha.nfsd is not running (no pid file, no such process)",
            "start it (systemctl start nfs-ganesha) and check its log",
        ),
        NfsFacts::Ganesha { answering: Some((addr, false)), .. }
        | NfsFacts::Kernel { answering: Some((addr, false)), .. } => Check::fail(
            NAME,
            format!("nothing answers NFS on {addr}"),
            "check the NFS server's log and that it listens on TCP 2049",
        ),
        NfsFacts::Ganesha { process, answering, .. } => {
            let pid = match process {
                Some(PidState::Alive(pid)) => format!(", running (pid {pid})"),
                _ => String::new(),
            };
            match answering {
                Some((addr, _)) => {
                    Check::ok(NAME, format!("nfs-ganesha installed{pid}, answering on {addr}"))
                }
                None => Check::skip(
                    NAME,
                    "nfs-ganesha installed; not asked whether it runs (--offline)",
                ),
            }
        }
        NfsFacts::Kernel { exportfs: false, .. } => {
            Check::fail(NAME, "exportfs is missing", "apt install nfs-kernel-server")
        }
        NfsFacts::Kernel { nfsd: false, .. } => Check::fail(
            NAME,
            "the kernel has no NFS server (no /proc/fs/nfsd)",
            "load nfsd (modprobe nfsd; systemctl start nfs-server), or use [images] nfs = \"ganesha\"",
        ),
        NfsFacts::Kernel { answering, .. } => match answering {
            Some((addr, _)) => {
                Check::ok(NAME, format!("kernel NFS server running, answering on {addr}"))
            }
            None => Check::skip(
                NAME,
                "exportfs and nfsd present; not asked whether it answers (--offline)",
            ),
        },
    }
}
