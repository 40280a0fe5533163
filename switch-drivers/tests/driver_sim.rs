//! The standard driver against the virtual switch: power cycle, VLAN move with
//! read-back, a 96-port shelf, drift, MAC table, identity, persistence.

mod common;

use bramble_switch::model::{DetectionStatus, Drift};
use bramble_switch::sim::SimEvent;
use bramble_switch::{PortNo, ShelfPlan, SwitchDriver, VlanId};
use common::{Sim, driver, v2c, v3};
use std::time::Duration;

pub fn shelf(pis: u16, public: u16) -> ShelfPlan {
    ShelfPlan {
        public_vlan: VlanId(public),
        trunk: PortNo(pis + 1),
        pis: (1..=pis).map(|p| (PortNo(p), VlanId(1000 + p))).collect(),
    }
}

#[tokio::test]
async fn power_cycle_a_port_over_v3() {
    let sim = Sim::start(8, None).await;
    let d = driver(v3(sim.addr)).await;
    let mut events = sim.handle.subscribe();
    let before = d.port_power(PortNo(3)).await.expect("read power");
    assert!(before.admin_enabled);
    assert_eq!(before.detection, DetectionStatus::DeliveringPower);
    assert!(before.draw_mw.is_some_and(|mw| (1500..2500).contains(&mw)), "{before:?}");
    d.power_cycle(&[PortNo(3)], Duration::from_millis(50)).await.expect("power cycle");
    assert_eq!(events.recv().await.expect("event"), SimEvent::PowerChanged { port: 3, on: false });
    assert_eq!(events.recv().await.expect("event"), SimEvent::PowerChanged { port: 3, on: true });
    assert_eq!(sim.handle.power_changes(3), 2);
    assert_eq!(sim.handle.power_changes(4), 0);
    d.set_port_power(PortNo(5), false).await.expect("off");
    let off = d.port_power(PortNo(5)).await.expect("read");
    assert_eq!(
        (off.admin_enabled, off.detection, off.draw_mw),
        (false, DetectionStatus::Disabled, Some(0))
    );
}

#[tokio::test]
async fn move_a_port_between_vlans_and_read_back() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    d.create_vlan(VlanId(131), "public").await.expect("public vlan");
    d.create_vlan(VlanId(10), "storage-a").await.expect("vlan 10");
    d.create_vlan(VlanId(20), "storage-b").await.expect("vlan 20");
    let r = d.configure_pi_port(PortNo(4), VlanId(10), VlanId(131)).await.expect("port 4 → 10");
    assert!(r.verified && r.messages >= 1);
    d.configure_pi_port(PortNo(4), VlanId(20), VlanId(131)).await.expect("port 4 → 20");
    let snap = d.snapshot().await.expect("snapshot");
    assert_eq!(snap.pvid.get(&4), Some(&20));
    assert!(!snap.vlans[&10].egress.contains(&4) && !snap.vlans[&1].egress.contains(&4));
    assert!(snap.vlans[&20].untagged.contains(&4) && snap.vlans[&131].egress.contains(&4));
    assert!(!snap.vlans[&131].untagged.contains(&4));
    let st = sim.handle.state();
    assert_eq!(st.pvid.get(&4), Some(&20), "switch's own state agrees");
    d.destroy_vlan(VlanId(10)).await.expect("destroy 10");
    assert!(!d.snapshot().await.expect("snapshot").vlans.contains_key(&10));
    let err =
        d.configure_pi_port(PortNo(42), VlanId(20), VlanId(131)).await.expect_err("no port 42");
    assert!(err.to_string().contains("port 42"), "{err}");
}

#[tokio::test]
async fn configure_and_verify_a_96_port_shelf() {
    let sim = Sim::start(96, None).await;
    let d = driver(v2c(sim.addr)).await;
    let plan = shelf(96, 131);
    let report = d.configure_shelf(&plan).await.expect("shelf");
    assert!(report.verified);
    assert!(report.messages < report.varbinds / 10, "batched: {report:?}");
    let snap = d.snapshot().await.expect("snapshot");
    for p in 1..=96u16 {
        let v = 1000 + p;
        assert_eq!(snap.vlans[&v].untagged, [p].into_iter().collect(), "VLAN {v} untagged");
        assert_eq!(snap.vlans[&v].egress, [p, 97].into_iter().collect(), "VLAN {v} egress");
        assert_eq!(snap.pvid[&p], v);
    }
    assert_eq!(snap.vlans[&131].egress, (1..=97).collect());
    assert!(snap.vlans[&131].untagged.is_empty());
    assert!(d.drift(&plan.desired()).await.expect("drift").is_empty());
    let again = d.configure_shelf(&plan).await.expect("idempotent");
    assert_eq!((again.varbinds, again.messages), (0, 0));
}

#[tokio::test]
async fn drift_mac_table_and_identity() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    let plan = shelf(8, 131);
    d.configure_shelf(&plan).await.expect("shelf");
    // Someone untags port 2 by hand: drift must show it.
    let mut events = sim.handle.subscribe();
    d.configure_pi_port(PortNo(2), VlanId(1005), VlanId(131)).await.expect("manual change");
    assert!(matches!(events.recv().await, Ok(SimEvent::VlanMembershipChanged { .. })));
    let drift = d.drift(&plan.desired()).await.expect("drift");
    assert!(
        drift.contains(&Drift::Pvid { port: 2, expected: 1002, actual: Some(1005) }),
        "{drift:?}"
    );
    sim.handle.inject_mac(1003, [0xb8, 0x27, 0xeb, 0x12, 0x34, 0x56], 3).expect("inject");
    let macs = d.mac_table().await.expect("macs");
    assert_eq!(macs.len(), 1);
    assert_eq!((macs[0].port, macs[0].mac[5], macs[0].fdb_id), (PortNo(3), 0x56, 1003));
    let id = d.identify().await.expect("identify");
    assert_eq!(id.sys_object_id, "1.3.6.1.4.1.99999.1.1");
    assert!(id.sys_descr.contains("8 PoE ports"));
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("switch.json");
    let sim = Sim::start(8, Some(file.clone())).await;
    let d = driver(v2c(sim.addr)).await;
    d.configure_shelf(&shelf(8, 131)).await.expect("shelf");
    d.set_port_power(PortNo(7), false).await.expect("off");
    sim.shutdown().await;
    let sim = Sim::start(8, Some(file)).await;
    let d = driver(v2c(sim.addr)).await;
    assert!(d.drift(&shelf(8, 131).desired()).await.expect("drift").is_empty());
    assert!(!d.port_power(PortNo(7)).await.expect("power").admin_enabled);
}

#[tokio::test]
async fn reads_are_counted_once_per_request_by_the_manager_that_sent_them() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    let total = || sim.handle.reads().values().sum::<u64>();
    let before = total();
    d.port_power(PortNo(3)).await.expect("read power");
    let one = total() - before;
    // One GET of the port's three PoE objects: one request, not three varbinds.
    assert_eq!(one, 1, "{:?}", sim.handle.reads());
    d.port_power(PortNo(4)).await.expect("read power");
    assert_eq!(total() - before, 2);
    d.set_port_power(PortNo(5), false).await.expect("off");
    let manager: std::net::IpAddr = [127, 0, 0, 1].into();
    assert_eq!(sim.handle.reads().keys().copied().collect::<Vec<_>>(), vec![manager]);
}
