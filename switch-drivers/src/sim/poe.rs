//! The virtual switch's power sourcing equipment (PSE), pure: which ports actually
//! deliver power, from the admin state, the attached devices, the PoE budget and the
//! injected faults. [`settle`] runs after every change of the state (a SET commit or a
//! lab call), as a real PSE re-runs detection and power allocation.
//!
//! The model, as real switches behave:
//! - a port delivers power only while PoE is admin-enabled, a powered device is attached
//!   and its draw fits in what is left of `pethMainPsePower`; a port refused for the
//!   budget stays admin-enabled, reports `searching` and draws nothing, and is powered
//!   as soon as the budget frees (the PSE keeps detecting);
//! - a port already delivering keeps its power (no port is shed to make room);
//! - the fault [`SimState::stuck_on`]: the admin state changes but power keeps flowing
//!   (a welded relay, or a switch that acknowledges and ignores the SET): detection stays
//!   `deliveringPower` after admin off.

use std::collections::BTreeSet;

use super::state::SimState;

/// The budget of a factory-fresh switch of `pi_ports` ports, in watts: 370 W (a common
/// 48-port PoE+ figure), more for larger simulated switches so every port fits.
pub fn default_budget_w(pi_ports: u16) -> u32 {
    370.max(u32::from(pi_ports) * 4)
}

/// The draw of a device that the lab gave no figure for: about 2 W, a little different
/// per port.
pub fn default_draw_mw(port: u16) -> u32 {
    1900 + u32::from(port) * 37 % 300
}

fn wants_power(st: &SimState, port: u16) -> bool {
    st.poe_admin.get(&port).copied().unwrap_or(false) && present(st, port)
}

fn present(st: &SimState, port: u16) -> bool {
    st.device_present.get(&port).copied().unwrap_or(false)
}

/// What the device in `port` draws while powered, in milliwatts.
pub fn device_draw_mw(st: &SimState, port: u16) -> u32 {
    st.device_draw_mw.get(&port).copied().unwrap_or_else(|| default_draw_mw(port))
}

/// The power all delivering ports draw, in milliwatts.
pub fn consumption_mw(st: &SimState) -> u64 {
    st.powered.iter().map(|p| u64::from(device_draw_mw(st, *p))).sum()
}

/// Re-runs the PSE: drops power where it must stop (unless stuck on), then powers the
/// ports that want it, lowest port first, while each fits the remaining budget; the
/// others are recorded in `denied`.
pub fn settle(st: &mut SimState) {
    let ports: Vec<u16> = (1..=st.pi_ports).collect();
    let keep: BTreeSet<u16> = st
        .powered
        .iter()
        .copied()
        .filter(|p| wants_power(st, *p) || (st.stuck_on.contains(p) && present(st, *p)))
        .collect();
    st.powered = keep;
    let budget = u64::from(st.budget_w) * 1000;
    let mut used = consumption_mw(st);
    let mut denied = BTreeSet::new();
    for p in ports {
        if !wants_power(st, p) || st.powered.contains(&p) {
            continue;
        }
        let draw = u64::from(device_draw_mw(st, p));
        if used + draw <= budget {
            st.powered.insert(p);
            used += draw;
        } else {
            denied.insert(p);
        }
    }
    st.denied = denied;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(ports: u16, budget_w: u32, draw_mw: u32) -> SimState {
        let mut st = SimState::new(ports);
        st.budget_w = budget_w;
        st.device_draw_mw = (1..=ports).map(|p| (p, draw_mw)).collect();
        st.powered.clear();
        settle(&mut st);
        st
    }

    #[test]
    fn ports_beyond_the_budget_stay_unpowered_until_it_frees() {
        let mut st = switch(8, 20, 6_000);
        assert_eq!(st.powered, [1, 2, 3].into());
        assert_eq!(st.denied, [4, 5, 6, 7, 8].into());
        // A powered device that draws less makes room for the next port.
        st.device_draw_mw.insert(1, 1_000);
        settle(&mut st);
        assert_eq!(st.powered, [1, 2, 3, 4].into(), "13 W used, 7 W free: one more");
        st.device_draw_mw.insert(2, 1_000);
        settle(&mut st);
        assert_eq!(st.powered, [1, 2, 3, 4, 5].into(), "14 W used, 6 W free: one more");
        st.poe_admin.insert(3, false);
        settle(&mut st);
        assert_eq!(st.powered, [1, 2, 4, 5, 6].into());
        assert_eq!(st.denied, [7, 8].into());
        assert!(consumption_mw(&st) <= 20_000);
    }

    #[test]
    fn a_stuck_port_keeps_delivering_after_admin_off() {
        let mut st = switch(4, 100, 2_000);
        st.stuck_on.insert(2);
        st.poe_admin.insert(2, false);
        st.poe_admin.insert(3, false);
        settle(&mut st);
        assert!(st.powered.contains(&2), "stuck on");
        assert!(!st.powered.contains(&3));
        // Unplugging the device still stops it.
        st.device_present.insert(2, false);
        settle(&mut st);
        assert!(!st.powered.contains(&2));
    }
}
