//! The virtual switch's state and its pure transitions: decoding a SET varbind into a
//! [`Change`], checking it against Q-BRIDGE / POWER-ETHERNET semantics, applying it, and
//! listing the events between two states. No I/O here.

use crate::model::VlanEntry;
use crate::oids::{
    self, COL_PSE_ADMIN, COL_VLAN_EGRESS, COL_VLAN_NAME, COL_VLAN_ROW_STATUS, COL_VLAN_UNTAGGED,
};
use crate::plan::{ROW_ACTIVE, ROW_CREATE_AND_GO, ROW_DESTROY};
use crate::portlist;
use async_snmp::{Oid, SetTestError, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One learned MAC (dot1qTpFdbTable row), injected by the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub fdb_id: u32,
    pub mac: [u8; 6],
    pub port: u16,
}

/// Everything the virtual switch remembers (persisted as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// Pi ports; bridge port `pi_ports + 1` is the trunk.
    pub pi_ports: u16,
    pub vlans: BTreeMap<u16, VlanEntry>,
    pub pvid: BTreeMap<u16, u16>,
    pub poe_admin: BTreeMap<u16, bool>,
    /// Whether a powered device is attached (lab-controlled; default true).
    pub device_present: BTreeMap<u16, bool>,
    pub fdb: Vec<FdbEntry>,
    pub sys_descr: String,
    pub sys_object_id: Vec<u32>,
    /// Whether the switch has the RSTP-MIB (edge ports by `dot1dStpPortAdminEdgePort`);
    /// without it only `dot1dStpPortEnable` (see [`super::stp`]).
    #[serde(default = "yes")]
    pub rstp: bool,
    /// `dot1dStpPortEnable` by port (absent: enabled).
    #[serde(default)]
    pub stp_enabled: BTreeMap<u16, bool>,
    /// Edge port (RSTP admin edge, Cisco portfast) by port (absent: not an edge port).
    #[serde(default)]
    pub admin_edge: BTreeMap<u16, bool>,
    /// PoE: ports the PSE delivers power to (computed by [`super::poe::settle`]).
    #[serde(default)]
    pub powered: BTreeSet<u16>,
    /// PoE: ports that want power but do not fit the budget (`searching`, no power).
    #[serde(default)]
    pub denied: BTreeSet<u16>,
    /// PoE: pethMainPsePower, the power the PSE can deliver, in watts.
    #[serde(default = "legacy_budget_w")]
    pub budget_w: u32,
    /// PoE: what each attached device draws while powered (lab-controlled; default
    /// [`super::poe::default_draw_mw`]).
    #[serde(default)]
    pub device_draw_mw: BTreeMap<u16, u32>,
    /// Fault: ports whose power keeps flowing after admin off.
    #[serde(default)]
    pub stuck_on: BTreeSet<u16>,
}

fn yes() -> bool {
    true
}

fn legacy_budget_w() -> u32 {
    super::poe::default_budget_w(0)
}

/// A state change caused by one SET varbind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Name(u16, String),
    Egress(u16, BTreeSet<u16>),
    Untagged(u16, BTreeSet<u16>),
    RowStatus(u16, i32),
    Pvid(u16, u16),
    PoeAdmin(u16, bool),
    /// Cisco personality: vmVlan (port becomes an access port of the VLAN).
    CiscoAccess(u16, u16),
    /// Cisco personality: vlanTrunkPortVlansEnabled.
    CiscoTrunkVlans(u16, BTreeSet<u16>),
    /// Cisco personality: vlanTrunkPortNativeVlan.
    CiscoNative(u16, u16),
    /// dot1dStpPortEnable (true: spanning tree runs on the port).
    StpEnable(u16, bool),
    /// dot1dStpPortAdminEdgePort, or Cisco stpxFastStartPortMode.
    AdminEdge(u16, bool),
}

/// What the lab can learn about through [`super::SimHandle::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SimEvent {
    /// Power to the device in `port` started or stopped (what the PSE delivers, not the
    /// admin state: a port refused for the budget, or stuck on, says so here).
    PowerChanged {
        port: u16,
        on: bool,
    },
    VlanMembershipChanged {
        vlan: u16,
        egress: BTreeSet<u16>,
        untagged: BTreeSet<u16>,
    },
    VlanCreated {
        vlan: u16,
    },
    VlanDestroyed {
        vlan: u16,
    },
    PvidChanged {
        port: u16,
        vlan: u16,
    },
}

impl SimState {
    /// A factory-fresh switch: every port untagged in VLAN 1, PVID 1, PoE on.
    pub fn new(pi_ports: u16) -> Self {
        let all: BTreeSet<u16> = (1..=pi_ports.saturating_add(1)).collect();
        let default =
            VlanEntry { name: "default".into(), egress: all.clone(), untagged: all.clone() };
        let mut st = Self {
            pi_ports,
            vlans: [(1, default)].into_iter().collect(),
            pvid: all.iter().map(|p| (*p, 1)).collect(),
            poe_admin: (1..=pi_ports).map(|p| (p, true)).collect(),
            device_present: (1..=pi_ports).map(|p| (p, true)).collect(),
            fdb: Vec::new(),
            sys_descr: format!("Bramble virtual PoE switch, {pi_ports} PoE ports + 1 trunk"),
            sys_object_id: oids::SIM_OBJECT_ID.to_vec(),
            rstp: true,
            stp_enabled: BTreeMap::new(),
            admin_edge: BTreeMap::new(),
            powered: BTreeSet::new(),
            denied: BTreeSet::new(),
            budget_w: super::poe::default_budget_w(pi_ports),
            device_draw_mw: BTreeMap::new(),
            stuck_on: BTreeSet::new(),
        };
        super::poe::settle(&mut st);
        st
    }

    /// A switch that answers with a Cisco sysObjectID and Cisco VLAN/PoE objects.
    pub fn new_cisco(pi_ports: u16) -> Self {
        let mut st = Self::new(pi_ports);
        st.sys_object_id = oids::SIM_CISCO_OBJECT_ID.to_vec();
        st.sys_descr =
            format!("Cisco IOS Software (Bramble virtual switch), {pi_ports} PoE ports + 1 trunk");
        st
    }

    /// True when sysObjectID is under Cisco's enterprise arc.
    pub fn is_cisco(&self) -> bool {
        self.sys_object_id.starts_with(oids::CISCO_ENTERPRISE)
    }

    /// The bridge port with this ifIndex (see [`super::view::if_index`]).
    pub fn port_of_if_index(&self, ifx: u32) -> Option<u16> {
        ifx.checked_sub(100)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| (1..=self.bridge_ports()).contains(p))
    }

    /// Number of bridge ports (Pi ports + trunk).
    pub fn bridge_ports(&self) -> u16 {
        self.pi_ports.saturating_add(1)
    }

    /// Whether the port is delivering power right now (see [`super::poe`]).
    pub fn delivering(&self, port: u16) -> bool {
        self.powered.contains(&port)
    }

    /// The draw of a port right now: its device's while powered, else 0.
    pub fn draw_mw(&self, port: u16) -> u32 {
        if self.delivering(port) { super::poe::device_draw_mw(self, port) } else { 0 }
    }
}

fn port_list(state: &SimState, value: &Value) -> Result<BTreeSet<u16>, SetTestError> {
    let Value::OctetString(bytes) = value else {
        return Err(SetTestError::WrongType);
    };
    if bytes.len() > usize::from(state.bridge_ports()).div_ceil(8) + 64 {
        return Err(SetTestError::WrongLength);
    }
    let set = portlist::decode(bytes);
    if set.iter().any(|p| *p > state.bridge_ports()) {
        return Err(SetTestError::WrongValue);
    }
    Ok(set)
}

/// Decodes a SET varbind into a change (type, length and range checks only).
pub fn decode(state: &SimState, oid: &Oid, value: &Value) -> Result<Change, SetTestError> {
    let arcs = oid.arcs();
    if let Some(&[col, vid]) = arcs.strip_prefix(oids::DOT1Q_VLAN_STATIC_ENTRY) {
        let vid = u16::try_from(vid)
            .ok()
            .filter(|v| (1..=4094).contains(v))
            .ok_or(SetTestError::NoCreation)?;
        return match col {
            COL_VLAN_NAME => match value {
                Value::OctetString(b) if b.len() <= 32 => {
                    Ok(Change::Name(vid, String::from_utf8_lossy(b).into_owned()))
                }
                Value::OctetString(_) => Err(SetTestError::WrongLength),
                _ => Err(SetTestError::WrongType),
            },
            COL_VLAN_EGRESS => Ok(Change::Egress(vid, port_list(state, value)?)),
            COL_VLAN_UNTAGGED => Ok(Change::Untagged(vid, port_list(state, value)?)),
            COL_VLAN_ROW_STATUS => {
                value.as_i32().map(|v| Change::RowStatus(vid, v)).ok_or(SetTestError::WrongType)
            }
            _ => Err(SetTestError::NotWritable),
        };
    }
    if let Some(&[port]) = arcs.strip_prefix(oids::DOT1Q_PVID) {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| (1..=state.bridge_ports()).contains(p))
            .ok_or(SetTestError::NoCreation)?;
        let vlan = match value {
            Value::Gauge32(v) | Value::UInteger32(v) => *v,
            Value::Integer(v) => u32::try_from(*v).map_err(|_| SetTestError::WrongValue)?,
            _ => return Err(SetTestError::WrongType),
        };
        let vlan = u16::try_from(vlan).map_err(|_| SetTestError::WrongValue)?;
        return Ok(Change::Pvid(port, vlan));
    }
    if let Some(&[COL_PSE_ADMIN, 1, port]) = arcs.strip_prefix(oids::PETH_PSE_PORT_ENTRY) {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| (1..=state.pi_ports).contains(p))
            .ok_or(SetTestError::NoCreation)?;
        return match value {
            Value::Integer(1) => Ok(Change::PoeAdmin(port, true)),
            Value::Integer(2) => Ok(Change::PoeAdmin(port, false)),
            Value::Integer(_) => Err(SetTestError::WrongValue),
            _ => Err(SetTestError::WrongType),
        };
    }
    if let Some(change) = super::stp::decode(state, arcs, value) {
        return change;
    }
    if state.is_cisco() {
        return decode_cisco(state, arcs, value);
    }
    Err(SetTestError::NotWritable)
}

fn decode_cisco(state: &SimState, arcs: &[u32], value: &Value) -> Result<Change, SetTestError> {
    let vlan_of =
        |v: &Value| v.as_i32().and_then(|v| u16::try_from(v).ok()).ok_or(SetTestError::WrongType);
    let port_of = |ifx: u32| state.port_of_if_index(ifx).ok_or(SetTestError::NoCreation);
    if let Some(&[ifx]) = arcs.strip_prefix(oids::CISCO_VM_VLAN) {
        return Ok(Change::CiscoAccess(port_of(ifx)?, vlan_of(value)?));
    }
    if let Some(&[ifx]) = arcs.strip_prefix(oids::CISCO_TRUNK_NATIVE_VLAN) {
        return Ok(Change::CiscoNative(port_of(ifx)?, vlan_of(value)?));
    }
    if let Some(&[ifx]) = arcs.strip_prefix(oids::CISCO_TRUNK_VLANS_ENABLED) {
        let Value::OctetString(bits) = value else {
            return Err(SetTestError::WrongType);
        };
        return Ok(Change::CiscoTrunkVlans(port_of(ifx)?, portlist::decode_vlan_bitmap(bits)));
    }
    if let Some(&[1, port]) = arcs.strip_prefix(oids::CISCO_PSE_PORT_ENABLE) {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| (1..=state.pi_ports).contains(p))
            .ok_or(SetTestError::NoCreation)?;
        return match value.as_i32() {
            Some(1..=3) => Ok(Change::PoeAdmin(port, true)),
            Some(4) => Ok(Change::PoeAdmin(port, false)),
            Some(_) => Err(SetTestError::WrongValue),
            None => Err(SetTestError::WrongType),
        };
    }
    Err(SetTestError::NotWritable)
}

/// Checks a change against the state (with earlier varbinds of the request applied).
pub fn check(state: &SimState, change: &Change) -> Result<(), SetTestError> {
    use SetTestError::{InconsistentValue, NoCreation, WrongValue};
    let vlan = |v: &u16| state.vlans.get(v).ok_or(NoCreation);
    match change {
        Change::Name(v, _) => vlan(v).map(|_| ()),
        Change::Egress(v, set) => {
            let entry = vlan(v)?;
            let removed: Vec<_> = entry.egress.difference(set).collect();
            let breaks =
                removed.iter().any(|p| entry.untagged.contains(p) || state.pvid.get(p) == Some(v));
            if breaks { Err(InconsistentValue) } else { Ok(()) }
        }
        Change::Untagged(v, set) => {
            let entry = vlan(v)?;
            let mut added = set.difference(&entry.untagged);
            let bad = added.any(|p| {
                !entry.egress.contains(p)
                    || state.vlans.iter().any(|(o, e)| o != v && e.untagged.contains(p))
            });
            if bad { Err(InconsistentValue) } else { Ok(()) }
        }
        Change::RowStatus(v, status) => match (*status, state.vlans.contains_key(v)) {
            (ROW_CREATE_AND_GO, false) | (ROW_ACTIVE, true) | (ROW_DESTROY, false) => Ok(()),
            (ROW_CREATE_AND_GO, true) | (ROW_ACTIVE, false) => Err(InconsistentValue),
            (ROW_DESTROY, true) if *v == 1 || state.pvid.values().any(|p| p == v) => {
                Err(InconsistentValue)
            }
            (ROW_DESTROY, true) => Ok(()),
            _ => Err(WrongValue),
        },
        Change::Pvid(port, v) => match state.vlans.get(v) {
            Some(e) if e.egress.contains(port) => Ok(()),
            _ => Err(InconsistentValue),
        },
        Change::PoeAdmin(..) | Change::StpEnable(..) | Change::AdminEdge(..) => Ok(()),
        Change::CiscoAccess(_, v) | Change::CiscoNative(_, v) => {
            vlan(v).map(|_| ()).map_err(|_| InconsistentValue)
        }
        Change::CiscoTrunkVlans(_, set) => {
            if set.iter().all(|v| *v == 0 || state.vlans.contains_key(v)) {
                Ok(())
            } else {
                Err(InconsistentValue)
            }
        }
    }
}

/// Applies a checked change.
pub fn apply(state: &mut SimState, change: &Change) {
    match change {
        Change::Name(v, name) => {
            if let Some(e) = state.vlans.get_mut(v) {
                e.name = name.clone();
            }
        }
        Change::Egress(v, set) => {
            if let Some(e) = state.vlans.get_mut(v) {
                e.egress = set.clone();
            }
        }
        Change::Untagged(v, set) => {
            if let Some(e) = state.vlans.get_mut(v) {
                e.untagged = set.clone();
            }
        }
        Change::RowStatus(v, ROW_CREATE_AND_GO) => {
            state.vlans.insert(*v, VlanEntry { name: format!("VLAN{v:04}"), ..Default::default() });
        }
        Change::RowStatus(v, ROW_DESTROY) => {
            state.vlans.remove(v);
        }
        Change::RowStatus(..) => {}
        Change::Pvid(p, v) => {
            state.pvid.insert(*p, *v);
        }
        Change::PoeAdmin(p, on) => {
            state.poe_admin.insert(*p, *on);
        }
        Change::StpEnable(p, on) => {
            state.stp_enabled.insert(*p, *on);
        }
        Change::AdminEdge(p, on) => {
            state.admin_edge.insert(*p, *on);
        }
        Change::CiscoAccess(p, v) => {
            for (vid, e) in state.vlans.iter_mut() {
                let member = vid == v;
                set_member(&mut e.egress, *p, member);
                set_member(&mut e.untagged, *p, member);
            }
            state.pvid.insert(*p, *v);
        }
        Change::CiscoTrunkVlans(p, set) => {
            let native = state.pvid.get(p).copied();
            for (vid, e) in state.vlans.iter_mut() {
                set_member(&mut e.egress, *p, set.contains(vid));
                set_member(&mut e.untagged, *p, set.contains(vid) && Some(*vid) == native);
            }
        }
        Change::CiscoNative(p, v) => {
            for (vid, e) in state.vlans.iter_mut() {
                set_member(&mut e.untagged, *p, vid == v);
                if vid == v {
                    e.egress.insert(*p);
                }
            }
            state.pvid.insert(*p, *v);
        }
    }
}

fn set_member(set: &mut BTreeSet<u16>, port: u16, member: bool) {
    if member {
        set.insert(port);
    } else {
        set.remove(&port);
    }
}

/// The events that lead from `before` to `after`.
pub fn events(before: &SimState, after: &SimState) -> Vec<SimEvent> {
    let mut out = Vec::new();
    for port in before.powered.symmetric_difference(&after.powered) {
        out.push(SimEvent::PowerChanged { port: *port, on: after.powered.contains(port) });
    }
    for &vlan in before.vlans.keys().filter(|v| !after.vlans.contains_key(v)) {
        out.push(SimEvent::VlanDestroyed { vlan });
    }
    for (&vlan, e) in &after.vlans {
        match before.vlans.get(&vlan) {
            None => out.push(SimEvent::VlanCreated { vlan }),
            Some(b) if b.egress == e.egress && b.untagged == e.untagged => continue,
            Some(_) => {}
        }
        out.push(SimEvent::VlanMembershipChanged {
            vlan,
            egress: e.egress.clone(),
            untagged: e.untagged.clone(),
        });
    }
    for (&port, &vlan) in &after.pvid {
        if before.pvid.get(&port) != Some(&vlan) {
            out.push(SimEvent::PvidChanged { port, vlan });
        }
    }
    out
}
