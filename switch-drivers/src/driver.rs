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
    /// Brings the switch to `desired` with batched SETs and verifies by reading back.
    /// Returns `Ok` only if the read-back shows no drift from `desired`.
    async fn apply(&self, desired: &DesiredConfig) -> Result<ApplyReport, SwitchError>;
    /// Admin state, detection status and draw of one port.
    async fn port_power(&self, port: PortNo) -> Result<PortPower, SwitchError>;
    /// The learned MAC table.
    async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError>;

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
