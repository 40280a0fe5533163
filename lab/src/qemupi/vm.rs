//! A QEMU Pi's machine: the files the firmware read saved in its state directory, the
//! tap joined to the veth end, QEMU started in the Pi's namespace, and killed by its pid.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use bramble_images::CommandLine;
use tokio::process::{Child, Command};

use super::command::{join_commands, qemu_args, unjoin_commands};
use super::{QEMU, QemuPiConfig};
use crate::LabError;
use crate::pisim::boot::{Loaded, LoadedFile};
use crate::pisim::netio;

/// The files QEMU starts from, saved.
struct BootFiles {
    kernel: PathBuf,
    initramfs: Option<PathBuf>,
    /// The boot line as served plus the configuration's extra arguments.
    append: String,
}

/// A running QEMU; dropping it kills the process.
pub(crate) struct Vm {
    child: Child,
    pid: u32,
}

/// Saves the firmware's files, joins the tap to the veth end and starts QEMU.
pub(crate) async fn start(cfg: &QemuPiConfig, loaded: &Loaded) -> Result<Vm, LabError> {
    let files = save(cfg, loaded).await?;
    let (ns, iface) = (&cfg.pi.netns, &cfg.pi.interface);
    netio::flush(ns, iface)
        .await
        .map_err(LabError::cmd(format!("flushing the addresses of {iface} in netns {ns}")))?;
    join(cfg).await?;
    spawn(cfg, &files)
}

/// Writes each file under its own name in the boot directory (emptied first).
async fn save(cfg: &QemuPiConfig, loaded: &Loaded) -> Result<BootFiles, LabError> {
    let dir = cfg.boot_dir();
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LabError::io("emptying", &dir)(e));
        }
        _ => {}
    }
    tokio::fs::create_dir_all(&dir).await.map_err(LabError::io("creating", &dir))?;
    let files = [Some(&loaded.cmdline), loaded.config.as_ref(), Some(&loaded.kernel)];
    let files: Vec<&LoadedFile> =
        files.into_iter().chain([loaded.initramfs.as_ref()]).flatten().collect();
    for file in files {
        let path = dir.join(file_name(file));
        tokio::fs::write(&path, &file.data).await.map_err(LabError::io("writing", &path))?;
    }
    let line = String::from_utf8_lossy(&loaded.cmdline.data);
    let append = line.split_whitespace().chain(cfg.extra_args.iter().map(String::as_str));
    Ok(BootFiles {
        kernel: dir.join(file_name(&loaded.kernel)),
        initramfs: loaded.initramfs.as_ref().map(|f| dir.join(file_name(f))),
        append: append.collect::<Vec<_>>().join(" "),
    })
}

/// The last component of the path the firmware asked for (`<serial>/vmlinuz-6.1` is
/// saved as `vmlinuz-6.1`).
fn file_name(file: &LoadedFile) -> String {
    Path::new(&file.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into())
}

/// Joins the tap to the veth end, after removing whatever an earlier run left.
async fn join(cfg: &QemuPiConfig) -> Result<(), LabError> {
    unjoin(cfg).await;
    for line in join_commands(cfg) {
        run(line).await.map_err(LabError::cmd(format!("joining the tap {}", cfg.tap)))?;
    }
    Ok(())
}

/// Removes the redirects and the tap; nothing to remove is fine.
pub(crate) async fn unjoin(cfg: &QemuPiConfig) {
    for line in unjoin_commands(cfg) {
        if let Err(e) = run(line).await {
            tracing::debug!(error = %e, "nothing to undo");
        }
    }
}

async fn run(line: CommandLine) -> Result<String, crate::CmdError> {
    let command = line.to_string();
    tokio::task::spawn_blocking(move || crate::cmd::run(&line.program, &line.args))
        .await
        .map_err(|join| crate::CmdError::Spawn { command, source: std::io::Error::other(join) })?
}

/// Starts QEMU in the Pi's namespace, its console (and its own messages) appended to
/// the console log after a line marking the power-on.
fn spawn(cfg: &QemuPiConfig, files: &BootFiles) -> Result<Vm, LabError> {
    let log_path = cfg.console_log();
    let log_err = |source| LabError::Io { what: "appending to", path: log_path.clone(), source };
    let mut log = OpenOptions::new().create(true).append(true).open(&log_path).map_err(log_err)?;
    let args = qemu_args(cfg, &files.kernel, files.initramfs.as_deref(), &files.append);
    let stamp = epoch_seconds();
    writeln!(log, "\n--- bramble: power on at {stamp}: {QEMU} {} ---", args.join(" "))
        .map_err(log_err)?;
    let stderr = log.try_clone().map_err(log_err)?;
    let program = format!("{QEMU} in netns {}", cfg.pi.netns);
    let spawn_err = |source| LabError::Spawn { program: program.clone(), source };
    let child = Command::new("ip")
        .args(["netns", "exec", &cfg.pi.netns, QEMU])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    // `ip netns exec` execs the program: the child's pid is QEMU's.
    let pid = child.id().ok_or_else(|| spawn_err(std::io::Error::other("exited at once")))?;
    tracing::info!(pi = %cfg.pi.serial, pid, netns = %cfg.pi.netns, "QEMU Pi started");
    Ok(Vm { child, pid })
}

/// Seconds since the epoch, for the console log's power-on lines.
fn epoch_seconds() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    format!("{:.3} s since the epoch", now.map(|d| d.as_secs_f64()).unwrap_or(0.0))
}

impl Vm {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until QEMU exits by itself.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// A power cut: SIGKILL, then reaped; the pid file goes too.
    pub(crate) async fn kill(mut self, pid_file: &Path) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(pid = self.pid, error = %e, "could not kill QEMU");
        }
        let _ = std::fs::remove_file(pid_file);
    }
}
