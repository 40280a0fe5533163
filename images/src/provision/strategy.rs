//! Provisioning strategies: how a per-Pi root is cloned from a base, chosen by probing
//! the filesystem under the image store (btrfs snapshot, reflink copy, plain copy).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::cmd::{CommandLine, CommandRunner};
use crate::error::Result;
use crate::fsutil::{self, BTRFS_MAGIC};

/// How trees are cloned on a given filesystem, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// `btrfs subvolume snapshot`: O(1) in the size of the image; bases are subvolumes.
    BtrfsSnapshot,
    /// `cp -a --reflink=always`: shares extents (XFS with reflink=1, btrfs), O(files).
    Reflink,
    /// `cp -a --reflink=never`: copies every byte; works everywhere.
    Copy,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::BtrfsSnapshot => "btrfs-snapshot",
            Strategy::Reflink => "reflink",
            Strategy::Copy => "copy",
        })
    }
}

/// Picks the best strategy for the filesystem holding `dir`: btrfs gets snapshots; else a
/// trial `cp --reflink=always` of a small file decides between reflink and plain copy.
pub fn probe(dir: &Path, runner: &dyn CommandRunner) -> Result<Strategy> {
    if fsutil::fs_magic(dir)? == BTRFS_MAGIC {
        return Ok(Strategy::BtrfsSnapshot);
    }
    // Unique per call, not only per process: two stores opened at once in one process
    // (tests, or a controller and a tool) must not remove each other's probe.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let src = dir.join(format!(".reflink-probe-{}-{n}", std::process::id()));
    let dst = dir.join(format!(".reflink-probe-{}-{n}.copy", std::process::id()));
    fsutil::write_file(&src, "bramble reflink probe\n", 0o600)?;
    let ok = runner
        .run(&CommandLine::new("cp").arg("--reflink=always").path_arg(&src).path_arg(&dst))
        .is_ok();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    let strategy = if ok { Strategy::Reflink } else { Strategy::Copy };
    tracing::debug!(dir = %dir.display(), %strategy, "probed provisioning strategy");
    Ok(strategy)
}

/// The command that clones `src` (a base root) to the new path `dst`.
pub fn clone_command(strategy: Strategy, src: &Path, dst: &Path) -> CommandLine {
    match strategy {
        Strategy::BtrfsSnapshot => {
            CommandLine::new("btrfs").args(["subvolume", "snapshot"]).path_arg(src).path_arg(dst)
        }
        Strategy::Reflink => {
            CommandLine::new("cp").args(["-a", "--reflink=always"]).path_arg(src).path_arg(dst)
        }
        Strategy::Copy => {
            CommandLine::new("cp").args(["-a", "--reflink=never"]).path_arg(src).path_arg(dst)
        }
    }
}

/// Clones `src` to `dst` (which must not exist). A snapshot needs `src` to be a
/// subvolume; when it is not (a base imported as a plain directory) reflink is used.
pub fn clone_tree(
    strategy: Strategy,
    runner: &dyn CommandRunner,
    src: &Path,
    dst: &Path,
) -> Result<Strategy> {
    let strategy = match strategy {
        Strategy::BtrfsSnapshot if !is_subvolume(src) => Strategy::Reflink,
        s => s,
    };
    runner.run(&clone_command(strategy, src, dst))?;
    Ok(strategy)
}

/// Creates an empty directory that will hold a base root: a subvolume on btrfs so that
/// per-Pi roots can be snapshots of it.
pub fn create_root_dir(strategy: Strategy, runner: &dyn CommandRunner, path: &Path) -> Result<()> {
    if strategy == Strategy::BtrfsSnapshot {
        runner.run(&CommandLine::new("btrfs").args(["subvolume", "create"]).path_arg(path))?;
        Ok(())
    } else {
        std::fs::create_dir(path)
            .map_err(|e| crate::ImagesError::io("creating root directory", path, e))
    }
}

/// Marks a base root read-only where the filesystem can enforce it (btrfs subvolumes).
pub fn seal(runner: &dyn CommandRunner, path: &Path) -> Result<()> {
    if is_subvolume(path) {
        runner.run(
            &CommandLine::new("btrfs")
                .args(["property", "set", "-ts"])
                .path_arg(path)
                .args(["ro", "true"]),
        )?;
    }
    Ok(())
}

/// Deletes a tree, a subvolume with `btrfs subvolume delete`; a missing path is fine.
pub fn delete_tree(runner: &dyn CommandRunner, path: &Path) -> Result<()> {
    if is_subvolume(path) {
        runner.run(&CommandLine::new("btrfs").args(["subvolume", "delete"]).path_arg(path))?;
        Ok(())
    } else {
        fsutil::remove_tree(path)
    }
}

/// True when `path` is the top of a btrfs subvolume (inode 256 on btrfs).
pub fn is_subvolume(path: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    md.is_dir()
        && md.ino() == 256
        && fsutil::fs_magic(path).map(|m| m == BTRFS_MAGIC).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_commands_per_strategy() {
        let (s, d) = (Path::new("/s/bases/x/v1/root"), Path::new("/s/roots/pi1.new"));
        assert_eq!(
            clone_command(Strategy::BtrfsSnapshot, s, d).to_string(),
            "btrfs subvolume snapshot /s/bases/x/v1/root /s/roots/pi1.new"
        );
        assert_eq!(
            clone_command(Strategy::Reflink, s, d).to_string(),
            "cp -a --reflink=always /s/bases/x/v1/root /s/roots/pi1.new"
        );
        assert_eq!(
            clone_command(Strategy::Copy, s, d).to_string(),
            "cp -a --reflink=never /s/bases/x/v1/root /s/roots/pi1.new"
        );
    }
}
