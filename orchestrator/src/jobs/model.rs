//! Jobs as data: kinds, their steps, and the job state machine.
//!
//! A job is a list of named steps run in order; each step is idempotent so a job can be
//! resumed after a crash from the step it was on. This file only describes jobs; the
//! runner executes them. **Invariant:** nothing here does I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lifecycle::LifecycleEvent;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    PowerOn,
    PowerOff,
    Reboot,
    Reimage,
    RackShelf,
    /// Take a snapshot of the Pi's live root on demand.
    Snapshot,
    /// Swap a snapshot back in as the Pi's root (the replaced root becomes a snapshot).
    Restore,
    /// Boot the Pi into a per-Pi rescue root, its own root mounted at `/mnt/root`.
    Rescue,
    /// Throw the rescue root away and boot the Pi's own root again.
    Unrescue,
}

impl JobKind {
    pub const ALL: [JobKind; 9] = [
        JobKind::PowerOn,
        JobKind::PowerOff,
        JobKind::Reboot,
        JobKind::Reimage,
        JobKind::RackShelf,
        JobKind::Snapshot,
        JobKind::Restore,
        JobKind::Rescue,
        JobKind::Unrescue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PowerOn => "power-on",
            JobKind::PowerOff => "power-off",
            JobKind::Reboot => "reboot",
            JobKind::Reimage => "reimage",
            JobKind::RackShelf => "rack-shelf",
            JobKind::Snapshot => "snapshot",
            JobKind::Restore => "restore",
            JobKind::Rescue => "rescue",
            JobKind::Unrescue => "unrescue",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The steps of this kind of job, in order.
    pub fn steps(self) -> &'static [JobStep] {
        use JobStep as S;
        match self {
            JobKind::PowerOn => &[S::PowerOn, S::ConfirmPower],
            JobKind::PowerOff => &[S::PowerOff, S::ConfirmPower],
            JobKind::Reboot => &[S::PowerOff, S::ConfirmOff, S::Settle, S::PowerOn, S::AwaitBoot],
            JobKind::Reimage => &[
                S::PowerOff,
                S::ProvisionRoot,
                S::ExportRoot,
                S::RenderBootFiles,
                S::PowerOn,
                S::AwaitBoot,
            ],
            JobKind::Snapshot => &[S::TakeSnapshot],
            JobKind::Restore => &[
                S::PowerOff,
                S::RestoreRoot,
                S::ExportRoot,
                S::RenderBootFiles,
                S::PowerOn,
                S::AwaitBoot,
            ],
            JobKind::RackShelf => &[
                S::CreateStorageLinks,
                S::ConfigureSwitch,
                S::VerifySwitch,
                S::PowerOnStaggered,
                S::AwaitPis,
            ],
            JobKind::Rescue => &[
                S::PowerOff,
                S::ProvisionRescue,
                S::ExportRescue,
                S::RenderBootFiles,
                S::PowerOn,
                S::AwaitBoot,
            ],
            JobKind::Unrescue => &[
                S::PowerOff,
                S::ConfirmOff,
                S::RemoveRescue,
                S::RenderBootFiles,
                S::PowerOn,
                S::AwaitBoot,
            ],
        }
    }

    /// What happens to the job's Pi when a runner first takes the job: a reimage or a
    /// restore deploys it, a rescue puts it in rescue. Persisted in the same transaction
    /// as the claim.
    pub fn lifecycle_at_start(self) -> Option<LifecycleEvent> {
        match self {
            JobKind::Reimage | JobKind::Restore => Some(LifecycleEvent::DeployStarted),
            JobKind::Rescue => Some(LifecycleEvent::RescueStarted),
            JobKind::PowerOn
            | JobKind::PowerOff
            | JobKind::Reboot
            | JobKind::RackShelf
            | JobKind::Snapshot
            | JobKind::Unrescue => None,
        }
    }

    /// What happens to the job's Pi when the job ends: deployed after a reimage or
    /// restore, failed after any failure but a snapshot's (taking a copy of a root does
    /// not touch the running Pi, so its failure says nothing about the Pi). Persisted in
    /// the same transaction as the job's end.
    pub fn lifecycle_at_end(self, succeeded: bool) -> Option<LifecycleEvent> {
        match (succeeded, self) {
            (_, JobKind::Snapshot) => None,
            (false, _) => Some(LifecycleEvent::JobFailed),
            (true, JobKind::Reimage | JobKind::Restore) => Some(LifecycleEvent::DeploySucceeded),
            (true, JobKind::Unrescue) => Some(LifecycleEvent::RescueEnded),
            (
                true,
                JobKind::PowerOn
                | JobKind::PowerOff
                | JobKind::Reboot
                | JobKind::RackShelf
                | JobKind::Rescue,
            ) => None,
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

/// One step of a job. Stored and shown by its name ([`JobStep::as_str`]): the Pi's
/// `failed_step`, the job's `steps` and `current_step`, the `job.step` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStep {
    PowerOn,
    PowerOff,
    /// The port reads back in the wanted power state.
    ConfirmPower,
    /// The port reads back off (a reboot's first half).
    ConfirmOff,
    /// A pause so the Pi really loses power.
    Settle,
    /// DHCP answered and a kernel read over TFTP after the job's power-on.
    AwaitBoot,
    ProvisionRoot,
    ExportRoot,
    RenderBootFiles,
    CreateStorageLinks,
    ConfigureSwitch,
    VerifySwitch,
    PowerOnStaggered,
    AwaitPis,
    /// Snapshot the live root and record it.
    TakeSnapshot,
    /// Swap the snapshot in (the replaced root kept as a snapshot) and record both.
    RestoreRoot,
    /// The Pi's rescue root made from the rescue image (its own root untouched).
    ProvisionRescue,
    /// The rescue root exported to the Pi's `/32`, beside its own root's export.
    ExportRescue,
    /// The rescue root's export withdrawn and the rescue root deleted.
    RemoveRescue,
}

impl JobStep {
    pub const ALL: [JobStep; 19] = [
        JobStep::PowerOn,
        JobStep::PowerOff,
        JobStep::ConfirmPower,
        JobStep::ConfirmOff,
        JobStep::Settle,
        JobStep::AwaitBoot,
        JobStep::ProvisionRoot,
        JobStep::ExportRoot,
        JobStep::RenderBootFiles,
        JobStep::CreateStorageLinks,
        JobStep::ConfigureSwitch,
        JobStep::VerifySwitch,
        JobStep::PowerOnStaggered,
        JobStep::AwaitPis,
        JobStep::TakeSnapshot,
        JobStep::RestoreRoot,
        JobStep::ProvisionRescue,
        JobStep::ExportRescue,
        JobStep::RemoveRescue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::PowerOn => "power-on",
            JobStep::PowerOff => "power-off",
            JobStep::ConfirmPower => "confirm-power",
            JobStep::ConfirmOff => "confirm-off",
            JobStep::Settle => "settle",
            JobStep::AwaitBoot => "await-boot",
            JobStep::ProvisionRoot => "provision-root",
            JobStep::ExportRoot => "export-root",
            JobStep::RenderBootFiles => "render-boot-files",
            JobStep::CreateStorageLinks => "create-storage-links",
            JobStep::ConfigureSwitch => "configure-switch",
            JobStep::VerifySwitch => "verify-switch",
            JobStep::PowerOnStaggered => "power-on-staggered",
            JobStep::AwaitPis => "await-pis",
            JobStep::TakeSnapshot => "take-snapshot",
            JobStep::RestoreRoot => "restore-root",
            JobStep::ProvisionRescue => "provision-rescue",
            JobStep::ExportRescue => "export-rescue",
            JobStep::RemoveRescue => "remove-rescue",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobStep::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for JobStep {
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
    /// Where every job starts: created by a request, waiting for a runner.
    pub const INITIAL: JobState = JobState::Queued;

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
    /// Its runner recorded the step it is on and extended its lease.
    Renewed,
    /// The runner's lease ran out without it finishing: another runner may take it.
    LeaseExpired,
    /// Its runner handed it back to the queue (shutting down).
    HandedBack,
    Finished,
    Failed,
    Cancelled,
}

impl JobEvent {
    pub const ALL: [JobEvent; 7] = [
        JobEvent::Claimed,
        JobEvent::Renewed,
        JobEvent::LeaseExpired,
        JobEvent::HandedBack,
        JobEvent::Finished,
        JobEvent::Failed,
        JobEvent::Cancelled,
    ];
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
        (S::Running, E::Renewed) => Ok(S::Running),
        (S::Running, E::LeaseExpired | E::HandedBack) => Ok(S::Queued),
        (S::Running, E::Finished) => Ok(S::Succeeded),
        (S::Running, E::Failed) => Ok(S::Failed),
        (S::Queued, E::Cancelled) => Ok(S::Cancelled),
        _ => Err(JobTransitionError { from, event }),
    }
}

/// The events that take a job found in state `from` to a runner: a queued job is
/// claimed; a running one whose lease expired is first requeued, then claimed.
pub fn claim_path(from: JobState) -> &'static [JobEvent] {
    match from {
        JobState::Running => &[JobEvent::LeaseExpired, JobEvent::Claimed],
        _ => &[JobEvent::Claimed],
    }
}

/// Applies `events` in order from `from`, failing at the first one that does not fit.
pub fn job_transitions(
    from: JobState,
    events: &[JobEvent],
) -> Result<JobState, JobTransitionError> {
    events.iter().try_fold(from, |s, &e| job_transition(s, e))
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

    /// Every (state, event) pair: where it leads, or `None` where it is refused.
    const TABLE: &[(JobState, JobEvent, Option<JobState>)] = {
        use JobEvent as E;
        use JobState as S;
        &[
            (S::Queued, E::Claimed, Some(S::Running)),
            (S::Queued, E::Cancelled, Some(S::Cancelled)),
            (S::Running, E::Renewed, Some(S::Running)),
            (S::Running, E::LeaseExpired, Some(S::Queued)),
            (S::Running, E::HandedBack, Some(S::Queued)),
            (S::Running, E::Finished, Some(S::Succeeded)),
            (S::Running, E::Failed, Some(S::Failed)),
        ]
    };

    #[test]
    fn the_machine_allows_exactly_the_table() {
        for from in JobState::ALL {
            for event in JobEvent::ALL {
                let want =
                    TABLE.iter().find(|(f, e, _)| *f == from && *e == event).and_then(|t| t.2);
                let got = job_transition(from, event);
                assert_eq!(got.clone().ok(), want, "{from} --{event:?}-->");
                if want.is_none() {
                    assert_eq!(got, Err(JobTransitionError { from, event }));
                }
            }
        }
    }

    #[test]
    fn finished_jobs_take_no_event_and_only_queued_ones_are_cancelled() {
        for from in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            assert!(!from.is_active());
            for event in JobEvent::ALL {
                assert!(job_transition(from, event).is_err(), "{from} took {event:?}");
            }
        }
        for from in JobState::ALL {
            let cancellable = job_transition(from, JobEvent::Cancelled).is_ok();
            assert_eq!(cancellable, from == JobState::Queued, "{from}");
        }
    }

    #[test]
    fn claiming_takes_queued_and_expired_jobs_to_running() {
        let cases = [
            (JobState::Queued, Ok(JobState::Running)),
            (JobState::Running, Ok(JobState::Running)),
            (
                JobState::Succeeded,
                Err(JobTransitionError { from: JobState::Succeeded, event: JobEvent::Claimed }),
            ),
        ];
        for (from, want) in cases {
            assert_eq!(job_transitions(from, claim_path(from)), want, "{from}");
        }
    }

    #[test]
    fn steps_round_trip_and_keep_their_stored_names() {
        let names: Vec<&str> = JobStep::ALL.iter().map(|s| s.as_str()).collect();
        for s in JobStep::ALL {
            assert_eq!(JobStep::parse(s.as_str()), Some(s));
            assert_eq!(names.iter().filter(|n| **n == s.as_str()).count(), 1, "{s}");
        }
        assert_eq!(JobStep::parse("power_on"), None);
        let cases: &[(JobKind, &[&str])] = &[
            (JobKind::PowerOn, &["power-on", "confirm-power"]),
            (JobKind::PowerOff, &["power-off", "confirm-power"]),
            (JobKind::Reboot, &["power-off", "confirm-off", "settle", "power-on", "await-boot"]),
            (
                JobKind::Reimage,
                &[
                    "power-off",
                    "provision-root",
                    "export-root",
                    "render-boot-files",
                    "power-on",
                    "await-boot",
                ],
            ),
            (JobKind::Snapshot, &["take-snapshot"]),
            (
                JobKind::Restore,
                &[
                    "power-off",
                    "restore-root",
                    "export-root",
                    "render-boot-files",
                    "power-on",
                    "await-boot",
                ],
            ),
            (
                JobKind::RackShelf,
                &[
                    "create-storage-links",
                    "configure-switch",
                    "verify-switch",
                    "power-on-staggered",
                    "await-pis",
                ],
            ),
            (
                JobKind::Rescue,
                &[
                    "power-off",
                    "provision-rescue",
                    "export-rescue",
                    "render-boot-files",
                    "power-on",
                    "await-boot",
                ],
            ),
            (
                JobKind::Unrescue,
                &[
                    "power-off",
                    "confirm-off",
                    "remove-rescue",
                    "render-boot-files",
                    "power-on",
                    "await-boot",
                ],
            ),
        ];
        for (kind, want) in cases {
            let got: Vec<&str> = kind.steps().iter().map(|s| s.as_str()).collect();
            assert_eq!(got, *want, "{kind}");
        }
    }

    #[test]
    fn jobs_move_their_pi_only_where_the_lifecycle_says() {
        use LifecycleEvent as L;
        let cases = [
            (JobKind::Reimage, Some(L::DeployStarted), Some(L::DeploySucceeded)),
            (JobKind::PowerOn, None, None),
            (JobKind::PowerOff, None, None),
            (JobKind::Reboot, None, None),
            (JobKind::RackShelf, None, None),
            (JobKind::Restore, Some(L::DeployStarted), Some(L::DeploySucceeded)),
            (JobKind::Rescue, Some(L::RescueStarted), None),
            (JobKind::Unrescue, None, Some(L::RescueEnded)),
        ];
        for (kind, start, end) in cases {
            assert_eq!(kind.lifecycle_at_start(), start, "{kind}");
            assert_eq!(kind.lifecycle_at_end(true), end, "{kind}");
            assert_eq!(kind.lifecycle_at_end(false), Some(L::JobFailed), "{kind}");
        }
        let snapshot = JobKind::Snapshot;
        assert_eq!(snapshot.lifecycle_at_start(), None);
        assert_eq!(snapshot.lifecycle_at_end(true), None);
        assert_eq!(snapshot.lifecycle_at_end(false), None, "a failed snapshot leaves the Pi");
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
