//! The [`SwitchDriver`] trait: everything the orchestrator asks of a PoE switch.
//! Most operations are expressed as a [`DesiredConfig`] handed to [`SwitchDriver::apply`],
//! so every change goes through one read-modify-write-verify path.

use crate::error::SwitchError;
use crate::model::{
    AccessPort, DesiredConfig, Drift, PortNo, PortPower, ShelfPlan, SwitchSnapshot, VlanId,
};
use async_trait::async_trait;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// sysObjectID and sysDescr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchIdentity {
    pub sys_object_id: String,
    pub sys_descr: String,
}

/// One learned MAC address (dot1qTpFdbTable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MacEntry {
    pub fdb_id: u32,
    pub mac: [u8; 6],
    pub port: PortNo,
}

/// What a successful, verified [`SwitchDriver::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub varbinds: usize,
    pub messages: usize,
    /// True when the read-back showed no remaining drift.
    pub verified: bool,
}

/// A PoE switch as the orchestrator sees it.
#[async_trait]
pub trait SwitchDriver: Send + Sync {
    /// The switch's management address.
    fn switch(&self) -> SocketAddr;
    /// sysObjectID and sysDescr.
    async fn identify(&self) -> Result<SwitchIdentity, SwitchError>;
    /// Reads VLANs, PVIDs, PoE and the port map.
    async fn snapshot(&self) -> Result<SwitchSnapshot, SwitchError>;
    /// Reads the part of the switch's configuration that applying `desired` touches (a
    /// driver may skip tables `desired` does not mention). [`SwitchDriver::apply`] calls
    /// it before and after writing.
    async fn read_for(&self, desired: &DesiredConfig) -> Result<SwitchSnapshot, SwitchError>;
    /// Checks that this switch can take `desired`, plans the SETs that bring `current`
    /// to it and sends them; no read-back. Returns what was sent (`verified` false).
    /// Callers use [`SwitchDriver::apply`], which verifies.
    async fn write(
        &self,
        current: &SwitchSnapshot,
        desired: &DesiredConfig,
    ) -> Result<ApplyReport, SwitchError>;
    /// Admin state, detection status and draw of one port.
    async fn port_power(&self, port: PortNo) -> Result<PortPower, SwitchError>;
    /// The learned MAC table.
    async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError>;

    /// The PSE's budget and consumption (pethMainPseTable). Drivers that cannot read
    /// it answer a configuration error.
    async fn poe_budget(&self) -> Result<crate::budget::PoeBudget, SwitchError> {
        Err(SwitchError::Config {
            switch: self.switch(),
            detail: "this driver cannot read the PoE budget".into(),
        })
    }

    /// Brings the switch to `desired` with batched SETs and verifies by reading back:
    /// returns `Ok` only if the read-back shows no drift from `desired`.
    async fn apply(&self, desired: &DesiredConfig) -> Result<ApplyReport, SwitchError> {
        let current = self.read_for(desired).await?;
        let mut report = self.write(&current, desired).await?;
        let remaining = crate::model::drift(desired, &self.read_for(desired).await?);
        if let Some(first) = remaining.first() {
            return Err(SwitchError::VerifyFailed {
                switch: self.switch(),
                operation: "apply",
                mismatches: remaining.len(),
                first: first.to_string(),
            });
        }
        report.verified = true;
        tracing::info!(switch = %self.switch(), varbinds = report.varbinds, messages = report.messages, "switch configuration applied and verified");
        Ok(report)
    }

    /// Turns PoE on or off on one port.
    async fn set_port_power(&self, port: PortNo, on: bool) -> Result<ApplyReport, SwitchError> {
        self.set_ports_power(&[(port, on)]).await
    }

    /// Turns PoE on or off on many ports in as few SETs as the limits allow.
    async fn set_ports_power(&self, ports: &[(PortNo, bool)]) -> Result<ApplyReport, SwitchError> {
        let desired = DesiredConfig { poe: ports.iter().copied().collect(), ..Default::default() };
        self.apply(&desired).await
    }

    /// Power off, wait `off_time`, power on.
    async fn power_cycle(&self, ports: &[PortNo], off_time: Duration) -> Result<(), SwitchError> {
        let off: Vec<_> = ports.iter().map(|p| (*p, false)).collect();
        self.set_ports_power(&off).await?;
        tokio::time::sleep(off_time).await;
        let on: Vec<_> = ports.iter().map(|p| (*p, true)).collect();
        self.set_ports_power(&on).await.map(|_| ())
    }

    /// Makes `port` untagged in `storage` (also its PVID) and tagged in `public`.
    async fn configure_pi_port(
        &self,
        port: PortNo,
        storage: VlanId,
        public: VlanId,
    ) -> Result<ApplyReport, SwitchError> {
        let mut desired = DesiredConfig::default();
        let tagged = [public].into_iter().collect();
        desired.access_ports.insert(port, AccessPort { untagged: storage, tagged });
        self.apply(&desired).await
    }

    /// Tags `vlans` on the trunk port.
    async fn add_trunk_vlans(
        &self,
        trunk: PortNo,
        vlans: &[VlanId],
    ) -> Result<ApplyReport, SwitchError> {
        let mut desired = DesiredConfig::default();
        desired.trunk_tagged.insert(trunk, vlans.iter().copied().collect());
        self.apply(&desired).await
    }

    /// Removes `vlans` from the trunk port.
    async fn remove_trunk_vlans(
        &self,
        trunk: PortNo,
        vlans: &[VlanId],
    ) -> Result<ApplyReport, SwitchError> {
        let mut desired = DesiredConfig::default();
        desired.trunk_removed.insert(trunk, vlans.iter().copied().collect());
        self.apply(&desired).await
    }

    /// Creates (or renames) a VLAN.
    async fn create_vlan(&self, vlan: VlanId, name: &str) -> Result<ApplyReport, SwitchError> {
        let mut desired = DesiredConfig::default();
        desired.vlans.insert(vlan, name.to_string());
        self.apply(&desired).await
    }

    /// Destroys a VLAN.
    async fn destroy_vlan(&self, vlan: VlanId) -> Result<ApplyReport, SwitchError> {
        let desired =
            DesiredConfig { absent_vlans: [vlan].into_iter().collect(), ..Default::default() };
        self.apply(&desired).await
    }

    /// Configures a whole shelf (all Pi ports and the trunk) in one batched apply.
    async fn configure_shelf(&self, shelf: &ShelfPlan) -> Result<ApplyReport, SwitchError> {
        self.apply(&shelf.desired()).await
    }

    /// What differs between the switch and `desired`.
    async fn drift(&self, desired: &DesiredConfig) -> Result<Vec<Drift>, SwitchError> {
        Ok(crate::model::drift(desired, &self.snapshot().await?))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::model::apply_desired;

    /// A switch in memory whose writes can lose the PoE part, as a switch that answers a
    /// SET with success and does not act on it.
    struct MemorySwitch {
        state: Mutex<SwitchSnapshot>,
        drops_poe: bool,
    }

    #[async_trait]
    impl SwitchDriver for MemorySwitch {
        fn switch(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 161))
        }
        async fn identify(&self) -> Result<SwitchIdentity, SwitchError> {
            unimplemented!("not used by apply")
        }
        async fn snapshot(&self) -> Result<SwitchSnapshot, SwitchError> {
            Ok(self.state.lock().unwrap().clone())
        }
        async fn read_for(&self, _: &DesiredConfig) -> Result<SwitchSnapshot, SwitchError> {
            self.snapshot().await
        }
        async fn write(
            &self,
            current: &SwitchSnapshot,
            desired: &DesiredConfig,
        ) -> Result<ApplyReport, SwitchError> {
            let mut written = desired.clone();
            if self.drops_poe {
                written.poe.clear();
            }
            *self.state.lock().unwrap() = apply_desired(current, &written);
            Ok(ApplyReport { varbinds: desired.poe.len(), messages: 1, verified: false })
        }
        async fn port_power(&self, _: PortNo) -> Result<PortPower, SwitchError> {
            unimplemented!("not used by apply")
        }
        async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError> {
            unimplemented!("not used by apply")
        }
    }

    #[tokio::test]
    async fn apply_verifies_what_write_did() {
        for drops_poe in [false, true] {
            let sw = MemorySwitch { state: Mutex::default(), drops_poe };
            let result = sw.set_ports_power(&[(PortNo(3), true), (PortNo(4), true)]).await;
            match (drops_poe, result) {
                (false, Ok(report)) => {
                    assert_eq!(report, ApplyReport { varbinds: 2, messages: 1, verified: true })
                }
                (true, Err(SwitchError::VerifyFailed { mismatches, .. })) => {
                    assert_eq!(mismatches, 2)
                }
                (drops_poe, other) => panic!("drops_poe {drops_poe}: {other:?}"),
            }
        }
    }
}
