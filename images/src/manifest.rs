//! The manifest recorded with every base: installed packages, size, a checksum over a
//! deterministic listing of the tree, build time and the recipe hash it was built from.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ImagesError, Result};

/// One installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// What a base contains and how it was made. Stored as `manifest.json` beside `root/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub image: String,
    pub version: String,
    pub recipe_hash: String,
    pub suite: String,
    pub arch: String,
    pub boot_dir: String,
    /// The kernel the firmware loads, relative to `boot_dir` (named by its `config.txt`);
    /// `None` for a base built without kernel packages.
    #[serde(default)]
    pub kernel: Option<String>,
    /// The initramfs loaded after the kernel, relative to `boot_dir`, if it has one.
    #[serde(default)]
    pub initramfs: Option<String>,
    pub network: crate::recipe::NetworkStyle,
    /// The Pi models the base boots (its recipe's `models`); empty in manifests written
    /// before recipes said so (the controller then asks the recipe of the same name).
    #[serde(default)]
    pub models: Vec<String>,
    pub console_args: Vec<String>,
    pub packages: Vec<Package>,
    pub size_bytes: u64,
    pub file_count: u64,
    /// SHA-256 over the sorted listing (type, mode, owner, size, path, content digest or
    /// link target) of every entry; timestamps are left out so equal trees hash equal.
    pub tree_sha256: String,
    pub built_at_unix: u64,
    pub build_seconds: f64,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| ImagesError::io("reading manifest", path, e))?;
        serde_json::from_slice(&text)
            .map_err(|source| ImagesError::Manifest { path: path.into(), source })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Whether a root of this base runs sshd at boot: it has `openssh-server` installed
    /// (read from its dpkg status at build time, so bases built before this was asked
    /// answer too). Synthetic bases list no packages and do not.
    pub fn runs_sshd(&self) -> bool {
        self.packages.iter().any(|p| p.name == "openssh-server")
    }
}

/// Size, entry count and digest of a tree, computed by [`tree_digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDigest {
    pub size_bytes: u64,
    pub file_count: u64,
    pub sha256: String,
}

/// Walks `root` in byte-sorted order and hashes a listing line per entry. The size counts
/// a hard-linked file once, as the disk holds it.
pub fn tree_digest(root: &Path) -> Result<TreeDigest> {
    let mut acc = TreeDigest { size_bytes: 0, file_count: 0, sha256: String::new() };
    let mut hasher = Sha256::new();
    let dev = std::fs::metadata(root).map_err(|e| ImagesError::io("stat", root, e))?.dev();
    let mut linked = std::collections::HashSet::new();
    walk(root, Path::new(""), dev, &mut hasher, &mut acc, &mut linked)?;
    acc.sha256 = hex::encode(hasher.finalize());
    Ok(acc)
}

fn walk(
    root: &Path,
    rel: &Path,
    dev: u64,
    hasher: &mut Sha256,
    acc: &mut TreeDigest,
    linked: &mut std::collections::HashSet<u64>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| ImagesError::io("listing", &dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let full = root.join(&rel_path);
        let md = std::fs::symlink_metadata(&full).map_err(|e| ImagesError::io("stat", &full, e))?;
        let ft = md.file_type();
        let (kind, detail) = if ft.is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(|e| ImagesError::io("readlink", &full, e))?;
            ('l', target.to_string_lossy().into_owned())
        } else if ft.is_file() {
            if md.nlink() < 2 || linked.insert(md.ino()) {
                acc.size_bytes += md.len();
            }
            ('f', file_sha256(&full)?)
        } else if ft.is_dir() {
            ('d', String::new())
        } else {
            ('s', format!("{:x}", md.rdev()))
        };
        acc.file_count += 1;
        let line = format!(
            "{kind} {:o} {}:{} {} {} {detail}\n",
            md.mode(),
            md.uid(),
            md.gid(),
            if ft.is_file() { md.len() } else { 0 },
            rel_path.display()
        );
        hasher.update(line.as_bytes());
        // Never descend into another filesystem (a mount point inside the root).
        if ft.is_dir() && md.dev() == dev {
            walk(root, &rel_path, dev, hasher, acc, linked)?;
        }
    }
    Ok(())
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| ImagesError::io("opening", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| ImagesError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Installed packages from a root's `var/lib/dpkg/status`, sorted by name.
pub fn installed_packages(root: &Path) -> Result<Vec<Package>> {
    let path = root.join("var/lib/dpkg/status");
    let f = File::open(&path).map_err(|e| ImagesError::io("reading dpkg status", &path, e))?;
    Ok(parse_dpkg_status(BufReader::new(f).lines().map_while(std::result::Result::ok)))
}

/// Parses dpkg status paragraphs, keeping packages whose status is `install ok installed`.
pub fn parse_dpkg_status(lines: impl Iterator<Item = String>) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     arch: &mut Option<String>,
                     installed: &mut bool| {
        if let (Some(n), true) = (name.take(), *installed) {
            out.push(Package {
                name: n,
                version: version.take().unwrap_or_default(),
                arch: arch.take().unwrap_or_default(),
            });
        }
        *version = None;
        *arch = None;
        *installed = false;
    };
    for line in lines {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut installed);
        } else if let Some(v) = line.strip_prefix("Package: ") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Version: ") {
            version = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Architecture: ") {
            arch = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Status: ") {
            installed = v.trim() == "install ok installed";
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut installed);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_only() {
        let text = "Package: zlib1g\nStatus: install ok installed\nArchitecture: armhf\nVersion: 1:1.2.13\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                    Package: bash\nStatus: install ok installed\nVersion: 5.2\nArchitecture: armhf\n";
        let pkgs = parse_dpkg_status(text.lines().map(String::from));
        let names: Vec<_> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "zlib1g"]);
        assert_eq!(pkgs[1].version, "1:1.2.13");
    }

    #[test]
    fn tree_digest_ignores_timestamps_and_sees_content() {
        let a = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(a.path().join("etc")).expect("mkdir");
        std::fs::write(a.path().join("etc/hostname"), "pi\n").expect("write");
        std::os::unix::fs::symlink("hostname", a.path().join("etc/link")).expect("symlink");
        let d1 = tree_digest(a.path()).expect("digest");
        std::fs::write(a.path().join("etc/hostname"), "pi\n").expect("rewrite same");
        assert_eq!(d1, tree_digest(a.path()).expect("digest"));
        std::fs::write(a.path().join("etc/hostname"), "pj\n").expect("change");
        let d2 = tree_digest(a.path()).expect("digest");
        assert_ne!(d1.sha256, d2.sha256);
        assert_eq!((d2.size_bytes, d2.file_count), (3, 3));
        std::fs::hard_link(a.path().join("etc/hostname"), a.path().join("etc/again")).expect("ln");
        let d3 = tree_digest(a.path()).expect("digest");
        assert_eq!((d3.size_bytes, d3.file_count), (3, 4), "a hard link is counted once");
    }
}
