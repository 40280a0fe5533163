//! A Raspberry Pi simulator that netboots the way the real boot ROMs do, over real
//! sockets inside its own network namespace: DHCP (replies read from an `AF_PACKET`
//! socket, as the ROM has no IP stack that would drop a unicast OFFER to an address it
//! does not have yet), TFTP of each model's firmware sequence (with the kernel, device
//! tree and initramfs `config.txt` names), then a check of the NFS root named by the
//! cmdline.txt it fetched, through libnfs's `nfs-cat`. The QEMU Pi (`crate::qemupi`)
//! runs the same firmware stage and then starts the kernel it read.
//!
//! Why sockets are made by a `setns()` thread rather than running the simulator under
//! `ip netns exec`: one process (the lab, a benchmark) drives up to 96 Pis on one tokio
//! runtime, and a socket keeps the namespace it was created in. So each socket is
//! created by a fresh thread that joins the Pi's namespace and hands the socket back
//! (see `netio`); all I/O then runs as ordinary async tasks. Only `nfs-cat`, a separate
//! program, is started with `ip netns exec`.
//!
//! Layout: `state` (pure state machine), `dhcp`/`tftp`/`cmdline`/`config_txt` (wire
//! formats and parsing, pure), `sequence` (file lists as data), `netio` (namespaced sockets and
//! links), `nfs` (root check), `boot` (the async run), `sim` (the [`PiSim`] handle).

pub(crate) mod boot;
mod cmdline;
mod config_txt;
pub mod dhcp;
pub(crate) mod netio;
mod nfs;
mod sequence;
pub(crate) mod sim;
mod state;
mod tftp;

use std::fmt;
use std::time::Duration;

pub use cmdline::{BootCmdline, CmdlineError, IpConfig, parse_cmdline};
pub use config_txt::{BootConfig, parse_config_txt};
pub use netio::broadcast_dhcp;
pub use sequence::{FetchKind, FetchStep, FileRole, firmware_sequence};
pub use sim::{Counters, PiSim, PiStatus, TIMELINE_LIMIT, TimelineEntry};
pub use state::{BootFailure, DHCP_ATTEMPTS, Event, InvalidTransition, PiState, next};

/// The board being simulated; it decides the DHCP options, the TFTP options and the
/// file sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiModel {
    /// Pi 3 Model B: constant GUID, never sends REQUEST, 512-byte TFTP without options.
    Pi3B,
    /// Pi 3 Model B+: GUID carries the serial; the second stage does REQUEST/ACK.
    Pi3BPlus,
    /// Pi 4 Model B, EEPROM bootloader: REQUEST/ACK, `tsize`/`blksize 1024`, start4.elf.
    Pi4,
    /// Pi 5, EEPROM bootloader with the firmware built in: REQUEST/ACK, `tsize`/`blksize
    /// 1468`, no `start*.elf`: config.txt, the bcm2712 device tree, `kernel_2712.img` (or
    /// `kernel8.img`), then any initramfs.
    Pi5,
}

impl PiModel {
    /// The device tree the firmware loads for this board.
    pub fn dtb(self) -> &'static str {
        match self {
            PiModel::Pi3B => "bcm2710-rpi-3-b.dtb",
            PiModel::Pi3BPlus => "bcm2710-rpi-3-b-plus.dtb",
            PiModel::Pi4 => "bcm2711-rpi-4-b.dtb",
            PiModel::Pi5 => "bcm2712-rpi-5-b.dtb",
        }
    }

    /// The EEPROM bootloaders (Pi 4 and 5): REQUEST/ACK, siaddr honoured, TFTP options.
    pub fn has_eeprom(self) -> bool {
        matches!(self, PiModel::Pi4 | PiModel::Pi5)
    }

    /// The board revision code the EEPROM bootloader puts in option 97 (the examples of
    /// raspberrypi/documentation eeprom-bootloader.adoc: a 4 GB Pi 4B and a 4 GB Pi 5).
    pub fn board_revision(self) -> Option<u32> {
        match self {
            PiModel::Pi4 => Some(0x00c0_3111),
            PiModel::Pi5 => Some(0x00d0_4170),
            PiModel::Pi3B | PiModel::Pi3BPlus => None,
        }
    }

    /// The first three octets of the board's MAC address.
    pub fn oui(self) -> [u8; 3] {
        match self {
            PiModel::Pi3B | PiModel::Pi3BPlus => [0xb8, 0x27, 0xeb],
            PiModel::Pi4 => [0xdc, 0xa6, 0x32],
            // d8:3a:dd, Raspberry Pi Trading, as a Pi 5's DHCP capture shows it.
            PiModel::Pi5 => [0xd8, 0x3a, 0xdd],
        }
    }
}

/// A board serial number; its TFTP directory is 8 lowercase hex digits.
///
/// Deliberately not `bramble_netboot::hw::PiSerial` (the product's one serial type): the
/// simulator is the test rig for that server and shares no code with it, so a bug in
/// the server's serial handling cannot hide in the simulator too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serial(pub u32);

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A MAC address, printed as `b8:27:eb:..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// OUI of the model plus the low 24 bits of the serial, as the firmware derives it.
    pub fn for_board(model: PiModel, serial: Serial) -> Mac {
        let [o1, o2, o3] = model.oui();
        let [_, s1, s2, s3] = serial.0.to_be_bytes();
        Mac([o1, o2, o3, s1, s2, s3])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// What a simulated Pi is and what it expects to find in its root.
#[derive(Debug, Clone)]
pub struct PiSimConfig {
    pub model: PiModel,
    pub serial: Serial,
    /// The Pi's network namespace (`/var/run/netns/<netns>`), created by the caller.
    pub netns: String,
    /// The Pi's interface inside `netns`.
    pub interface: String,
    /// Time between DISCOVERs (and the wait for each reply); the real ROM uses 5 s.
    pub dhcp_interval: Duration,
    /// Wait for each TFTP packet before retransmitting.
    pub tftp_timeout: Duration,
    /// Retransmissions of one TFTP packet before the transfer fails.
    pub tftp_retries: u32,
    /// Longest the NFS check may take.
    pub nfs_timeout: Duration,
    /// What `etc/hostname` in the root must say (trailing newline ignored).
    pub expected_hostname: String,
    /// A line `root/.ssh/authorized_keys` in the root must contain.
    pub expected_key: String,
}

impl PiSimConfig {
    /// A configuration with the real firmware's timings and `eth0` as the interface.
    /// DHCP retries: 5 s for the Pi 3 ROM (DESIGN.md); the Pi 5 bootloader's
    /// `DHCP_REQ_TIMEOUT` default of 4 s (raspberrypi/documentation
    /// eeprom-bootloader.adoc); the Pi 4 keeps the 5 s it was first simulated with.
    pub fn new(model: PiModel, serial: Serial, netns: &str) -> Self {
        let dhcp_interval = match model {
            PiModel::Pi5 => Duration::from_secs(4),
            _ => Duration::from_secs(5),
        };
        PiSimConfig {
            model,
            serial,
            netns: netns.to_string(),
            interface: "eth0".to_string(),
            dhcp_interval,
            tftp_timeout: Duration::from_secs(1),
            tftp_retries: 4,
            nfs_timeout: Duration::from_secs(20),
            expected_hostname: String::new(),
            expected_key: String::new(),
        }
    }

    pub fn mac(&self) -> Mac {
        Mac::for_board(self.model, self.serial)
    }
}

/// Errors of the simulator's own control surface (not boot failures, which are states).
#[derive(Debug, thiserror::Error)]
pub enum PiSimError {
    #[error("could not change the link of {interface} in netns {netns}")]
    Link {
        netns: String,
        interface: String,
        #[source]
        source: crate::CmdError,
    },
}
