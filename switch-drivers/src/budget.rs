//! The PSE's power budget (POWER-ETHERNET-MIB pethMainPseTable, RFC 3621): what the
//! switch can deliver over PoE and what its ports draw now, group 1 (a non-modular
//! switch). Both objects are whole watts.

use async_snmp::Oid;
use serde::Serialize;

use crate::error::SwitchError;
use crate::oids;
use crate::session::Session;

/// pethMainPsePower.
const COL_MAIN_POWER: u32 = 2;
/// pethMainPseConsumptionPower.
const COL_MAIN_CONSUMPTION: u32 = 4;

/// A switch's PoE budget as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoeBudget {
    /// pethMainPsePower: what the PSE can deliver, in watts.
    pub power_w: u32,
    /// pethMainPseConsumptionPower: what its ports draw now, in watts.
    pub consumption_w: u32,
}

impl PoeBudget {
    /// What is left, in milliwatts (never negative).
    pub fn remaining_mw(&self) -> u64 {
        u64::from(self.power_w.saturating_sub(self.consumption_w)) * 1000
    }
}

/// Reads group 1 of pethMainPseTable.
pub async fn read_budget(session: &Session) -> Result<PoeBudget, SwitchError> {
    let col = |c: u32| oids::oid(oids::PETH_MAIN_PSE_ENTRY, &[c, 1]);
    let wanted: [Oid; 2] = [col(COL_MAIN_POWER), col(COL_MAIN_CONSUMPTION)];
    let vbs = session.get(&wanted).await?;
    let value = |i: usize| {
        vbs.get(i).and_then(|vb| vb.value.as_u32()).ok_or_else(|| SwitchError::BadValue {
            switch: session.addr(),
            oid: wanted[i].to_string(),
            detail: "expected a Gauge32 in watts".into(),
        })
    };
    Ok(PoeBudget { power_w: value(0)?, consumption_w: value(1)? })
}
