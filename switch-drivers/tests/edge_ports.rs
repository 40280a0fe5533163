//! Edge ports end to end against the virtual switch in its three spanning-tree
//! personalities: RSTP-MIB admin edge, BRIDGE-MIB only (spanning tree disabled on the
//! port), and Cisco portfast. A configured shelf's Pi ports forward as soon as they are
//! powered, the trunk keeps spanning tree, and a port changed behind the driver's back
//! reads as drift.

mod common;

use std::time::Duration;

use bramble_switch::model::Drift;
use bramble_switch::sim::SimOptions;
use bramble_switch::{PortNo, ShelfPlan, VlanId, connect};
use common::{COMMUNITY, Sim, v2c};

fn shelf() -> ShelfPlan {
    ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(5),
        pis: (1..=4).map(|p| (PortNo(p), VlanId(100 + p))).collect(),
    }
}

async fn check(opts: SimOptions, undo_port_2: impl Fn(&Sim)) {
    let label = format!("rstp {} cisco {}", opts.rstp, opts.cisco);
    let sim = Sim::start_with(opts).await;
    if sim.handle.state().is_cisco() {
        for (v, name) in &shelf().desired().vlans {
            sim.handle.add_vlan(v.0, name).expect("VTP VLAN");
        }
    }
    for p in 1..=4 {
        sim.handle.set_device_present(p, true).expect("device");
    }
    let d = connect(v2c(sim.addr)).await.expect("connect");
    // Factory state: spanning tree on every port, none an edge port; ports powered at
    // boot listen first.
    assert!(sim.handle.forwarding_in(1).expect("link up") > Duration::from_secs(20), "{label}");
    d.configure_shelf(&shelf()).await.unwrap_or_else(|e| panic!("{label}: {e}"));
    let st = sim.handle.state();
    assert!((1..=4).all(|p| st.forwards_at_link_up(p)), "{label}: every Pi port an edge port");
    assert!(!st.forwards_at_link_up(5), "{label}: the trunk keeps spanning tree");
    assert_eq!(sim.handle.forwarding_in(1), Some(Duration::ZERO), "{label}: forwards now");
    d.set_port_power(PortNo(3), false).await.expect("off");
    d.set_port_power(PortNo(3), true).await.expect("on");
    assert_eq!(sim.handle.forwarding_in(3), Some(Duration::ZERO), "{label}: no delay");
    undo_port_2(&sim);
    let drift = d.drift(&shelf().desired()).await.expect("drift");
    assert_eq!(drift, [Drift::Edge { port: 2, expected: true, actual: Some(false) }], "{label}");
    d.set_port_power(PortNo(2), false).await.expect("off");
    d.set_port_power(PortNo(2), true).await.expect("on");
    let left = sim.handle.forwarding_in(2).expect("link up");
    assert!(left > Duration::from_secs(29), "{label}: a spanning-tree port waits 30 s: {left:?}");
    d.configure_shelf(&shelf()).await.expect("repaired");
    assert_eq!(sim.handle.forwarding_in(2), Some(Duration::ZERO), "{label}: edge again");
    sim.shutdown().await;
}

#[tokio::test]
async fn rstp_switch_gets_admin_edge_ports() {
    let opts = SimOptions::new(4, COMMUNITY);
    check(opts, |sim| sim.handle.set_admin_edge(2, false).expect("undo")).await;
}

#[tokio::test]
async fn switch_without_rstp_gets_spanning_tree_disabled_on_pi_ports() {
    let opts = SimOptions { rstp: false, ..SimOptions::new(4, COMMUNITY) };
    check(opts, |sim| sim.handle.set_stp_enabled(2, true).expect("undo")).await;
}

#[tokio::test]
async fn cisco_switch_gets_portfast() {
    let opts = SimOptions { cisco: true, ..SimOptions::new(4, COMMUNITY) };
    check(opts, |sim| sim.handle.set_admin_edge(2, false).expect("undo")).await;
}
