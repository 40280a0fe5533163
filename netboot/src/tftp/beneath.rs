//! Opening a file strictly beneath a directory, race-free: openat2(2) with
//! `RESOLVE_BENEATH`, so a symlink (or `..`) that leaves the directory fails in the
//! kernel, at open time, however the Pi rearranges its own `/boot` meanwhile.
//!
//! The Pi writes its boot directory over NFS, so anything below it is hostile input: the
//! directory itself is opened with `O_NOFOLLOW` (a `/boot` that is a symlink is refused),
//! and files with `O_NONBLOCK` (opening a FIFO must not park a thread). Blocking calls:
//! run them on a blocking thread.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::metrics::Refusal;
use super::source::OpenError;

/// Opens `base/rel` for reading if it resolves to a regular file inside `base`; returns
/// it with its size.
pub fn open_beneath(base: &Path, rel: &Path) -> Result<(File, u64), OpenError> {
    let io_error = |source: io::Error| OpenError::Io { path: base.join(rel), source };
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(base)
        .map_err(|e| match e.raw_os_error() {
            // With O_NOFOLLOW | O_DIRECTORY a symlink fails with ENOTDIR or ELOOP.
            Some(libc::ENOTDIR | libc::ELOOP) => OpenError::Refused(Refusal::SymlinkEscape),
            _ => refusal(&e).map_or_else(|| io_error(e), OpenError::Refused),
        })?;
    let name = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| OpenError::Refused(Refusal::NulByte))?;
    // SAFETY: open_how is a plain struct of three u64 fields, valid when zeroed.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the directory fd and the NUL-terminated name outlive the call, and `how`
    // is passed with its exact size, as openat2(2) requires.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(refusal(&e).map_or_else(|| io_error(e), OpenError::Refused));
    }
    let fd = i32::try_from(fd)
        .map_err(|_| io_error(io::Error::other("file descriptor out of range")))?;
    // SAFETY: openat2 succeeded, so `fd` is an open descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(OpenError::Refused(Refusal::NotAFile));
    }
    Ok((file, meta.len()))
}

/// The refusal an open error stands for, or `None` for a genuine I/O failure.
fn refusal(e: &io::Error) -> Option<Refusal> {
    match e.raw_os_error()? {
        libc::EXDEV | libc::ELOOP => Some(Refusal::SymlinkEscape),
        libc::ENOENT | libc::ENOTDIR => Some(Refusal::NotFound),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn refused(base: &Path, rel: &str) -> Option<Refusal> {
        match open_beneath(base, Path::new(rel)) {
            Err(OpenError::Refused(r)) => Some(r),
            Err(other) => panic!("{rel}: unexpected {other}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn symlinks_may_not_leave_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let boot = tmp.path().join("boot");
        std::fs::create_dir_all(boot.join("sub")).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), b"s").expect("write");
        std::fs::write(boot.join("file"), b"abc").expect("write");
        symlink("file", boot.join("inner")).expect("symlink");
        symlink("../file", boot.join("sub/up")).expect("symlink");
        symlink("../secret", boot.join("escape")).expect("symlink");
        symlink(tmp.path().join("secret"), boot.join("absolute")).expect("symlink");
        symlink("loop", boot.join("loop")).expect("symlink");
        symlink(tmp.path(), tmp.path().join("linked-boot")).expect("symlink");
        nix_mkfifo(&boot.join("fifo"));
        assert_eq!(open_beneath(&boot, Path::new("inner")).map(|(_, n)| n).ok(), Some(3));
        assert_eq!(refused(&boot, "sub/up"), None);
        assert_eq!(refused(&boot, "escape"), Some(Refusal::SymlinkEscape));
        assert_eq!(refused(&boot, "absolute"), Some(Refusal::SymlinkEscape));
        assert_eq!(refused(&boot, "loop"), Some(Refusal::SymlinkEscape));
        assert_eq!(refused(&boot, "missing"), Some(Refusal::NotFound));
        assert_eq!(refused(&boot, "sub"), Some(Refusal::NotAFile));
        assert_eq!(refused(&boot, "fifo"), Some(Refusal::NotAFile));
        assert_eq!(
            refused(&tmp.path().join("linked-boot"), "secret"),
            Some(Refusal::SymlinkEscape)
        );
    }

    fn nix_mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }
}
