//! Spanning tree on the lab's wire: while the virtual switch says a Pi's port is
//! listening or learning ([`SimHandle::forwarding_in`]), every frame on the slot's link
//! is dropped, both ways, so the Pi's real DHCP packets never reach the controller, as
//! on a switch port that is not an edge port.
//!
//! The drop is `tc` on the controller end of the slot's link (in the lab's controller
//! namespace): a `clsact` qdisc whose ingress and egress u32 match-all filters redirect
//! every frame to a sink link that is never up, where `mirred` discards it. The lab's
//! kernels have neither the `gact` drop action nor `matchall` (see `qemupi`), and a
//! frame redirected to a device that is down is dropped. The controller end stays up,
//! its addresses and routes untouched, as a switch's trunk would.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_lab::CmdError;
use bramble_switch::sim::SimHandle;

/// How often a held port asks the switch whether it forwards yet.
const POLL: Duration = Duration::from_millis(100);

/// Drops the frames of held ports in one lab.
#[derive(Debug, Clone)]
pub struct ForwardingHold {
    /// The namespace holding the controller ends (`<prefix><vlan>`) and the sink.
    netns: String,
    prefix: String,
    sink: String,
    /// VLANs whose link has a hold installed (a release of any other does nothing).
    held: Arc<Mutex<BTreeSet<u16>>>,
}

/// Whether frames pass or are dropped, by the switch port's spanning-tree state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Forwarding,
    /// Listening or learning for this long still.
    Held(Duration),
}

/// Pure: what the switch's answer means for the wire (a port whose link is down has
/// nothing to hold).
pub fn port_state(forwarding_in: Option<Duration>) -> PortState {
    match forwarding_in {
        Some(left) if !left.is_zero() => PortState::Held(left),
        _ => PortState::Forwarding,
    }
}

impl ForwardingHold {
    /// Holds on the controller ends `<prefix><vlan>` in `netns`; makes the sink there.
    pub fn new(netns: &str, prefix: &str) -> Result<Self, CmdError> {
        let hold = ForwardingHold {
            netns: netns.to_string(),
            prefix: prefix.to_string(),
            sink: format!("{prefix}stp"),
            held: Arc::default(),
        };
        let shown = bramble_lab::run_ip(&["-n", netns, "link", "show", "dev", &hold.sink]);
        if shown.is_err() {
            let peer = format!("{prefix}stq");
            bramble_lab::run_ip(&[
                "-n", netns, "link", "add", &hold.sink, "type", "veth", "peer", "name", &peer,
            ])?;
        }
        Ok(hold)
    }

    fn ifname(&self, vlan: u16) -> String {
        format!("{}{vlan}", self.prefix)
    }

    /// Drops every frame on the slot's link until [`ForwardingHold::release`].
    /// Idempotent.
    pub fn hold(&self, vlan: u16) -> Result<(), CmdError> {
        let dev = self.ifname(vlan);
        self.release(vlan);
        self.tc(&["qdisc", "add", "dev", &dev, "clsact"])?;
        self.held().insert(vlan);
        for direction in ["ingress", "egress"] {
            self.tc(&[
                "filter", "add", "dev", &dev, direction, "protocol", "all", "u32", "match", "u32",
                "0", "0", "action", "mirred", "egress", "redirect", "dev", &self.sink,
            ])?;
        }
        Ok(())
    }

    /// Lets the slot's frames through again (nothing to do when none are held).
    pub fn release(&self, vlan: u16) {
        if !self.held().remove(&vlan) {
            return;
        }
        let dev = self.ifname(vlan);
        if let Err(e) = self.tc(&["qdisc", "del", "dev", &dev, "clsact"]) {
            tracing::trace!(dev, error = %e, "no spanning-tree hold to release");
        }
    }

    /// At a power-on of `port`: holds the slot's link if the switch says the port
    /// listens first (true), else makes sure nothing is held (false). Run before the
    /// Pi gets power, so its first frame is already dropped.
    pub async fn start(&self, switch: &SimHandle, port: u16, vlan: u16) -> bool {
        let state = port_state(switch.forwarding_in(port));
        let hold = self.clone();
        let done = tokio::task::spawn_blocking(move || match state {
            PortState::Forwarding => {
                hold.release(vlan);
                Ok(false)
            }
            PortState::Held(_) => hold.hold(vlan).map(|()| true),
        })
        .await;
        match done {
            Ok(Ok(held)) => {
                if let PortState::Held(left) = state {
                    let hold_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(
                        port,
                        vlan,
                        hold_ms,
                        "spanning tree: port listening and learning, its frames are dropped"
                    );
                }
                held
            }
            Ok(Err(e)) => {
                tracing::warn!(port, vlan, error = %bramble_report::chain(&e), "could not hold the port's frames");
                false
            }
            Err(e) => {
                tracing::warn!(port, vlan, error = %e, "spanning-tree hold task failed");
                false
            }
        }
    }

    /// Releases a held link once the switch says `port` forwards, unless `current`
    /// says the port's power changed meanwhile (the newer change decides then).
    pub async fn release_when_forwarding(
        self,
        switch: SimHandle,
        port: u16,
        vlan: u16,
        current: impl Fn() -> bool,
    ) {
        while let PortState::Held(left) = port_state(switch.forwarding_in(port)) {
            if !current() {
                return;
            }
            tokio::time::sleep(left.min(POLL)).await;
        }
        if current() {
            let _ = tokio::task::spawn_blocking(move || self.release(vlan)).await;
            tracing::info!(port, vlan, "spanning tree: port forwarding");
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tc(&self, args: &[&str]) -> Result<(), CmdError> {
        let mut all = vec!["-n", self.netns.as_str()];
        all.extend_from_slice(args);
        bramble_lab::run_cmd("tc", &all).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_port_with_time_left_is_held() {
        assert_eq!(port_state(None), PortState::Forwarding);
        assert_eq!(port_state(Some(Duration::ZERO)), PortState::Forwarding);
        let left = Duration::from_secs(3);
        assert_eq!(port_state(Some(left)), PortState::Held(left));
    }
}
