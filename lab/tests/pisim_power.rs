//! A Pi 3B's DHCP budget (five DISCOVERs, then silence until power-cycled) and power
//! cycling through `set_power`, against dnsmasq and nfs-ganesha.

mod pisim_support;

use std::time::{Duration, Instant};

use bramble_lab::pisim::{BootFailure, Event, PiModel, PiSim, PiState};
use pisim_support::Anchor;

fn discovers(sim: &PiSim) -> usize {
    sim.status().timeline.iter().filter(|e| matches!(e.event, Event::DhcpDiscover { .. })).count()
}

fn dump(sim: &PiSim) -> String {
    sim.status().timeline.iter().map(|e| format!("{:>8.3?} {:?}\n", e.elapsed, e.event)).collect()
}

fn link_is_down(ns: &bramble_lab::Netns) -> bool {
    ns.ip(&["link", "show", "eth0"]).expect("link show").contains("state DOWN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi3b_gives_up_after_five_tries_and_boots_after_a_power_cycle() {
    let mut lab = Anchor::new();
    let mut cfg = lab.add_pi(PiModel::Pi3B, 0x0050_0e01);
    // dnsmasq pings an address before offering it (about 3 s with the reply delay), so
    // the budget must outlast that for the boot after the power cycle.
    cfg.dhcp_interval = Duration::from_secs(1);
    let sim = PiSim::new(cfg);

    // Nothing answers: five DISCOVERs 1 s apart, then GaveUp.
    let start = Instant::now();
    sim.set_power(true).await.expect("power on");
    let state = sim.wait_for(Duration::from_secs(10), PiState::is_terminal).await;
    assert_eq!(state, PiState::GaveUp);
    assert!(
        start.elapsed() >= Duration::from_millis(4900),
        "gave up too early: {:?}",
        start.elapsed()
    );
    assert_eq!(discovers(&sim), 5);

    // A server appearing later does not help, nor does pressing "on" again.
    lab.start_dnsmasq();
    sim.set_power(true).await.expect("power on again");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.state(), PiState::GaveUp);
    assert_eq!(discovers(&sim), 5);

    // A power cycle does: firmware and kernel load, but no NFS server answers yet.
    sim.set_power(false).await.expect("power off");
    assert_eq!(sim.state(), PiState::Off);
    assert!(link_is_down(&lab.slots[0].netns), "power off must take the link down");
    sim.set_power(true).await.expect("power on");
    let state = sim.wait_for(Duration::from_secs(60), PiState::is_terminal).await;
    assert!(
        matches!(&state, PiState::Failed(BootFailure::NfsUnreachable { server, .. }) if *server == lab.slots[0].server()),
        "{state:?}\n{}",
        dump(&sim)
    );

    // With ganesha serving the root, the next power cycle boots.
    lab.start_ganesha();
    sim.set_power(false).await.expect("power off");
    sim.set_power(true).await.expect("power on");
    let state = sim.wait_for(Duration::from_secs(60), PiState::is_terminal).await;
    assert_eq!(state, PiState::Booted, "{}\ndnsmasq:\n{}", dump(&sim), lab.dnsmasq_log());
    let counters = sim.status().counters;
    assert_eq!((counters.power_ons, counters.boots), (3, 1));

    // Power off in the middle of a boot aborts it; the next power-on boots from scratch.
    sim.set_power(false).await.expect("power off");
    sim.set_power(true).await.expect("power on");
    let tftp = sim.wait_for(Duration::from_secs(20), |s| matches!(s, PiState::Tftp { .. })).await;
    assert!(matches!(tftp, PiState::Tftp { .. }), "{tftp:?}");
    sim.set_power(false).await.expect("power off mid-boot");
    assert_eq!(sim.state(), PiState::Off);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.state(), PiState::Off, "an aborted boot must not carry on");
    sim.set_power(true).await.expect("power on");
    let state = sim.wait_for(Duration::from_secs(60), PiState::is_terminal).await;
    assert_eq!(state, PiState::Booted);
    assert_eq!(sim.status().counters.boots, 2);
    assert_eq!(sim.status().counters.power_ons, 5);
}

#[tokio::test]
async fn powering_a_pi_without_its_namespace_is_a_typed_error() {
    let cfg = bramble_lab::pisim::PiSimConfig::new(
        PiModel::Pi4,
        bramble_lab::pisim::Serial(1),
        &bramble_lab::unique_name("psx"),
    );
    let sim = PiSim::new(cfg);
    let err = sim.set_power(true).await.expect_err("no such namespace");
    assert!(matches!(err, bramble_lab::pisim::PiSimError::Link { .. }), "{err:?}");
    assert_eq!(sim.state(), PiState::Off);
}
