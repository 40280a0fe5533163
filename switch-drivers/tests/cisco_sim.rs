//! Driver selection by sysObjectID and the Cisco driver against the virtual switch in
//! its Cisco personality (vmVlan, vlanTrunkPortVlansEnabled, cpeExtPsePortEnable).

mod common;

use bramble_switch::model::DetectionStatus;
use bramble_switch::{PortNo, ShelfPlan, VlanId, connect};
use common::{Sim, start_cisco, v2c};

#[tokio::test]
async fn connect_picks_the_driver_by_sys_object_id() {
    let cisco = start_cisco(4).await;
    let d = connect(v2c(cisco.addr)).await.expect("connect");
    assert!(d.identify().await.expect("id").sys_object_id.starts_with("1.3.6.1.4.1.9."));
    assert!(format!("{:?}", d.identify().await.expect("id")).contains("Cisco"));
    let standard = Sim::start(4, None).await;
    let d = connect(v2c(standard.addr)).await.expect("connect");
    assert!(d.identify().await.expect("id").sys_object_id.starts_with("1.3.6.1.4.1.99999."));
}

#[tokio::test]
async fn cisco_driver_configures_a_shelf_and_powers_ports() {
    let sim = start_cisco(8).await;
    let plan = ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(9),
        pis: (1..=8).map(|p| (PortNo(p), VlanId(100 + p))).collect(),
    };
    for (name, v) in plan.desired().vlans.iter().map(|(v, n)| (n.clone(), v.0)) {
        sim.handle.add_vlan(v, &name).expect("VTP VLAN");
    }
    let d = connect(v2c(sim.addr)).await.expect("connect");
    let report = d.configure_shelf(&plan).await.expect("cisco shelf");
    assert!(report.verified && report.varbinds > 0);
    let st = sim.handle.state();
    assert_eq!(st.pvid[&3], 103);
    assert_eq!(st.vlans[&103].untagged, [3].into_iter().collect());
    assert!(st.vlans[&131].egress.contains(&3) && st.vlans[&103].egress.contains(&9));
    assert!(d.drift(&plan.desired()).await.expect("drift").is_empty());

    d.set_port_power(PortNo(4), false).await.expect("cpeExtPsePortEnable disable");
    let p = d.port_power(PortNo(4)).await.expect("power");
    assert_eq!((p.admin_enabled, p.detection), (false, DetectionStatus::Disabled));
    assert_eq!(sim.handle.power_changes(4), 1);
    let err = d.create_vlan(VlanId(999), "new").await.expect_err("VTP edit buffer not implemented");
    assert!(err.to_string().contains("VTP"), "{err}");
}
