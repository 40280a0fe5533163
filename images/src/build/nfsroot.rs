//! Makes a freshly debootstrapped tree fit to be an NFS root shared by no one: fstab
//! without a root device or swap, first-boot resizers masked, a serial getty, and no
//! per-machine identity (host keys, machine-id) left in the base.

use std::path::Path;

use crate::error::{ImagesError, Result};
use crate::fsutil::{remove_tree, write_file};
use crate::recipe::Recipe;

/// The fstab of every NFS-rooted Pi: the kernel mounts `/` from `nfsroot=`; there is no
/// block device to check and no swap.
pub fn render_fstab() -> String {
    "# Written by Bramble. / is mounted over NFS by the kernel (nfsroot= on the command\n\
     # line): no root device, no fsck, no swap.\n\
     proc  /proc  proc   defaults            0  0\n\
     tmpfs /tmp   tmpfs  defaults,nosuid     0  0\n"
        .to_string()
}

/// Applies every NFS-root preparation to `root`.
pub fn prepare(root: &Path, recipe: &Recipe) -> Result<()> {
    write_file(&root.join("etc/fstab"), &render_fstab(), 0o644)?;
    for unit in &recipe.mask_services {
        mask_unit(root, unit)?;
    }
    enable_serial_getty(root, &recipe.console.serial)?;
    if let Some(level) = &recipe.console.journal_to_kmsg {
        write_file(&root.join(JOURNALD_KMSG), &render_journald_kmsg(level), 0o644)?;
    }
    let boot = root.join(&recipe.boot_dir);
    std::fs::create_dir_all(&boot)
        .map_err(|e| ImagesError::io("creating boot directory", &boot, e))?;
    strip_identity(root)
}

/// journald drop-in forwarding the running system's messages to the kernel log.
pub const JOURNALD_KMSG: &str = "etc/systemd/journald.conf.d/bramble-console.conf";

/// The drop-in for [`JOURNALD_KMSG`]: messages at `level` and above reach the kernel log,
/// and so netconsole and the controller's console for the Pi.
pub fn render_journald_kmsg(level: &str) -> String {
    format!(
        "# Written by Bramble: the running system's messages at {level} and above go to the\n\
         # kernel log, which netconsole sends to the controller (the Pi's console).\n\
         [Journal]\n\
         ForwardToKMsg=yes\n\
         MaxLevelKMsg={level}\n"
    )
}

/// Masks a systemd unit (link to /dev/null) and removes its SysV start links.
pub fn mask_unit(root: &Path, unit: &str) -> Result<()> {
    let unit_file = if unit.contains('.') { unit.to_string() } else { format!("{unit}.service") };
    let link = root.join("etc/systemd/system").join(&unit_file);
    replace_symlink(Path::new("/dev/null"), &link)?;
    let sysv = unit.strip_suffix(".service").unwrap_or(unit);
    for level in ["rcS.d", "rc2.d", "rc3.d", "rc4.d", "rc5.d"] {
        let dir = root.join("etc").join(level);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(std::result::Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() > 3 && name.starts_with('S') && &name[3..] == sysv {
                remove_tree(&e.path())?;
            }
        }
    }
    Ok(())
}

/// Enables `serial-getty@<tty>` so the serial console has a login prompt.
pub fn enable_serial_getty(root: &Path, tty: &str) -> Result<()> {
    let link = root
        .join("etc/systemd/system/getty.target.wants")
        .join(format!("serial-getty@{tty}.service"));
    replace_symlink(Path::new("/lib/systemd/system/serial-getty@.service"), &link)
}

/// Removes host keys and empties machine-id: customisation generates them per Pi.
pub fn strip_identity(root: &Path) -> Result<()> {
    let ssh = root.join("etc/ssh");
    if let Ok(entries) = std::fs::read_dir(&ssh) {
        for e in entries.filter_map(std::result::Result::ok) {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove_tree(&e.path())?;
            }
        }
    }
    write_file(&root.join("etc/machine-id"), "", 0o444)?;
    remove_tree(&root.join("var/lib/dbus/machine-id"))
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ImagesError::io("creating directory", parent, e))?;
    }
    remove_tree(link)?;
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| ImagesError::io("creating symlink", link, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    #[test]
    fn prepare_masks_resizers_enables_getty_and_strips_identity() {
        let c = Catalogue::builtin().expect("builtin");
        let r = c.get("raspbian-stretch").expect("stretch");
        let root = tempfile::tempdir().expect("tempdir");
        let p = root.path();
        for f in [
            "etc/ssh/ssh_host_rsa_key",
            "etc/ssh/sshd_config",
            "etc/machine-id",
            "etc/rc2.d/S01dphys-swapfile",
        ] {
            write_file(&p.join(f), "x", 0o600).expect("seed");
        }
        prepare(p, r).expect("prepare");
        assert!(!p.join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(p.join("etc/ssh/sshd_config").exists());
        assert_eq!(std::fs::read_to_string(p.join("etc/machine-id")).expect("mid"), "");
        assert!(!p.join("etc/rc2.d/S01dphys-swapfile").exists());
        assert_eq!(
            std::fs::read_link(p.join("etc/systemd/system/resize2fs_once.service")).expect("mask"),
            Path::new("/dev/null")
        );
        assert!(
            std::fs::symlink_metadata(
                p.join("etc/systemd/system/getty.target.wants/serial-getty@serial0.service")
            )
            .is_ok()
        );
        let fstab = std::fs::read_to_string(p.join("etc/fstab")).expect("fstab");
        assert!(!fstab.contains("swap") || fstab.contains("no swap"));
        assert!(!fstab.lines().any(|l| l.split_whitespace().nth(1) == Some("/")));
        assert!(p.join("boot").is_dir());
    }
}
