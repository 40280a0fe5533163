//! The handle the lab holds for one QEMU Pi: the power switch, its status (the simulated
//! firmware's states and timeline, then `running` while the machine runs), and the task
//! that runs the firmware stage and then watches the machine.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;

use super::QemuPiConfig;
use super::vm::{self, Vm};
use crate::LabError;
use crate::pisim::boot::{self, Stop};
use crate::pisim::netio;
use crate::pisim::sim::Recorder;
use crate::pisim::{BootFailure, Event, PiState, PiStatus};

/// The task of one power-on, and how to cut its power.
struct Powered {
    cut: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A Pi whose kernel runs in QEMU. Created powered off; dropping it kills the machine.
pub struct QemuPi {
    cfg: Arc<QemuPiConfig>,
    rec: Arc<Recorder>,
    powered: Mutex<Option<Powered>>,
}

impl QemuPi {
    /// A Pi in state `Off`. Its namespace and interface must exist when powered on.
    pub fn new(cfg: QemuPiConfig) -> Self {
        let rec = Recorder::new(cfg.pi.serial);
        QemuPi { cfg: Arc::new(cfg), rec: Arc::new(rec), powered: Mutex::new(None) }
    }

    pub fn config(&self) -> &QemuPiConfig {
        &self.cfg
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<PiStatus> {
        self.rec.subscribe()
    }

    pub fn status(&self) -> PiStatus {
        self.rec.status()
    }

    pub fn state(&self) -> PiState {
        self.rec.state()
    }

    /// Waits until the state satisfies `done`, at most `limit`; returns the state then.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&PiState) -> bool) -> PiState {
        self.rec.wait_for(limit, done).await
    }

    /// Power on: the firmware starts from scratch, then the machine (no-op if on).
    /// Power off: the machine is killed and reaped, the tap removed, the link down.
    pub async fn set_power(&self, on: bool) -> Result<(), LabError> {
        let mut powered = self.powered.lock().await;
        if !on {
            return self.power_off(&mut powered).await;
        }
        if self.state() != PiState::Off {
            return Ok(()); // On already; a failed boot waits for a power cycle.
        }
        // A redirect left by a crash would take the firmware's DHCP replies.
        vm::unjoin(&self.cfg).await;
        netio::plug(&self.cfg.pi).await.map_err(self.link_error("on"))?;
        tracing::info!(pi = %self.cfg.pi.serial, "QEMU Pi power on");
        self.rec.emit(Event::PowerOn);
        let (cut, cut_rx) = oneshot::channel();
        let task = tokio::spawn(run(self.cfg.clone(), self.rec.clone(), cut_rx));
        *powered = Some(Powered { cut, task });
        Ok(())
    }

    async fn power_off(&self, powered: &mut Option<Powered>) -> Result<(), LabError> {
        if let Some(p) = powered.take() {
            let _ = p.cut.send(());
            let _ = p.task.await;
        }
        vm::unjoin(&self.cfg).await;
        netio::unplug(&self.cfg.pi).await.map_err(self.link_error("off"))?;
        if self.state() != PiState::Off {
            tracing::info!(pi = %self.cfg.pi.serial, "QEMU Pi power off");
            self.rec.emit(Event::PowerOff);
        }
        Ok(())
    }

    fn link_error(&self, power: &str) -> impl FnOnce(crate::CmdError) -> LabError {
        let (ns, iface) = (&self.cfg.pi.netns, &self.cfg.pi.interface);
        LabError::cmd(format!("powering {power} the QEMU Pi's {iface} in netns {ns}"))
    }
}

impl Drop for QemuPi {
    fn drop(&mut self) {
        // Aborting drops the machine, whose process is killed on drop.
        if let Ok(mut powered) = self.powered.try_lock()
            && let Some(p) = powered.take()
        {
            p.task.abort();
        }
    }
}

/// One power-on: the firmware stage, then the machine until it stops or power is cut.
async fn run(cfg: Arc<QemuPiConfig>, rec: Arc<Recorder>, mut cut: oneshot::Receiver<()>) {
    let loaded = tokio::select! {
        _ = &mut cut => return,
        loaded = boot::firmware(&cfg.pi, &rec) => loaded,
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(Stop::GaveUp) => return rec.emit(Event::DhcpExhausted),
        Err(Stop::Failed(reason)) => return rec.emit(Event::Failed(reason)),
    };
    let started = tokio::select! {
        _ = &mut cut => return,
        started = vm::start(&cfg, &loaded) => started,
    };
    drop(loaded);
    let mut vm: Vm = match started {
        Ok(vm) => vm,
        Err(e) => {
            let detail = bramble_report::chain(&e);
            tracing::warn!(pi = %cfg.pi.serial, error = %detail, "QEMU Pi could not start");
            return rec.emit(Event::Failed(BootFailure::SimIo { detail }));
        }
    };
    rec.emit(Event::KernelStarted { pid: vm.pid() });
    let exited = tokio::select! {
        _ = &mut cut => None,
        status = vm.wait() => Some(status),
    };
    match exited {
        None => vm.kill(&cfg.pid_file()).await,
        Some(status) => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            tracing::warn!(pi = %cfg.pi.serial, %status, "QEMU Pi stopped by itself");
            rec.emit(Event::Failed(BootFailure::VmExited { status }));
        }
    }
}
