//! Jobs as data: kinds, their steps, and the job state machine.
//!
//! A job is a list of named steps run in order; each step is idempotent so a job can be
//! resumed after a crash from the step it was on. This file only describes jobs; the
//! runner executes them. **Invariant:** nothing here does I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    PowerOn,
    PowerOff,
    Reboot,
    Reimage,
    RackShelf,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::PowerOn,
        JobKind::PowerOff,
        JobKind::Reboot,
        JobKind::Reimage,
        JobKind::RackShelf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PowerOn => "power-on",
            JobKind::PowerOff => "power-off",
            JobKind::Reboot => "reboot",
            JobKind::Reimage => "reimage",
            JobKind::RackShelf => "rack-shelf",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The steps of this kind of job, in order.
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            JobKind::PowerOn => &["power-on", "confirm-power"],
            JobKind::PowerOff => &["power-off", "confirm-power"],
            JobKind::Reboot => &["power-off", "confirm-off", "settle", "power-on", "await-boot"],
            JobKind::Reimage => &[
                "power-off",
                "provision-root",
                "export-root",
                "render-boot-files",
                "power-on",
                "await-boot",
            ],
            JobKind::RackShelf => &[
                "create-storage-links",
                "configure-switch",
                "verify-switch",
                "power-on-staggered",
                "await-pis",
            ],
        }
    }

    /// Whether the job targets a single Pi (and so counts against its one active job).
    pub fn targets_pi(self) -> bool {
        !matches!(self, JobKind::RackShelf)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a runner (or for an executor for its kind to exist).
    Queued,
    /// Claimed by a runner holding a lease.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Queued and running jobs are active: at most one per Pi.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    Claimed,
    /// The runner's lease ran out without it finishing: another runner may take it.
    LeaseExpired,
    Finished,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job in state `{from}` cannot take event {event:?}")]
pub struct JobTransitionError {
    pub from: JobState,
    pub event: JobEvent,
}

/// The job state after `event`, or why it cannot happen. Cancelling is only allowed
/// before a runner claimed the job: a half-run power or reimage job is finished, not
/// abandoned.
pub fn job_transition(from: JobState, event: JobEvent) -> Result<JobState, JobTransitionError> {
    use JobEvent as E;
    use JobState as S;
    match (from, event) {
        (S::Queued, E::Claimed) => Ok(S::Running),
        (S::Running, E::LeaseExpired) => Ok(S::Queued),
        (S::Running, E::Finished) => Ok(S::Succeeded),
        (S::Running, E::Failed) => Ok(S::Failed),
        (S::Queued, E::Cancelled) => Ok(S::Cancelled),
        _ => Err(JobTransitionError { from, event }),
    }
}

/// How far along a job is, in percent, given the index of the step it is on.
pub fn progress_percent(kind: JobKind, state: JobState, step: usize) -> u8 {
    match state {
        JobState::Succeeded => 100,
        JobState::Queued => 0,
        _ => {
            let total = kind.steps().len().max(1);
            ((step.min(total) * 100) / total) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queued_jobs_can_be_cancelled() {
        assert_eq!(job_transition(JobState::Queued, JobEvent::Cancelled), Ok(JobState::Cancelled));
        for s in [JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            assert!(job_transition(s, JobEvent::Cancelled).is_err(), "{s} was cancellable");
        }
    }

    #[test]
    fn an_expired_lease_requeues_a_running_job() {
        let s = job_transition(JobState::Queued, JobEvent::Claimed).unwrap();
        assert_eq!(job_transition(s, JobEvent::LeaseExpired), Ok(JobState::Queued));
        assert!(job_transition(JobState::Succeeded, JobEvent::Claimed).is_err());
    }

    #[test]
    fn progress_counts_finished_steps() {
        assert_eq!(progress_percent(JobKind::Reboot, JobState::Queued, 0), 0);
        assert_eq!(progress_percent(JobKind::Reboot, JobState::Running, 1), 20);
        assert_eq!(progress_percent(JobKind::Reboot, JobState::Running, 99), 100);
        assert_eq!(progress_percent(JobKind::Reboot, JobState::Succeeded, 0), 100);
    }

    #[test]
    fn kinds_round_trip_and_have_steps() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
            assert!(!k.steps().is_empty());
        }
    }
}
