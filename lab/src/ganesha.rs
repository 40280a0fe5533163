//! A private nfs-ganesha for labs and benchmarks: its own state directory (config, pid,
//! log, recovery), a main config that `%include`s an exports file the caller owns, an
//! optional private rpcbind for NFSv3, and a private `/run` so it never meets the
//! machine's or another test's rpcbind and D-Bus sockets.
//!
//! Started with `ganesha.nfsd -F` under `unshare --mount` (optionally inside a network
//! namespace); `start` returns once TCP 2049 accepts connections; drop stops it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bramble_images::nfs::ganesha::{ServerConfig, render_server_config};

use crate::anchor::process::{self, Daemon};
use crate::{LabError, require_tools};

/// The NFS port ganesha serves on.
pub const NFS_PORT: u16 = 2049;

/// How to run one ganesha.
#[derive(Debug, Clone)]
pub struct GaneshaOptions {
    /// Where `ganesha.conf`, `ganesha.pid`, `ganesha.log`, `rpcbind.pid` and
    /// `recovery/` live; created if missing.
    pub state_dir: PathBuf,
    /// The exports file the main config includes (for example bramble-images'
    /// `GaneshaExporter::include_file()`); created empty if missing.
    pub exports_include: PathBuf,
    /// Listen on this address only (`Bind_addr`); `None` = every address.
    pub bind: Option<Ipv4Addr>,
    /// Run inside this network namespace (`ip netns exec`); `None` = the caller's.
    pub netns: Option<String>,
    /// Serve NFSv3 too, which needs a private rpcbind (port 111 in that namespace);
    /// `false` = NFSv4 only, no rpcbind.
    pub nfsv3: bool,
    /// How long `start` waits for TCP 2049.
    pub ready_timeout: Duration,
}

impl GaneshaOptions {
    /// NFSv3 + v4 on every address of the caller's namespace, 30 s to come up.
    pub fn new(state_dir: impl Into<PathBuf>, exports_include: impl Into<PathBuf>) -> Self {
        GaneshaOptions {
            state_dir: state_dir.into(),
            exports_include: exports_include.into(),
            bind: None,
            netns: None,
            nfsv3: true,
            ready_timeout: Duration::from_secs(30),
        }
    }

    pub fn config_file(&self) -> PathBuf {
        self.state_dir.join("ganesha.conf")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("ganesha.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("ganesha.log")
    }
    fn rpcbind_pid_file(&self) -> PathBuf {
        self.state_dir.join("rpcbind.pid")
    }
}

/// ganesha's main config, rendered by bramble-images (the controller's NFS backend) so
/// the lab serves exactly what production would; only the addresses and paths are the
/// lab's.
pub fn render_config(o: &GaneshaOptions) -> String {
    render_server_config(&ServerConfig {
        bind: o.bind,
        recovery_dir: o.state_dir.join("recovery"),
        exports_include: o.exports_include.clone(),
        nfsv3: o.nfsv3,
    })
}

/// The shell run under `unshare --mount`: private /run, rpcbind if v3, then exec ganesha.
fn launch_script(o: &GaneshaOptions) -> String {
    let mut s = String::from("mount -t tmpfs bramble-lab-run /run || exit 97\n");
    if o.nfsv3 {
        s.push_str(&format!(
            "rpcbind -f -w & echo $! > '{rpcpid}'\n\
             i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n",
            rpcpid = o.rpcbind_pid_file().display()
        ));
    }
    s.push_str(&format!(
        "exec ganesha.nfsd -F -f '{conf}' -L '{log}' -p '{pid}'\n",
        conf = o.config_file().display(),
        log = o.log_file().display(),
        pid = o.pid_file().display()
    ));
    s
}

/// A running ganesha (and its rpcbind); both are killed and reaped on drop.
#[derive(Debug)]
pub struct GaneshaServer {
    opts: GaneshaOptions,
    daemon: Daemon,
}

impl GaneshaServer {
    /// Writes the config, starts rpcbind (if v3) and ganesha, and waits until TCP 2049
    /// accepts. Blocking: call it from `spawn_blocking` in async code. Stale daemons
    /// recorded in `state_dir` by a crashed run are killed first.
    pub fn start(opts: GaneshaOptions) -> Result<GaneshaServer, LabError> {
        let mut tools =
            vec![("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"), ("unshare", "util-linux")];
        if opts.nfsv3 {
            tools.push(("rpcbind", "rpcbind"));
        }
        require_tools(&tools)?;
        for path in [&opts.state_dir, &opts.exports_include] {
            if path.to_string_lossy().contains(['\'', '"', '\n']) {
                return Err(LabError::Invalid {
                    what: "ganesha path",
                    reason: format!("{} has quotes", path.display()),
                });
            }
        }
        cleanup_stale(&opts.state_dir);
        let recovery = opts.state_dir.join("recovery");
        std::fs::create_dir_all(&recovery).map_err(LabError::io("creating", &recovery))?;
        if !opts.exports_include.exists() {
            write_file(&opts.exports_include, "# no exports yet\n")?;
        }
        write_file(&opts.config_file(), &render_config(&opts))?;
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "unshare"]);
                c
            }
            None => Command::new("unshare"),
        };
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &launch_script(&opts)]);
        let daemon = Daemon::spawn("ganesha.nfsd", cmd, &opts.state_dir.join("ganesha.out"))?;
        let mut server = GaneshaServer { opts, daemon };
        server.wait_ready()?;
        tracing::info!(
            state_dir = %server.opts.state_dir.display(),
            netns = ?server.opts.netns,
            pid = server.daemon.pid(),
            "ganesha ready"
        );
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), LabError> {
        let addr = SocketAddrV4::new(self.opts.bind.unwrap_or(Ipv4Addr::LOCALHOST), NFS_PORT);
        let start = Instant::now();
        while start.elapsed() < self.opts.ready_timeout {
            self.daemon.check_running()?;
            if process::tcp_accepts(self.opts.netns.as_deref(), addr, Duration::from_millis(500)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::NotReady {
            what: format!("ganesha on {addr}"),
            waited: self.opts.ready_timeout,
            log: self.opts.log_file(),
        })
    }

    pub fn options(&self) -> &GaneshaOptions {
        &self.opts
    }

    /// The pid file ganesha writes: what bramble-images' `GaneshaControl::Reload` signals.
    pub fn pid_file(&self) -> PathBuf {
        self.opts.pid_file()
    }

    pub fn log_file(&self) -> PathBuf {
        self.opts.log_file()
    }

    /// Re-reads the config and the included exports (SIGHUP).
    pub fn reload(&mut self) -> Result<(), LabError> {
        self.daemon.check_running()?;
        let pid = process::read_pid_file(&self.pid_file()).unwrap_or(self.daemon.pid() as i32);
        process::signal(pid, libc::SIGHUP);
        tracing::debug!(pid, "ganesha reload");
        Ok(())
    }
}

impl Drop for GaneshaServer {
    fn drop(&mut self) {
        // ganesha first (the Daemon handle), then its rpcbind, then leftovers by pid file.
        let pid = self.daemon.pid() as i32;
        process::signal(pid, libc::SIGKILL);
        cleanup_stale(&self.opts.state_dir);
    }
}

/// Kills a ganesha and rpcbind left running from `state_dir` by a crashed run (only
/// processes whose pid file still names a live ganesha.nfsd / rpcbind).
pub fn cleanup_stale(state_dir: &Path) {
    process::kill_stale(&state_dir.join("ganesha.pid"), "ganesha.nfsd");
    process::kill_stale(&state_dir.join("rpcbind.pid"), "rpcbind");
}

fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io("creating", dir))?;
    }
    std::fs::write(path, text).map_err(LabError::io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_the_controllers_with_the_labs_paths() {
        let mut o = GaneshaOptions::new("/s", "/e/exports.conf");
        o.bind = Some(Ipv4Addr::new(10, 107, 0, 1));
        o.nfsv3 = false;
        let text = render_config(&o);
        assert!(text.contains("%include \"/e/exports.conf\"\n"), "{text}");
        assert!(text.contains("RecoveryRoot = \"/s/recovery\";"), "{text}");
        assert!(text.contains("Bind_addr = 10.107.0.1;"), "{text}");
        assert!(text.contains("Protocols = 4;"), "{text}");
        assert!(text.contains("Only_Numeric_Owners = true;"), "{text}");
    }

    #[test]
    fn the_launch_script_starts_rpcbind_only_for_v3() {
        let mut o = GaneshaOptions::new("/s", "/e");
        assert!(launch_script(&o).contains("rpcbind -f -w"));
        assert!(launch_script(&o).ends_with(
            "exec ganesha.nfsd -F -f '/s/ganesha.conf' -L '/s/ganesha.log' -p '/s/ganesha.pid'\n"
        ));
        o.nfsv3 = false;
        assert!(!launch_script(&o).contains("rpcbind"));
    }
}
