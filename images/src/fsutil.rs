//! Small filesystem helpers with crash-safe semantics: atomic file replacement, directory
//! fsync, atomic directory exchange (renameat2) and tree removal.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{ImagesError, Result};

/// Writes `contents` to `path` through a temporary file in the same directory, fsyncs it
/// and renames it into place, so readers see the old file or the new one, never a mix.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| ImagesError::io("creating directory", parent, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(ImagesError::io("writing", path, e));
    }
    fs::rename(&tmp, path).map_err(|e| ImagesError::io("renaming into place", path, e))?;
    fsync_dir(parent)
}

/// Writes a file inside a root being prepared (no atomicity needed: the root is not
/// live yet), creating parent directories.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ImagesError::io("creating directory", parent, e))?;
    }
    // Replace symlinks (e.g. /etc/resolv.conf) rather than write through them.
    if fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
        fs::remove_file(path).map_err(|e| ImagesError::io("removing symlink", path, e))?;
    }
    fs::write(path, contents).map_err(|e| ImagesError::io("writing", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ImagesError::io("setting permissions", path, e))
}

/// Makes a directory's entries (renames, creations) durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImagesError::io("fsyncing directory", dir, e))
}

/// Atomically exchanges two directory entries (`renameat2(RENAME_EXCHANGE)`): at every
/// instant each name refers to one complete tree.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    let ca = cstring(a)?;
    let cb = cstring(b)?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(ImagesError::io("exchanging with", b, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes a tree if it exists; a missing path is not an error (idempotent).
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImagesError::io("inspecting", path, e)),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| ImagesError::io("removing tree", path, e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| ImagesError::io("removing", path, e)),
    }
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| ImagesError::InvalidInput {
        what: "path",
        value: p.display().to_string(),
        reason: "contains a NUL byte".into(),
    })
}

/// Filesystem type magic of the filesystem holding `path` (`statfs.f_type`).
pub fn fs_magic(path: &Path) -> Result<i64> {
    let c = cstring(path)?;
    // SAFETY: statfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(ImagesError::io("statfs", path, std::io::Error::last_os_error()));
    }
    Ok(st.f_type as i64)
}

/// Bytes available to unprivileged writers on the filesystem holding `path`
/// (`statvfs`: `f_bavail * f_frsize`).
pub fn free_bytes(path: &Path) -> Result<u64> {
    let c = cstring(path)?;
    // SAFETY: statvfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(ImagesError::io("statvfs", path, std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `statfs` magic of btrfs.
pub const BTRFS_MAGIC: i64 = 0x9123_683e;

/// Mount points at or below `root` from /proc/self/mountinfo, deepest first.
pub fn mounts_below(root: &Path) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<std::path::PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| std::path::PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(root))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// Lazily unmounts everything mounted below `root` (proc/sys left by an interrupted
/// debootstrap) so that walking or deleting the tree never enters another filesystem.
pub fn unmount_below(runner: &dyn crate::cmd::CommandRunner, root: &Path) -> Result<()> {
    for m in mounts_below(root) {
        tracing::warn!(mount = %m.display(), "unmounting leftover mount inside a root");
        runner.run(&crate::cmd::CommandLine::new("umount").arg("-l").path_arg(&m))?;
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = oct {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes_spaces() {
        assert_eq!(unescape_mountinfo("/a\\040b/proc"), "/a b/proc");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir(&a).expect("a");
        std::fs::create_dir(&b).expect("b");
        std::fs::write(a.join("x"), "a").expect("write");
        exchange(&a, &b).expect("exchange");
        assert!(b.join("x").exists() && !a.join("x").exists());
    }
}
