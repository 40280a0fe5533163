//! Pure planning of standard-MIB SETs: the ordered varbinds that take a switch from its
//! current snapshot to a target one, and their split into messages.
//!
//! Order (every prefix of the list is a consistent switch state, so a plan split over
//! several messages never asks the agent to accept an inconsistent intermediate state):
//! 1. create VLAN rows (RowStatus createAndGo, then name);
//! 2. untagged lists that lose ports, written as old ∩ new;
//! 3. egress lists that gain ports, written as old ∪ new;
//! 4. untagged lists that gain ports, written as new;
//! 5. PVIDs;
//! 6. egress lists that lose ports, written as new;
//! 7. destroy VLAN rows; 8. PoE admin state.
//!
//! Edge ports ([`edge_plan`]) go before all of it, so a port is an edge port before a
//! change in the same plan powers it.
//!
//! DESIGN.md's move order (remove old untagged, add new egress, remove old egress, add
//! new untagged, PVID) is kept except that "remove from old egress" goes after the PVID:
//! until the PVID moves, the old VLAN must still contain the port.

use crate::model::SwitchSnapshot;
use crate::oids::{self, COL_VLAN_EGRESS, COL_VLAN_NAME, COL_VLAN_ROW_STATUS, COL_VLAN_UNTAGGED};
use crate::portlist;
use crate::stp::StpMib;
use async_snmp::{Oid, Value};
use bytes::Bytes;
use std::collections::BTreeSet;

/// RowStatus values used here.
pub const ROW_ACTIVE: i32 = 1;
pub const ROW_CREATE_AND_GO: i32 = 4;
pub const ROW_DESTROY: i32 = 6;

/// Ordered standard-MIB varbinds from `current` to `target`. `width` is the number of
/// bridge ports the PortLists cover.
pub fn standard_plan(
    current: &SwitchSnapshot,
    target: &SwitchSnapshot,
    width: u16,
) -> Vec<(Oid, Value)> {
    let plist = |set: &BTreeSet<u16>| Value::OctetString(Bytes::from(portlist::encode(set, width)));
    let empty = Default::default();
    let mut creates = Vec::new();
    let (mut untag_lose, mut egress_gain, mut untag_gain, mut egress_lose) =
        (vec![], vec![], vec![], vec![]);
    for (&vid, want) in &target.vlans {
        let have = current.vlans.get(&vid);
        if have.is_none() {
            creates.push((
                oids::vlan_col(COL_VLAN_ROW_STATUS, vid),
                Value::Integer(ROW_CREATE_AND_GO),
            ));
        }
        if have.map(|h| &h.name) != Some(&want.name) {
            creates.push((
                oids::vlan_col(COL_VLAN_NAME, vid),
                Value::OctetString(Bytes::from(want.name.clone())),
            ));
        }
        let old_e = have.map(|h| &h.egress).unwrap_or(&empty);
        let old_u = have.map(|h| &h.untagged).unwrap_or(&empty);
        let (e_oid, u_oid) =
            (oids::vlan_col(COL_VLAN_EGRESS, vid), oids::vlan_col(COL_VLAN_UNTAGGED, vid));
        if !old_u.is_subset(&want.untagged) {
            untag_lose.push((
                u_oid.clone(),
                plist(&old_u.intersection(&want.untagged).copied().collect()),
            ));
        }
        if !want.egress.is_subset(old_e) {
            egress_gain.push((e_oid.clone(), plist(&old_e.union(&want.egress).copied().collect())));
        }
        if !want.untagged.is_subset(old_u) {
            untag_gain.push((u_oid, plist(&want.untagged)));
        }
        if !old_e.is_subset(&want.egress) {
            egress_lose.push((e_oid, plist(&want.egress)));
        }
    }
    let pvids =
        target.pvid.iter().filter(|(p, v)| current.pvid.get(p) != Some(v)).map(|(&p, &v)| {
            (oids::oid(oids::DOT1Q_PVID, &[u32::from(p)]), Value::Gauge32(u32::from(v)))
        });
    let destroys = current
        .vlans
        .keys()
        .filter(|v| !target.vlans.contains_key(v))
        .map(|&v| (oids::vlan_col(COL_VLAN_ROW_STATUS, v), Value::Integer(ROW_DESTROY)));
    let poe = target
        .poe
        .iter()
        .filter(|(p, want)| current.poe.get(p).map(|h| h.admin_enabled) != Some(want.admin_enabled))
        .map(|(&p, want)| {
            (
                oids::pse_col(oids::COL_PSE_ADMIN, p),
                Value::Integer(if want.admin_enabled { 1 } else { 2 }),
            )
        });
    let mut out = creates;
    out.extend(untag_lose);
    out.extend(egress_gain);
    out.extend(untag_gain);
    out.extend(pvids);
    out.extend(egress_lose);
    out.extend(destroys);
    out.extend(poe);
    out
}

/// Limits for splitting a plan into SET messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most varbinds in one SET; 1 means one SET per varbind.
    pub max_varbinds: usize,
    /// Estimated encoded size of the varbind list must stay under this (octets).
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        // 1472 is the common SNMP over Ethernet maximum; leave room for headers/USM.
        Self { max_varbinds: 60, max_bytes: 1100 }
    }
}

/// Rough BER size of one varbind.
pub fn varbind_size(oid: &Oid, value: &Value) -> usize {
    let oid_len: usize = oid.arcs().iter().map(|a| if *a < 128 { 1 } else { 3 }).sum();
    let val_len = match value {
        Value::OctetString(b) | Value::Opaque(b) => b.len(),
        Value::ObjectIdentifier(o) => o.len() * 2,
        _ => 5,
    };
    oid_len + val_len + 8
}

/// Splits an ordered plan into messages, keeping order, respecting `limits`, and never
/// putting the same OID twice in one message.
pub fn split(plan: Vec<(Oid, Value)>, limits: BatchLimits) -> Vec<Vec<(Oid, Value)>> {
    let mut out: Vec<Vec<(Oid, Value)>> = Vec::new();
    let mut cur: Vec<(Oid, Value)> = Vec::new();
    let mut cur_bytes = 0;
    for (oid, value) in plan {
        let size = varbind_size(&oid, &value);
        let full = cur.len() >= limits.max_varbinds.max(1)
            || (!cur.is_empty() && cur_bytes + size > limits.max_bytes)
            || cur.iter().any(|(o, _)| *o == oid);
        if full {
            out.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur_bytes += size;
        cur.push((oid, value));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The SETs that bring every port of `target.edge` to its edge setting, in port order.
pub fn edge_plan(
    current: &SwitchSnapshot,
    target: &SwitchSnapshot,
    mib: StpMib,
) -> Vec<(Oid, Value)> {
    target
        .edge
        .iter()
        .filter(|(port, want)| current.edge.get(port) != Some(want))
        .map(|(&port, &edge)| (mib.oid(port), Value::Integer(mib.encode(edge))))
        .collect()
}
