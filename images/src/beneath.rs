//! Reading from a tree another party writes: a Pi's root belongs to its Pi, which may
//! have replaced any file or directory in it with a symlink, a FIFO or a huge file.
//! Paths are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so the
//! kernel refuses at open time any symlink or `..` on the way, however the tree is
//! rearranged meanwhile; files are opened non-blocking and read only when they are small
//! regular files. The tree's own top directory is the caller's and is trusted.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Dir, Mode, OFlags, ResolveFlags};

const RESOLVE: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// Opens `rel` beneath the directory `dir` with `flags`.
fn open_at(dir: &OwnedFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    Ok(rustix::fs::openat2(dir, rel, flags, Mode::empty(), RESOLVE)?)
}

fn open_top(top: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(top, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// A directory beneath `top`, opened for [`read_small_at`] and [`file_names`].
pub fn open_dir(top: &Path, rel: &Path) -> io::Result<OwnedFd> {
    open_at(&open_top(top)?, rel, OFlags::DIRECTORY)
}

/// The contents of `rel` beneath the directory `dir` if it is a regular file of at most
/// `max` bytes; `None` if it is anything else (a FIFO, device, directory, a larger file).
pub fn read_small_at(dir: &OwnedFd, rel: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = std::fs::File::from(open_at(dir, rel, OFlags::empty())?);
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// [`read_small_at`] of `rel` beneath `top`.
pub fn read_small(top: &Path, rel: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    read_small_at(&open_top(top)?, rel, max)
}

/// The names in the directory `dir` (without `.` and `..`), sorted.
pub fn file_names(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// True when an open failed because the path had a symlink or `..` on the way.
pub fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EXDEV))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn reads_only_small_regular_files_reached_without_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let top = d.path().join("root");
        std::fs::create_dir_all(top.join("etc/ssh")).expect("mkdir");
        std::fs::write(top.join("etc/ssh/a.pub"), "key").expect("write");
        std::fs::write(top.join("etc/ssh/big"), "x".repeat(100)).expect("write");
        std::fs::create_dir_all(d.path().join("outside")).expect("mkdir");
        std::fs::write(d.path().join("outside/secret"), "no").expect("write");
        symlink("../../../outside/secret", top.join("etc/ssh/link")).expect("symlink");
        symlink("/dev/zero", top.join("etc/ssh/dev")).expect("symlink");
        symlink("../outside", top.join("escape")).expect("symlink");
        symlink("etc", top.join("etc2")).expect("symlink");

        let dir = open_dir(&top, Path::new("etc/ssh")).expect("etc/ssh");
        assert_eq!(file_names(&dir).expect("names"), ["a.pub", "big", "dev", "link"]);
        assert_eq!(read_small_at(&dir, Path::new("a.pub"), 10).expect("a"), Some(b"key".to_vec()));
        assert_eq!(read_small_at(&dir, Path::new("big"), 10).expect("big"), None);
        assert_eq!(read_small(&top, Path::new("etc"), 10).expect("a directory"), None);
        for (rel, what) in [
            ("etc/ssh/link", "a symlink out"),
            ("etc/ssh/dev", "a symlink to a device"),
            ("escape/secret", "a symlinked directory out"),
            ("etc2/ssh/a.pub", "a symlinked directory inside"),
            ("../outside/secret", "a .. out"),
        ] {
            let e = read_small(&top, Path::new(rel), 10).expect_err(what);
            assert!(is_escape(&e), "{what}: {e}");
        }
        assert!(is_escape(&open_dir(&top, Path::new("etc2/ssh")).expect_err("symlinked dir")));
        let missing = read_small(&top, Path::new("etc/nothing"), 10).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
