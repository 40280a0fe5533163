//! The lab's cabling: which simulated Pi sits behind which switch port, and the task
//! that follows the virtual switch's PoE so a Pi loses power when its port goes off and
//! boots again when it comes back.
//!
//! A Pi is created the first time its port is powered, in the network namespace at the
//! far end of its slot's storage link (made by the controller's [`VethLinks`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_lab::VethLinks;
use bramble_lab::pisim::{PiModel, PiSim, PiSimConfig, Serial};
use bramble_switch::sim::{SimEvent, SimHandle};
use tokio::sync::broadcast;

/// How the lab's Pis boot.
#[derive(Debug, Clone)]
pub struct PiTiming {
    /// Between DISCOVERs; the real ROM uses 5 s.
    pub dhcp_interval: Duration,
}

/// The Pis of one shelf, by port.
pub struct Cabling {
    links: Arc<VethLinks>,
    timing: PiTiming,
    expected_key: String,
    /// Port → (storage VLAN, hostname the root must hold).
    ports: Mutex<BTreeMap<u16, (u16, String)>>,
    sims: Mutex<BTreeMap<u16, Arc<PiSim>>>,
}

/// The board in a port: the shelf mixes the three boot ROMs.
pub fn model_for(port: u16) -> PiModel {
    match port % 3 {
        1 => PiModel::Pi4,
        2 => PiModel::Pi3BPlus,
        _ => PiModel::Pi3B,
    }
}

/// The board serial in a port (unique within a lab).
pub fn serial_for(port: u16) -> Serial {
    Serial(0x5eed_0000 | u32::from(port))
}

impl Cabling {
    pub fn new(links: Arc<VethLinks>, timing: PiTiming, expected_key: &str) -> Self {
        Cabling {
            links,
            timing,
            expected_key: expected_key.to_string(),
            ports: Mutex::new(BTreeMap::new()),
            sims: Mutex::new(BTreeMap::new()),
        }
    }

    /// Cables `port` to the slot on storage VLAN `vlan`; its root must name `hostname`.
    pub fn plug(&self, port: u16, vlan: u16, hostname: &str) {
        lock(&self.ports).insert(port, (vlan, hostname.to_string()));
    }

    /// The simulated Pi in `port`, once it has been powered.
    pub fn sim(&self, port: u16) -> Option<Arc<PiSim>> {
        lock(&self.sims).get(&port).cloned()
    }

    pub fn sims(&self) -> BTreeMap<u16, Arc<PiSim>> {
        lock(&self.sims).clone()
    }

    /// Powers the Pi in `port` on or off, creating it on first power-on.
    pub async fn power(&self, port: u16, on: bool) {
        let sim = match self.sim(port) {
            Some(s) => s,
            None if !on => return,
            None => {
                let Some((vlan, hostname)) = lock(&self.ports).get(&port).cloned() else {
                    tracing::debug!(port, "PoE on an uncabled port");
                    return;
                };
                let Some(netns) = self.links.pi_netns(vlan) else {
                    tracing::warn!(
                        port,
                        vlan,
                        "PoE on before the slot's storage link exists; Pi stays dark"
                    );
                    return;
                };
                let mut cfg = PiSimConfig::new(model_for(port), serial_for(port), &netns);
                cfg.dhcp_interval = self.timing.dhcp_interval;
                cfg.expected_hostname = hostname;
                cfg.expected_key = self.expected_key.clone();
                let sim = Arc::new(PiSim::new(cfg));
                lock(&self.sims).insert(port, sim.clone());
                sim
            }
        };
        if let Err(e) = sim.set_power(on).await {
            tracing::warn!(port, on, error = %e, "could not change the simulated Pi's power");
        }
    }

    /// Follows the switch's PoE until the switch goes away. Starts by applying the
    /// current state of every cabled port (so a restarted lab catches up).
    pub async fn follow(self: Arc<Self>, switch: SimHandle) {
        let mut events = switch.subscribe();
        self.catch_up(&switch).await;
        loop {
            match events.recv().await {
                Ok(SimEvent::PowerChanged { port, on }) => self.power(port, on).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed switch events; re-reading PoE state");
                    self.catch_up(&switch).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn catch_up(&self, switch: &SimHandle) {
        let state = switch.state();
        let ports: Vec<u16> = lock(&self.ports).keys().copied().collect();
        for port in ports {
            self.power(port, state.delivering(port)).await;
        }
    }

    /// Powers every Pi off (link down), for shutting the lab down.
    pub async fn unplug_all(&self) {
        for (port, sim) in self.sims() {
            if let Err(e) = sim.set_power(false).await {
                tracing::debug!(port, error = %e, "power off at lab shutdown");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
