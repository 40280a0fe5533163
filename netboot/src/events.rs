//! Boot-timeline events: what the DHCP and TFTP servers saw a client do.
//!
//! The servers report, the orchestrator stores (as rows of the Pi's timeline). Reporting
//! never blocks a reply: sinks must queue, not write synchronously.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use serde::Serialize;

use crate::dhcp::PiModel;
use crate::hw::PiSerial;

/// One step of a client's boot, as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum BootStage {
    /// `model`: what the boot ROM's MAC and option 97 say it is.
    DhcpDiscover {
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<PiModel>,
    },
    /// `options`: the option codes the OFFER carried; `next_server`: its siaddr (what a
    /// boot ROM judges an offer by, for the boot diagnosis).
    DhcpOffer {
        yiaddr: Ipv4Addr,
        options: Vec<u8>,
        next_server: Option<Ipv4Addr>,
    },
    DhcpRequest,
    DhcpAck {
        yiaddr: Ipv4Addr,
    },
    DhcpNak {
        reason: String,
    },
    DhcpInform,
    DhcpRelease,
    DhcpDecline,
    /// A read request that was accepted; `file` is the path as the client asked for it.
    TftpRead {
        file: String,
    },
    /// The whole file was transferred.
    TftpComplete {
        file: String,
        bytes: u64,
    },
    /// The client stopped the transfer itself (error 0 after reading the size): normal.
    TftpEarlyTerminate {
        file: String,
    },
    /// The request was refused or the transfer failed.
    TftpError {
        file: String,
        reason: String,
    },
}

impl BootStage {
    /// A short stable name (`dhcp_offer`, `tftp_read`, ...), for metrics and filters.
    pub fn name(&self) -> &'static str {
        match self {
            BootStage::DhcpDiscover { .. } => "dhcp_discover",
            BootStage::DhcpOffer { .. } => "dhcp_offer",
            BootStage::DhcpRequest => "dhcp_request",
            BootStage::DhcpAck { .. } => "dhcp_ack",
            BootStage::DhcpNak { .. } => "dhcp_nak",
            BootStage::DhcpInform => "dhcp_inform",
            BootStage::DhcpRelease => "dhcp_release",
            BootStage::DhcpDecline => "dhcp_decline",
            BootStage::TftpRead { .. } => "tftp_read",
            BootStage::TftpComplete { .. } => "tftp_complete",
            BootStage::TftpEarlyTerminate { .. } => "tftp_early_terminate",
            BootStage::TftpError { .. } => "tftp_error",
        }
    }
}

/// Who the event is about. DHCP knows the interface and MAC (and maybe the serial);
/// TFTP knows the source address. The orchestrator maps either to a Pi.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientRef {
    /// The controller interface the packet arrived on, when known.
    pub interface: Option<String>,
    /// The client's hardware address as `aa:bb:cc:dd:ee:ff`, when known.
    pub mac: Option<String>,
    /// The Pi serial, when the packet carried it (serialized as 8 lowercase hex digits).
    pub serial: Option<PiSerial>,
    /// The client's IP address, when it had one.
    pub addr: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootEvent {
    pub at: SystemTime,
    pub client: ClientRef,
    pub stage: BootStage,
}

/// Where the servers report events. Implementations must return quickly (queue the
/// event); they must never make a reply wait on storage.
pub trait BootEventSink: Send + Sync + 'static {
    fn record(&self, event: BootEvent);
}

/// A sink that keeps events in memory, for tests and for the lab.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: std::sync::Mutex<Vec<BootEvent>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<BootEvent> {
        self.events.lock().expect("sink lock").clone()
    }
}

impl BootEventSink for MemorySink {
    fn record(&self, event: BootEvent) {
        self.events.lock().expect("sink lock").push(event);
    }
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct NullSink;

impl BootEventSink for NullSink {
    fn record(&self, _event: BootEvent) {}
}
