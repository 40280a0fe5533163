//! The virtual switch's PSE through the standard driver: the budget as
//! pethMainPsePower / pethMainPseConsumptionPower, ports refused power beyond it
//! (admin on, searching, no draw), powered once it frees, and the stuck-on fault (admin
//! off read back, detection still deliveringPower).

mod common;

use bramble_switch::model::DetectionStatus;
use bramble_switch::{PortNo, SwitchDriver};
use common::{Sim, driver, v2c};

#[tokio::test]
async fn the_budget_is_read_and_enforced() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    let off: Vec<_> = (1..=8).map(|p| (PortNo(p), false)).collect();
    d.set_ports_power(&off).await.expect("all off");
    for p in 1..=8 {
        sim.handle.set_device_draw(p, 6_000).expect("draw");
    }
    sim.handle.set_poe_budget(20).expect("budget");
    let b = d.poe_budget().await.expect("budget");
    assert_eq!((b.power_w, b.consumption_w), (20, 0));

    let on: Vec<_> = (1..=4).map(|p| (PortNo(p), true)).collect();
    d.set_ports_power(&on).await.expect("admin on is accepted");
    let b = d.poe_budget().await.expect("budget");
    assert_eq!((b.power_w, b.consumption_w), (20, 18), "three 6 W devices fit in 20 W");
    let refused = d.port_power(PortNo(4)).await.expect("read");
    assert_eq!(
        (refused.admin_enabled, refused.detection, refused.draw_mw),
        (true, DetectionStatus::Searching, Some(0))
    );
    assert_eq!(sim.handle.power_denials(), 1);
    // Port 1's device settles at 1 W: port 4 is powered without another SET.
    sim.handle.set_device_draw(1, 1_000).expect("draw");
    let now = d.port_power(PortNo(4)).await.expect("read");
    assert_eq!(now.detection, DetectionStatus::DeliveringPower);
    assert_eq!(d.poe_budget().await.expect("budget").consumption_w, 19);
}

#[tokio::test]
async fn a_stuck_port_reads_admin_off_and_delivering() {
    let sim = Sim::start(4, None).await;
    let d = driver(v2c(sim.addr)).await;
    sim.handle.set_stuck_on(2, true).expect("fault");
    let sets = sim.handle.sets();
    d.set_port_power(PortNo(2), false).await.expect("the SET and its admin read-back succeed");
    assert_eq!(sim.handle.sets(), sets + 1);
    let p = d.port_power(PortNo(2)).await.expect("read");
    assert!(!p.admin_enabled);
    assert_eq!(p.detection, DetectionStatus::DeliveringPower);
    assert!(p.draw_mw.is_some_and(|mw| mw > 0));
    assert!(sim.handle.state().delivering(2));
    sim.handle.set_stuck_on(2, false).expect("clear");
    assert_eq!(d.port_power(PortNo(2)).await.expect("read").detection, DetectionStatus::Disabled);
}
