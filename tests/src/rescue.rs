//! What the rescue tests look at: a root's whole state on disk (to prove rescue never
//! touched it) and an NFS export as seen from a Pi's namespace (to prove who may mount it).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every entry under `root` (not following symlinks), sorted: its path, type, mode,
/// owner, size, mtime (ns) and a hash of its content or link target. Equal before and
/// after means nothing was written, created, removed or chmod'ed.
pub fn tree_state(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    assert!(!out.is_empty(), "{} is empty or missing", root.display());
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("entry").path();
        let m = std::fs::symlink_metadata(&path).expect("metadata");
        let mut h = DefaultHasher::new();
        if m.file_type().is_file() {
            std::fs::read(&path).unwrap_or_default().hash(&mut h);
        } else if m.file_type().is_symlink() {
            std::fs::read_link(&path).ok().hash(&mut h);
        }
        let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        out.push(format!(
            "{rel} mode={:o} uid={} gid={} size={} mtime={}.{} hash={:x}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            h.finish()
        ));
        if m.file_type().is_dir() {
            walk(root, &path, out);
        }
    }
}

/// `nfs-ls nfs://<server><path>` (libnfs, NFSv3) run in network namespace `netns`, so the
/// request leaves from that namespace's address: `Ok(listing)` or `Err(stderr)`.
pub async fn nfs_ls(netns: &str, server: &str, path: &str) -> Result<String, String> {
    let url = format!("nfs://{server}{path}");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new("ip")
            .args(["netns", "exec", netns, "nfs-ls", &url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("nfs-ls {url}: no answer in 30 s"))?
    .map_err(|e| format!("nfs-ls: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}
