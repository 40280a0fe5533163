//! The Cisco-flavoured driver: access VLAN via vmVlan (CISCO-VLAN-MEMBERSHIP-MIB),
//! trunk VLANs via vlanTrunkPortVlansEnabled / vlanTrunkPortNativeVlan (CISCO-VTP-MIB),
//! PoE via cpeExtPsePortEnable (CISCO-POWER-ETHERNET-EXT-MIB), edge ports as portfast
//! via stpxFastStartPortMode (CISCO-STP-EXTENSIONS-MIB; see [`crate::stp`]).
//!
//! A Pi port is a trunk whose native VLAN is its storage VLAN (untagged) with the
//! public VLAN allowed (tagged); a port with only an untagged VLAN is an access port.
//! VLAN creation on Cisco goes through the VTP edit buffer (vtpVlanEditTable), which
//! this driver does not implement: create/destroy return a configuration error.

use crate::driver::{ApplyReport, MacEntry, SwitchDriver, SwitchIdentity};
use crate::error::SwitchError;
use crate::model::{
    self, DesiredConfig, DetectionStatus, PortNo, PortPower, SwitchSnapshot, VlanEntry,
};
use crate::oids;
use crate::plan::BatchLimits;
use crate::portlist;
use crate::session::Session;
use crate::standard::StandardDriver;
use crate::stp::{self, StpMib};
use async_snmp::{Oid, Value};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// cpeExtPsePortEnable values.
pub const CISCO_POE_AUTO: i32 = 1;
pub const CISCO_POE_DISABLE: i32 = 4;

/// How one port is wired on a Cisco switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiscoPort {
    pub native: u16,
    pub tagged: BTreeSet<u16>,
}

/// Per-port view of a snapshot: native (PVID) VLAN and tagged VLANs.
pub fn cisco_ports(snap: &SwitchSnapshot) -> BTreeMap<u16, CiscoPort> {
    let mut out = BTreeMap::new();
    for &p in snap.ports.keys() {
        let native = snap.pvid.get(&p).copied().unwrap_or(1);
        let tagged = snap
            .vlans
            .iter()
            .filter(|(v, e)| e.egress.contains(&p) && **v != native)
            .map(|(v, _)| *v)
            .collect();
        out.insert(p, CiscoPort { native, tagged });
    }
    out
}

/// Ordered Cisco varbinds from `current` to `target`. Pure.
pub fn cisco_plan(current: &SwitchSnapshot, target: &SwitchSnapshot) -> Vec<(Oid, Value)> {
    let (before, after) = (cisco_ports(current), cisco_ports(target));
    let mut out = Vec::new();
    for (p, want) in &after {
        if before.get(p) == Some(want) {
            continue;
        }
        let Some(&ifx) = target.ports.get(p) else {
            continue;
        };
        if want.tagged.is_empty() {
            out.push((
                oids::oid(oids::CISCO_VM_VLAN, &[ifx]),
                Value::Integer(i32::from(want.native)),
            ));
        } else {
            let mut allowed = want.tagged.clone();
            allowed.insert(want.native);
            let bitmap = Value::OctetString(Bytes::from(portlist::encode_vlan_bitmap(&allowed)));
            out.push((oids::oid(oids::CISCO_TRUNK_VLANS_ENABLED, &[ifx]), bitmap));
            out.push((
                oids::oid(oids::CISCO_TRUNK_NATIVE_VLAN, &[ifx]),
                Value::Integer(i32::from(want.native)),
            ));
        }
    }
    for (&p, want) in &target.poe {
        if current.poe.get(&p).map(|h| h.admin_enabled) != Some(want.admin_enabled) {
            let v = if want.admin_enabled { CISCO_POE_AUTO } else { CISCO_POE_DISABLE };
            out.push((
                oids::oid(oids::CISCO_PSE_PORT_ENABLE, &[1, u32::from(p)]),
                Value::Integer(v),
            ));
        }
    }
    out
}

/// Driver for Cisco switches (selected by a sysObjectID under 1.3.6.1.4.1.9).
#[derive(Debug)]
pub struct CiscoDriver {
    session: Session,
    limits: BatchLimits,
    /// Reads shared with the standard MIBs (identity, port map, PoE detection, FDB).
    standard: StandardDriver,
}

impl CiscoDriver {
    /// Wraps two sessions to the same switch (one for Cisco objects, one for standard reads).
    pub fn new(session: Session, standard: Session) -> Self {
        let limits = session.limits();
        Self { session, limits, standard: StandardDriver::new(standard) }
    }

    fn unsupported(&self, what: &str) -> SwitchError {
        SwitchError::Config {
            switch: self.session.addr(),
            detail: format!(
                "{what} needs the VTP edit buffer, not implemented by the Cisco driver"
            ),
        }
    }
}

#[async_trait]
impl SwitchDriver for CiscoDriver {
    fn switch(&self) -> SocketAddr {
        self.session.addr()
    }

    async fn identify(&self) -> Result<SwitchIdentity, SwitchError> {
        self.standard.identify().await
    }

    async fn snapshot(&self) -> Result<SwitchSnapshot, SwitchError> {
        let base = self.standard.snapshot().await?;
        let mut snap = SwitchSnapshot {
            ports: base.ports.clone(),
            poe: base.poe.clone(),
            ..Default::default()
        };
        let portfast = StpMib::CiscoPortfast;
        snap.edge = stp::read_edges(&self.session.walk(portfast.column()).await?, portfast);
        let by_ifx: BTreeMap<u32, u16> = base.ports.iter().map(|(p, i)| (*i, *p)).collect();
        for vb in self.session.walk(oids::CISCO_VTP_VLAN_NAME).await? {
            if let (Some(&v), Some(name)) = (vb.oid.arcs().last(), vb.value.as_str()) {
                let v = u16::try_from(v).unwrap_or(0);
                snap.vlans.insert(v, VlanEntry { name: name.to_string(), ..Default::default() });
            }
        }
        let port_of = |oid: &Oid| oid.arcs().last().and_then(|i| by_ifx.get(i)).copied();
        for vb in self.session.walk(oids::CISCO_VM_VLAN).await? {
            let (Some(p), Some(v)) =
                (port_of(&vb.oid), vb.value.as_i32().and_then(|v| u16::try_from(v).ok()))
            else {
                continue;
            };
            let e = snap.vlans.entry(v).or_default();
            e.egress.insert(p);
            e.untagged.insert(p);
            snap.pvid.insert(p, v);
        }
        for vb in self.session.walk(oids::CISCO_TRUNK_NATIVE_VLAN).await? {
            let (Some(p), Some(v)) =
                (port_of(&vb.oid), vb.value.as_i32().and_then(|v| u16::try_from(v).ok()))
            else {
                continue;
            };
            snap.pvid.insert(p, v);
        }
        for vb in self.session.walk(oids::CISCO_TRUNK_VLANS_ENABLED).await? {
            let (Some(p), Some(bits)) = (port_of(&vb.oid), vb.value.as_bytes()) else {
                continue;
            };
            let native = snap.pvid.get(&p).copied();
            for v in portlist::decode_vlan_bitmap(bits) {
                let e = snap.vlans.entry(v).or_default();
                e.egress.insert(p);
                if Some(v) == native {
                    e.untagged.insert(p);
                }
            }
        }
        Ok(snap)
    }

    async fn read_for(&self, _desired: &DesiredConfig) -> Result<SwitchSnapshot, SwitchError> {
        self.snapshot().await
    }

    async fn write(
        &self,
        current: &SwitchSnapshot,
        desired: &DesiredConfig,
    ) -> Result<ApplyReport, SwitchError> {
        if !desired.absent_vlans.is_empty() {
            return Err(self.unsupported("destroying VLANs"));
        }
        if let Some(v) = desired.vlans.keys().find(|v| !current.vlans.contains_key(&v.0)) {
            return Err(self.unsupported(&format!("creating VLAN {v}")));
        }
        let target = model::apply_desired(current, desired);
        let mut plan = crate::plan::edge_plan(current, &target, StpMib::CiscoPortfast);
        plan.extend(cisco_plan(current, &target));
        let mut report = ApplyReport { varbinds: plan.len(), ..Default::default() };
        if !plan.is_empty() {
            report.messages = self.session.set_plan(plan, self.limits).await?.messages;
        }
        Ok(report)
    }

    async fn port_power(&self, port: PortNo) -> Result<PortPower, SwitchError> {
        let oid = oids::oid(oids::CISCO_PSE_PORT_ENABLE, &[1, u32::from(port.0)]);
        let vbs =
            self.session.get(std::slice::from_ref(&oid)).await.map_err(|e| e.with_port(port.0))?;
        let enable = vbs.first().and_then(|vb| vb.value.as_i32());
        let std = self.standard.port_power(port).await.ok();
        Ok(PortPower {
            admin_enabled: enable.is_some_and(|v| v != CISCO_POE_DISABLE),
            detection: std.map(|s| s.detection).unwrap_or(DetectionStatus::OtherFault),
            draw_mw: std.and_then(|s| s.draw_mw),
        })
    }

    async fn poe_budget(&self) -> Result<crate::budget::PoeBudget, SwitchError> {
        self.standard.poe_budget().await
    }

    async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError> {
        self.standard.mac_table().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessPort, VlanId};

    fn base() -> SwitchSnapshot {
        let all: BTreeSet<u16> = (1..=3).collect();
        SwitchSnapshot {
            ports: (1..=3).map(|p| (p, 100 + u32::from(p))).collect(),
            vlans: [(1, VlanEntry { name: "default".into(), egress: all.clone(), untagged: all })]
                .into_iter()
                .collect(),
            pvid: (1..=3).map(|p| (p, 1)).collect(),
            poe: BTreeMap::new(),
            edge: BTreeMap::new(),
        }
    }

    #[test]
    fn pi_port_becomes_trunk_with_native_storage_vlan() {
        let mut d = DesiredConfig::default();
        d.access_ports.insert(
            PortNo(2),
            AccessPort { untagged: VlanId(10), tagged: [VlanId(131)].into_iter().collect() },
        );
        d.poe.insert(PortNo(2), false);
        let cur = base();
        let plan = cisco_plan(&cur, &model::apply_desired(&cur, &d));
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert_eq!(plan[0].0.to_string(), "1.3.6.1.4.1.9.9.46.1.6.1.1.4.102");
        let bits = plan[0].1.as_bytes().expect("bitmap");
        assert_eq!(portlist::decode_vlan_bitmap(bits), [10, 131].into_iter().collect());
        assert_eq!(
            (plan[1].0.to_string().as_str(), plan[1].1.as_i32()),
            ("1.3.6.1.4.1.9.9.46.1.6.1.1.5.102", Some(10))
        );
        assert_eq!(
            (plan[2].0.to_string().as_str(), plan[2].1.as_i32()),
            ("1.3.6.1.4.1.9.9.402.1.2.1.1.1.1.2", Some(CISCO_POE_DISABLE))
        );
    }

    #[test]
    fn access_only_port_uses_vm_vlan() {
        let mut d = DesiredConfig::default();
        d.access_ports
            .insert(PortNo(3), AccessPort { untagged: VlanId(20), tagged: BTreeSet::new() });
        let cur = base();
        let plan = cisco_plan(&cur, &model::apply_desired(&cur, &d));
        assert_eq!(plan.len(), 1);
        assert_eq!(
            (plan[0].0.to_string().as_str(), plan[0].1.as_i32()),
            ("1.3.6.1.4.1.9.9.68.1.2.2.1.2.103", Some(20))
        );
    }
}
