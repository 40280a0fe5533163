//! The inventory's domain types, as the API shows them.
//!
//! These are what handlers return and what the database layer produces; the CLI and the
//! lab read the API's answers back into them. Secrets never
//! appear here: switch credentials and token hashes have their own types in `db`.

use bramble_netboot::hw::PiSerial;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, JobId, PiId, ShelfId, SlotId, SwitchId};
use crate::jobs::model::{JobKind, JobState};
use crate::lifecycle::PiState;

/// Whether a Pi's port delivers power, as last read from or set on the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> PowerState {
        match s {
            "on" => PowerState::On,
            "off" => PowerState::Off,
            _ => PowerState::Unknown,
        }
    }
}

/// A Raspberry Pi.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pi {
    pub id: PiId,
    /// Board serial, 8 lowercase hex digits, once seen.
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{8}$")]
    pub serial: Option<PiSerial>,
    pub mac: Option<String>,
    /// `3b`, `3b+`, `4b`, `5`, or `unknown`.
    pub model: String,
    pub slot: Option<SlotId>,
    pub shelf: Option<String>,
    pub port: Option<u16>,
    pub owner: Option<CustomerId>,
    pub image: Option<String>,
    pub state: PiState,
    /// The job step that failed, when `state` is `failed`.
    pub failed_step: Option<String>,
    pub power: PowerState,
    pub storage_ip: Option<String>,
    pub public_ipv6: Option<String>,
    /// The SSH host keys of the Pi's live root, as written when it was last reinstalled:
    /// compare them with what `ssh` shows on the first connection. Empty for a Pi never
    /// reinstalled. A reinstall that fails before its new system is in place keeps the
    /// old system and these keys.
    pub ssh_host_keys: Vec<SshHostKey>,
    /// Set while an operator has the Pi in maintenance (`POST /v1/pis/{id}/maintenance`).
    #[serde(default)]
    pub maintenance: Option<crate::hardware::Maintenance>,
    /// A sighting in the Pi's slot waiting for an operator (`GET /v1/pis/{id}`, operators
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_sighting: Option<crate::hardware::HardwareSighting>,
    /// The Pi's accepted board replacements, oldest first (`GET /v1/pis/{id}` only; a
    /// customer sees those made while the Pi was theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_history: Option<Vec<crate::hardware::HardwareChange>>,
    /// The Pi's last boot attempt, as the job that waited for it diagnosed it: how far it
    /// got and why it stopped (see docs/diagnosis.md). `null` until a job has waited for
    /// a boot; for a customer, only boots of their own and without the operator's details.
    #[serde(default)]
    pub last_boot: Option<crate::diagnosis::LastBoot>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One SSH host key of a Pi: its type and its fingerprint, exactly as
/// `ssh-keygen -l -E sha256` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshHostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...
    #[serde(rename = "type")]
    #[schema(example = "ssh-ed25519")]
    pub key_type: String,
    /// `SHA256:` and the unpadded base64 of the key's SHA-256.
    #[schema(example = "SHA256:Ai4nCJskByMP9126JkWnSdTYQ3Xd3zdHts0y1E1dZSs")]
    pub fingerprint: String,
}

impl From<bramble_images::KeyFingerprint> for SshHostKey {
    fn from(k: bramble_images::KeyFingerprint) -> Self {
        SshHostKey { key_type: k.key_type, fingerprint: k.fingerprint }
    }
}

/// A job: a power action, reboot, reimage or shelf racking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub pi: Option<PiId>,
    pub shelf: Option<ShelfId>,
    pub state: JobState,
    /// All steps of the job in order.
    pub steps: Vec<String>,
    /// The step being run (or the one that failed); `null` when queued or done.
    pub current_step: Option<String>,
    pub progress_percent: u8,
    pub attempts: i64,
    /// Whether this controller build can run jobs of this kind yet. A job that is not
    /// executable stays queued until a controller that can run it picks it up.
    pub executable: bool,
    /// For operators: what went wrong, in detail (the last attempt's error; `null` for
    /// customers).
    pub last_error: Option<String>,
    /// For customers: what went wrong, in words for a control panel.
    pub customer_message: Option<String>,
    /// For operators, when the job failed: why, with the details (a boot's diagnosis
    /// names the stage, the port's PoE, the files and console lines). The final
    /// `last_error`; `null` otherwise, and always for customers.
    #[serde(default)]
    pub operator_message: Option<String>,
    pub params: serde_json::Value,
    pub requested_by: String,
    /// The controller that must run the job: the one serving its Pi's or shelf's switch
    /// (`null`: any controller).
    pub controller: Option<String>,
    /// The controller that last ran (claimed) the job; kept after it ends.
    pub runner: Option<String>,
    /// Why a job that should be running is not: `controller NAME, last seen TIME` while
    /// its controller is down. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// One entry in the append-only audit log and boot timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub pi: Option<PiId>,
    pub job: Option<JobId>,
    pub customer: Option<CustomerId>,
    /// Who caused it: a token id, `controller`, `dhcp`, `tftp`, ...
    pub actor: String,
    /// A stable name: `job.created`, `dhcp.offer`, `tftp.read`, `pi.replaced`, ...
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}

/// A managed PoE switch. Its credentials are write-only and never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Switch {
    pub id: SwitchId,
    pub name: String,
    /// `host:port` of its SNMP agent.
    pub address: String,
    /// `auto` (by sysObjectID), `standard` or `cisco`.
    pub driver: String,
    pub trunk_port: u16,
    /// `v2c` or `v3`: which kind of credentials are stored, never the secrets.
    pub snmp_version: String,
    /// SNMPv3 only: the authentication and privacy protocols as net-snmp names them,
    /// `AUTH/PRIV` (e.g. `SHA/AES`); never a secret. `null` for v2c.
    pub snmp_protocols: Option<String>,
    /// The controller that serves the switch: its shelves' DHCP, TFTP, roots and jobs.
    /// `null` only for a switch registered before clusters existed, until a controller
    /// starts and adopts it.
    pub controller: Option<String>,
    /// The layer-2 domain (a controller trunk and the switches behind it) whose storage
    /// VLAN ids the switch's slots share: unique within it, reused across domains.
    pub l2_domain: String,
    pub created_at: i64,
}

/// A shelf of Pis: a switch and a range of its ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shelf {
    pub id: ShelfId,
    pub name: String,
    pub switch: SwitchId,
    pub first_port: u16,
    pub last_port: u16,
    pub slots: Vec<Slot>,
    pub created_at: i64,
}

/// One switch port of a shelf with its storage VLAN and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    pub id: SlotId,
    pub port: u16,
    pub vlan: u16,
    /// The slot's /30, e.g. `10.46.189.0/30`.
    pub storage_net: String,
    pub controller_ip: String,
    pub pi_ip: String,
    pub public_ipv6: String,
    pub pi: Option<PiId>,
}

/// An OS image customers can choose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    pub name: String,
    pub release: String,
    pub arch: String,
    pub version: Option<String>,
    /// `available` (built and ready to deploy) or `recipe` (known, not built here yet).
    pub status: String,
    pub size_bytes: Option<i64>,
    /// The Pi models it boots (`3b`, `3b+`, `4b`, `5`); a reinstall onto another model is
    /// refused. Empty only for an image recorded before images said so (not checked).
    #[serde(default)]
    pub models: Vec<String>,
}

/// An API token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Token {
    pub id: crate::ids::TokenId,
    pub role: crate::auth::Role,
    pub customer: Option<CustomerId>,
    pub label: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}
