//! Spanning tree on the virtual switch: the edge-port objects (RSTP-MIB
//! `dot1dStpPortAdminEdgePort`, BRIDGE-MIB `dot1dStpPortEnable`, Cisco
//! `stpxFastStartPortMode`) and the listening and learning delay of a port that is not
//! an edge port, as a clock of when each port whose link is up starts forwarding.
//!
//! A port's link is up while it delivers PoE (the Pi behind it runs). When the link
//! comes up on a spanning-tree port, the port listens for forward delay, learns for
//! another, then forwards; an edge port (or one with spanning tree disabled) forwards at
//! once, and a port that becomes an edge port while it waits forwards from then on. The
//! lab asks [`StpClock::forwarding_in`] and drops the port's frames until then.

use super::state::{Change, SimState};
use crate::error::SimError;
use crate::oids;
use async_snmp::{Oid, SetTestError, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// IEEE 802.1D's default forward delay.
pub const DEFAULT_FORWARD_DELAY: Duration = Duration::from_secs(15);

/// dot1dStpPortState values.
pub const PORT_DISABLED: i32 = 1;
pub const PORT_LISTENING: i32 = 3;
pub const PORT_LEARNING: i32 = 4;
pub const PORT_FORWARDING: i32 = 5;

impl SimState {
    /// Whether spanning tree runs on `port` (`dot1dStpPortEnable`; on by default).
    pub fn stp_enabled(&self, port: u16) -> bool {
        self.stp_enabled.get(&port).copied().unwrap_or(true)
    }

    /// Whether `port` is configured as an edge port (RSTP admin edge or Cisco portfast;
    /// off by default).
    pub fn admin_edge(&self, port: u16) -> bool {
        self.admin_edge.get(&port).copied().unwrap_or(false)
    }

    /// Whether `port` forwards as soon as its link is up: spanning tree off on it, or
    /// an edge port on a switch that has edge ports (RSTP-MIB, or Cisco portfast).
    pub fn forwards_at_link_up(&self, port: u16) -> bool {
        !self.stp_enabled(port) || (self.admin_edge(port) && (self.rstp || self.is_cisco()))
    }
}

/// Decodes a SET of an edge-port object; `None` when `arcs` names none of them (or the
/// RSTP object on a switch without the RSTP-MIB, or portfast on a non-Cisco one).
pub fn decode(
    state: &SimState,
    arcs: &[u32],
    value: &Value,
) -> Option<Result<Change, SetTestError>> {
    let port_in = |port: &u32| {
        u16::try_from(*port)
            .ok()
            .filter(|p| (1..=state.bridge_ports()).contains(p))
            .ok_or(SetTestError::NoCreation)
    };
    let truth = |v: &Value| match v {
        Value::Integer(1) => Ok(true),
        Value::Integer(2) => Ok(false),
        Value::Integer(_) => Err(SetTestError::WrongValue),
        _ => Err(SetTestError::WrongType),
    };
    if let Some([port]) = arcs.strip_prefix(oids::DOT1D_STP_PORT_ENABLE) {
        return Some(port_in(port).and_then(|p| Ok(Change::StpEnable(p, truth(value)?))));
    }
    if state.rstp
        && let Some([port]) = arcs.strip_prefix(oids::DOT1D_STP_PORT_ADMIN_EDGE)
    {
        return Some(port_in(port).and_then(|p| Ok(Change::AdminEdge(p, truth(value)?))));
    }
    if state.is_cisco()
        && let Some([port]) = arcs.strip_prefix(oids::CISCO_STPX_FAST_START_PORT_MODE)
    {
        let mode = match value {
            Value::Integer(1 | 3) => Ok(true),
            Value::Integer(2 | 4 | 5) => Ok(false),
            Value::Integer(_) => Err(SetTestError::WrongValue),
            _ => Err(SetTestError::WrongType),
        };
        return Some(port_in(port).and_then(|p| Ok(Change::AdminEdge(p, mode?))));
    }
    None
}

/// The configuration objects in the MIB view (the port state is live: see
/// [`StpClock::port_state`]).
pub fn render(
    state: &SimState,
    put: &mut impl FnMut(&[u32], &[u32], Value),
    forward_delay: Duration,
) {
    let truth = |b: bool| Value::Integer(if b { 1 } else { 2 });
    let centis = i32::try_from(forward_delay.as_millis() / 10).unwrap_or(i32::MAX);
    put(oids::DOT1D_STP_FORWARD_DELAY, &[], Value::Integer(centis));
    if state.rstp {
        put(oids::DOT1D_STP_VERSION, &[], Value::Integer(2));
    }
    for p in 1..=state.bridge_ports() {
        let port = [u32::from(p)];
        put(oids::DOT1D_STP_PORT_STATE, &port, Value::Integer(PORT_DISABLED));
        put(oids::DOT1D_STP_PORT_ENABLE, &port, truth(state.stp_enabled(p)));
        if state.rstp {
            put(oids::DOT1D_STP_PORT_ADMIN_EDGE, &port, truth(state.admin_edge(p)));
        }
        if state.is_cisco() {
            put(oids::CISCO_STPX_FAST_START_PORT_MODE, &port, truth(state.admin_edge(p)));
        }
    }
}

/// Spanning tree's part of the lab API.
impl super::SimHandle {
    /// How long until `port` forwards frames (zero once it does), by the spanning-tree
    /// clock; `None` while its link is down (no power delivered).
    pub fn forwarding_in(&self, port: u16) -> Option<Duration> {
        self.core.stp.forwarding_in(port, Instant::now())
    }
    /// Lab API: make `port` an edge port or not (RSTP admin edge, Cisco portfast)
    /// behind the manager's back, as an operator at the console would.
    pub fn set_admin_edge(&self, port: u16, edge: bool) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.admin_edge.insert(port, edge);
        })
    }
    /// Lab API: whether spanning tree runs on `port` (`dot1dStpPortEnable`).
    pub fn set_stp_enabled(&self, port: u16, on: bool) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.stp_enabled.insert(port, on);
        })
    }
    /// Lab API: PoE admin state of `port`, set at the switch's console (the manager is
    /// not asked; the lab's cabling follows it like any power change).
    pub fn set_poe_admin(&self, port: u16, on: bool) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.poe_admin.insert(port, on);
        })
    }
}

/// When each port whose link is up forwards.
#[derive(Debug)]
pub struct StpClock {
    forward_delay: Mutex<Duration>,
    /// Port → the instant it forwards (past or future); absent while its link is down.
    forwarding_at: Mutex<BTreeMap<u16, Instant>>,
}

impl Default for StpClock {
    fn default() -> Self {
        StpClock {
            forward_delay: Mutex::new(DEFAULT_FORWARD_DELAY),
            forwarding_at: Mutex::new(BTreeMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StpClock {
    /// Sets the forward delay (listening, then as long again learning).
    pub fn set_forward_delay(&self, delay: Duration) {
        *lock(&self.forward_delay) = delay;
    }

    pub fn forward_delay(&self) -> Duration {
        *lock(&self.forward_delay)
    }

    /// Follows a committed change: a link coming up starts its delay (none on an edge
    /// port), a link going down forgets the port, and a waiting port that became an
    /// edge port forwards now.
    pub fn observe(&self, before: &SimState, after: &SimState, now: Instant) {
        let hold = 2 * self.forward_delay();
        let mut at = lock(&self.forwarding_at);
        for port in 1..=after.pi_ports {
            let fast = after.forwards_at_link_up(port);
            match (before.delivering(port), after.delivering(port)) {
                (false, true) => {
                    at.insert(port, if fast { now } else { now + hold });
                }
                (true, false) => {
                    at.remove(&port);
                }
                (true, true) if fast => {
                    at.entry(port).and_modify(|t| *t = (*t).min(now)).or_insert(now);
                }
                _ => {}
            }
        }
    }

    /// How long until `port` forwards (zero once it does); `None` while its link is
    /// down.
    pub fn forwarding_in(&self, port: u16, now: Instant) -> Option<Duration> {
        lock(&self.forwarding_at).get(&port).map(|t| t.saturating_duration_since(now))
    }

    /// `dot1dStpPortState` of a Pi port now (the trunk always forwards).
    pub fn port_state(&self, state: &SimState, port: u16, now: Instant) -> i32 {
        if port == state.bridge_ports() {
            return PORT_FORWARDING;
        }
        match self.forwarding_in(port, now) {
            None => PORT_DISABLED,
            Some(left) if left.is_zero() => PORT_FORWARDING,
            Some(left) if left > self.forward_delay() => PORT_LISTENING,
            Some(_) => PORT_LEARNING,
        }
    }

    /// The live value of `oid` when it is a `dot1dStpPortState` instance.
    pub fn live(&self, state: &SimState, oid: &Oid, now: Instant) -> Option<Value> {
        let [port] = oid.arcs().strip_prefix(oids::DOT1D_STP_PORT_STATE)? else {
            return None;
        };
        let port = u16::try_from(*port).ok()?;
        Some(Value::Integer(self.port_state(state, port, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `st` with PoE admin `on` at `port`, and delivery settled from it: the link is up
    /// while power is delivered.
    fn powered(mut st: SimState, port: u16, on: bool) -> SimState {
        st.poe_admin.insert(port, on);
        crate::sim::poe::settle(&mut st);
        st
    }

    #[test]
    fn a_spanning_tree_port_listens_learns_then_forwards_and_an_edge_port_at_once() {
        let clock = StpClock::default();
        clock.set_forward_delay(Duration::from_secs(15));
        let off = powered(SimState::new(2), 1, false);
        let off = powered(off, 2, false);
        let mut edge = off.clone();
        edge.admin_edge.insert(2, true);
        let t0 = Instant::now();
        let on = powered(powered(edge.clone(), 1, true), 2, true);
        clock.observe(&edge, &on, t0);
        assert_eq!(clock.forwarding_in(1, t0), Some(Duration::from_secs(30)));
        assert_eq!(clock.port_state(&on, 1, t0), PORT_LISTENING);
        assert_eq!(clock.port_state(&on, 1, t0 + Duration::from_secs(16)), PORT_LEARNING);
        assert_eq!(clock.port_state(&on, 1, t0 + Duration::from_secs(30)), PORT_FORWARDING);
        assert_eq!(clock.forwarding_in(2, t0), Some(Duration::ZERO));
        // Made an edge port while it waits: forwards from then on.
        let mut now_edge = on.clone();
        now_edge.admin_edge.insert(1, true);
        let t1 = t0 + Duration::from_secs(3);
        clock.observe(&on, &now_edge, t1);
        assert_eq!(clock.forwarding_in(1, t1), Some(Duration::ZERO));
        // Link down: no state; up again as an edge port: forwards at once.
        let down = powered(now_edge.clone(), 1, false);
        clock.observe(&now_edge, &down, t1);
        assert_eq!(clock.forwarding_in(1, t1), None);
        assert_eq!(clock.port_state(&down, 1, t1), PORT_DISABLED);
    }

    #[test]
    fn admin_edge_needs_rstp_or_cisco_and_stp_off_always_forwards() {
        let mut st = SimState::new(1);
        st.admin_edge.insert(1, true);
        assert!(st.forwards_at_link_up(1));
        st.rstp = false;
        assert!(!st.forwards_at_link_up(1), "no RSTP-MIB: admin edge does not exist");
        st.stp_enabled.insert(1, false);
        assert!(st.forwards_at_link_up(1));
    }

    #[test]
    fn sets_decode_only_where_the_switch_has_the_object() {
        let mut st = SimState::new(2);
        let edge = [oids::DOT1D_STP_PORT_ADMIN_EDGE, &[2]].concat();
        assert_eq!(decode(&st, &edge, &Value::Integer(1)), Some(Ok(Change::AdminEdge(2, true))));
        let enable = [oids::DOT1D_STP_PORT_ENABLE, &[1]].concat();
        assert_eq!(decode(&st, &enable, &Value::Integer(2)), Some(Ok(Change::StpEnable(1, false))));
        assert_eq!(decode(&st, &enable, &Value::Integer(7)), Some(Err(SetTestError::WrongValue)));
        let portfast = [oids::CISCO_STPX_FAST_START_PORT_MODE, &[1]].concat();
        assert_eq!(decode(&st, &portfast, &Value::Integer(1)), None);
        st.rstp = false;
        assert_eq!(decode(&st, &edge, &Value::Integer(1)), None);
        let cisco = SimState::new_cisco(2);
        assert_eq!(
            decode(&cisco, &portfast, &Value::Integer(1)),
            Some(Ok(Change::AdminEdge(1, true)))
        );
    }
}
