//! Per-Pi roots: provisioning from a base and atomic reimaging. A reimage builds
//! `roots/<pi>.new` beside the live `roots/<pi>`, customises it, then exchanges the two
//! with one `renameat2(RENAME_EXCHANGE)`; a journal lets any re-run finish the job.
//! A reimage may keep the root it replaces as a snapshot, and a restore swaps a snapshot
//! back in the same way (see [`snapshots`]).

pub mod journal;
pub mod snapshots;
pub mod strategy;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cmd::CommandRunner;
use crate::customize::{self, DEFAULT_HOST_KEYS, HostKeyType, PiIdentity, PiName};
use crate::error::{ImagesError, Result};
use crate::fsutil;
use crate::store::{Base, ImageStore};
use journal::{Journal, Observed, Phase, Source, Step};

/// Places where tests can make a reimage "crash" (return early as if killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The journal was written and nothing else yet.
    JournalWritten,
    /// The base was cloned to `<pi>.new` but not customised.
    Cloned,
    /// `<pi>.new` was customised but its marker not yet written.
    Customised,
    /// A state-machine step completed.
    After(Step),
}

/// Crash injection: return an error from `check` to stop the job at that point.
pub trait CrashHooks: Send + Sync {
    fn check(&self, point: CrashPoint) -> Result<()>;
}

/// Never crashes: production.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCrash;

impl CrashHooks for NoCrash {
    fn check(&self, _point: CrashPoint) -> Result<()> {
        Ok(())
    }
}

/// The marker every provisioned root carries at `etc/bramble/root.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMarker {
    pub pi: PiName,
    pub image: String,
    pub version: String,
    pub token: String,
}

/// A live per-Pi root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiRoot {
    pub pi: PiName,
    /// The directory to export over NFS; stable across reimages.
    pub path: PathBuf,
    /// The directory the TFTP server serves for this Pi (`/boot` or `/boot/firmware`).
    pub boot_dir: PathBuf,
    pub image: String,
    pub version: String,
}

const MARKER: &str = "etc/bramble/root.json";

/// Provisions and reimages per-Pi roots in a store.
pub struct Roots<'a> {
    store: &'a ImageStore,
    runner: &'a dyn CommandRunner,
    hooks: &'a dyn CrashHooks,
    host_keys: &'a [HostKeyType],
}

impl<'a> Roots<'a> {
    pub fn new(store: &'a ImageStore, runner: &'a dyn CommandRunner) -> Self {
        Roots { store, runner, hooks: &NoCrash, host_keys: DEFAULT_HOST_KEYS }
    }

    /// Generates only these host key types (default: ed25519 and RSA).
    pub fn with_host_keys(mut self, kinds: &'a [HostKeyType]) -> Self {
        self.host_keys = kinds;
        self
    }

    pub fn with_hooks(mut self, hooks: &'a dyn CrashHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The live root path of `pi` (it may not exist yet).
    pub fn path(&self, pi: &PiName) -> PathBuf {
        self.store.roots_dir().join(pi.as_str())
    }

    fn new_path(&self, pi: &PiName) -> PathBuf {
        self.store.roots_dir().join(format!("{pi}.new"))
    }

    fn journal_path(&self, pi: &PiName) -> PathBuf {
        self.store.roots_dir().join(format!("{pi}.journal"))
    }

    /// Resets `pi`'s root to `base` customised with `identity` (first provisioning too).
    /// An interrupted earlier job for this Pi is finished first. On a full disk the
    /// partial new root is removed and the old root stays live.
    pub fn reimage(&self, pi: &PiName, base: &Base, identity: &PiIdentity) -> Result<PiRoot> {
        self.reimage_keeping(pi, base, identity, None)
    }

    /// [`Roots::reimage`], keeping the replaced root (if there is one) as the snapshot
    /// `keep` instead of deleting it.
    pub fn reimage_keeping(
        &self,
        pi: &PiName,
        base: &Base,
        identity: &PiIdentity,
        keep: Option<&str>,
    ) -> Result<PiRoot> {
        identity.validate()?;
        if let Some(id) = keep {
            snapshots::check_id(id)?;
        }
        self.resume(pi)?;
        let job = Journal {
            pi: pi.clone(),
            image: base.image.clone(),
            version: base.version.clone(),
            token: customize::random_hex(16)?,
            phase: Phase::Preparing,
            identity: Some(identity.clone()),
            source: Source::Base,
            keep: keep.map(str::to_string),
        };
        self.start(job)
    }

    /// Writes a new job's journal and drives it; on a full disk the partial new root and
    /// the journal are removed (the old root stays live).
    fn start(&self, job: Journal) -> Result<PiRoot> {
        let pi = job.pi.clone();
        self.write_journal(&job)?;
        self.hooks.check(CrashPoint::JournalWritten)?;
        // Only a base's partial clone may be thrown away: a restore's `<pi>.new` is the
        // snapshot itself, and after the swap `<pi>.new` is the root being kept.
        let disposable = job.source == Source::Base;
        let restoring = match &job.source {
            Source::Snapshot(id) => Some(self.snapshot_path(&pi, id)),
            Source::Base => None,
        };
        let token = job.token.clone();
        let swapped = || read_marker(&self.path(&pi)).is_some_and(|m| m.token == token);
        match self.drive(job) {
            Err(e) if e.is_disk_full() && disposable && !swapped() => {
                tracing::warn!(pi = %pi, error = %e, "disk full during reimage; keeping the old root");
                strategy::delete_tree(self.runner, &self.new_path(&pi))?;
                fsutil::remove_tree(&self.journal_path(&pi))?;
                Err(e)
            }
            // A snapshot that cannot be marked safely (its Pi planted a symlink) would
            // fail every resume: put it back where it was and drop the journal.
            Err(e @ ImagesError::UnsafeRoot { .. }) if !swapped() => {
                if let Some(back) = restoring {
                    tracing::warn!(pi = %pi, error = %e, "snapshot cannot be restored safely; putting it back");
                    let new = self.new_path(&pi);
                    if std::fs::symlink_metadata(&back).is_err() {
                        std::fs::rename(&new, &back)
                            .map_err(|e| ImagesError::io("putting the snapshot back", &back, e))?;
                    }
                    fsutil::remove_tree(&self.journal_path(&pi))?;
                    fsutil::fsync_dir(&self.store.roots_dir())?;
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Finishes an interrupted job for `pi` from its journal alone. Returns the live root
    /// if a job was finished, `None` if there was nothing to do.
    pub fn resume(&self, pi: &PiName) -> Result<Option<PiRoot>> {
        match self.read_journal(pi)? {
            Some(job) => {
                tracing::info!(pi = %pi, image = %job.image, phase = ?job.phase, "resuming interrupted reimage");
                self.drive(job).map(Some)
            }
            None => {
                strategy::delete_tree(self.runner, &self.new_path(pi))?;
                Ok(None)
            }
        }
    }

    /// Swaps the snapshot `from` of `pi` in as its live root (moved, not copied), keeping
    /// the replaced root as the snapshot `keep`. `image`/`version` are what the snapshot
    /// holds (recorded when it was taken); they go into the restored root's marker. An
    /// interrupted earlier job is finished first. Fails with
    /// [`ImagesError::SnapshotMissing`] (live root untouched) if there is no such snapshot.
    pub fn restore(
        &self,
        pi: &PiName,
        from: &str,
        keep: &str,
        image: &str,
        version: &str,
    ) -> Result<PiRoot> {
        snapshots::check_id(from)?;
        snapshots::check_id(keep)?;
        self.resume(pi)?;
        if std::fs::symlink_metadata(self.snapshot_path(pi, from)).is_err() {
            return Err(ImagesError::SnapshotMissing { pi: pi.to_string(), id: from.into() });
        }
        let job = Journal {
            pi: pi.clone(),
            image: image.into(),
            version: version.into(),
            token: customize::random_hex(16)?,
            phase: Phase::Preparing,
            identity: None,
            source: Source::Snapshot(from.into()),
            keep: Some(keep.into()),
        };
        self.start(job)
    }

    /// The live root of `pi`, from its marker.
    pub fn get(&self, pi: &PiName) -> Result<Option<PiRoot>> {
        let path = self.path(pi);
        let Some(marker) = read_marker(&path) else {
            return Ok(None);
        };
        let boot = boot_subdir(Some(&marker), &self.store.list()?);
        Ok(Some(PiRoot {
            pi: pi.clone(),
            boot_dir: path.join(boot),
            path,
            image: marker.image,
            version: marker.version,
        }))
    }

    /// Deletes `pi`'s root, any half-built replacement and its journal.
    pub fn remove(&self, pi: &PiName) -> Result<()> {
        fsutil::remove_tree(&self.journal_path(pi))?;
        strategy::delete_tree(self.runner, &self.new_path(pi))?;
        strategy::delete_tree(self.runner, &self.path(pi))
    }

    fn drive(&self, mut job: Journal) -> Result<PiRoot> {
        let (live, new) = (self.path(&job.pi), self.new_path(&job.pi));
        let source = match &job.source {
            Source::Snapshot(id) => Some(self.snapshot_path(&job.pi, id)),
            Source::Base => None,
        };
        let mut journal_present = true;
        loop {
            let token_in = |p: &Path| read_marker(p).is_some_and(|m| m.token == job.token);
            let obs = Observed {
                journal: journal_present.then_some(job.phase),
                new_exists: std::fs::symlink_metadata(&new).is_ok(),
                new_complete: token_in(&new),
                live_is_new: token_in(&live),
                from_snapshot: source.is_some(),
                source_exists: source.as_ref().is_none_or(|s| std::fs::symlink_metadata(s).is_ok()),
                keep: job.keep.is_some(),
            };
            let step = journal::next_step(obs);
            tracing::debug!(pi = %job.pi, ?step, ?obs, "reimage step");
            match step {
                Step::Done => break,
                Step::DeleteNew => strategy::delete_tree(self.runner, &new)?,
                Step::Provision => self.provision(&self.base_of(&job)?, &job, &new)?,
                Step::MoveIn => {
                    let from = source.as_deref().unwrap_or(&new);
                    std::fs::rename(from, &new)
                        .map_err(|e| ImagesError::io("moving the snapshot in", from, e))?;
                    fsutil::fsync_dir(&self.store.roots_dir())?;
                }
                Step::Mark => snapshots::write_marker(&new, &self.marker(&job))?,
                Step::Keep => {
                    let id = job.keep.as_deref().unwrap_or_default();
                    self.keep(&job.pi, id, &new)?;
                }
                Step::Abandon => {
                    fsutil::remove_tree(&self.journal_path(&job.pi))?;
                    fsutil::fsync_dir(&self.store.roots_dir())?;
                    let id = match &job.source {
                        Source::Snapshot(id) => id.clone(),
                        Source::Base => String::new(),
                    };
                    return Err(ImagesError::SnapshotMissing { pi: job.pi.to_string(), id });
                }
                Step::MarkPrepared | Step::Restart => {
                    job.phase =
                        if step == Step::Restart { Phase::Preparing } else { Phase::Prepared };
                    self.write_journal(&job)?;
                }
                Step::Swap => self.swap(&live, &new)?,
                Step::Finish => {
                    fsutil::remove_tree(&self.journal_path(&job.pi))?;
                    fsutil::fsync_dir(&self.store.roots_dir())?;
                    journal_present = false;
                }
            }
            self.hooks.check(CrashPoint::After(step))?;
        }
        tracing::info!(pi = %job.pi, image = %job.image, version = %job.version, "root ready");
        let boot = boot_subdir(Some(&self.marker(&job)), &self.store.list()?);
        Ok(PiRoot {
            pi: job.pi.clone(),
            boot_dir: live.join(boot),
            path: live,
            image: job.image,
            version: job.version,
        })
    }

    fn base_of(&self, job: &Journal) -> Result<Base> {
        self.store
            .list()?
            .into_iter()
            .find(|b| b.image == job.image && b.version == job.version)
            .ok_or_else(|| ImagesError::NoBase { name: format!("{}@{}", job.image, job.version) })
    }

    fn marker(&self, job: &Journal) -> RootMarker {
        RootMarker {
            pi: job.pi.clone(),
            image: job.image.clone(),
            version: job.version.clone(),
            token: job.token.clone(),
        }
    }

    fn provision(&self, base: &Base, job: &Journal, new: &Path) -> Result<()> {
        let identity = job.identity.as_ref().ok_or_else(|| ImagesError::Journal {
            path: self.journal_path(&job.pi),
            reason: "a reimage journal without an identity".into(),
        })?;
        let used = strategy::clone_tree(self.store.strategy(), self.runner, &base.root(), new)?;
        tracing::debug!(pi = %job.pi, strategy = %used, "cloned base");
        self.hooks.check(CrashPoint::Cloned)?;
        customize::customize(self.runner, new, &base.manifest, identity, self.host_keys)?;
        self.hooks.check(CrashPoint::Customised)?;
        let text = serde_json::to_string_pretty(&self.marker(job)).unwrap_or_default();
        fsutil::atomic_write(&new.join(MARKER), text.as_bytes(), 0o644)
    }

    fn swap(&self, live: &Path, new: &Path) -> Result<()> {
        if std::fs::symlink_metadata(live).is_ok() {
            fsutil::exchange(new, live)?;
        } else {
            std::fs::rename(new, live)
                .map_err(|e| ImagesError::io("renaming new root into place", live, e))?;
        }
        fsutil::fsync_dir(&self.store.roots_dir())
    }

    fn write_journal(&self, job: &Journal) -> Result<()> {
        let text = serde_json::to_string_pretty(job).unwrap_or_default();
        fsutil::atomic_write(&self.journal_path(&job.pi), text.as_bytes(), 0o600)
    }

    fn read_journal(&self, pi: &PiName) -> Result<Option<Journal>> {
        let path = self.journal_path(pi);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ImagesError::Journal { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImagesError::io("reading journal", path, e)),
        }
    }
}

/// The directory a root boots from, relative to the root: the `boot_dir` of the base its
/// marker names, from that base's manifest; `boot` for a root without a marker (not
/// provisioned by Bramble) or whose base is not among `bases`. The marker lives in the
/// Pi's writable root, so it only selects among registered bases, and a `boot_dir` that
/// is not a plain relative path is never returned.
pub fn boot_subdir(marker: Option<&RootMarker>, bases: &[Base]) -> String {
    let plain = |d: &str| {
        !d.is_empty() && Path::new(d).components().all(|c| matches!(c, Component::Normal(_)))
    };
    marker
        .and_then(|m| bases.iter().find(|b| b.image == m.image && b.version == m.version))
        .map(|b| b.manifest.boot_dir.clone())
        .filter(|d| plain(d))
        .unwrap_or_else(|| "boot".into())
}

/// The marker of the root at `root`, if it has a readable one. The root belongs to its
/// Pi, which may have replaced the marker (or a directory above it) with anything: only a
/// small regular file reached without symlinks is read, and opening never blocks (a FIFO).
pub fn read_marker(root: &Path) -> Option<RootMarker> {
    const MAX: u64 = 16 * 1024;
    let text = crate::beneath::read_small(root, Path::new(MARKER), MAX).ok()??;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::recipe::NetworkStyle;

    fn base(image: &str, version: &str, boot_dir: &str) -> Base {
        let manifest = Manifest {
            image: image.into(),
            version: version.into(),
            recipe_hash: String::new(),
            suite: "bookworm".into(),
            arch: "arm64".into(),
            boot_dir: boot_dir.into(),
            kernel: None,
            initramfs: None,
            network: NetworkStyle::Ifupdown,
            models: Vec::new(),
            console_args: Vec::new(),
            packages: Vec::new(),
            size_bytes: 0,
            file_count: 0,
            tree_sha256: String::new(),
            built_at_unix: 0,
            build_seconds: 0.0,
        };
        Base { image: image.into(), version: version.into(), dir: "/b".into(), manifest }
    }

    #[test]
    fn a_root_boots_from_its_bases_boot_dir() {
        let marker = |image: &str, version: &str| RootMarker {
            pi: PiName::new("pi-1").expect("name"),
            image: image.into(),
            version: version.into(),
            token: String::new(),
        };
        let bases =
            [base("deb", "1", "boot/firmware"), base("old", "1", "boot"), base("x", "1", "../y")];
        assert_eq!(boot_subdir(Some(&marker("deb", "1")), &bases), "boot/firmware");
        assert_eq!(boot_subdir(Some(&marker("old", "1")), &bases), "boot");
        assert_eq!(boot_subdir(Some(&marker("deb", "2")), &bases), "boot", "base gone");
        assert_eq!(boot_subdir(Some(&marker("x", "1")), &bases), "boot", "not a plain path");
        assert_eq!(boot_subdir(None, &bases), "boot", "not provisioned by Bramble");
    }

    #[test]
    fn a_marker_the_pi_replaced_with_a_device_or_symlink_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join(MARKER);
        std::fs::create_dir_all(marker.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink("/dev/zero", &marker).expect("symlink");
        assert_eq!(read_marker(dir.path()), None);
        std::fs::remove_file(&marker).expect("rm");
        let text = r#"{"pi":"pi-1","image":"deb","version":"1","token":"t"}"#;
        std::fs::write(&marker, text).expect("marker");
        assert_eq!(read_marker(dir.path()).map(|m| m.image), Some("deb".to_string()));
    }
}
