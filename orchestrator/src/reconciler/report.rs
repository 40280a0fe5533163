//! What one reconciliation pass found and did, per switch, and the error of a pass that
//! could not start.

use bramble_switch::Drift;
use serde::Serialize;

use crate::db::DbError;
use crate::ids::{PiId, SwitchId};
use crate::model::{PowerState, Switch};

/// A pass that could not run at all. Failures on one switch are not errors of the
/// pass: they are in that switch's [`SwitchReport::errors`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read the inventory's {what}")]
    Inventory {
        what: &'static str,
        #[source]
        source: DbError,
    },
}

/// One pass over every switch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub switches: Vec<SwitchReport>,
}

impl ReconcileReport {
    /// The report of a switch, by id or name.
    pub fn switch(&self, id_or_name: &str) -> Option<&SwitchReport> {
        self.switches.iter().find(|s| s.switch.as_str() == id_or_name || s.name == id_or_name)
    }

    /// Total drift items found over all switches.
    pub fn drift_found(&self) -> usize {
        self.switches.iter().map(|s| s.drift.len()).sum()
    }

    /// Switches that could not be read.
    pub fn unreachable(&self) -> usize {
        self.switches.iter().filter(|s| !s.reachable).count()
    }
}

/// A Pi whose recorded power was corrected from the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PowerObserved {
    pub pi: PiId,
    pub port: u16,
    pub from: PowerState,
    pub to: PowerState,
}

/// What a pass found and did on one switch.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    pub switch: SwitchId,
    pub name: String,
    /// The switch answered the read.
    pub reachable: bool,
    /// VLAN, membership, PVID and edge-port drift found.
    pub drift: Vec<Drift>,
    /// The drift was repaired and the repair verified by reading back.
    pub repaired: bool,
    /// Drift was left alone because a rack-shelf job may be configuring the switch.
    pub repair_deferred: bool,
    /// Ports whose slot was flagged for drawing no power.
    pub flagged: Vec<u16>,
    /// Ports whose no-power-draw flag was cleared.
    pub unflagged: Vec<u16>,
    pub power_observed: Vec<PowerObserved>,
    /// What went wrong, each with its cause chain.
    pub errors: Vec<String>,
}

impl SwitchReport {
    pub fn new(sw: &Switch) -> Self {
        SwitchReport {
            switch: sw.id.clone(),
            name: sw.name.clone(),
            reachable: false,
            drift: Vec::new(),
            repaired: false,
            repair_deferred: false,
            flagged: Vec::new(),
            unflagged: Vec::new(),
            power_observed: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Records `what` failed because of `error` (with its whole cause chain).
    pub fn error(&mut self, what: &str, error: &dyn std::error::Error) {
        self.errors.push(format!("{what}: {}", bramble_report::chain(error)));
    }
}
