//! Finding and removing what an anchor shelf leaves if its process dies: each shelf's
//! state directory records the owner's pid and every namespace it created, so the
//! next run can tell a crashed shelf (owner gone) from a live one and remove it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::process;
use crate::LabError;
use crate::run_ip;

const OWNER: &str = "owner.pid";
const NETNS_LIST: &str = "netns.list";

/// `<tmp>/<prefix>-anchor-<name>`: the shelf's files plus its crash-recovery records;
/// removed on drop.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
}

fn dir_prefix(prefix: &str) -> String {
    format!("{prefix}-anchor-")
}

impl StateDir {
    pub(crate) fn create(prefix: &str, name: &str) -> Result<StateDir, LabError> {
        let path = std::env::temp_dir().join(format!("{}{name}", dir_prefix(prefix)));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(LabError::io("creating", &path))?;
        let owner = path.join(OWNER);
        fs::write(&owner, std::process::id().to_string())
            .map_err(LabError::io("writing", &owner))?;
        Ok(StateDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Notes a namespace before it is created, so a crash mid-setup is still cleaned.
    pub(crate) fn record_netns(&self, name: &str) -> Result<(), LabError> {
        let list = self.path.join(NETNS_LIST);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)
            .map_err(LabError::io("opening", &list))?;
        writeln!(f, "{name}").map_err(LabError::io("writing", &list))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove anchor state");
        }
    }
}

/// SIGKILLs every process in namespace `netns` (`ip netns pids`).
pub(crate) fn kill_netns_processes(netns: &str) {
    let Ok(out) = run_ip(&["netns", "pids", netns]) else {
        return;
    };
    for pid in out.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        process::signal(pid, libc::SIGKILL);
    }
}

fn owner_alive(dir: &Path) -> bool {
    match process::read_pid_file(&dir.join(OWNER)) {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// Cleans every state directory of `prefix` whose owner is gone; returns how many.
pub(crate) fn cleanup(prefix: &str) -> usize {
    let want = dir_prefix(prefix);
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut cleaned = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(&want));
        if !is_ours || !dir.is_dir() || owner_alive(&dir) {
            continue;
        }
        tracing::info!(dir = %dir.display(), "removing a crashed anchor shelf");
        crate::ganesha::cleanup_stale(&dir.join("ganesha"));
        let names = fs::read_to_string(dir.join(NETNS_LIST)).unwrap_or_default();
        for ns in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            kill_netns_processes(ns);
            let _ = run_ip(&["netns", "del", ns]);
        }
        let _ = fs::remove_dir_all(&dir);
        cleaned += 1;
    }
    cleaned
}
