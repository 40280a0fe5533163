//! The simulated Pi's boot state machine: states, the events the boot driver reports, and
//! the pure transition function that decides what an event does to a state.

use std::fmt;
use std::net::Ipv4Addr;

/// How many DISCOVERs the boot ROM sends before it gives up until power-cycled.
pub const DHCP_ATTEMPTS: u8 = 5;

/// Where a simulated Pi is in its boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PiState {
    /// No power: link down, nothing running.
    Off,
    /// Sending DISCOVER number `attempt` (1-based) and waiting for a usable reply.
    DhcpDiscovering { attempt: u8 },
    /// Fetching (or probing) `file` over TFTP, path as requested from the server.
    Tftp { file: String },
    /// Firmware and kernel loaded; checking the NFS root named by cmdline.txt.
    Nfs,
    /// The root holds the expected hostname and SSH key.
    Booted,
    /// The kernel the firmware read runs (a QEMU Pi's virtual machine); it leaves only
    /// by a power cut or by the machine stopping on its own (`Failed`).
    Running,
    /// The boot ROM got no usable DHCP reply in its budget; only a power cycle helps.
    GaveUp,
    /// Boot stopped for the given reason; only a power cycle helps.
    Failed(BootFailure),
}

/// Short labels for tables: `off`, `dhcp 2/5`, `tftp <file>`, `nfs`, `booted`,
/// `running`, `gave up`, `failed: <reason>`.
impl fmt::Display for PiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PiState::Off => write!(f, "off"),
            PiState::DhcpDiscovering { attempt } => write!(f, "dhcp {attempt}/{DHCP_ATTEMPTS}"),
            PiState::Tftp { file } => write!(f, "tftp {file}"),
            PiState::Nfs => write!(f, "nfs"),
            PiState::Booted => write!(f, "booted"),
            PiState::Running => write!(f, "running"),
            PiState::GaveUp => write!(f, "gave up"),
            PiState::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// Why a boot stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFailure {
    /// No usable OFFER/ACK in the DHCP budget of a stage.
    NoDhcpOffer,
    /// A required file could not be fetched.
    TftpFailed { file: String, reason: String },
    /// cmdline.txt did not say where the root is, or said it wrongly.
    BadCmdline { reason: String },
    /// The NFS server did not serve the root (mount or read failed).
    NfsUnreachable { server: Ipv4Addr, path: String, detail: String },
    /// The root was served but is not the one this Pi expects.
    WrongRoot { path: String, problem: String },
    /// The simulator could not do its own I/O (socket, `ip` command, starting QEMU).
    SimIo { detail: String },
    /// The virtual machine running the kernel stopped by itself (a panic, or a reboot
    /// under `-no-reboot`).
    VmExited { status: String },
}

impl fmt::Display for BootFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootFailure::NoDhcpOffer => write!(f, "no usable DHCP reply"),
            BootFailure::TftpFailed { file, reason } => {
                write!(f, "TFTP of {file} failed: {reason}")
            }
            BootFailure::BadCmdline { reason } => write!(f, "bad cmdline.txt: {reason}"),
            BootFailure::NfsUnreachable { server, path, detail } => {
                write!(f, "NFS root {server}:{path} unreachable: {detail}")
            }
            BootFailure::WrongRoot { path, problem } => write!(f, "wrong root {path}: {problem}"),
            BootFailure::SimIo { detail } => write!(f, "simulator I/O: {detail}"),
            BootFailure::VmExited { status } => write!(f, "the VM stopped by itself ({status})"),
        }
    }
}

/// What the boot driver reports; each one is also a timeline entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PowerOn,
    PowerOff,
    /// A DISCOVER went out (attempt is 1-based within the current DHCP stage).
    DhcpDiscover {
        attempt: u8,
    },
    /// A reply was seen but not usable (wrong xid, no option 43, ...).
    DhcpIgnored {
        reason: String,
    },
    /// A REQUEST went out for `addr`.
    DhcpRequest {
        addr: Ipv4Addr,
    },
    /// The stage has an address and a TFTP server.
    DhcpBound {
        addr: Ipv4Addr,
        tftp_server: Ipv4Addr,
    },
    /// An RRQ went out for `file`.
    TftpRequest {
        file: String,
    },
    /// `file` was read completely with `blksize`-byte blocks.
    TftpFetched {
        file: String,
        bytes: u64,
        blksize: u16,
    },
    /// The size of `file` was read from the OACK and the transfer ended with error 0.
    TftpProbed {
        file: String,
        size: Option<u64>,
    },
    /// The server said `file` does not exist (tolerated for optional files).
    TftpMissing {
        file: String,
    },
    /// The address the kernel would configure from `ip=` (or the DHCP one).
    AddressConfigured {
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    /// The NFS root check started.
    NfsCheck {
        server: Ipv4Addr,
        path: String,
    },
    /// The firmware's files are loaded and the kernel runs in a VM (process `pid`).
    KernelStarted {
        pid: u32,
    },
    /// DHCP budget of the boot ROM exhausted.
    DhcpExhausted,
    Booted,
    Failed(BootFailure),
}

/// An event that does not fit the current state: a bug in the driver, never input-driven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} is not valid in state {state:?}")]
pub struct InvalidTransition {
    pub state: PiState,
    pub event: Event,
}

impl PiState {
    /// Terminal until power-cycled.
    pub fn is_terminal(&self) -> bool {
        matches!(self, PiState::Booted | PiState::GaveUp | PiState::Failed(_))
    }

    /// Between power-on and a terminal state: a failure may still happen.
    fn is_booting(&self) -> bool {
        matches!(
            self,
            PiState::DhcpDiscovering { .. }
                | PiState::Tftp { .. }
                | PiState::Nfs
                | PiState::Running
        )
    }
}

/// The transition function: the state after `event` in `state`, or why it is not allowed.
pub fn next(state: &PiState, event: &Event) -> Result<PiState, InvalidTransition> {
    use PiState as S;
    let invalid = || InvalidTransition { state: state.clone(), event: event.clone() };
    let next = match (state, event) {
        (_, Event::PowerOff) => S::Off,
        (S::Off, Event::PowerOn) => S::DhcpDiscovering { attempt: 0 },
        (S::DhcpDiscovering { attempt }, Event::DhcpDiscover { attempt: n })
            if *n == attempt + 1 && *n <= DHCP_ATTEMPTS =>
        {
            S::DhcpDiscovering { attempt: *n }
        }
        // The second-stage loader starts DHCP again from inside its TFTP stage.
        (S::Tftp { .. }, Event::DhcpDiscover { attempt: 1 }) => S::DhcpDiscovering { attempt: 1 },
        (S::DhcpDiscovering { attempt }, Event::DhcpExhausted) if *attempt == DHCP_ATTEMPTS => {
            S::GaveUp
        }
        (
            S::DhcpDiscovering { .. },
            Event::DhcpIgnored { .. } | Event::DhcpRequest { .. } | Event::DhcpBound { .. },
        ) => state.clone(),
        (S::DhcpDiscovering { .. } | S::Tftp { .. }, Event::TftpRequest { file }) => {
            S::Tftp { file: file.clone() }
        }
        (
            S::Tftp { file },
            Event::TftpFetched { file: f, .. }
            | Event::TftpProbed { file: f, .. }
            | Event::TftpMissing { file: f },
        ) if file == f => state.clone(),
        (S::Tftp { .. }, Event::AddressConfigured { .. }) => state.clone(),
        (S::Tftp { .. }, Event::NfsCheck { .. }) => S::Nfs,
        (S::Tftp { .. }, Event::KernelStarted { .. }) => S::Running,
        (S::Nfs, Event::Booted) => S::Booted,
        (s, Event::Failed(reason)) if s.is_booting() => S::Failed(reason.clone()),
        _ => return Err(invalid()),
    };
    Ok(next)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
