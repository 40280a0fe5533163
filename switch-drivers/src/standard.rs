//! The standard driver: POWER-ETHERNET-MIB, Q-BRIDGE-MIB, BRIDGE-MIB and IF-MIB over
//! SNMPv2c or v3. Changes are read-modify-write of whole PortLists, planned by
//! [`crate::plan::standard_plan`], sent as batched SETs and verified by reading back.
//! Edge ports through RSTP-MIB or BRIDGE-MIB spanning tree ([`crate::stp`]), the MIB
//! detected once per driver.

use crate::driver::{ApplyReport, MacEntry, SwitchDriver, SwitchIdentity};
use crate::error::SwitchError;
use crate::model::{self, DesiredConfig, DetectionStatus, PortNo, PortPower, SwitchSnapshot};
use crate::oids::{
    self, COL_PSE_ADMIN, COL_PSE_DETECTION, COL_VLAN_EGRESS, COL_VLAN_NAME, COL_VLAN_UNTAGGED,
};
use crate::plan::{self, BatchLimits};
use crate::portlist;
use crate::session::Session;
use crate::stp::{self, StpMib};
use async_snmp::{Oid, Value, VarBind};
use async_trait::async_trait;
use std::net::SocketAddr;

/// Driver for switches that implement the standard bridge and PoE MIBs.
#[derive(Debug)]
pub struct StandardDriver {
    session: Session,
    limits: BatchLimits,
    /// Which MIB makes edge ports, asked the first time edge ports are read.
    stp: tokio::sync::OnceCell<StpMib>,
}

impl StandardDriver {
    /// Wraps a connected session; SETs are split by the session's limits.
    pub fn new(session: Session) -> Self {
        let limits = session.limits();
        Self { session, limits, stp: tokio::sync::OnceCell::new() }
    }

    async fn stp_mib(&self) -> Result<StpMib, SwitchError> {
        self.stp.get_or_try_init(|| crate::detect::detect_stp(&self.session)).await.copied()
    }

    /// Edge flags of every port (see [`crate::stp`]).
    async fn read_edges(&self, snap: &mut SwitchSnapshot) -> Result<(), SwitchError> {
        let mib = self.stp_mib().await?;
        snap.edge = stp::read_edges(&self.session.walk(mib.column()).await?, mib);
        Ok(())
    }

    /// Overrides the SET batching (`max_varbinds: 1` sends one SET per varbind).
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    fn bad(&self, vb: &VarBind, detail: &str) -> SwitchError {
        SwitchError::BadValue {
            switch: self.session.addr(),
            oid: vb.oid.to_string(),
            detail: detail.into(),
        }
    }

    async fn read_vlans(&self, snap: &mut SwitchSnapshot) -> Result<(), SwitchError> {
        for vb in self.session.walk(oids::DOT1Q_VLAN_STATIC_ENTRY).await? {
            let Some([col, vid]) = suffix2(&vb.oid, oids::DOT1Q_VLAN_STATIC_ENTRY) else {
                continue;
            };
            let Ok(vid) = u16::try_from(vid) else {
                return Err(self.bad(&vb, "VLAN index out of range"));
            };
            let entry = snap.vlans.entry(vid).or_default();
            match (col, &vb.value) {
                (COL_VLAN_NAME, Value::OctetString(b)) => {
                    entry.name = String::from_utf8_lossy(b).into_owned()
                }
                (COL_VLAN_EGRESS, Value::OctetString(b)) => entry.egress = portlist::decode(b),
                (COL_VLAN_UNTAGGED, Value::OctetString(b)) => entry.untagged = portlist::decode(b),
                (COL_VLAN_NAME | COL_VLAN_EGRESS | COL_VLAN_UNTAGGED, _) => {
                    return Err(self.bad(&vb, "expected OCTET STRING"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn read_poe(&self, snap: &mut SwitchSnapshot) -> Result<(), SwitchError> {
        let mut draws = std::collections::BTreeMap::new();
        for vb in self.session.walk(oids::PORT_POWER_MW).await.unwrap_or_default() {
            if let (Some(&p), Some(mw)) = (vb.oid.arcs().last(), vb.value.as_u32()) {
                draws.insert(p, mw);
            }
        }
        for vb in self.session.walk(oids::PETH_PSE_PORT_ENTRY).await? {
            let Some([col, _group, port]) = suffix3(&vb.oid, oids::PETH_PSE_PORT_ENTRY) else {
                continue;
            };
            let Ok(p) = u16::try_from(port) else { continue };
            let value = vb.value.as_i32();
            let entry = snap.poe.entry(p).or_insert(PortPower {
                admin_enabled: false,
                detection: DetectionStatus::Disabled,
                draw_mw: draws.get(&port).copied(),
            });
            match (col, value) {
                (COL_PSE_ADMIN, Some(v)) => entry.admin_enabled = v == 1,
                (COL_PSE_DETECTION, Some(v)) => {
                    entry.detection = DetectionStatus::from_i32(v)
                        .ok_or_else(|| self.bad(&vb, "unknown detection status"))?;
                }
                (COL_PSE_ADMIN | COL_PSE_DETECTION, None) => {
                    return Err(self.bad(&vb, "expected INTEGER"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the parts of the snapshot a change needs (PoE-only changes skip the
    /// VLAN tables, which dominate the read cost on a 96-port shelf).
    async fn read(&self, parts: Parts) -> Result<SwitchSnapshot, SwitchError> {
        let mut snap = SwitchSnapshot::default();
        for vb in self.session.walk(oids::DOT1D_BASE_PORT_IFINDEX).await? {
            if let (Some(&p), Some(ifx)) = (vb.oid.arcs().last(), vb.value.as_i32()) {
                let p = u16::try_from(p).map_err(|_| self.bad(&vb, "port out of range"))?;
                snap.ports.insert(p, u32::try_from(ifx).unwrap_or(0));
            }
        }
        if parts.vlans {
            self.read_vlans(&mut snap).await?;
            for vb in self.session.walk(oids::DOT1Q_PVID).await? {
                let (Some(&p), Some(v)) = (vb.oid.arcs().last(), vb.value.as_u32()) else {
                    continue;
                };
                if let (Ok(p), Ok(v)) = (u16::try_from(p), u16::try_from(v)) {
                    snap.pvid.insert(p, v);
                }
            }
        }
        if parts.poe {
            self.read_poe(&mut snap).await?;
        }
        if parts.edge {
            self.read_edges(&mut snap).await?;
        }
        Ok(snap)
    }

    fn check_ports(
        &self,
        desired: &DesiredConfig,
        snap: &SwitchSnapshot,
    ) -> Result<(), SwitchError> {
        let switch = self.session.addr();
        let ports = desired
            .access_ports
            .keys()
            .chain(desired.trunk_tagged.keys())
            .chain(desired.trunk_removed.keys())
            .chain(desired.poe.keys())
            .chain(desired.edge.keys());
        for p in ports {
            if !snap.ports.contains_key(&p.0) {
                let count = u16::try_from(snap.ports.len()).unwrap_or(u16::MAX);
                return Err(SwitchError::NoSuchPort { switch, port: p.0, ports: count });
            }
        }
        let vlans = desired
            .vlans
            .keys()
            .chain(&desired.absent_vlans)
            .chain(desired.access_ports.values().map(|a| &a.untagged));
        for v in vlans {
            if !v.is_valid() {
                return Err(SwitchError::InvalidVlan { switch, vlan: v.0 });
            }
        }
        Ok(())
    }
}

/// Which parts of the configuration an operation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    vlans: bool,
    poe: bool,
    edge: bool,
}

impl Parts {
    const ALL: Parts = Parts { vlans: true, poe: true, edge: true };

    fn for_desired(d: &DesiredConfig) -> Parts {
        let vlans = !(d.vlans.is_empty()
            && d.absent_vlans.is_empty()
            && d.access_ports.is_empty()
            && d.trunk_tagged.is_empty()
            && d.trunk_removed.is_empty());
        Parts { vlans, poe: !d.poe.is_empty(), edge: !d.edge.is_empty() }
    }
}

fn suffix2(oid: &Oid, base: &[u32]) -> Option<[u32; 2]> {
    oid.arcs().strip_prefix(base)?.try_into().ok()
}

fn suffix3(oid: &Oid, base: &[u32]) -> Option<[u32; 3]> {
    oid.arcs().strip_prefix(base)?.try_into().ok()
}

/// The port an OID is about, for error messages (PVID, PSE port, ifIndex-indexed).
pub(crate) fn port_of_oid(oid: &str) -> Option<u16> {
    let parsed: Oid = oid.parse().ok()?;
    let arcs = parsed.arcs();
    let per_port = [
        oids::DOT1Q_PVID,
        oids::PETH_PSE_PORT_ENTRY,
        oids::DOT1D_STP_PORT_ADMIN_EDGE,
        oids::DOT1D_STP_PORT_ENABLE,
    ];
    if per_port.iter().any(|base| arcs.starts_with(base)) {
        return arcs.last().and_then(|p| u16::try_from(*p).ok());
    }
    None
}

#[async_trait]
impl SwitchDriver for StandardDriver {
    fn switch(&self) -> SocketAddr {
        self.session.addr()
    }

    async fn identify(&self) -> Result<SwitchIdentity, SwitchError> {
        let oids = [Oid::from_slice(oids::SYS_OBJECT_ID), Oid::from_slice(oids::SYS_DESCR)];
        let vbs = self.session.get(&oids).await?;
        let [id, descr] = vbs.as_slice() else {
            return Err(SwitchError::BadValue {
                switch: self.switch(),
                oid: oids[0].to_string(),
                detail: "short response".into(),
            });
        };
        let sys_object_id = id
            .value
            .as_oid()
            .ok_or_else(|| self.bad(id, "expected OBJECT IDENTIFIER"))?
            .to_string();
        let sys_descr = descr.value.as_str().unwrap_or_default().to_string();
        Ok(SwitchIdentity { sys_object_id, sys_descr })
    }

    async fn snapshot(&self) -> Result<SwitchSnapshot, SwitchError> {
        self.read(Parts::ALL).await
    }

    async fn read_for(&self, desired: &DesiredConfig) -> Result<SwitchSnapshot, SwitchError> {
        self.read(Parts::for_desired(desired)).await
    }

    async fn write(
        &self,
        current: &SwitchSnapshot,
        desired: &DesiredConfig,
    ) -> Result<ApplyReport, SwitchError> {
        self.check_ports(desired, current)?;
        let target = model::apply_desired(current, desired);
        let width = current.ports.keys().max().copied().unwrap_or(0);
        let mut plan = if desired.edge.is_empty() {
            Vec::new()
        } else {
            plan::edge_plan(current, &target, self.stp_mib().await?)
        };
        plan.extend(plan::standard_plan(current, &target, width));
        let mut report = ApplyReport { varbinds: plan.len(), ..Default::default() };
        if !plan.is_empty() {
            let stats = self.session.set_plan(plan, self.limits).await.map_err(|e| match &e {
                SwitchError::Snmp { oid, .. } => match port_of_oid(oid) {
                    Some(p) => e.with_port(p),
                    None => e,
                },
                _ => e,
            })?;
            report.messages = stats.messages;
        }
        Ok(report)
    }

    async fn port_power(&self, port: PortNo) -> Result<PortPower, SwitchError> {
        let p = u32::from(port.0);
        let oids = [
            oids::pse_col(COL_PSE_ADMIN, port.0),
            oids::pse_col(COL_PSE_DETECTION, port.0),
            oids::oid(oids::PORT_POWER_MW, &[p]),
        ];
        let vbs = self.session.get(&oids).await.map_err(|e| e.with_port(port.0))?;
        let [admin, det, draw] = vbs.as_slice() else {
            return Err(SwitchError::BadValue {
                switch: self.switch(),
                oid: oids[0].to_string(),
                detail: "short response".into(),
            });
        };
        let admin = admin.value.as_i32().ok_or_else(|| self.bad(admin, "no PSE port"))?;
        let detection = det
            .value
            .as_i32()
            .and_then(DetectionStatus::from_i32)
            .ok_or_else(|| self.bad(det, "bad detection status"))?;
        Ok(PortPower { admin_enabled: admin == 1, detection, draw_mw: draw.value.as_u32() })
    }

    async fn poe_budget(&self) -> Result<crate::budget::PoeBudget, SwitchError> {
        crate::budget::read_budget(&self.session).await
    }

    async fn mac_table(&self) -> Result<Vec<MacEntry>, SwitchError> {
        let mut out = Vec::new();
        for vb in self.session.walk(oids::DOT1Q_TP_FDB_PORT).await? {
            let Some(rest) = vb.oid.arcs().strip_prefix(oids::DOT1Q_TP_FDB_PORT) else {
                continue;
            };
            let [fdb_id, m @ ..] = rest else { continue };
            let mac: Option<Vec<u8>> = m.iter().map(|b| u8::try_from(*b).ok()).collect();
            let (Some(mac), Some(port)) =
                (mac.and_then(|m| <[u8; 6]>::try_from(m).ok()), vb.value.as_i32())
            else {
                return Err(self.bad(&vb, "malformed dot1qTpFdbPort entry"));
            };
            let port = PortNo(u16::try_from(port).map_err(|_| self.bad(&vb, "port out of range"))?);
            out.push(MacEntry { fdb_id: *fdb_id, mac, port });
        }
        Ok(out)
    }
}
