//! The files an operator puts on the anchor's disks: firmware and boot files in the
//! TFTP root (shared blobs hard-linked into each `<serial>/`), and each Pi's NFS root
//! with the hostname and customer key the simulator checks.

use std::fs;
use std::path::{Path, PathBuf};

use super::layout::{SlotPlan, cmdline};
use crate::LabError;
use crate::pisim::PiModel;

/// Sizes of the boot files served over TFTP (contents are a fixed pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFileSizes {
    pub bootcode: usize,
    pub start_elf: usize,
    pub fixup: usize,
    pub dtb: usize,
    pub kernel: usize,
}

impl BootFileSizes {
    /// About 1 MB per Pi: enough blocks to exercise TFTP, quick for tests.
    pub const SMALL: BootFileSizes = BootFileSizes {
        bootcode: 51_217,
        start_elf: 300_000,
        fixup: 7_000,
        dtb: 25_000,
        kernel: 700_001,
    };
    /// The sizes of Raspberry Pi OS firmware and a 64-bit kernel (bootcode.bin 52 KB,
    /// start.elf 2.9 MB, fixup.dat 7 KB, a dtb 32 KB, kernel8.img 8.3 MB).
    pub const FIRMWARE: BootFileSizes = BootFileSizes {
        bootcode: 52_456,
        start_elf: 2_977_056,
        fixup: 7_314,
        dtb: 32_465,
        kernel: 8_306_688,
    };
}

/// Writes `bootcode.bin` and the shared blobs once.
pub(crate) fn write_shared(
    tftp: &Path,
    blobs: &Path,
    sizes: BootFileSizes,
) -> Result<(), LabError> {
    write(&tftp.join("bootcode.bin"), &pattern(sizes.bootcode))?;
    for (name, len) in [
        ("start.elf", sizes.start_elf),
        ("fixup.dat", sizes.fixup),
        ("dtb", sizes.dtb),
        ("kernel.img", sizes.kernel),
    ] {
        write(&blobs.join(name), &pattern(len))?;
    }
    Ok(())
}

/// `<serial>/` in the TFTP root: the model's start/fixup/kernel/dtb names linked to the
/// blobs, a config.txt and the cmdline.txt naming `root`.
pub(crate) fn write_boot_dir(
    tftp: &Path,
    blobs: &Path,
    slot: &SlotPlan,
    root: &Path,
) -> Result<(), LabError> {
    let dir = tftp.join(slot.serial.to_string());
    let (start, fixup, kernel) = match slot.model {
        PiModel::Pi4 => ("start4.elf", "fixup4.dat", "kernel8.img"),
        // No start*.elf is read by a Pi 5; the links are harmless extras.
        PiModel::Pi5 => ("start4.elf", "fixup4.dat", "kernel_2712.img"),
        // Only a 32-bit kernel for the 3B, so its firmware falls back to kernel7.img.
        PiModel::Pi3B => ("start.elf", "fixup.dat", "kernel7.img"),
        PiModel::Pi3BPlus => ("start.elf", "fixup.dat", "kernel8.img"),
    };
    fs::create_dir_all(&dir).map_err(LabError::io("creating", &dir))?;
    for (blob, name) in [
        ("start.elf", start),
        ("fixup.dat", fixup),
        ("kernel.img", kernel),
        ("dtb", slot.model.dtb()),
    ] {
        let (from, to) = (blobs.join(blob), dir.join(name));
        fs::hard_link(&from, &to).map_err(LabError::io("linking", &to))?;
    }
    write(&dir.join("config.txt"), b"arm_64bit=1\nenable_uart=1\n")?;
    write(&dir.join("cmdline.txt"), cmdline(slot, &root.display().to_string()).as_bytes())
}

/// The Pi's root: `etc/hostname` and `root/.ssh/authorized_keys` with its key.
pub(crate) fn write_root(root: &Path, slot: &SlotPlan) -> Result<(), LabError> {
    write(&root.join("etc/hostname"), format!("{}\n", slot.hostname()).as_bytes())?;
    let keys = format!("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABother operator@anchor\n{}\n", slot.key());
    write(&root.join("root/.ssh/authorized_keys"), keys.as_bytes())
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(LabError::io("creating", parent))?;
    }
    fs::write(path, bytes).map_err(LabError::io("writing", path))
}

/// Deterministic non-trivial content of `len` bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `dir/<serial>` for every Pi root.
pub(crate) fn root_path(roots: &Path, slot: &SlotPlan) -> PathBuf {
    roots.join(slot.serial.to_string())
}
