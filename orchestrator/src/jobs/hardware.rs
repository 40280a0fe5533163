//! What job executors act on: the switches (through [`Fabric`]), the image store and NFS
//! exporter, the controller's storage interfaces, and the boot timeline. Each operation
//! here is one idempotent piece of a step, so executors read as lists of steps.
//!
//! Errors come back as [`StepError`]s carrying both an operator's detail and a sentence a
//! customer can read; whether a step is retried follows from the error (a switch that did
//! not answer is retried, a switch that refused a SET is not).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bramble_images::{CommandRunner, ImageStore, NfsExporter, SystemRunner};
use bramble_report::chain;
use bramble_switch::model::DetectionStatus;
use bramble_switch::{PortNo, PortPower};

use super::config::JobsConfig;
use super::runner::StepError;
use crate::bootplan::BootPlanner;
use crate::db::events::NewEvent;
use crate::db::orchestration::{BootEvidence, SlotLocation};
use crate::db::{Db, DbError};
use crate::diagnosis::metrics::BootMetrics;
use crate::diagnosis::{Attempt, Diagnosis, DiagnosisKind, Ending, LastBoot, PoeReading};
use crate::fabric::{Fabric, FabricError};
use crate::model::{Job, Pi, PowerState, Switch};
use crate::reload::LiveConfig;

/// Makes sure every slot's storage interface exists and is served by DHCP: the running
/// netboot service, or nothing where this controller does not serve netboot.
#[async_trait]
pub trait StorageSync: Send + Sync {
    /// Returns how many storage interfaces are served.
    async fn sync(&self) -> Result<usize, String>;
}

/// No netboot on this controller: storage interfaces are somebody else's.
pub struct NoStorage;

#[async_trait]
impl StorageSync for NoStorage {
    async fn sync(&self) -> Result<usize, String> {
        Ok(0)
    }
}

/// The image store and the NFS server that exports per-Pi roots.
pub struct ImagesHost {
    pub store: ImageStore,
    pub exporter: Option<Arc<dyn NfsExporter>>,
    pub runner: Arc<dyn CommandRunner>,
}

impl ImagesHost {
    pub fn open(
        dir: &std::path::Path,
        exporter: Option<Arc<dyn NfsExporter>>,
    ) -> Result<ImagesHost, bramble_images::ImagesError> {
        let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
        let mut store = ImageStore::open(dir, runner.as_ref())?;
        if exporter.as_ref().is_some_and(|e| !e.exports_new_subvolumes()) {
            store = store.without_subvolumes();
        }
        Ok(ImagesHost { store, exporter, runner })
    }
}

/// Everything executors share.
pub struct Hardware {
    pub db: Db,
    pub fabric: Arc<Fabric>,
    /// The running configuration; executors read it at use (timings change on a reload).
    pub config: LiveConfig,
    pub images: Option<Arc<ImagesHost>>,
    /// Each slot's boot plan (addresses, NFS path, boot dir), shared with the TFTP resolver.
    pub boot: Arc<BootPlanner>,
    pub storage: Arc<dyn StorageSync>,
    /// Boot phase durations and diagnoses, for `/metrics`.
    pub boot_metrics: Arc<BootMetrics>,
}

/// A Pi job's target: the Pi, where it is wired, and its switch.
pub struct Target {
    pub pi: Pi,
    pub slot: SlotLocation,
    pub switch: Switch,
}

/// How often the boot timeline and port states are polled while waiting.
const POLL: Duration = Duration::from_millis(250);

impl From<DbError> for StepError {
    fn from(e: DbError) -> Self {
        StepError::retryable(
            format!("database: {e}"),
            "Bramble could not record progress; it will retry.",
        )
    }
}

fn switch_error(e: FabricError, doing: &str) -> StepError {
    let customer = format!("The network switch did not accept the request to {doing}.");
    if e.is_transient() {
        StepError::retryable(chain(&e), customer)
    } else {
        StepError::permanent(chain(&e), customer)
    }
}

impl Hardware {
    /// The executors' timings (`[jobs]`) as configured now.
    pub fn timing(&self) -> JobsConfig {
        self.config.get().jobs.clone()
    }

    /// The Pi a job is for, with its slot and switch.
    pub async fn target(&self, job: &Job) -> Result<Target, StepError> {
        let no_target = |what: &str| {
            StepError::permanent(
                format!("job {}: {what}", job.id),
                "This Pi is not wired to a switch port; contact support.",
            )
        };
        let pi_id = job.pi.as_ref().ok_or_else(|| no_target("has no Pi"))?;
        let pi = self.db.get_pi(pi_id).await?.ok_or_else(|| no_target("its Pi is gone"))?;
        let slot_id = pi.slot.clone().ok_or_else(|| no_target("the Pi has no slot"))?;
        let slot = self
            .db
            .slot_location(&slot_id)
            .await?
            .ok_or_else(|| no_target("the Pi's slot is gone"))?;
        let switch = self
            .db
            .get_switch(&slot.switch)
            .await?
            .ok_or_else(|| no_target("the slot's switch is gone"))?;
        Ok(Target { pi, slot, switch })
    }

    /// Sets PoE on the Pi's port (the driver verifies the admin state by reading it
    /// back), records an event with the job so waits can start from it, then confirms the
    /// change by the PSE's detection status ([`Hardware::confirm_power`]): the inventory
    /// records the new power state only once the switch shows power flowing (on) or not
    /// (off). A port that is not an enrolled slot is refused before any SET.
    pub async fn set_power(&self, job: &Job, t: &Target, on: bool) -> Result<(), StepError> {
        let doing = if on { "power the Pi on" } else { "power the Pi off" };
        let port = PortNo(t.slot.port);
        // The Pi may DHCP before this step records anything: boot evidence counts from
        // the log as it was before the switch was asked.
        let before = self.db.last_event_id().await?;
        let result = self
            .fabric
            .with_driver(&t.switch, |d| async move { d.set_port_power(port, on).await })
            .await;
        if let Err(e) = result {
            if let FabricError::NotASlot { .. } = e {
                return Err(StepError::permanent(
                    chain(&e),
                    "Bramble refused to change power on a switch port that is not this Pi's slot; contact support.",
                ));
            }
            self.record_power_read(t).await;
            return Err(switch_error(e, doing));
        }
        let kind = if on { "power.on" } else { "power.off" };
        let e = NewEvent::new(
            kind,
            "controller",
            format!(
                "PoE {} on {} port {}",
                if on { "on" } else { "off" },
                t.switch.name,
                t.slot.port
            ),
        )
        .pi(&t.pi.id)
        .job(&job.id)
        .customer(t.pi.owner.as_ref())
        .data(serde_json::json!({ "port": t.slot.port, "after_event": before }));
        self.db.append_event(&e).await?;
        self.confirm_power(t, on).await.map(|_| ())
    }

    /// Waits until the switch reports the port in the wanted state by its PSE detection
    /// status (`pethPsePortDetectionStatus`), not only its admin state: on is admin
    /// enabled and deliveringPower; off is admin disabled and not delivering. Records the
    /// Pi's power state once confirmed; when it never is, records what the port shows
    /// (so a Pi still powered is never reported off) and fails saying what the switch
    /// did.
    pub async fn confirm_power(&self, t: &Target, on: bool) -> Result<PortPower, StepError> {
        let port = PortNo(t.slot.port);
        let confirm = self.timing().power_confirm;
        let deadline = Instant::now() + confirm;
        loop {
            let read = self
                .fabric
                .with_driver(&t.switch, |d| async move { d.port_power(port).await })
                .await;
            match read {
                Ok(p) if power_matches(&p, on) => {
                    self.db
                        .set_pi_power(&t.pi.id, if on { PowerState::On } else { PowerState::Off })
                        .await?;
                    return Ok(p);
                }
                Ok(p) if Instant::now() >= deadline => {
                    self.db.set_pi_power(&t.pi.id, power_seen(&p)).await?;
                    let budget = self
                        .fabric
                        .with_driver(&t.switch, |d| async move { d.poe_budget().await })
                        .await
                        .ok();
                    return Err(unconfirmed(t, on, &p, budget, confirm));
                }
                Ok(_) => {}
                Err(e) => {
                    self.record_power_read(t).await;
                    return Err(switch_error(e, "report the port's power"));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a failed switch operation: records what the port now reports (by its
    /// detection status), or `unknown` when the switch cannot be read, so the inventory
    /// never claims a state it has not seen.
    async fn record_power_read(&self, t: &Target) {
        let port = PortNo(t.slot.port);
        let state = match self
            .fabric
            .with_driver(&t.switch, |d| async move { d.port_power(port).await })
            .await
        {
            Ok(p) => power_seen(&p),
            Err(_) => PowerState::Unknown,
        };
        if let Err(e) = self.db.set_pi_power(&t.pi.id, state).await {
            tracing::warn!(pi = %t.pi.id, error = %e, "could not record power state after a switch error");
        }
    }

    /// Waits until the Pi's timeline, after this job's latest `power.on`, shows a DHCP
    /// answer and a kernel read over TFTP. A Pi that has not even sent DHCP by half the
    /// timeout is power-cycled once: a Pi 3B's boot ROM gives up for good after five
    /// unanswered DISCOVERs (say, while the controller was restarting). However it ends,
    /// the attempt is diagnosed ([`crate::diagnosis`]) and recorded on the Pi; a failure
    /// carries the diagnosis in its messages.
    pub async fn await_boot(&self, job: &Job, t: &Target) -> Result<BootEvidence, StepError> {
        let start = Instant::now();
        let mut cycled = false;
        loop {
            let after = match self.db.last_job_event(&job.id, "power.on").await? {
                Some((id, data)) => data["after_event"].as_i64().unwrap_or(id),
                None => 0,
            };
            let seen = self.db.boot_evidence(&t.pi.id, after).await?;
            if seen.booted() {
                let ending = self.await_ssh(t).await;
                let d = self.diagnose(job, t, ending).await?;
                if d.kind != DiagnosisKind::Booted {
                    return Err(StepError::permanent(d.operator, d.customer));
                }
                let message = match d.phases.booted_ms.zip(d.phases.kernel_ms) {
                    Some((booted, kernel)) if booted > kernel => format!(
                        "Pi booted: DHCP answered, kernel fetched, SSH answering after {:.1} s",
                        (booted - kernel) as f64 / 1000.0
                    ),
                    _ => "Pi netbooted: DHCP answered and kernel fetched".to_string(),
                };
                let e = NewEvent::new("pi.booted", "controller", message)
                    .pi(&t.pi.id)
                    .job(&job.id)
                    .customer(t.pi.owner.as_ref());
                self.db.append_event(&e).await?;
                return Ok(seen);
            }
            if !seen.dhcp && !cycled && start.elapsed() >= self.timing().boot_timeout / 2 {
                cycled = true;
                tracing::info!(pi = %t.pi.id, job = %job.id, "no DHCP from the Pi yet; power-cycling it once");
                let e = NewEvent::new(
                    "boot.retry",
                    "controller",
                    "no DHCP yet; power-cycling the Pi once",
                )
                .pi(&t.pi.id)
                .job(&job.id)
                .customer(t.pi.owner.as_ref());
                self.db.append_event(&e).await?;
                self.set_power(job, t, false).await?;
                self.confirm_power(t, false).await?;
                tokio::time::sleep(self.timing().settle).await;
                self.set_power(job, t, true).await?;
                continue;
            }
            let boot_timeout = self.timing().boot_timeout;
            if start.elapsed() >= boot_timeout {
                let ending = Ending::TimedOut { waited: boot_timeout, power_cycled: cycled };
                let d = self.diagnose(job, t, ending).await?;
                return Err(StepError::permanent(d.operator, d.customer));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After the kernel read, for a root whose image runs sshd (the slot's current
    /// [`crate::bootplan::BootPlan::sshd`]): waits until the Pi's storage address accepts
    /// a TCP connection on port 22, within `[jobs] ssh_timeout_seconds`. Ends
    /// `KernelRead` when the image claims no sshd (synthetic images).
    async fn await_ssh(&self, t: &Target) -> Ending {
        let boot = self.boot.clone();
        let (controller, pi_ip, pi) = (t.slot.controller_ip, t.slot.pi_ip, t.pi.id.clone());
        let plan = tokio::task::spawn_blocking(move || boot.plan(controller, pi_ip, &pi))
            .await
            .ok()
            .and_then(Result::ok);
        if !plan.is_some_and(|p| p.sshd) {
            return Ending::KernelRead;
        }
        let kernel_at = crate::time::now_millis();
        let address = std::net::SocketAddr::from((t.slot.pi_ip, 22));
        let start = Instant::now();
        let limit = self.timing().ssh_timeout;
        while start.elapsed() < limit {
            let left = limit.saturating_sub(start.elapsed()).min(Duration::from_secs(3));
            match tokio::time::timeout(left, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(_)) => return Ending::SshAnswered { at: crate::time::now_millis() },
                Ok(Err(e)) => tracing::debug!(pi = %t.pi.id, %address, error = %e, "no SSH yet"),
                Err(_) => tracing::debug!(pi = %t.pi.id, %address, "SSH connect timed out"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ending::NoSsh { address, waited: limit, kernel_at }
    }

    /// Diagnoses the job's boot attempt from the Pi's timeline since the job's latest
    /// power-on, the port's PoE read now and (after the kernel) the boot's console;
    /// records it on the Pi, as a `boot.diagnosis` event (and `boot.no_ssh` for that
    /// case) and in the metrics.
    async fn diagnose(
        &self,
        job: &Job,
        t: &Target,
        ending: Ending,
    ) -> Result<Diagnosis, StepError> {
        let (powered_at, after) =
            self.db.job_power_on(&job.id).await?.unwrap_or((job.created_at, 0));
        let events = self.db.boot_timeline(&t.pi.id, after).await?;
        let port = PortNo(t.slot.port);
        let poe = match self
            .fabric
            .with_driver(&t.switch, |d| async move { d.port_power(port).await })
            .await
        {
            Ok(p) => Some(PoeReading::from(&p)),
            Err(e) => {
                tracing::warn!(pi = %t.pi.id, error = %chain(&e), "reading the port's PoE for a boot diagnosis");
                None
            }
        };
        let console = match ending {
            Ending::NoSsh { .. } => self.console_lines(job, &t.pi.id, CONSOLE_KEEP).await,
            _ => Vec::new(),
        };
        let pi = t.pi.id.to_string();
        let d = crate::diagnosis::diagnose(&Attempt {
            pi: &pi,
            powered_at,
            events: &events,
            model: &t.pi.model,
            port: t.slot.port,
            poe: poe.clone(),
            console: &console,
            ending: ending.clone(),
        });
        tracing::info!(pi = %t.pi.id, job = %job.id, diagnosis = d.kind.as_str(), detail = %d.operator, "boot diagnosed");
        let boot = LastBoot::new(&d, crate::time::now_millis(), &job.id, poe, t.pi.owner.clone());
        self.db.set_last_boot(&t.pi.id, &boot).await?;
        let data = serde_json::json!({
            "stage": boot.stage, "diagnosis": boot.diagnosis, "file": boot.file, "phases": boot.phases,
        });
        let e = NewEvent::new("boot.diagnosis", "controller", d.customer.clone())
            .pi(&t.pi.id)
            .job(&job.id)
            .customer(t.pi.owner.as_ref())
            .data(data);
        self.db.append_event(&e).await?;
        if let Ending::NoSsh { address, waited, .. } = ending {
            let e = NewEvent::new("boot.no_ssh", "controller", d.operator.clone())
                .pi(&t.pi.id)
                .job(&job.id)
                .customer(t.pi.owner.as_ref())
                .data(serde_json::json!({ "address": address.to_string(), "waited_seconds": waited.as_secs() }));
            self.db.append_event(&e).await?;
        }
        self.boot_metrics.record(&t.pi.model, &d);
        Ok(d)
    }

    /// The last `n` lines (shown safely) of the Pi's newest console boot, if that boot
    /// started after `job` was created; empty when there is none or it cannot be read
    /// (the diagnosis is best effort, never a reason to fail differently).
    async fn console_lines(&self, job: &Job, pi: &crate::ids::PiId, n: usize) -> Vec<String> {
        let boots = match self.db.console_boots(pi, None).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(pi = %pi, error = %chain(&e), "reading the console for a diagnosis");
                return Vec::new();
            }
        };
        let Some(boot) = boots.last().filter(|b| b.started_at >= job.created_at) else {
            return Vec::new();
        };
        let mut tail = std::collections::VecDeque::with_capacity(n + 1);
        let mut after = 0;
        loop {
            let page = match self.db.console_lines(boot, after, 1_000).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(pi = %pi, error = %chain(&e), "reading the console for a diagnosis");
                    break;
                }
            };
            let Some(last) = page.last() else { break };
            after = last.id;
            for line in page {
                let shown = crate::console::shown(&line.bytes);
                if shown.trim().is_empty() {
                    continue;
                }
                tail.push_back(shown.trim_end().to_string());
                if tail.len() > n {
                    tail.pop_front();
                }
            }
        }
        tail.into()
    }

    pub fn images(&self) -> Result<&Arc<ImagesHost>, StepError> {
        self.images.as_ref().ok_or_else(|| {
            StepError::permanent(
                "this controller has no image store configured",
                "Reinstalling is not available right now; contact support.",
            )
        })
    }
}

/// Console lines of a boot a diagnosis reads (the last ones; a root mount is logged
/// some way before SSH would answer).
const CONSOLE_KEEP: usize = 400;

/// Whether a port's read-back shows the wanted power state, by the PSE's detection
/// status as well as the admin state: on is enabled and deliveringPower, off is disabled
/// and not delivering.
pub fn power_matches(p: &PortPower, on: bool) -> bool {
    let delivering = p.detection == DetectionStatus::DeliveringPower;
    if on { p.admin_enabled && delivering } else { !p.admin_enabled && !delivering }
}

/// The power state a port's read-back shows: on while power flows, whatever the admin
/// state says.
pub fn power_seen(p: &PortPower) -> PowerState {
    if p.detection == DetectionStatus::DeliveringPower { PowerState::On } else { PowerState::Off }
}

/// The failure of a power change the switch accepted but the PSE never confirmed.
fn unconfirmed(
    t: &Target,
    on: bool,
    p: &PortPower,
    budget: Option<bramble_switch::PoeBudget>,
    waited: Duration,
) -> StepError {
    let draw = p.draw_mw.map(|mw| format!(", drawing {mw} mW")).unwrap_or_default();
    let at = format!("{} port {}", t.switch.name, t.slot.port);
    if !on && p.detection == DetectionStatus::DeliveringPower {
        return StepError::permanent(
            format!(
                "power did not stop: {at} reads PoE admin {} but its PSE still reports \
                 deliveringPower{draw} {} s after the power-off; the switch did not cut power \
                 (a stuck port): check the port, and power the Pi off by hand if needed",
                if p.admin_enabled { "enabled" } else { "disabled" },
                waited.as_secs()
            ),
            "The switch was told to cut this Pi's power but still delivers power to it, so \
             the Pi was not switched off. Support has been told; the Pi is left running.",
        );
    }
    let budget = budget
        .map(|b| format!("; PoE budget {} W, {} W in use", b.power_w, b.consumption_w))
        .unwrap_or_default();
    StepError::permanent(
        format!(
            "{at} was told to power {} but after {} s reads admin {} / {:?}{draw}{budget}",
            if on { "on" } else { "off" },
            waited.as_secs(),
            if p.admin_enabled { "enabled" } else { "disabled" },
            p.detection
        ),
        if on {
            "The switch did not deliver power to the Pi (no device detected, or the switch's PoE \
             budget is used up)."
        } else {
            "The switch did not confirm the power change."
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_means_disabled_and_not_delivering() {
        let p = |admin, detection| PortPower { admin_enabled: admin, detection, draw_mw: None };
        assert!(power_matches(&p(true, DetectionStatus::DeliveringPower), true));
        assert!(power_matches(&p(false, DetectionStatus::Disabled), false));
        assert!(power_matches(&p(false, DetectionStatus::Searching), false));
        assert!(!power_matches(&p(false, DetectionStatus::DeliveringPower), false));
        assert!(!power_matches(&p(false, DetectionStatus::Disabled), true));
        // Admin on is not enough: the PSE must deliver (a port refused for the budget
        // stays searching).
        assert!(!power_matches(&p(true, DetectionStatus::Searching), true));
        assert_eq!(power_seen(&p(false, DetectionStatus::DeliveringPower)), PowerState::On);
    }
}
