//! Spanning tree and the Pi 3B's boot ROM on a virtual shelf. Racking makes every Pi
//! port an edge port, so racked Pis boot at once; a port made a spanning-tree port
//! behind Bramble's back listens and learns after power-on, its frames dropped on the
//! lab's wire, and the Pi 3B behind it sends its five DISCOVERs into nothing and gives
//! up until power-cycled, as on a real switch.
//!
//! Timings: DISCOVERs 1 s apart (the real ROM: 5 s) and a forward delay of 4 s (real
//! switches: 15 s), so the port holds 8 s against the ROM's 5 s, the real ratio kept
//! (30 s against 25 s).

use std::time::{Duration, Instant};

use bramble::lab::wiring::model_for;
use bramble_lab::pisim::{PiModel, PiState};
use bramble_tests::shelf;

const PI_3B_PORT: u16 = 4;

/// The ROM got its DHCP answer: TFTP or later, and not given up.
fn past_dhcp(s: &PiState) -> bool {
    !matches!(s, PiState::Off | PiState::DhcpDiscovering { .. } | PiState::GaveUp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racked_ports_boot_and_a_spanning_tree_port_loses_the_pi_3b() {
    let _turn = shelf::serial().await;
    let started = Instant::now();
    let mut opts = shelf::options(4, 41, 'y');
    opts.stp_forward_delay = Duration::from_secs(4);
    // This test changes the switch behind Bramble's back; the reconciler would undo it.
    opts.reconcile_seconds = 3600;
    assert_eq!(model_for(PI_3B_PORT), PiModel::Pi3B);
    let lab = shelf::racked(opts).await;

    // Racked: every Pi port an edge port, forwarding, and every Pi ready (checked by
    // `racked`): each got its DHCP answer the moment it was powered.
    let st = lab.switch.state();
    assert!((1..=4).all(|p| st.forwards_at_link_up(p)), "every Pi port an edge port");
    assert!((1..=4).all(|p| lab.switch.forwarding_in(p) == Some(Duration::ZERO)));
    let sim = lab.cabling.sim(PI_3B_PORT).expect("the Pi 3B's simulator");
    let racked = sim.state();
    assert!(past_dhcp(&racked), "racked Pi 3B: {racked}");

    // At the switch's console: port 3 is no edge port any more; its Pi is power-cycled.
    lab.switch.set_admin_edge(PI_3B_PORT, false).expect("console");
    lab.switch.set_poe_admin(PI_3B_PORT, false).expect("off");
    assert_eq!(sim.wait_for(Duration::from_secs(5), |s| *s == PiState::Off).await, PiState::Off);
    let powered = Instant::now();
    lab.switch.set_poe_admin(PI_3B_PORT, true).expect("on");
    let held = lab.switch.forwarding_in(PI_3B_PORT).expect("link up");
    assert!(held > Duration::from_secs(7), "listening and learning: {held:?}");
    let state = sim.wait_for(Duration::from_secs(15), PiState::is_terminal).await;
    assert_eq!(state, PiState::GaveUp, "the Pi 3B behind a spanning-tree port");
    let gave_up = powered.elapsed();
    let left = lab.switch.forwarding_in(PI_3B_PORT).expect("link up");
    assert!(!left.is_zero(), "gave up after {gave_up:?}, before its port forwarded");

    // Once the port forwards the ROM stays silent: only a power cycle helps.
    tokio::time::sleep(left + Duration::from_millis(1500)).await;
    assert_eq!(lab.switch.forwarding_in(PI_3B_PORT), Some(Duration::ZERO));
    assert_eq!(sim.state(), PiState::GaveUp, "still given up on a forwarding port");

    // An edge port again: the same board, power-cycled, boots as it did when racked.
    lab.switch.set_admin_edge(PI_3B_PORT, true).expect("console");
    lab.switch.set_poe_admin(PI_3B_PORT, false).expect("off");
    sim.wait_for(Duration::from_secs(5), |s| *s == PiState::Off).await;
    lab.switch.set_poe_admin(PI_3B_PORT, true).expect("on");
    let state = sim.wait_for(Duration::from_secs(20), past_dhcp).await;
    assert!(past_dhcp(&state), "the Pi 3B on an edge port again: {state}");
    eprintln!(
        "spanning tree: the Pi 3B gave up {gave_up:?} after power-on; test took {:?}",
        started.elapsed()
    );
    lab.down().await;
}
