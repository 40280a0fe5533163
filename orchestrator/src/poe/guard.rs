//! The non-slot rule: Bramble changes PoE only on ports that are enrolled slots of the
//! switch. A trunk, an uplink, or any port outside every shelf is refused before any
//! SET, whatever asked (a job, racking, a future path): [`PoeGuard`] wraps every driver
//! [`crate::fabric::Fabric::with_driver`] hands out, and its `write` (which every
//! `apply`, `set_port_power`, `set_ports_power` and `power_cycle` goes through) checks
//! the PoE part of the request first.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bramble_switch::{
    ApplyReport, DesiredConfig, MacEntry, PoeBudget, PortNo, PortPower, SwitchDriver, SwitchError,
    SwitchIdentity, SwitchSnapshot,
};

use crate::db::Db;
use crate::model::Switch;

/// The ports of `desired`'s PoE part that are not slots: not in `slots`, or the trunk.
/// Pure.
pub fn not_slots(desired: &DesiredConfig, slots: &BTreeSet<u16>, trunk: u16) -> Vec<u16> {
    desired.poe.keys().map(|p| p.0).filter(|p| *p == trunk || !slots.contains(p)).collect()
}

/// A driver that refuses PoE changes on ports that are not the switch's enrolled slots.
pub struct PoeGuard {
    inner: Arc<dyn SwitchDriver>,
    db: Db,
    switch: Switch,
}

impl PoeGuard {
    pub fn wrap(inner: Arc<dyn SwitchDriver>, db: Db, switch: Switch) -> Arc<dyn SwitchDriver> {
        Arc::new(PoeGuard { inner, db, switch })
    }

    /// The switch's enrolled slots, from the inventory (read only for PoE requests).
    async fn slots(&self) -> Result<BTreeSet<u16>, SwitchError> {
        let shelves = self.db.list_shelves().await.map_err(|e| SwitchError::PowerRefused {
            switch: self.inner.switch(),
            ports: Vec::new(),
            reason: format!("the inventory's slots could not be read: {e}"),
        })?;
        Ok(shelves
            .iter()
            .filter(|s| s.switch == self.switch.id)
            .flat_map(|s| s.slots.iter().map(|slot| slot.port))
            .collect())
    }
}

#[async_trait]
impl SwitchDriver for PoeGuard {
    fn switch(&self) -> SocketAddr {
        self.inner.switch()
    }
    async fn identify(&self) -> Result<SwitchIdentity, SwitchError> {
        self.inner.identify().await
    }
    async fn snapshot(&self) -> Result<SwitchSnapshot, SwitchError> {
        self.inner.snapshot().await
    }
    async fn read_for(&self, desired: &DesiredConfig) -> Result<SwitchSnapshot, SwitchError> {
        self.inner.read_for(desired).await
    }
    async fn write(
        &self,
        current: &SwitchSnapshot,
        desired: &DesiredConfig,
    ) -> Result<ApplyReport, SwitchError> {
        if !desired.poe.is_empty() {
            let refused = not_slots(desired, &self.slots().await?, self.switch.trunk_port);
            if !refused.is_empty() {
                tracing::warn!(switch = %self.switch.name, ports = ?refused, "PoE change on ports that are not slots refused");
                return Err(SwitchError::PowerRefused {
                    switch: self.inner.switch(),
                    ports: refused,
                    reason: format!(
                        "not an enrolled slot of switch {} (trunk port {})",
                        self.switch.name, self.switch.trunk_port
                    ),
                });
            }
        }
        self.inner.write(current, desired).await
    }
    async fn port_power(&self, port: PortNo) -> Result<PortPower, SwitchError> {
        self.inner.port_power(port).await
    }
    async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError> {
        self.inner.mac_table().await
    }
    async fn poe_budget(&self) -> Result<PoeBudget, SwitchError> {
        self.inner.poe_budget().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_and_ports_outside_every_shelf_are_not_slots() {
        let d = DesiredConfig {
            poe: [(PortNo(1), true), (PortNo(5), false), (PortNo(9), true), (PortNo(3), true)]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let slots = [1, 2, 3, 9].into_iter().collect();
        assert_eq!(not_slots(&d, &slots, 9), [5, 9]);
        assert!(not_slots(&DesiredConfig::default(), &BTreeSet::new(), 9).is_empty());
    }
}
