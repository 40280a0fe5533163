//! The job runner: claims jobs from the database with a lease, runs their steps through
//! per-kind [`Executor`]s, and records progress after every step.
//!
//! The Pi's lifecycle changes with the job's claim and its end, in the same database
//! transactions (see `db::jobs`); the runner writes no lifecycle state itself.
//!
//! Because the current step is stored before it runs and every step is idempotent, a
//! controller killed anywhere resumes the job at the step it was on: either on restart
//! (its own lease has expired by then) or on another controller that takes over the
//! lease. Kinds without an executor are never claimed; they stay queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::model::{JobKind, JobStep};
use crate::db::events::NewEvent;
use crate::db::jobs::JobOutcome;
use crate::db::{Db, DbError};
use crate::ids::JobId;
use crate::model::Job;

/// Why a step did not complete.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operator}")]
pub struct StepError {
    /// Worth trying the step again after a pause (switch timeout, export busy).
    pub retryable: bool,
    /// Detail for operators.
    pub operator: String,
    /// Words for the customer's control panel.
    pub customer: String,
}

impl StepError {
    pub fn permanent(operator: impl Into<String>, customer: impl Into<String>) -> Self {
        StepError { retryable: false, operator: operator.into(), customer: customer.into() }
    }

    pub fn retryable(operator: impl Into<String>, customer: impl Into<String>) -> Self {
        StepError { retryable: true, operator: operator.into(), customer: customer.into() }
    }
}

/// Runs the steps of one kind of job. Every step must be idempotent: it may run again
/// after a crash even if it had finished.
#[async_trait]
pub trait Executor: Send + Sync {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError>;
}

/// Tries per step before a retryable error fails the job, and the first pause.
const STEP_TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Where a [`CrashPlan`] may stop the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after the step completed, before the next step is recorded.
    AfterStep(JobStep),
    /// Right after the job's final commit (succeeded or failed).
    AfterFinish,
}

/// Test support: decides whether the runner "crashes" at a [`CrashPoint`], as a
/// controller killed at that instant would.
pub trait CrashPlan: Send + Sync {
    fn crash_at(&self, job: &Job, at: CrashPoint) -> bool;
}

/// How a job's run ended for the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The job finished (succeeded or failed) or was lost to another runner.
    Done,
    /// A [`CrashPlan`] stopped the runner: nothing more is written, as after a kill.
    Crashed,
}

pub struct Runner {
    db: Db,
    id: String,
    executors: HashMap<JobKind, Arc<dyn Executor>>,
    lease: Duration,
    poll: Duration,
    max_parallel: usize,
    crash: Option<Arc<dyn CrashPlan>>,
}

impl Runner {
    pub fn new(db: Db, id: impl Into<String>, lease: Duration, poll: Duration) -> Self {
        Runner {
            db,
            id: id.into(),
            executors: HashMap::new(),
            lease,
            poll,
            max_parallel: 1,
            crash: None,
        }
    }

    pub fn with_executor(mut self, kind: JobKind, e: Arc<dyn Executor>) -> Self {
        self.executors.insert(kind, e);
        self
    }

    /// Runs up to `n` jobs at once (each on its own Pi or shelf).
    pub fn with_max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }

    /// Test support: crash where `plan` says.
    pub fn with_crash_plan(mut self, plan: Arc<dyn CrashPlan>) -> Self {
        self.crash = Some(plan);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn kinds(&self) -> Vec<JobKind> {
        let mut k: Vec<JobKind> = self.executors.keys().copied().collect();
        k.sort_by_key(|k| k.as_str());
        k
    }

    /// Runs jobs, up to `max_parallel` at once, until `shutdown` resolves, or until a
    /// crash plan fires (returns [`RunEnd::Crashed`] at once, abandoning every job in
    /// flight with its lease held, as a killed process would). On shutdown the jobs in
    /// flight are stopped and handed back to the queue (their steps are idempotent), so
    /// a restart does not wait for a reboot to finish nor for a lease to expire.
    /// A database error is logged and retried after the poll interval.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> RunEnd {
        let this = Arc::new(self);
        let mut running: tokio::task::JoinSet<RunEnd> = tokio::task::JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, JobId> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            while running.len() < this.max_parallel {
                match this.db.claim_job(&this.id, &this.kinds(), this.lease).await {
                    Ok(Some(job)) => {
                        let (me, id) = (this.clone(), job.id.clone());
                        let handle = running.spawn(async move {
                            me.run_job(job).await.unwrap_or_else(|e| {
                                tracing::error!(error = format!("{e:#}"), "job runner database error; the job resumes after its lease expires");
                                RunEnd::Done
                            })
                        });
                        in_flight.insert(handle.id(), id);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(runner = %this.id, error = format!("{e:#}"), "job runner database error");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    for id in in_flight.values() {
                        match this.db.release_job(id, &this.id).await {
                            Ok(true) => tracing::info!(job = %id, "job handed back to the queue at shutdown"),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(job = %id, error = %e, "could not hand the job back; it resumes when its lease expires"),
                        }
                    }
                    return RunEnd::Done;
                }
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    match done {
                        Ok((task, RunEnd::Crashed)) => {
                            in_flight.remove(&task);
                            running.abort_all();
                            return RunEnd::Crashed;
                        }
                        Ok((task, RunEnd::Done)) => { in_flight.remove(&task); }
                        Err(e) => { in_flight.remove(&e.id()); }
                    }
                }
                _ = tokio::time::sleep(this.poll) => {}
            }
        }
    }

    /// Claims and runs at most one job. True if there was one.
    pub async fn run_once(&self) -> Result<bool, DbError> {
        let Some(job) = self.db.claim_job(&self.id, &self.kinds(), self.lease).await? else {
            return Ok(false);
        };
        self.run_job(job).await?;
        Ok(true)
    }

    async fn run_job(&self, job: Job) -> Result<RunEnd, DbError> {
        let Some(exec) = self.executors.get(&job.kind).cloned() else { return Ok(RunEnd::Done) };
        tracing::info!(runner = %self.id, job = %job.id, kind = %job.kind, attempt = job.attempts, "running job");
        let steps = job.kind.steps();
        let start = job
            .current_step
            .as_deref()
            .and_then(JobStep::parse)
            .and_then(|cur| steps.iter().position(|s| *s == cur))
            .unwrap_or(0);
        self.job_event(
            &job,
            "job.started",
            format!("{} started (attempt {})", job.kind, job.attempts),
            steps.get(start).copied(),
        )
        .await?;
        for (i, &step) in steps.iter().enumerate().skip(start) {
            if !self.db.advance_job(&job.id, &self.id, i, self.lease).await? {
                tracing::warn!(job = %job.id, "lost the lease; another runner has the job");
                return Ok(RunEnd::Done);
            }
            self.job_event(
                &job,
                "job.step",
                format!("step {} of {}: {step}", i + 1, steps.len()),
                Some(step),
            )
            .await?;
            let outcome = {
                let heartbeat = self.keep_lease(&job, i);
                tokio::pin!(heartbeat);
                tokio::select! {
                    r = self.run_step_with_retries(exec.as_ref(), &job, i, step) => r,
                    lost = &mut heartbeat => {
                        let _: () = lost;
                        tracing::warn!(job = %job.id, %step, "lost the lease during a step; abandoning the job to its new owner");
                        return Ok(RunEnd::Done);
                    }
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(job = %job.id, %step, error = %e.operator, "job failed");
                let outcome = JobOutcome::Failed {
                    step,
                    operator: format!("step {step}: {}", e.operator),
                    customer: e.customer,
                };
                return self.finish(&job, &outcome).await;
            }
            if self.crashes_at(&job, CrashPoint::AfterStep(step)) {
                return Ok(RunEnd::Crashed);
            }
        }
        let end = self.finish(&job, &JobOutcome::Succeeded).await?;
        if end == RunEnd::Done {
            tracing::info!(job = %job.id, "job ran to its end");
        }
        Ok(end)
    }

    /// Whether the crash plan stops the runner here.
    fn crashes_at(&self, job: &Job, at: CrashPoint) -> bool {
        let crash = self.crash.as_ref().is_some_and(|plan| plan.crash_at(job, at));
        if crash {
            tracing::warn!(runner = %self.id, job = %job.id, ?at, "injected crash");
        }
        crash
    }

    /// Ends the job with `outcome` (if this runner still holds it); the database moves
    /// its Pi in the same transaction, so nothing is left to do after the commit.
    async fn finish(&self, job: &Job, outcome: &JobOutcome) -> Result<RunEnd, DbError> {
        if self.db.finish_job(&job.id, &self.id, outcome).await?
            && self.crashes_at(job, CrashPoint::AfterFinish)
        {
            return Ok(RunEnd::Crashed);
        }
        Ok(RunEnd::Done)
    }

    /// Renews the lease every third of its length while a step runs; resolves only if
    /// the lease was lost (another runner took the job).
    async fn keep_lease(&self, job: &Job, step: usize) {
        let every = (self.lease / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match self.db.advance_job(&job.id, &self.id, step, self.lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "could not renew the job lease")
                }
            }
        }
    }

    /// An audit event for the job's Pi (and its customer), so progress shows in the Pi's
    /// timeline and reaches webhooks.
    async fn job_event(
        &self,
        job: &Job,
        kind: &str,
        message: String,
        step: Option<JobStep>,
    ) -> Result<(), DbError> {
        let mut e = NewEvent::new(kind, &self.id, message)
            .job(&job.id)
            .data(serde_json::json!({ "kind": job.kind, "step": step.map(JobStep::as_str), "attempt": job.attempts }));
        if let Some(pi) = &job.pi {
            e.customer = self.db.get_pi(pi).await?.and_then(|p| p.owner);
            e.pi = Some(pi.clone());
        }
        self.db.append_event(&e).await
    }

    async fn run_step_with_retries(
        &self,
        exec: &dyn Executor,
        job: &Job,
        index: usize,
        step: JobStep,
    ) -> Result<(), StepError> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match exec.run_step(job, step).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable && tries < STEP_TRIES => {
                    tracing::info!(job = %job.id, %step, tries, error = %e.operator, "step failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    // Keep the lease alive across the pause.
                    let _ = self.db.advance_job(&job.id, &self.id, index, self.lease).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
