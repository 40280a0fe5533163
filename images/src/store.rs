//! The image store: immutable, versioned bases (`bases/<image>/<version>/{root,manifest.json}`)
//! and per-Pi roots (`roots/<pi>`), all on one filesystem so roots can share extents with
//! bases. New bases are staged in a hidden directory beside the final one and renamed
//! into place only when complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cmd::CommandRunner;
use crate::error::{ImagesError, Result};
use crate::fsutil;
use crate::manifest::Manifest;
use crate::provision::strategy::{self, Strategy};

/// A registered base: an immutable root tree plus its manifest.
#[derive(Debug, Clone)]
pub struct Base {
    pub image: String,
    pub version: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Base {
    /// The root tree that per-Pi roots are cloned from.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

/// A store directory with its provisioning strategy.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    strategy: Strategy,
}

const STAGING_PREFIX: &str = ".staging-";

impl ImageStore {
    /// Opens (creating if needed) a store and probes its filesystem for a strategy.
    pub fn open(dir: &Path, runner: &dyn CommandRunner) -> Result<Self> {
        for sub in ["bases", "roots"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p)
                .map_err(|e| ImagesError::io("creating store directory", &p, e))?;
        }
        let strategy = strategy::probe(dir, runner)?;
        tracing::info!(store = %dir.display(), %strategy, "opened image store");
        Ok(ImageStore { dir: dir.to_path_buf(), strategy })
    }

    /// Same store, forcing a (slower or equal) strategy; for benchmarks and tests.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Same store, with roots and snapshots made as reflink copies (still copy-on-write,
    /// O(files)) instead of btrfs subvolume snapshots, for an NFS server that cannot
    /// export subvolumes made after it started. Other strategies are kept.
    pub fn without_subvolumes(mut self) -> Self {
        if self.strategy == Strategy::BtrfsSnapshot {
            tracing::info!(store = %self.dir.display(), "roots are reflink copies: the NFS server cannot export new btrfs subvolumes");
            self.strategy = Strategy::Reflink;
        }
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn roots_dir(&self) -> PathBuf {
        self.dir.join("roots")
    }

    fn bases_dir(&self) -> PathBuf {
        self.dir.join("bases")
    }

    /// Every registered base, by image name then version (oldest first). Staging
    /// directories and versions without a readable manifest are skipped.
    pub fn list(&self) -> Result<Vec<Base>> {
        let mut out = Vec::new();
        for image in sorted_names(&self.bases_dir())? {
            if image.starts_with('.') {
                continue;
            }
            let image_dir = self.bases_dir().join(&image);
            for version in sorted_names(&image_dir)? {
                let dir = image_dir.join(&version);
                match Manifest::load(&dir.join("manifest.json")) {
                    Ok(manifest) => out.push(Base { image: image.clone(), version, dir, manifest }),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable base")
                    }
                }
            }
        }
        Ok(out)
    }

    /// The base `image` `version`, if registered: one manifest read, no listing. Names
    /// that are not single plain path components are never looked up.
    pub fn base(&self, image: &str, version: &str) -> Result<Option<Base>> {
        let plain = |n: &str| !n.is_empty() && !n.starts_with('.') && !n.contains('/');
        if !plain(image) || !plain(version) {
            return Ok(None);
        }
        let dir = self.bases_dir().join(image).join(version);
        let manifest = dir.join("manifest.json");
        if !manifest.is_file() {
            return Ok(None);
        }
        let manifest = Manifest::load(&manifest)?;
        Ok(Some(Base { image: image.into(), version: version.into(), dir, manifest }))
    }

    /// The newest base of `image`.
    pub fn latest(&self, image: &str) -> Result<Base> {
        self.list()?
            .into_iter()
            .rfind(|b| b.image == image)
            .ok_or_else(|| ImagesError::NoBase { name: image.to_string() })
    }

    /// The newest base of `image` built from exactly this recipe hash (a build cache hit).
    pub fn find_by_recipe(&self, image: &str, recipe_hash: &str) -> Result<Option<Base>> {
        Ok(self
            .list()?
            .into_iter()
            .rfind(|b| b.image == image && b.manifest.recipe_hash == recipe_hash))
    }

    /// Starts a new base: a staging directory beside the final location whose `root/`
    /// is a subvolume on btrfs. Dropping the returned value without committing removes it.
    pub fn stage(&self, image: &str, runner: &dyn CommandRunner) -> Result<Staging> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = self.bases_dir().join(format!(
            "{STAGING_PREFIX}{image}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fsutil::remove_tree(&dir)?;
        std::fs::create_dir(&dir)
            .map_err(|e| ImagesError::io("creating staging directory", &dir, e))?;
        let staging = Staging { dir, committed: false };
        strategy::create_root_dir(self.strategy, runner, &staging.root())?;
        Ok(staging)
    }

    /// Registers a finished staging directory as `bases/<image>/<version>` with one
    /// rename, after writing its manifest and sealing the root.
    pub fn commit(
        &self,
        mut staging: Staging,
        manifest: &Manifest,
        runner: &dyn CommandRunner,
    ) -> Result<Base> {
        fsutil::atomic_write(
            &staging.dir.join("manifest.json"),
            manifest.to_json().as_bytes(),
            0o644,
        )?;
        strategy::seal(runner, &staging.root())?;
        let image_dir = self.bases_dir().join(&manifest.image);
        std::fs::create_dir_all(&image_dir)
            .map_err(|e| ImagesError::io("creating image directory", &image_dir, e))?;
        let dir = image_dir.join(&manifest.version);
        if dir.exists() {
            return Err(ImagesError::InvalidInput {
                what: "base version",
                value: manifest.version.clone(),
                reason: "already registered".into(),
            });
        }
        std::fs::rename(&staging.dir, &dir)
            .map_err(|e| ImagesError::io("registering base", &dir, e))?;
        staging.committed = true;
        fsutil::fsync_dir(&image_dir)?;
        tracing::info!(image = %manifest.image, version = %manifest.version, "registered base");
        Ok(Base {
            image: manifest.image.clone(),
            version: manifest.version.clone(),
            dir,
            manifest: manifest.clone(),
        })
    }

    /// Copies a base from another store (e.g. a build cache) into this one, as a
    /// subvolume where this store snapshots. Returns the existing copy if present.
    pub fn import(&self, base: &Base, runner: &dyn CommandRunner) -> Result<Base> {
        if let Some(b) =
            self.list()?.into_iter().find(|b| b.image == base.image && b.version == base.version)
        {
            return Ok(b);
        }
        let staging = self.stage(&base.image, runner)?;
        let copy = crate::cmd::CommandLine::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(format!("{}/.", base.root().display()))
            .path_arg(&staging.root());
        runner.run(&copy)?;
        self.commit(staging, &base.manifest, runner)
    }

    /// Removes staging directories left by crashed builds (run at startup).
    pub fn sweep_staging(&self, runner: &dyn CommandRunner) -> Result<usize> {
        let mut n = 0;
        for name in sorted_names(&self.bases_dir())? {
            if name.starts_with(STAGING_PREFIX) {
                let dir = self.bases_dir().join(&name);
                fsutil::unmount_below(runner, &dir)?;
                strategy::delete_tree(runner, &dir.join("root"))?;
                fsutil::remove_tree(&dir)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A base being built; removed on drop unless committed, so a failed build registers
/// nothing.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let runner = crate::cmd::SystemRunner;
            let root = self.root();
            if let Err(e) = fsutil::unmount_below(&runner, &root)
                .and_then(|_| strategy::delete_tree(&runner, &root))
                .and_then(|_| fsutil::remove_tree(&self.dir))
            {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove failed build");
            }
        }
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ImagesError::io("listing", dir, e)),
    };
    names.sort();
    Ok(names)
}

/// A sortable version string: UTC build time plus the recipe hash prefix,
/// e.g. `20261123T141500Z-3fa2b1c0`.
pub fn version_string(now: SystemTime, recipe_hash: &str) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let short = recipe_hash.get(..8).unwrap_or(recipe_hash);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{short}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_are_dated_and_sortable() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_963_347); // 2026-11-29T14:42:27Z
        assert_eq!(version_string(t, "abcdef0123"), "20261129T144227Z-abcdef01");
        assert_eq!(version_string(UNIX_EPOCH, "x"), "19700101T000000Z-x");
    }
}
