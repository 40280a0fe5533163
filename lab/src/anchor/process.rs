//! Child daemons of the lab (ganesha, rpcbind, dnsmasq, in.tftpd): spawn with a log,
//! notice an early exit, stop with SIGTERM then SIGKILL and reap; plus the pid-file and
//! namespace probes used to clean up after a crashed run.

use std::fs::File;
use std::net::{SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::LabError;

/// How long a daemon gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// A running child process, stopped and reaped on drop.
#[derive(Debug)]
pub(crate) struct Daemon {
    program: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`.
    pub(crate) fn spawn(program: &str, mut cmd: Command, log: &Path) -> Result<Self, LabError> {
        let out = File::create(log).map_err(LabError::io("creating log", log))?;
        let err = out.try_clone().map_err(LabError::io("sharing log", log))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn { program: program.to_string(), source })?;
        tracing::debug!(program, pid = child.id(), log = %log.display(), "lab daemon started");
        Ok(Daemon { program: program.to_string(), child, log: log.to_path_buf() })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err(Exited)` if the process has already ended.
    pub(crate) fn check_running(&mut self) -> Result<(), LabError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(LabError::Exited {
                program: self.program.clone(),
                status,
                log: self.log.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.child.id() as i32, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < STOP_GRACE {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        tracing::debug!(program = %self.program, "lab daemon killed after grace period");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `sig` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: i32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) with a positive pid only signals that one process.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The pid in a pid file, if the file holds one.
pub(crate) fn read_pid_file(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<i32>().ok().filter(|pid| *pid > 1)
}

/// The command name of a live process (`/proc/PID/comm`).
pub(crate) fn process_name(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

/// SIGKILLs the process in `pid_file` if it still runs a program whose name starts
/// with `name` (so a recycled pid is left alone). Returns whether it killed one.
pub(crate) fn kill_stale(pid_file: &Path, name: &str) -> bool {
    let Some(pid) = read_pid_file(pid_file) else {
        return false;
    };
    let matches = process_name(pid).is_some_and(|comm| comm.starts_with(name));
    if matches {
        tracing::info!(pid, name, pid_file = %pid_file.display(), "killing stale lab daemon");
        signal(pid, libc::SIGKILL);
    }
    let _ = std::fs::remove_file(pid_file);
    matches
}

/// Whether something accepts TCP connections on `addr`, connecting from namespace
/// `netns` (the caller's own when `None`).
pub(crate) fn tcp_accepts(netns: Option<&str>, addr: SocketAddrV4, limit: Duration) -> bool {
    let ns_path = netns.map(|n| format!("/var/run/netns/{n}"));
    let probe = move || -> std::io::Result<()> {
        if let Some(path) = ns_path {
            let ns = File::open(path)?;
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        }
        TcpStream::connect_timeout(&addr.into(), limit).map(drop)
    };
    // A fresh thread: setns changes the calling thread for good.
    match std::thread::Builder::new().name("lab-tcp-probe".into()).spawn(probe) {
        Ok(handle) => handle.join().is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    }
}
