//! The job runner: claims jobs from the database with a lease, runs their steps through
//! per-kind [`Executor`]s, and records progress after every step.
//!
//! Because the current step is stored before it runs and every step is idempotent, a
//! controller killed anywhere resumes the job at the step it was on: either on restart
//! (its own lease has expired by then) or on another controller that takes over the
//! lease. Kinds without an executor are never claimed; they stay queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::model::JobKind;
use crate::db::jobs::JobOutcome;
use crate::db::{Db, DbError};
use crate::lifecycle::{LifecycleEvent, transition};
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
    async fn run_step(&self, job: &Job, step: usize) -> Result<(), StepError>;
}

/// Tries per step before a retryable error fails the job, and the first pause.
const STEP_TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

pub struct Runner {
    db: Db,
    id: String,
    executors: HashMap<JobKind, Arc<dyn Executor>>,
    lease: Duration,
    poll: Duration,
}

impl Runner {
    pub fn new(db: Db, id: impl Into<String>, lease: Duration, poll: Duration) -> Self {
        Runner { db, id: id.into(), executors: HashMap::new(), lease, poll }
    }

    pub fn with_executor(mut self, kind: JobKind, e: Arc<dyn Executor>) -> Self {
        self.executors.insert(kind, e);
        self
    }

    pub fn kinds(&self) -> Vec<JobKind> {
        let mut k: Vec<JobKind> = self.executors.keys().copied().collect();
        k.sort_by_key(|k| k.as_str());
        k
    }

    /// Runs jobs until `shutdown` resolves. A database error is logged and retried after
    /// the poll interval.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let worked = match self.run_once().await {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(runner = %self.id, error = format!("{e:#}"), "job runner database error");
                    false
                }
            };
            if worked {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Claims and runs at most one job. True if there was one.
    pub async fn run_once(&self) -> Result<bool, DbError> {
        let Some(job) = self.db.claim_job(&self.id, &self.kinds(), self.lease).await? else {
            return Ok(false);
        };
        let Some(exec) = self.executors.get(&job.kind).cloned() else { return Ok(true) };
        tracing::info!(runner = %self.id, job = %job.id, kind = %job.kind, attempt = job.attempts, "running job");
        self.enter_lifecycle(&job).await?;
        let start = job.steps.iter().position(|s| Some(s) == job.current_step.as_ref()).unwrap_or(0);
        for step in start..job.steps.len() {
            if !self.db.advance_job(&job.id, &self.id, step, self.lease).await? {
                tracing::warn!(job = %job.id, "lost the lease; another runner has the job");
                return Ok(true);
            }
            if let Err(e) = self.run_step_with_retries(exec.as_ref(), &job, step).await {
                tracing::warn!(job = %job.id, step = %job.steps[step], error = %e.operator, "job failed");
                let outcome = JobOutcome::Failed { operator: format!("step {}: {}", job.steps[step], e.operator), customer: e.customer };
                if self.db.finish_job(&job.id, &self.id, &outcome).await? {
                    self.leave_lifecycle(&job, Some(&job.steps[step])).await?;
                }
                return Ok(true);
            }
        }
        if self.db.finish_job(&job.id, &self.id, &JobOutcome::Succeeded).await? {
            self.leave_lifecycle(&job, None).await?;
            tracing::info!(job = %job.id, "job succeeded");
        }
        Ok(true)
    }

    async fn run_step_with_retries(&self, exec: &dyn Executor, job: &Job, step: usize) -> Result<(), StepError> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match exec.run_step(job, step).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable && tries < STEP_TRIES => {
                    tracing::info!(job = %job.id, step = %job.steps[step], tries, error = %e.operator, "step failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    // Keep the lease alive across the pause.
                    let _ = self.db.advance_job(&job.id, &self.id, step, self.lease).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A reimage moves its Pi to `deploying` before the first step.
    async fn enter_lifecycle(&self, job: &Job) -> Result<(), DbError> {
        let (Some(pi_id), JobKind::Reimage) = (&job.pi, job.kind) else { return Ok(()) };
        if let Some(pi) = self.db.get_pi(pi_id).await?
            && let Ok(next) = transition(pi.state, LifecycleEvent::DeployStarted)
        {
            self.db.set_pi_state(pi_id, next, None).await?;
        }
        Ok(())
    }

    /// The Pi's state after its job ended: deployed after a reimage, failed (with the
    /// step) after any failure.
    async fn leave_lifecycle(&self, job: &Job, failed_step: Option<&str>) -> Result<(), DbError> {
        let Some(pi_id) = &job.pi else { return Ok(()) };
        let Some(pi) = self.db.get_pi(pi_id).await? else { return Ok(()) };
        let event = match (failed_step, job.kind) {
            (Some(_), _) => LifecycleEvent::JobFailed,
            (None, JobKind::Reimage) => LifecycleEvent::DeploySucceeded,
            (None, _) => return Ok(()),
        };
        match transition(pi.state, event) {
            Ok(next) => self.db.set_pi_state(pi_id, next, failed_step).await,
            Err(e) => {
                tracing::warn!(pi = %pi_id, error = %e, "job outcome does not fit the Pi's state; state left as is");
                Ok(())
            }
        }
    }
}
