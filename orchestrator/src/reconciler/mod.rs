//! The reconciler: a background task that reads every switch its controller serves back
//! (see [`Reconciler::serving`]), repairs drift from
//! the configuration the inventory wants, and watches Pi ports for power draw.
//!
//! It runs on a timer and on demand ([`ReconcileTrigger`]), takes no input, and each
//! pass is safe to interrupt: the next one starts from a fresh read. Decisions are pure
//! functions in [`decide`]; [`switch`] carries them out one switch at a time, every
//! switch in its own task so one that does not answer delays no other.
//!
//! **Invariant:** a repair never changes PoE admin state: the desired configuration is
//! stripped of PoE before it is compared or applied (a customer may have switched their
//! Pi off on purpose). **Invariant:** a Pi with an active job is left to the job.

pub mod decide;
mod report;
mod switch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::db::jobs::JobFilter;
use crate::db::{Db, Order};
use crate::fabric::Fabric;
use crate::ids::SwitchId;
use crate::jobs::model::JobState;
use crate::model::Job;
use decide::SwitchMemory;
pub use report::{PowerObserved, ReconcileError, ReconcileReport, SwitchReport};

/// The `actor` of every event the reconciler records.
pub const ACTOR: &str = "reconciler";

/// Reads every switch back on a timer and repairs what drifted.
pub struct Reconciler {
    inner: Arc<Inner>,
    every: Duration,
    wake: Arc<Notify>,
}

/// Asks a running [`Reconciler`] for a pass now (e.g. after an operator fixed a cable).
#[derive(Clone)]
pub struct ReconcileTrigger(Arc<Notify>);

impl ReconcileTrigger {
    /// Starts a pass as soon as the current one (if any) ends.
    pub fn now(&self) {
        self.0.notify_one();
    }
}

struct Inner {
    db: Db,
    fabric: Arc<Fabric>,
    /// Per switch, what earlier passes saw (outages, failed repairs), so an outage is
    /// recorded once rather than on every pass.
    memory: Mutex<HashMap<SwitchId, SwitchMemory>>,
    /// Held for a whole pass, so two passes never repair the same switch at once.
    pass: tokio::sync::Mutex<()>,
    /// In a controller: reconcile only the switches it serves, each under its
    /// `reconcile:<switch>` lease. `None` (tests, tools): every switch.
    serving: Option<Serving>,
}

/// Whose switches a reconciler reads, and how long its per-switch leases last.
struct Serving {
    controller: String,
    /// A pass renews each switch's lease for this long: more than the pass interval, so
    /// the serving controller keeps it from one pass to the next.
    lease_ttl: Duration,
}

/// The lease that makes one controller at a time reconcile `switch`.
pub fn lease_name(switch: &SwitchId) -> String {
    format!("reconcile:{switch}")
}

impl Reconciler {
    pub fn new(db: Db, fabric: Arc<Fabric>, every: Duration) -> Reconciler {
        let inner = Inner {
            db,
            fabric,
            memory: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
            serving: None,
        };
        Reconciler { inner: Arc::new(inner), every, wake: Arc::new(Notify::new()) }
    }

    /// Reconciles only the switches `controller` serves, each only while holding its
    /// lease: a switch just moved to another controller is read by one of the two, never
    /// both. `lease` is the cluster's lease period.
    pub fn serving(mut self, controller: &str, lease: Duration) -> Reconciler {
        let serving = Serving { controller: controller.to_string(), lease_ttl: self.every + lease };
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.serving = Some(serving),
            None => unreachable!("the reconciler is configured before it runs"),
        }
        self
    }

    /// A handle that starts a pass on demand.
    pub fn trigger(&self) -> ReconcileTrigger {
        ReconcileTrigger(self.wake.clone())
    }

    /// Runs a pass at once, then every `every` and whenever triggered, until `shutdown`
    /// resolves (which also abandons a pass under way).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            tokio::select! {
                _ = &mut shutdown => break,
                outcome = self.reconcile_once() => log_pass(&outcome),
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over every switch in the inventory.
    /// Passes never overlap: a second caller waits for the first pass to end.
    pub async fn reconcile_once(&self) -> Result<ReconcileReport, ReconcileError> {
        let _one_at_a_time = self.inner.pass.lock().await;
        let db = &self.inner.db;
        let switches = db
            .list_switches()
            .await
            .map_err(|source| ReconcileError::Inventory { what: "switches", source })?;
        let switches = self.inner.mine(switches).await;
        let shelves = db
            .list_shelves()
            .await
            .map_err(|source| ReconcileError::Inventory { what: "shelves", source })?;
        let active = self.active_jobs().await?;
        let racking =
            decide::racking_switches(active.iter().map(|j| (j.kind, j.shelf.as_ref())), &shelves);
        self.inner.forget_except(&switches);
        let mut tasks = JoinSet::new();
        let mut by_task = HashMap::new();
        for sw in switches {
            let inner = self.inner.clone();
            let racking = racking.covers(&sw.id);
            let task_sw = sw.clone();
            let handle =
                tasks.spawn(async move { inner.reconcile_switch(&task_sw, racking).await });
            by_task.insert(handle.id(), sw);
        }
        let mut reports = Vec::with_capacity(by_task.len());
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, report)) => reports.push(report),
                Err(e) => {
                    let Some(sw) = by_task.get(&e.id()) else { continue };
                    let mut report = SwitchReport::new(sw);
                    report.error("reconciling the switch", &e);
                    reports.push(report);
                }
            }
        }
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ReconcileReport { switches: reports })
    }

    /// Queued and running jobs (few at any time; paged to be safe).
    async fn active_jobs(&self) -> Result<Vec<Job>, ReconcileError> {
        let mut out = Vec::new();
        for state in [JobState::Queued, JobState::Running] {
            let filter = JobFilter { pi: None, state: Some(state), visible_to: None };
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .inner
                    .db
                    .list_jobs(&filter, cursor.as_deref(), Order::Asc, 500)
                    .await
                    .map_err(|source| ReconcileError::Inventory { what: "active jobs", source })?;
                out.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

impl Inner {
    /// The switches this pass reconciles: those served here whose lease this controller
    /// holds (or takes) for the next interval; all of them outside a controller.
    async fn mine(&self, switches: Vec<crate::model::Switch>) -> Vec<crate::model::Switch> {
        let Some(serving) = &self.serving else { return switches };
        let mut mine = Vec::new();
        for sw in switches {
            if sw.controller.as_deref() != Some(serving.controller.as_str()) {
                continue;
            }
            match self
                .db
                .acquire_lease(&lease_name(&sw.id), &serving.controller, serving.lease_ttl)
                .await
            {
                Ok(Some(_)) => mine.push(sw),
                Ok(None) => {
                    tracing::info!(switch = %sw.name, "another controller still reconciles this switch; skipped this pass")
                }
                Err(e) => {
                    tracing::warn!(switch = %sw.name, error = %bramble_report::chain(&e), "cannot take the switch's reconcile lease; skipped this pass")
                }
            }
        }
        mine
    }

    /// A copy of what earlier passes remember about `switch`.
    fn memory_of(&self, switch: &SwitchId) -> SwitchMemory {
        self.lock().get(switch).cloned().unwrap_or_default()
    }

    fn remember(&self, switch: &SwitchId, memory: SwitchMemory) {
        self.lock().insert(switch.clone(), memory);
    }

    /// Drops memory of switches no longer in the inventory.
    fn forget_except(&self, switches: &[crate::model::Switch]) {
        self.lock().retain(|id, _| switches.iter().any(|s| &s.id == id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SwitchId, SwitchMemory>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn log_pass(outcome: &Result<ReconcileReport, ReconcileError>) {
    match outcome {
        Ok(report) => {
            for sw in &report.switches {
                if !sw.errors.is_empty() {
                    tracing::warn!(switch = %sw.name, errors = ?sw.errors, "reconciler: switch not fully reconciled");
                }
            }
            tracing::debug!(
                switches = report.switches.len(),
                drift = report.drift_found(),
                unreachable = report.unreachable(),
                "reconciler pass done"
            );
        }
        Err(e) => tracing::warn!(error = %bramble_report::chain(e), "reconciler pass failed"),
    }
}
