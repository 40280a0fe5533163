//! Typed switch configuration: ids, a full snapshot of what the switch holds, the
//! desired configuration Bramble wants, and the pure functions between them
//! (`apply_desired` computes the target state, `diff` lists drift).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A bridge port number (1-based, as in BRIDGE-MIB / Q-BRIDGE-MIB PortLists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortNo(pub u16);

/// An IEEE 802.1Q VLAN id (1-4094).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VlanId(pub u16);

impl fmt::Display for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl VlanId {
    /// True for 1..=4094.
    pub fn is_valid(self) -> bool {
        (1..=4094).contains(&self.0)
    }
}

/// pethPsePortDetectionStatus (RFC 3621).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetectionStatus {
    Disabled,
    Searching,
    DeliveringPower,
    Fault,
    Test,
    OtherFault,
}

impl DetectionStatus {
    /// Decodes the MIB integer.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::Disabled,
            2 => Self::Searching,
            3 => Self::DeliveringPower,
            4 => Self::Fault,
            5 => Self::Test,
            6 => Self::OtherFault,
            _ => return None,
        })
    }

    /// Encodes the MIB integer.
    pub fn to_i32(self) -> i32 {
        match self {
            Self::Disabled => 1,
            Self::Searching => 2,
            Self::DeliveringPower => 3,
            Self::Fault => 4,
            Self::Test => 5,
            Self::OtherFault => 6,
        }
    }
}

/// The PoE state of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPower {
    pub admin_enabled: bool,
    pub detection: DetectionStatus,
    /// Power drawn in milliwatts, when the switch reports it.
    pub draw_mw: Option<u32>,
}

/// One row of dot1qVlanStaticTable: name and member port sets (bridge ports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanEntry {
    pub name: String,
    pub egress: BTreeSet<u16>,
    pub untagged: BTreeSet<u16>,
}

/// Everything the drivers read back from a switch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchSnapshot {
    /// Bridge port → ifIndex.
    pub ports: BTreeMap<u16, u32>,
    pub vlans: BTreeMap<u16, VlanEntry>,
    /// Bridge port → PVID.
    pub pvid: BTreeMap<u16, u16>,
    pub poe: BTreeMap<u16, PortPower>,
    /// Bridge port → edge port (forwards as soon as its link is up: RSTP admin edge,
    /// spanning tree disabled on the port, or Cisco portfast; see [`crate::stp`]). Read
    /// only for the ports a desired configuration names.
    #[serde(default)]
    pub edge: BTreeMap<u16, bool>,
}

/// A Pi port: untagged in its storage VLAN (also its PVID), tagged in `tagged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPort {
    pub untagged: VlanId,
    pub tagged: BTreeSet<VlanId>,
}

/// What Bramble wants on a switch. Objects not named here are left alone, except that
/// a port listed in `access_ports` is removed from every VLAN not named for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredConfig {
    /// VLANs that must exist, with their names.
    pub vlans: BTreeMap<VlanId, String>,
    /// VLANs that must not exist.
    pub absent_vlans: BTreeSet<VlanId>,
    pub access_ports: BTreeMap<PortNo, AccessPort>,
    /// Trunk port → VLANs that must be tagged on it.
    pub trunk_tagged: BTreeMap<PortNo, BTreeSet<VlanId>>,
    /// Trunk port → VLANs that must not be on it.
    pub trunk_removed: BTreeMap<PortNo, BTreeSet<VlanId>>,
    /// Port → PoE admin state.
    pub poe: BTreeMap<PortNo, bool>,
    /// Port → whether it must be an edge port (no listening and learning delay when its
    /// link comes up). Every Pi port is one: a Pi 3B's boot ROM gives up before a
    /// spanning-tree port starts forwarding.
    #[serde(default)]
    pub edge: BTreeMap<PortNo, bool>,
}

/// A whole shelf: Pi ports with their storage VLANs, one public VLAN, one trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShelfPlan {
    pub public_vlan: VlanId,
    pub trunk: PortNo,
    pub pis: BTreeMap<PortNo, VlanId>,
}

impl ShelfPlan {
    /// The desired configuration of this shelf: VLANs, and every Pi port an edge port
    /// (PoE is not touched).
    pub fn desired(&self) -> DesiredConfig {
        let mut d = DesiredConfig::default();
        d.vlans.insert(self.public_vlan, format!("public-{}", self.public_vlan));
        let mut trunk = BTreeSet::new();
        for (&port, &storage) in &self.pis {
            d.vlans.insert(storage, format!("storage-{port}"));
            let tagged = [self.public_vlan].into_iter().collect();
            d.access_ports.insert(port, AccessPort { untagged: storage, tagged });
            d.edge.insert(port, true);
            trunk.insert(storage);
        }
        trunk.insert(self.public_vlan);
        d.trunk_tagged.insert(self.trunk, trunk);
        d
    }
}

/// One difference between the desired and the actual configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Drift {
    VlanMissing { vlan: u16 },
    VlanPresent { vlan: u16 },
    VlanName { vlan: u16, expected: String, actual: String },
    Egress { vlan: u16, missing: Vec<u16>, extra: Vec<u16> },
    Untagged { vlan: u16, missing: Vec<u16>, extra: Vec<u16> },
    Pvid { port: u16, expected: u16, actual: Option<u16> },
    Poe { port: u16, expected: bool, actual: Option<bool> },
    Edge { port: u16, expected: bool, actual: Option<bool> },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::VlanMissing { vlan } => write!(f, "VLAN {vlan} missing"),
            Drift::VlanPresent { vlan } => write!(f, "VLAN {vlan} should not exist"),
            Drift::VlanName { vlan, expected, actual } => {
                write!(f, "VLAN {vlan} named {actual:?}, want {expected:?}")
            }
            Drift::Egress { vlan, missing, extra } => {
                write!(f, "VLAN {vlan} egress ports missing {missing:?} extra {extra:?}")
            }
            Drift::Untagged { vlan, missing, extra } => {
                write!(f, "VLAN {vlan} untagged ports missing {missing:?} extra {extra:?}")
            }
            Drift::Pvid { port, expected, actual } => {
                write!(f, "port {port} PVID {actual:?}, want {expected}")
            }
            Drift::Poe { port, expected, actual } => {
                write!(f, "port {port} PoE {actual:?}, want {expected}")
            }
            Drift::Edge { port, expected, actual } => {
                write!(f, "port {port} edge (spanning tree) {actual:?}, want {expected}")
            }
        }
    }
}

/// The snapshot `current` would become once `desired` is applied. Pure.
pub fn apply_desired(current: &SwitchSnapshot, desired: &DesiredConfig) -> SwitchSnapshot {
    let mut t = current.clone();
    for v in &desired.absent_vlans {
        t.vlans.remove(&v.0);
    }
    for (v, name) in &desired.vlans {
        t.vlans.entry(v.0).or_default().name = name.clone();
    }
    for (port, ap) in &desired.access_ports {
        let p = port.0;
        for (vid, entry) in t.vlans.iter_mut() {
            let keep = *vid == ap.untagged.0 || ap.tagged.contains(&VlanId(*vid));
            if !keep {
                entry.egress.remove(&p);
                entry.untagged.remove(&p);
            }
        }
        let u = t.vlans.entry(ap.untagged.0).or_default();
        u.egress.insert(p);
        u.untagged.insert(p);
        for tag in &ap.tagged {
            let e = t.vlans.entry(tag.0).or_default();
            e.egress.insert(p);
            e.untagged.remove(&p);
        }
        t.pvid.insert(p, ap.untagged.0);
    }
    for (port, vlans) in &desired.trunk_tagged {
        for v in vlans {
            let e = t.vlans.entry(v.0).or_default();
            e.egress.insert(port.0);
            e.untagged.remove(&port.0);
        }
    }
    for (port, vlans) in &desired.trunk_removed {
        for v in vlans {
            if let Some(e) = t.vlans.get_mut(&v.0) {
                e.egress.remove(&port.0);
                e.untagged.remove(&port.0);
            }
        }
    }
    for (port, on) in &desired.poe {
        let entry = t.poe.entry(port.0).or_insert(PortPower {
            admin_enabled: *on,
            detection: DetectionStatus::Disabled,
            draw_mw: None,
        });
        entry.admin_enabled = *on;
    }
    for (port, edge) in &desired.edge {
        t.edge.insert(port.0, *edge);
    }
    t
}

fn set_diff(expected: &BTreeSet<u16>, actual: &BTreeSet<u16>) -> (Vec<u16>, Vec<u16>) {
    (expected.difference(actual).copied().collect(), actual.difference(expected).copied().collect())
}

/// Differences between an expected snapshot and an actual one, over VLANs, PVIDs, PoE
/// admin state and edge ports (detection status and draw are observations, not
/// configuration).
pub fn diff(expected: &SwitchSnapshot, actual: &SwitchSnapshot) -> Vec<Drift> {
    let mut out = Vec::new();
    for (&vlan, want) in &expected.vlans {
        let Some(have) = actual.vlans.get(&vlan) else {
            out.push(Drift::VlanMissing { vlan });
            continue;
        };
        if want.name != have.name {
            out.push(Drift::VlanName {
                vlan,
                expected: want.name.clone(),
                actual: have.name.clone(),
            });
        }
        let (missing, extra) = set_diff(&want.egress, &have.egress);
        if !missing.is_empty() || !extra.is_empty() {
            out.push(Drift::Egress { vlan, missing, extra });
        }
        let (missing, extra) = set_diff(&want.untagged, &have.untagged);
        if !missing.is_empty() || !extra.is_empty() {
            out.push(Drift::Untagged { vlan, missing, extra });
        }
    }
    for &vlan in actual.vlans.keys().filter(|v| !expected.vlans.contains_key(v)) {
        out.push(Drift::VlanPresent { vlan });
    }
    for (&port, &want) in &expected.pvid {
        let have = actual.pvid.get(&port).copied();
        if have != Some(want) {
            out.push(Drift::Pvid { port, expected: want, actual: have });
        }
    }
    for (&port, want) in &expected.poe {
        let have = actual.poe.get(&port).map(|p| p.admin_enabled);
        if have != Some(want.admin_enabled) {
            out.push(Drift::Poe { port, expected: want.admin_enabled, actual: have });
        }
    }
    for (&port, &want) in &expected.edge {
        let have = actual.edge.get(&port).copied();
        if have != Some(want) {
            out.push(Drift::Edge { port, expected: want, actual: have });
        }
    }
    out
}

/// Drift of `actual` against `desired`: what applying `desired` would still change.
pub fn drift(desired: &DesiredConfig, actual: &SwitchSnapshot) -> Vec<Drift> {
    diff(&apply_desired(actual, desired), actual)
}
