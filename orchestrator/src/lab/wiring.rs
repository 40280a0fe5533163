//! The lab's cabling: which Pi sits behind which switch port (a simulated one, or in the
//! first [`QemuSlots::count`] ports a QEMU Pi running a real kernel), and the task that
//! follows the virtual switch's PoE so a Pi loses power when its port goes off and boots
//! again when it comes back.
//!
//! A Pi is created the first time its port is powered, in the network namespace at the
//! far end of its slot's storage link (made by the controller's [`VethLinks`](bramble_lab::VethLinks), or by a
//! controller process's `LastingLinks`: see [`PiNetns`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_lab::pisim::{PiModel, PiSim, PiSimConfig, PiState, Serial};
use bramble_lab::qemupi::{QemuPi, QemuPiConfig};
use bramble_switch::sim::{SimEvent, SimHandle};
use tokio::sync::broadcast;

use super::stp::ForwardingHold;

/// How the lab's Pis boot.
#[derive(Debug, Clone)]
pub struct PiTiming {
    /// Between DISCOVERs; the real ROM uses 5 s.
    pub dhcp_interval: Duration,
}

/// Where the Pi on a storage VLAN lives: the namespace at the far end of the VLAN's
/// link, once the controller has made it.
pub trait PiNetns: Send + Sync {
    fn pi_netns(&self, vlan: u16) -> Option<String>;
}

/// Which ports hold QEMU Pis (ports `1..=count`) and where their state lives.
#[derive(Debug, Clone)]
pub struct QemuSlots {
    pub count: u16,
    /// `<dir>/p<port>` holds each one's boot files, console log and pid file.
    pub dir: PathBuf,
    /// Ports whose kernel is told `ip=dhcp`.
    pub dhcp: Vec<u16>,
}

impl QemuSlots {
    /// No QEMU Pis.
    pub fn none() -> Self {
        QemuSlots { count: 0, dir: PathBuf::new(), dhcp: Vec::new() }
    }

    pub fn holds(&self, port: u16) -> bool {
        (1..=self.count).contains(&port)
    }

    /// The state directory of the QEMU Pi in `port`.
    pub fn state_dir(&self, port: u16) -> PathBuf {
        qemu_state_dir(&self.dir, port)
    }
}

/// The state directory of the QEMU Pi in `port` under `dir` (its console log is
/// `console.log` in there).
pub fn qemu_state_dir(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("p{port}"))
}

/// The Pi in one slot.
#[derive(Clone)]
pub enum SlotPi {
    Sim(Arc<PiSim>),
    Qemu(Arc<QemuPi>),
}

impl SlotPi {
    pub fn state(&self) -> PiState {
        match self {
            SlotPi::Sim(s) => s.state(),
            SlotPi::Qemu(q) => q.state(),
        }
    }

    async fn set_power(&self, on: bool) -> Result<(), String> {
        match self {
            SlotPi::Sim(s) => s.set_power(on).await.map_err(|e| bramble_report::chain(&e)),
            SlotPi::Qemu(q) => q.set_power(on).await.map_err(|e| bramble_report::chain(&e)),
        }
    }
}

/// The Pis of one shelf, by port.
pub struct Cabling {
    links: Arc<dyn PiNetns>,
    /// Board serials are `serial_base | port`.
    serial_base: u32,
    timing: PiTiming,
    expected_key: String,
    qemu: QemuSlots,
    /// Port → (storage VLAN, hostname the root must hold).
    ports: Mutex<BTreeMap<u16, (u16, String)>>,
    pis: Mutex<BTreeMap<u16, SlotPi>>,
    /// Boards swapped in by hand ([`Cabling::swap`]): port → (model, serial).
    swapped: Mutex<BTreeMap<u16, (PiModel, Serial)>>,
    /// Drops a port's frames while the switch's spanning tree holds it (`None`: every
    /// port forwards at once).
    stp: Option<ForwardingHold>,
    /// Port → count of its power changes, so a hold's release knows it is still current.
    power_epochs: Mutex<BTreeMap<u16, u64>>,
}

/// The board in a simulator's port: the shelf mixes the four boot ROMs (3B, 3B+, and
/// the Pi 4 and Pi 5 EEPROMs). (A QEMU Pi is always a Pi 4.)
pub fn model_for(port: u16) -> PiModel {
    match port % 4 {
        1 => PiModel::Pi4,
        2 => PiModel::Pi3BPlus,
        3 => PiModel::Pi5,
        _ => PiModel::Pi3B,
    }
}

/// The inventory's name of a lab board's model.
pub fn model_name(model: PiModel) -> &'static str {
    match model {
        PiModel::Pi3B => "3b",
        PiModel::Pi3BPlus => "3b+",
        PiModel::Pi4 => "4b",
        PiModel::Pi5 => "5",
    }
}

/// What a lab Pi draws while booting: the worst case of the product's table
/// ([`crate::poe::draw`]), so the lab tests power-on waves at their limit.
pub fn boot_draw_mw(model: &str) -> u32 {
    crate::poe::draw::worst_case_mw(model)
}

/// What a lab Pi draws once booted: lab figures (roughly the documented bare-board
/// active currents at 5 V), not measurements.
pub fn idle_draw_mw(model: &str) -> u32 {
    match model {
        "3b" => 2_000,
        "3b+" => 2_500,
        _ => 3_000,
    }
}

/// The serials of a lab's boards, unless [`Cabling::serials_from`] says otherwise.
pub const SERIAL_BASE: u32 = 0x5eed_0000;

/// The board serial in a port (unique within a lab).
pub fn serial_for(port: u16) -> Serial {
    Serial(SERIAL_BASE | u32::from(port))
}

impl Cabling {
    pub fn new(
        links: Arc<dyn PiNetns>,
        timing: PiTiming,
        expected_key: &str,
        qemu: QemuSlots,
    ) -> Self {
        Cabling {
            links,
            serial_base: SERIAL_BASE,
            timing,
            expected_key: expected_key.to_string(),
            qemu,
            ports: Mutex::new(BTreeMap::new()),
            pis: Mutex::new(BTreeMap::new()),
            swapped: Mutex::new(BTreeMap::new()),
            stp: None,
            power_epochs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Ports listening and learning (by the switch's spanning tree) drop their frames
    /// through `hold`.
    pub fn with_forwarding_hold(mut self, hold: ForwardingHold) -> Self {
        self.stp = Some(hold);
        self
    }

    /// Boards with serials `base | port` (labs sharing one inventory need distinct
    /// serials, and so MACs).
    pub fn serials_from(mut self, base: u32) -> Self {
        self.serial_base = base;
        self
    }

    fn serial(&self, port: u16) -> Serial {
        Serial(self.serial_base | u32::from(port))
    }

    /// Cables `port` to the slot on storage VLAN `vlan`; its root must name `hostname`.
    pub fn plug(&self, port: u16, vlan: u16, hostname: &str) {
        lock(&self.ports).insert(port, (vlan, hostname.to_string()));
    }

    /// The simulated Pi in `port`, once it has been powered.
    pub fn sim(&self, port: u16) -> Option<Arc<PiSim>> {
        match lock(&self.pis).get(&port) {
            Some(SlotPi::Sim(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The simulated Pis, by port.
    pub fn sims(&self) -> BTreeMap<u16, Arc<PiSim>> {
        let pis = lock(&self.pis);
        pis.iter()
            .filter_map(|(port, pi)| match pi {
                SlotPi::Sim(s) => Some((*port, s.clone())),
                SlotPi::Qemu(_) => None,
            })
            .collect()
    }

    /// The QEMU Pi in `port`, once it has been powered.
    pub fn qemu(&self, port: u16) -> Option<Arc<QemuPi>> {
        match lock(&self.pis).get(&port) {
            Some(SlotPi::Qemu(q)) => Some(q.clone()),
            _ => None,
        }
    }

    /// Every Pi powered at least once, by port.
    pub fn pis(&self) -> BTreeMap<u16, SlotPi> {
        lock(&self.pis).clone()
    }

    /// Which ports hold QEMU Pis.
    pub fn qemu_slots(&self) -> &QemuSlots {
        &self.qemu
    }

    /// Swaps the board in `port` for a `model` with `serial` (and so its MAC), as an
    /// operator replacing a dead Pi does: the old board is unplugged (powered off) and
    /// the new one boots when its port next delivers power.
    pub async fn swap(&self, port: u16, model: PiModel, serial: Serial) {
        let old = lock(&self.pis).remove(&port);
        if let Some(old) = old
            && let Err(error) = old.set_power(false).await
        {
            tracing::warn!(port, %error, "could not unplug the old board");
        }
        lock(&self.swapped).insert(port, (model, serial));
    }

    /// Powers the Pi in `port` on or off, creating it on first power-on.
    pub async fn power(&self, port: u16, on: bool) {
        let existing = lock(&self.pis).get(&port).cloned();
        let pi = match existing {
            Some(pi) => pi,
            None if !on => return,
            None => match self.create(port) {
                Some(pi) => pi,
                None => return,
            },
        };
        if let Err(error) = pi.set_power(on).await {
            tracing::warn!(port, on, %error, "could not change the lab Pi's power");
        }
    }

    /// The Pi for `port`, in its slot's namespace, registered; `None` while the port is
    /// not cabled or its storage link does not exist yet.
    fn create(&self, port: u16) -> Option<SlotPi> {
        let Some((vlan, hostname)) = lock(&self.ports).get(&port).cloned() else {
            tracing::debug!(port, "PoE on an uncabled port");
            return None;
        };
        let Some(netns) = self.links.pi_netns(vlan) else {
            tracing::warn!(
                port,
                vlan,
                "PoE on before the slot's storage link exists; Pi stays dark"
            );
            return None;
        };
        let pi = if self.qemu.holds(port) {
            let mut cfg = QemuPiConfig::new(self.serial(port), &netns, self.qemu.state_dir(port));
            cfg.pi.dhcp_interval = self.timing.dhcp_interval;
            if self.qemu.dhcp.contains(&port) {
                cfg.extra_args.push("ip=dhcp".into());
            }
            SlotPi::Qemu(Arc::new(QemuPi::new(cfg)))
        } else {
            let (model, serial) = lock(&self.swapped)
                .get(&port)
                .copied()
                .unwrap_or_else(|| (model_for(port), self.serial(port)));
            let mut cfg = PiSimConfig::new(model, serial, &netns);
            cfg.dhcp_interval = self.timing.dhcp_interval;
            cfg.expected_hostname = hostname;
            cfg.expected_key = self.expected_key.clone();
            SlotPi::Sim(Arc::new(PiSim::new(cfg)))
        };
        lock(&self.pis).insert(port, pi.clone());
        Some(pi)
    }

    /// Follows the switch's PoE until the switch goes away. Starts by telling the
    /// switch what each cabled Pi draws and applying the current state of every cabled
    /// port (so a restarted lab catches up).
    pub async fn follow(self: Arc<Self>, switch: SimHandle) {
        let mut events = switch.subscribe();
        let ports: Vec<u16> = lock(&self.ports).keys().copied().collect();
        for port in ports {
            self.draw(&switch, port, boot_draw_mw(self.model(port)));
        }
        self.catch_up(&switch).await;
        loop {
            match events.recv().await {
                Ok(SimEvent::PowerChanged { port, on }) => {
                    self.port_power(&switch, port, on).await;
                    self.follow_draw(&switch, port, on);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed switch events; re-reading PoE state");
                    self.catch_up(&switch).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The model of the board in `port`, as the inventory names it.
    fn model(&self, port: u16) -> &'static str {
        if self.qemu.holds(port) { "4b" } else { model_name(model_for(port)) }
    }

    fn draw(&self, switch: &SimHandle, port: u16, milliwatts: u32) {
        if let Err(error) = switch.set_device_draw(port, milliwatts) {
            tracing::warn!(port, %error, "could not tell the virtual switch a Pi's draw");
        }
    }

    /// A Pi draws its model's worst case from power-on until it has booted (or given
    /// up), then its idle figure, so the switch's consumption falls as a wave settles.
    fn follow_draw(self: &Arc<Self>, switch: &SimHandle, port: u16, on: bool) {
        let model = self.model(port);
        if !on {
            self.draw(switch, port, boot_draw_mw(model));
            return;
        }
        let (me, switch) = (self.clone(), switch.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(pi) = lock(&me.pis).get(&port).cloned() else { return };
                match pi.state() {
                    PiState::Off => return,
                    PiState::Booted | PiState::Running | PiState::GaveUp | PiState::Failed(_) => {
                        me.draw(&switch, port, idle_draw_mw(model));
                        return;
                    }
                    _ => {}
                }
            }
        });
    }

    async fn catch_up(self: &Arc<Self>, switch: &SimHandle) {
        let state = switch.state();
        let ports: Vec<u16> = lock(&self.ports).keys().copied().collect();
        for port in ports {
            self.port_power(switch, port, state.delivering(port)).await;
        }
    }

    /// A power change on `port` as the switch made it: the link held first while the
    /// port listens and learns, then the Pi's power, then the hold's release once the
    /// port forwards (unless a later change on the port came first).
    async fn port_power(self: &Arc<Self>, switch: &SimHandle, port: u16, on: bool) {
        let epoch = {
            let mut epochs = lock(&self.power_epochs);
            let e = epochs.entry(port).or_default();
            *e += 1;
            *e
        };
        let vlan = lock(&self.ports).get(&port).map(|(vlan, _)| *vlan);
        let held = match (&self.stp, vlan) {
            (Some(hold), Some(vlan)) => hold.start(switch, port, vlan).await.then_some(vlan),
            _ => None,
        };
        self.power(port, on).await;
        if let (Some(hold), Some(vlan)) = (self.stp.clone(), held) {
            let me = Arc::downgrade(self);
            let current = move || {
                me.upgrade().is_some_and(|c| lock(&c.power_epochs).get(&port) == Some(&epoch))
            };
            tokio::spawn(hold.release_when_forwarding(switch.clone(), port, vlan, current));
        }
    }

    /// Powers every Pi off (link down, QEMU killed), for shutting the lab down.
    pub async fn unplug_all(&self) {
        for (port, pi) in self.pis() {
            if let Err(error) = pi.set_power(false).await {
                tracing::debug!(port, %error, "power off at lab shutdown");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
