//! A Pi's hardware as operators manage it: the maintenance mark, the sighting waiting for
//! an operator, and the history of board replacements, as the API shows them; and which
//! jobs a Pi in maintenance still runs ([`maintenance_allows`], pure).
//!
//! The rule deciding what a DHCP or TFTP sighting may change is
//! `netboot::sightings::decide`; the rows are in `db::hardware`.

use bramble_netboot::hw::PiSerial;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, PiId, SlotId};
use crate::jobs::model::JobKind;

/// An operator's maintenance mark on a Pi.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Maintenance {
    /// When it was marked, Unix milliseconds.
    pub since: i64,
    /// The token that marked it.
    pub by: String,
}

/// What was seen in a Pi's slot that Bramble did not apply: a different board, a packet
/// claiming to be one, or another Pi's MAC or serial. Accept it (`POST
/// /v1/pis/{id}/hardware/accept`) to make it the Pi's hardware, or dismiss it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HardwareSighting {
    /// Changes whenever what was seen changes; an accept names it.
    pub id: String,
    pub slot: Option<SlotId>,
    /// `dhcp` or `tftp` (a serial directory in a TFTP path).
    pub source: String,
    /// `differs` (another board, or a packet claiming one), `adds` (something the record
    /// lacks), `mac_taken` or `serial_taken` (another Pi's, named in `other_pi`).
    pub reason: String,
    pub other_pi: Option<PiId>,
    pub mac: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{8}$")]
    pub serial: Option<PiSerial>,
    pub model: Option<String>,
    pub first_at: i64,
    pub last_at: i64,
    /// How many sightings (of anything not applied) since `first_at`.
    pub count: i64,
}

/// One accepted board replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HardwareChange {
    pub at: i64,
    pub slot: Option<SlotId>,
    /// The Pi's owner then.
    pub customer: Option<CustomerId>,
    pub old_mac: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{8}$")]
    pub old_serial: Option<PiSerial>,
    pub old_model: String,
    pub new_mac: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{8}$")]
    pub new_serial: Option<PiSerial>,
    pub new_model: String,
    /// `maintenance` (seen while the Pi was in maintenance) or `operator` (a flagged
    /// sighting accepted).
    pub how: String,
    /// The operator token that accepted it, or `dhcp`/`tftp` in maintenance.
    pub accepted_by: String,
}

/// Whether a job of `kind` may be created for a Pi in maintenance: an operator may still
/// switch its power (to power the new board); nothing else runs, so no job fights the swap.
pub fn maintenance_allows(kind: JobKind, operator: bool) -> bool {
    operator && matches!(kind, JobKind::PowerOn | JobKind::PowerOff | JobKind::Reboot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_stops_every_job_but_an_operators_power() {
        for kind in JobKind::ALL {
            assert!(!maintenance_allows(kind, false), "customer {kind}");
            let power = matches!(kind, JobKind::PowerOn | JobKind::PowerOff | JobKind::Reboot);
            assert_eq!(maintenance_allows(kind, true), power, "operator {kind}");
        }
    }
}
