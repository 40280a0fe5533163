//! A lab Pi that runs a real kernel: a QEMU `virt` machine (TCG) behind the same wire as
//! a simulated Pi 4.
//!
//! Power on runs the simulated Pi 4 firmware of [`crate::pisim`] on the slot's veth end
//! (DHCP, then `config.txt`, the kernel and initramfs it names and `cmdline.txt` over
//! TFTP), so the controller's boot timeline sees a DHCP answer and a kernel read exactly
//! as for a simulator. The files are saved in the Pi's state directory; the veth end
//! gives up its addresses and is joined to a tap device by two `tc` mirred redirects (the
//! lab's kernels have no Linux bridge); QEMU then boots the kernel and initramfs read,
//! with the boot line as served plus `console=ttyAMA0`, its NIC on the tap with the Pi's
//! MAC, its serial console appended to `console.log`. Power off is a power cut: QEMU is
//! killed by its pid (SIGKILL), reaped, and the tap and redirects removed. A machine that
//! stops by itself is reported `failed` until the next power cycle.
//!
//! The controller learns nothing from here but what crosses the wire.
//!
//! Layout: `command` (the QEMU, `ip` and `tc` command lines, pure), `vm` (files, tap,
//! the QEMU process), `pi` (the [`QemuPi`] handle). Its control surface fails with the
//! lab's own [`crate::LabError`] (a boot that fails is a state, not an error).

mod command;
mod pi;
mod vm;

use std::path::PathBuf;

pub use command::{join_commands, qemu_args, unjoin_commands};
pub use pi::QemuPi;

use crate::pisim::{PiModel, PiSimConfig, Serial};

/// The QEMU binary a QEMU Pi runs (Debian package `qemu-system-arm`).
pub const QEMU: &str = "qemu-system-aarch64";

/// What a QEMU Pi is and where it keeps its files.
#[derive(Debug, Clone)]
pub struct QemuPiConfig {
    /// The firmware's side: model (a Pi 4), serial, namespace, interface, timings.
    pub pi: PiSimConfig,
    /// Boot files as read, `console.log`, `qemu.pid`.
    pub state_dir: PathBuf,
    /// The tap device made in the Pi's namespace.
    pub tap: String,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Appended to the boot line as served (the last `console=` is `/dev/console`).
    pub extra_args: Vec<String>,
}

impl QemuPiConfig {
    /// A Pi 4 with `serial` on `eth0` in `netns`: two CPUs, 1 GiB, console on the PL011.
    pub fn new(serial: Serial, netns: &str, state_dir: PathBuf) -> Self {
        QemuPiConfig {
            pi: PiSimConfig::new(PiModel::Pi4, serial, netns),
            state_dir,
            tap: "tap0".into(),
            cpus: 2,
            memory_mib: 1024,
            // panic=5: a kernel that panics reboots, and -no-reboot turns that into the
            // VM stopping, which the lab sees at once.
            extra_args: vec!["console=ttyAMA0".into(), "panic=5".into()],
        }
    }

    /// Where QEMU's serial console is appended.
    pub fn console_log(&self) -> PathBuf {
        self.state_dir.join("console.log")
    }

    /// QEMU's pid file, present while it runs.
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("qemu.pid")
    }

    /// Where the files the firmware read are saved.
    pub fn boot_dir(&self) -> PathBuf {
        self.state_dir.join("boot")
    }
}

/// Kills the QEMU a crashed lab left running from `state_dir` (named by its pid file,
/// and only if that pid is still a QEMU).
pub fn cleanup_stale(state_dir: &std::path::Path) {
    // `comm` holds the first 15 bytes of the program name.
    crate::anchor::process::kill_stale(&state_dir.join("qemu.pid"), &QEMU[..15]);
}
