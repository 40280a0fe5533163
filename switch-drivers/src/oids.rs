//! The MIB objects the drivers and the virtual switch use, as OID arc slices.
//!
//! Standard MIBs: SNMPv2-MIB system group, IF-MIB, BRIDGE-MIB (RFC 4188),
//! RSTP-MIB (RFC 4318), Q-BRIDGE-MIB (RFC 4363), POWER-ETHERNET-MIB (RFC 3621). Cisco:
//! CISCO-VLAN-MEMBERSHIP-MIB, CISCO-VTP-MIB, CISCO-POWER-ETHERNET-EXT-MIB,
//! CISCO-STP-EXTENSIONS-MIB.

use async_snmp::Oid;

pub const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
pub const SYS_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
pub const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];

/// IF-MIB ifTable entry; columns 1 ifIndex, 2 ifDescr, 3 ifType, 7 ifAdminStatus, 8 ifOperStatus.
pub const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
/// IF-MIB ifNumber.0
pub const IF_NUMBER: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1, 0];
/// ifXTable ifName column.
pub const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];

/// BRIDGE-MIB dot1dBaseNumPorts.0
pub const DOT1D_BASE_NUM_PORTS: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 1, 2, 0];
/// BRIDGE-MIB dot1dBasePortIfIndex.<port>
pub const DOT1D_BASE_PORT_IFINDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2];

/// BRIDGE-MIB (RFC 4188) dot1dStpForwardDelay.0 (centiseconds, the value in use).
pub const DOT1D_STP_FORWARD_DELAY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 2, 11, 0];
/// BRIDGE-MIB dot1dStpPortState.<port> (1 disabled, 2 blocking, 3 listening, 4 learning,
/// 5 forwarding, 6 broken).
pub const DOT1D_STP_PORT_STATE: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 2, 15, 1, 3];
/// BRIDGE-MIB dot1dStpPortEnable.<port> (1 enabled, 2 disabled).
pub const DOT1D_STP_PORT_ENABLE: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 2, 15, 1, 4];
/// RSTP-MIB (RFC 4318) dot1dStpVersion.0 (0 stpCompatible, 2 rstp, 3 mstp); absent on
/// a bridge without the RSTP-MIB.
pub const DOT1D_STP_VERSION: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 2, 16, 0];
/// RSTP-MIB dot1dStpPortAdminEdgePort.<port> (TruthValue: 1 true, 2 false).
pub const DOT1D_STP_PORT_ADMIN_EDGE: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 2, 19, 1, 2];

/// Q-BRIDGE-MIB dot1qVlanStaticEntry; columns below, indexed by VLAN id.
pub const DOT1Q_VLAN_STATIC_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 3, 1];
pub const COL_VLAN_NAME: u32 = 1;
pub const COL_VLAN_EGRESS: u32 = 2;
pub const COL_VLAN_FORBIDDEN: u32 = 3;
pub const COL_VLAN_UNTAGGED: u32 = 4;
pub const COL_VLAN_ROW_STATUS: u32 = 5;
/// Q-BRIDGE-MIB dot1qPvid.<basePort>
pub const DOT1Q_PVID: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1];
/// Q-BRIDGE-MIB dot1qTpFdbPort.<fdbId>.<mac 6 arcs>
pub const DOT1Q_TP_FDB_PORT: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 2];
/// Q-BRIDGE-MIB dot1qTpFdbStatus.<fdbId>.<mac>
pub const DOT1Q_TP_FDB_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 3];

/// POWER-ETHERNET-MIB pethPsePortEntry; columns 3 AdminEnable, 6 DetectionStatus, indexed group.port.
pub const PETH_PSE_PORT_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 105, 1, 1, 1];
pub const COL_PSE_ADMIN: u32 = 3;
pub const COL_PSE_DETECTION: u32 = 6;
/// pethMainPseEntry; columns 2 Power (W), 3 OperStatus, 4 ConsumptionPower (W), indexed by group.
pub const PETH_MAIN_PSE_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 105, 1, 3, 1, 1];
/// Per-port power draw in milliwatts. RFC 3621 has no per-port power object, so this
/// follows the widespread vendor convention of a private column (here under the
/// simulator's enterprise arc); drivers treat it as optional.
pub const PORT_POWER_MW: &[u32] = &[1, 3, 6, 1, 4, 1, 99999, 105, 1, 1];

/// Cisco CISCO-VLAN-MEMBERSHIP-MIB vmVlan.<ifIndex>
pub const CISCO_VM_VLAN: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 68, 1, 2, 2, 1, 2];
/// Cisco CISCO-VTP-MIB vlanTrunkPortVlansEnabled.<ifIndex> (VLANs 0-1023 bitmap)
pub const CISCO_TRUNK_VLANS_ENABLED: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 46, 1, 6, 1, 1, 4];
/// Cisco CISCO-VTP-MIB vlanTrunkPortNativeVlan.<ifIndex>
pub const CISCO_TRUNK_NATIVE_VLAN: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 46, 1, 6, 1, 1, 5];
/// Cisco CISCO-POWER-ETHERNET-EXT-MIB cpeExtPsePortEnable.<group>.<port> (1 auto, 2 static, 3 limit, 4 disable)
pub const CISCO_PSE_PORT_ENABLE: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 402, 1, 2, 1, 1, 1];
/// Cisco CISCO-VTP-MIB vtpVlanName.1.<vlan>
pub const CISCO_VTP_VLAN_NAME: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 46, 1, 3, 1, 1, 4, 1];
/// Cisco CISCO-STP-EXTENSIONS-MIB stpxFastStartPortMode.<bridge port> (portfast: 1
/// enable, 2 disable, 3 enableForTrunk, 4 default, 5 network): stpxFastStartPortTable
/// is 1.3.6.1.4.1.9.9.82.1.9.3, its mode column 3.
pub const CISCO_STPX_FAST_START_PORT_MODE: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 82, 1, 9, 3, 1, 3];
/// Cisco enterprise prefix; any sysObjectID under it selects the Cisco driver.
pub const CISCO_ENTERPRISE: &[u32] = &[1, 3, 6, 1, 4, 1, 9];
/// The virtual switch's sysObjectID in its Cisco personality (a Catalyst-style arc).
pub const SIM_CISCO_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 1, 2277];
/// The virtual switch's sysObjectID (standard-MIB personality).
pub const SIM_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 4, 1, 99999, 1, 1];

/// Builds `base.suffix...`.
pub fn oid(base: &[u32], suffix: &[u32]) -> Oid {
    let mut arcs = base.to_vec();
    arcs.extend_from_slice(suffix);
    Oid::from_slice(&arcs)
}

/// A column of dot1qVlanStaticEntry for one VLAN.
pub fn vlan_col(col: u32, vlan: u16) -> Oid {
    oid(DOT1Q_VLAN_STATIC_ENTRY, &[col, u32::from(vlan)])
}

/// A column of pethPsePortEntry for one port of group 1.
pub fn pse_col(col: u32, port: u16) -> Oid {
    oid(PETH_PSE_PORT_ENTRY, &[col, 1, u32::from(port)])
}
