//! Edge ports: which spanning-tree object makes a port forward as soon as its link comes
//! up, and the pure SET plan and read-back for it.
//!
//! A port running spanning tree spends forward delay (15 s) listening and another
//! learning before it forwards a frame; a Pi 3B's boot ROM sends its five DISCOVERs in
//! about 25 s and then gives up until power-cycled. So every Pi port is an edge port:
//! - RSTP-MIB (RFC 4318) `dot1dStpPortAdminEdgePort` true, where the switch has it
//!   ([`crate::detect::stp_mib_for`] asks `dot1dStpVersion`);
//! - else BRIDGE-MIB (RFC 4188) `dot1dStpPortEnable` disabled on the port;
//! - Cisco: portfast, CISCO-STP-EXTENSIONS-MIB `stpxFastStartPortMode` enable.
//!
//! All three are indexed by bridge port; the model's `edge` flag is the same fact
//! whichever object carries it. The SETs are planned by [`crate::plan::edge_plan`].

use crate::oids;
use async_snmp::{Oid, VarBind};
use std::collections::BTreeMap;

/// TruthValue and enable/disable encodings.
const TRUE: i32 = 1;
const FALSE: i32 = 2;
/// stpxFastStartPortMode enableForTrunk(3): portfast on a trunk port, also an edge.
const CISCO_ENABLE_FOR_TRUNK: i32 = 3;

/// The object a switch makes edge ports with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StpMib {
    /// RSTP-MIB `dot1dStpPortAdminEdgePort`.
    Rstp,
    /// BRIDGE-MIB `dot1dStpPortEnable` (an edge port runs no spanning tree).
    Stp,
    /// CISCO-STP-EXTENSIONS-MIB `stpxFastStartPortMode`.
    CiscoPortfast,
}

impl StpMib {
    /// The column, indexed by bridge port.
    pub fn column(self) -> &'static [u32] {
        match self {
            StpMib::Rstp => oids::DOT1D_STP_PORT_ADMIN_EDGE,
            StpMib::Stp => oids::DOT1D_STP_PORT_ENABLE,
            StpMib::CiscoPortfast => oids::CISCO_STPX_FAST_START_PORT_MODE,
        }
    }

    /// The instance for `port`.
    pub fn oid(self, port: u16) -> Oid {
        oids::oid(self.column(), &[u32::from(port)])
    }

    /// The value that makes a port an edge port (`edge`) or a spanning-tree port.
    pub fn encode(self, edge: bool) -> i32 {
        match (self, edge) {
            (StpMib::Rstp | StpMib::CiscoPortfast, true) => TRUE,
            (StpMib::Rstp | StpMib::CiscoPortfast, false) => FALSE,
            // dot1dStpPortEnable: enabled(1) is a spanning-tree port.
            (StpMib::Stp, true) => FALSE,
            (StpMib::Stp, false) => TRUE,
        }
    }

    /// Whether a read value means an edge port; `None` for a value outside the MIB.
    /// Cisco's default(4) follows a global setting Bramble does not read: not an edge.
    pub fn decode(self, value: i32) -> Option<bool> {
        match (self, value) {
            (StpMib::CiscoPortfast, CISCO_ENABLE_FOR_TRUNK) => Some(true),
            (StpMib::CiscoPortfast, 4 | 5) => Some(false),
            (_, TRUE | FALSE) => Some(value == self.encode(true)),
            _ => None,
        }
    }
}

/// The edge flags in a walk of `mib`'s column (rows with other values are left out, so
/// they read as drift).
pub fn read_edges(walk: &[VarBind], mib: StpMib) -> BTreeMap<u16, bool> {
    walk.iter()
        .filter_map(|vb| {
            let [port] = vb.oid.arcs().strip_prefix(mib.column())? else {
                return None;
            };
            let edge = mib.decode(vb.value.as_i32()?)?;
            Some((u16::try_from(*port).ok()?, edge))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, DesiredConfig, Drift, PortNo, ShelfPlan, SwitchSnapshot, VlanId};
    use crate::plan::edge_plan;
    use async_snmp::Value;

    fn shelf() -> DesiredConfig {
        ShelfPlan {
            public_vlan: VlanId(131),
            trunk: PortNo(4),
            pis: [(PortNo(1), VlanId(201)), (PortNo(2), VlanId(202))].into_iter().collect(),
        }
        .desired()
    }

    #[test]
    fn every_pi_port_of_a_shelf_is_an_edge_port_and_the_trunk_is_not_named() {
        let d = shelf();
        assert_eq!(d.edge, [(PortNo(1), true), (PortNo(2), true)].into_iter().collect());
    }

    #[test]
    fn a_non_edge_pi_port_is_drift_and_a_missing_row_too() {
        let actual = SwitchSnapshot {
            edge: [(1, true), (2, false)].into_iter().collect(),
            ..Default::default()
        };
        let drift: Vec<_> = model::drift(&shelf(), &actual)
            .into_iter()
            .filter(|d| matches!(d, Drift::Edge { .. }))
            .collect();
        assert_eq!(drift, [Drift::Edge { port: 2, expected: true, actual: Some(false) }]);
        let unread = SwitchSnapshot::default();
        let drift = model::drift(&shelf(), &unread);
        assert!(
            drift.contains(&Drift::Edge { port: 1, expected: true, actual: None }),
            "{drift:?}"
        );
    }

    #[test]
    fn plan_sets_only_ports_that_differ_with_each_mibs_values() {
        let current = SwitchSnapshot {
            edge: [(1, true), (2, false)].into_iter().collect(),
            ..Default::default()
        };
        let target = model::apply_desired(&current, &shelf());
        let cases = [
            (StpMib::Rstp, "1.3.6.1.2.1.17.2.19.1.2.2", 1),
            (StpMib::Stp, "1.3.6.1.2.1.17.2.15.1.4.2", 2),
            (StpMib::CiscoPortfast, "1.3.6.1.4.1.9.9.82.1.9.3.1.3.2", 1),
        ];
        for (mib, oid, value) in cases {
            let plan = edge_plan(&current, &target, mib);
            let got: Vec<_> = plan.iter().map(|(o, v)| (o.to_string(), v.as_i32())).collect();
            assert_eq!(got, [(oid.to_string(), Some(value))], "{mib:?}");
        }
        assert!(edge_plan(&target, &target, StpMib::Rstp).is_empty());
    }

    #[test]
    fn read_back_decodes_what_the_plan_wrote() {
        for mib in [StpMib::Rstp, StpMib::Stp, StpMib::CiscoPortfast] {
            let walk: Vec<VarBind> = [(1, true), (2, false)]
                .into_iter()
                .map(|(p, e)| VarBind::new(mib.oid(p), Value::Integer(mib.encode(e))))
                .chain([VarBind::new(mib.oid(3), Value::Integer(9))])
                .collect();
            let edges = read_edges(&walk, mib);
            assert_eq!(edges, [(1, true), (2, false)].into_iter().collect(), "{mib:?}");
        }
        assert_eq!(StpMib::CiscoPortfast.decode(3), Some(true));
        assert_eq!(StpMib::CiscoPortfast.decode(4), Some(false));
    }
}
