//! Renders [`SimState`] as the ordered MIB view the agent answers GET/GETNEXT/GETBULK
//! from: system group, IF-MIB, BRIDGE-MIB, Q-BRIDGE-MIB and POWER-ETHERNET-MIB.

use super::state::SimState;
use crate::oids::{
    self, COL_VLAN_EGRESS, COL_VLAN_FORBIDDEN, COL_VLAN_NAME, COL_VLAN_ROW_STATUS,
    COL_VLAN_UNTAGGED,
};
use crate::portlist;
use async_snmp::{Oid, Value};
use bytes::Bytes;
use std::collections::BTreeMap;

/// ifIndex of a bridge port (deliberately not equal to the port number).
pub fn if_index(port: u16) -> u32 {
    100 + u32::from(port)
}

fn text(s: impl Into<String>) -> Value {
    Value::OctetString(Bytes::from(s.into()))
}

fn i(v: impl TryInto<i32>) -> Value {
    Value::Integer(v.try_into().unwrap_or(i32::MAX))
}

/// Builds the full view. sysUpTime and dot1dStpPortState are placeholders the handler
/// replaces live; `forward_delay` is the spanning-tree clock's.
pub fn build(state: &SimState, forward_delay: std::time::Duration) -> BTreeMap<Oid, Value> {
    let mut v = BTreeMap::new();
    let mut put = |base: &[u32], suffix: &[u32], value: Value| {
        v.insert(oids::oid(base, suffix), value);
    };
    put(oids::SYS_DESCR, &[], text(state.sys_descr.clone()));
    put(oids::SYS_OBJECT_ID, &[], Value::ObjectIdentifier(Oid::from_slice(&state.sys_object_id)));
    put(oids::SYS_UPTIME, &[], Value::TimeTicks(0));
    put(oids::SYS_NAME, &[], text("bramble-sim"));
    let ports = state.bridge_ports();
    put(oids::IF_NUMBER, &[], i(ports));
    put(oids::DOT1D_BASE_NUM_PORTS, &[], i(ports));
    for p in 1..=ports {
        let ifx = if_index(p);
        let trunk = p == ports;
        let up = trunk || state.delivering(p);
        put(oids::IF_ENTRY, &[1, ifx], i(ifx));
        put(
            oids::IF_ENTRY,
            &[2, ifx],
            text(if trunk { format!("trunk {p}") } else { format!("PoE port {p}") }),
        );
        put(oids::IF_ENTRY, &[3, ifx], i(6));
        put(oids::IF_ENTRY, &[7, ifx], i(1));
        put(oids::IF_ENTRY, &[8, ifx], i(if up { 1 } else { 2 }));
        put(oids::IF_NAME, &[ifx], text(format!("ge-0/0/{p}")));
        put(oids::DOT1D_BASE_PORT_IFINDEX, &[u32::from(p)], i(ifx));
        if let Some(pvid) = state.pvid.get(&p) {
            put(oids::DOT1Q_PVID, &[u32::from(p)], Value::Gauge32(u32::from(*pvid)));
        }
    }
    for (vid, e) in &state.vlans {
        let vid = u32::from(*vid);
        let plist = |set: &std::collections::BTreeSet<u16>| {
            Value::OctetString(Bytes::from(portlist::encode(set, ports)))
        };
        put(oids::DOT1Q_VLAN_STATIC_ENTRY, &[COL_VLAN_NAME, vid], text(e.name.clone()));
        put(oids::DOT1Q_VLAN_STATIC_ENTRY, &[COL_VLAN_EGRESS, vid], plist(&e.egress));
        put(oids::DOT1Q_VLAN_STATIC_ENTRY, &[COL_VLAN_FORBIDDEN, vid], plist(&Default::default()));
        put(oids::DOT1Q_VLAN_STATIC_ENTRY, &[COL_VLAN_UNTAGGED, vid], plist(&e.untagged));
        put(oids::DOT1Q_VLAN_STATIC_ENTRY, &[COL_VLAN_ROW_STATUS, vid], i(1));
    }
    for f in &state.fdb {
        let mut idx = vec![f.fdb_id];
        idx.extend(f.mac.iter().map(|b| u32::from(*b)));
        put(oids::DOT1Q_TP_FDB_PORT, &idx, i(f.port));
        put(oids::DOT1Q_TP_FDB_STATUS, &idx, i(3));
    }
    let mut total_mw = 0u32;
    for p in 1..=state.pi_ports {
        let admin = state.poe_admin.get(&p).copied().unwrap_or(false);
        // deliveringPower whenever power flows (admin off included: the stuck fault),
        // searching while enabled without power (no device, or refused for the budget).
        let detection = match (admin, state.delivering(p)) {
            (_, true) => 3,
            (true, false) => 2,
            (false, false) => 1,
        };
        put(oids::PETH_PSE_PORT_ENTRY, &[3, 1, u32::from(p)], i(if admin { 1 } else { 2 }));
        put(oids::PETH_PSE_PORT_ENTRY, &[6, 1, u32::from(p)], i(detection));
        put(oids::PORT_POWER_MW, &[u32::from(p)], Value::Gauge32(state.draw_mw(p)));
        total_mw += state.draw_mw(p);
    }
    if state.is_cisco() {
        cisco(state, &mut put);
    }
    super::stp::render(state, &mut put, forward_delay);
    put(oids::PETH_MAIN_PSE_ENTRY, &[2, 1], Value::Gauge32(state.budget_w));
    put(oids::PETH_MAIN_PSE_ENTRY, &[3, 1], i(1));
    put(oids::PETH_MAIN_PSE_ENTRY, &[4, 1], Value::Gauge32(total_mw.div_ceil(1000)));
    v
}

/// Cisco personality: VTP names, vmVlan for access ports, trunk bitmaps and native VLAN
/// for ports with tagged VLANs, cpeExtPsePortEnable.
fn cisco(state: &SimState, put: &mut impl FnMut(&[u32], &[u32], Value)) {
    for (vid, e) in &state.vlans {
        put(oids::CISCO_VTP_VLAN_NAME, &[u32::from(*vid)], text(e.name.clone()));
    }
    for p in 1..=state.bridge_ports() {
        let ifx = if_index(p);
        let native = state.pvid.get(&p).copied().unwrap_or(1);
        let tagged: std::collections::BTreeSet<u16> = state
            .vlans
            .iter()
            .filter(|(v, e)| e.egress.contains(&p) && **v != native)
            .map(|(v, _)| *v)
            .collect();
        if tagged.is_empty() {
            put(oids::CISCO_VM_VLAN, &[ifx], i(native));
        } else {
            let mut all = tagged;
            all.insert(native);
            put(
                oids::CISCO_TRUNK_VLANS_ENABLED,
                &[ifx],
                Value::OctetString(Bytes::from(portlist::encode_vlan_bitmap(&all))),
            );
            put(oids::CISCO_TRUNK_NATIVE_VLAN, &[ifx], i(native));
        }
    }
    for p in 1..=state.pi_ports {
        let on = state.poe_admin.get(&p).copied().unwrap_or(false);
        put(oids::CISCO_PSE_PORT_ENABLE, &[1, u32::from(p)], i(if on { 1 } else { 4 }));
    }
}
