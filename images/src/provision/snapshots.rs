//! Snapshots of per-Pi roots: `roots/.snapshots/<pi>/<id>`, beside the live roots on the
//! same filesystem so that keeping or restoring one is a rename (a btrfs subvolume and a
//! plain directory alike). A reimage or restore keeps the root it replaces here (see the
//! journal's `keep`); [`Roots::snapshot`] takes one of the live root on demand: a btrfs
//! snapshot where the strategy is btrfs (O(1)), a reflink or plain copy otherwise, made
//! at `<id>.partial` and renamed into place, so a snapshot is whole or absent.
//!
//! The id is the caller's (the orchestrator derives it from the job that made it, so a
//! re-run finds its own snapshot). `.snapshots` starts with a dot, which no Pi name can.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{CrashPoint, MARKER, RootMarker, Roots, read_marker, strategy};
use crate::customize::PiName;
use crate::error::{ImagesError, Result};
use crate::fsutil;
use crate::provision::strategy::Strategy;

/// The directory, under the roots directory, that holds every Pi's snapshots.
pub const DIR: &str = ".snapshots";
const PARTIAL: &str = ".partial";

/// A snapshot on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub pi: PiName,
    pub id: String,
    pub path: PathBuf,
    /// From the snapshot's marker, if it has a readable one.
    pub image: Option<String>,
    pub version: Option<String>,
    /// Bytes of its files, where known: plain copies only (a btrfs snapshot or reflink
    /// copy shares its extents, so its own cost is not its apparent size).
    pub size_bytes: Option<u64>,
}

/// Checks a snapshot id: `[a-z0-9_-]`, 1 to 63 characters (a path component).
pub fn check_id(id: &str) -> Result<()> {
    PiName::new(id).map(|_| ()).map_err(|_| ImagesError::InvalidInput {
        what: "snapshot id",
        value: id.into(),
        reason: "use [a-z0-9_-], at most 63".into(),
    })
}

impl Roots<'_> {
    /// Where `pi`'s snapshots live.
    pub fn snapshots_dir(&self, pi: &PiName) -> PathBuf {
        self.store.roots_dir().join(DIR).join(pi.as_str())
    }

    /// The path of snapshot `id` of `pi` (it may not exist).
    pub fn snapshot_path(&self, pi: &PiName, id: &str) -> PathBuf {
        self.snapshots_dir(pi).join(id)
    }

    /// Snapshot `id` of `pi`, if it exists.
    pub fn get_snapshot(&self, pi: &PiName, id: &str) -> Result<Option<SnapshotInfo>> {
        check_id(id)?;
        let path = self.snapshot_path(pi, id);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let marker = read_marker(&path);
        let size_bytes = match self.store.strategy() {
            Strategy::Copy => Some(tree_size(&path)),
            Strategy::BtrfsSnapshot | Strategy::Reflink => None,
        };
        Ok(Some(SnapshotInfo {
            pi: pi.clone(),
            id: id.into(),
            path,
            image: marker.as_ref().map(|m| m.image.clone()),
            version: marker.map(|m| m.version),
            size_bytes,
        }))
    }

    /// Takes snapshot `id` of `pi`'s live root (idempotent: an existing `id` is kept as
    /// it is). An interrupted reimage or restore of `pi` is finished first.
    pub fn snapshot(&self, pi: &PiName, id: &str) -> Result<SnapshotInfo> {
        check_id(id)?;
        self.resume(pi)?;
        let path = self.snapshot_path(pi, id);
        if std::fs::symlink_metadata(&path).is_err() {
            let live = self.path(pi);
            if std::fs::symlink_metadata(&live).is_err() {
                return Err(ImagesError::InvalidInput {
                    what: "Pi",
                    value: pi.to_string(),
                    reason: "has no root to snapshot".into(),
                });
            }
            let dir = self.snapshots_dir(pi);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ImagesError::io("creating the snapshot directory", &dir, e))?;
            let partial = dir.join(format!("{id}{PARTIAL}"));
            strategy::delete_tree(self.runner, &partial)?;
            let made = strategy::clone_tree(self.store.strategy(), self.runner, &live, &partial);
            if let Err(e) = made {
                strategy::delete_tree(self.runner, &partial)?;
                return Err(e);
            }
            self.hooks.check(CrashPoint::Cloned)?;
            std::fs::rename(&partial, &path)
                .map_err(|e| ImagesError::io("renaming the snapshot into place", &path, e))?;
            fsutil::fsync_dir(&dir)?;
            tracing::info!(pi = %pi, snapshot = id, "snapshot taken");
        }
        self.get_snapshot(pi, id)?
            .ok_or_else(|| ImagesError::SnapshotMissing { pi: pi.to_string(), id: id.into() })
    }

    /// Deletes snapshot `id` of `pi` (and a partial one); a missing one is fine.
    pub fn delete_snapshot(&self, pi: &PiName, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.snapshots_dir(pi);
        strategy::delete_tree(self.runner, &dir.join(format!("{id}{PARTIAL}")))?;
        strategy::delete_tree(self.runner, &dir.join(id))?;
        // The Pi's directory goes with its last snapshot; another one racing in is fine.
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    /// Every snapshot on disk as (Pi, id), partial ones included (under their id):
    /// what a sweeper compares with the inventory.
    pub fn list_snapshots(&self) -> Result<Vec<(PiName, String)>> {
        let top = self.store.roots_dir().join(DIR);
        let mut out = Vec::new();
        for pi in read_names(&top)? {
            let Ok(name) = PiName::new(&pi) else { continue };
            for id in read_names(&top.join(&pi))? {
                let id = id.strip_suffix(PARTIAL).unwrap_or(&id).to_string();
                if check_id(&id).is_ok() && !out.contains(&(name.clone(), id.clone())) {
                    out.push((name.clone(), id));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Renames the replaced root (`from`, the old root at `<pi>.new` after a swap) into
    /// the snapshot place as `id`.
    pub(super) fn keep(&self, pi: &PiName, id: &str, from: &Path) -> Result<()> {
        let dir = self.snapshots_dir(pi);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ImagesError::io("creating the snapshot directory", &dir, e))?;
        let to = dir.join(id);
        std::fs::rename(from, &to)
            .map_err(|e| ImagesError::io("keeping the replaced root", &to, e))?;
        fsutil::fsync_dir(&dir)?;
        fsutil::fsync_dir(&self.store.roots_dir())
    }
}

/// Writes `marker` into `root`, a root its Pi wrote (a restored snapshot): `etc` and
/// `etc/bramble` must be real directories (not symlinks, which would lead the write out
/// of the root), and the file is replaced by rename, never written through.
pub(super) fn write_marker(root: &Path, marker: &RootMarker) -> Result<()> {
    let mut dir = root.to_path_buf();
    for part in ["etc", "bramble"] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(_) => {
                return Err(ImagesError::UnsafeRoot {
                    path: dir,
                    reason: "not a directory (a symlink or file where Bramble keeps its marker)"
                        .into(),
                });
            }
            Err(_) => std::fs::create_dir(&dir)
                .map_err(|e| ImagesError::io("creating the marker directory", &dir, e))?,
        }
    }
    let text = serde_json::to_string_pretty(marker).unwrap_or_default();
    fsutil::atomic_write(&root.join(MARKER), text.as_bytes(), 0o644)
}

fn read_names(dir: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ImagesError::io("listing snapshots", dir, e)),
    }
}

/// Apparent bytes of the regular files under `path` (symlinks not followed, other
/// filesystems not entered).
fn tree_size(path: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(path) else { return 0 };
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(md) = entry.metadata() else { continue };
            if md.is_dir() && md.dev() == top.dev() {
                stack.push(entry.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_path_components() {
        assert!(check_id("snap-0192f3a1b2c3d4e5f6").is_ok());
        for bad in ["", "../x", "a/b", ".snapshots", "A", &"x".repeat(64)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
