//! The Pi lifecycle state machine, in the spirit of MAAS and Ironic.
//!
//! ```text
//!   new ──commissioned──▶ ready ──deploy──▶ deploying ──deployed──▶ deployed
//!                          ▲  ▲                 │                      │  │
//!                          │  └───release───────┼──────────────────────┘  │
//!                          │                    └─deploy_failed─▶ failed ◀┘ (reboot failed)
//!   maintenance ◀──mark_broken── (any but retired)
//!   deployed | failed ──rescue_started──▶ rescue ──rescue_ended──▶ deployed
//!   rescue | failed ──rescue_ended──▶ deployed   (unrescue booted the Pi's own root)
//!   rescue ──job_failed──▶ failed
//!   retired ◀──retire── new | ready | failed | maintenance
//! ```
//!
//! [`transition`] is a pure function; callers persist the result. It does no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a Pi is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiState {
    /// Seen (enrolled or DHCP'd) but not yet commissioned.
    New,
    /// Commissioned, no customer image: can be deployed.
    Ready,
    /// A reimage is in progress.
    Deploying,
    /// Running a customer's image.
    Deployed,
    /// Booted into a rescue root with the customer's root available.
    Rescue,
    /// A job failed; `failed_step` on the Pi says where.
    Failed,
    /// Taken out of service by an operator (broken hardware, diagnosis).
    Maintenance,
    /// Gone for good; kept for the audit trail.
    Retired,
}

impl PiState {
    pub const ALL: [PiState; 8] = [
        PiState::New,
        PiState::Ready,
        PiState::Deploying,
        PiState::Deployed,
        PiState::Rescue,
        PiState::Failed,
        PiState::Maintenance,
        PiState::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PiState::New => "new",
            PiState::Ready => "ready",
            PiState::Deploying => "deploying",
            PiState::Deployed => "deployed",
            PiState::Rescue => "rescue",
            PiState::Failed => "failed",
            PiState::Maintenance => "maintenance",
            PiState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        PiState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether customers may start power and reboot jobs in this state.
    pub fn accepts_power_actions(self) -> bool {
        matches!(self, PiState::Ready | PiState::Deployed | PiState::Failed | PiState::Rescue)
    }
}

impl fmt::Display for PiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a Pi that may move it to another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// Its serial, MAC and model were recorded on its slot.
    Commissioned,
    /// A reimage started.
    DeployStarted,
    /// A reimage finished and the Pi booted the new root.
    DeploySucceeded,
    /// A job failed on the Pi.
    JobFailed,
    /// A rescue job started: the Pi boots a rescue root with its own root beside it.
    RescueStarted,
    /// An unrescue job booted the Pi's own root again (also from `failed`: a rescue or
    /// unrescue job that failed midway is finished by an unrescue).
    RescueEnded,
    /// The customer gave the Pi back; it keeps its root until the next deploy.
    Released,
    MarkedBroken,
    Repaired,
    Retired,
}

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Pi in state `{from}` cannot take event {event:?}")]
pub struct TransitionError {
    pub from: PiState,
    pub event: LifecycleEvent,
}

/// The state after `event` happens in state `from`, or why it cannot.
pub fn transition(from: PiState, event: LifecycleEvent) -> Result<PiState, TransitionError> {
    use LifecycleEvent as E;
    use PiState as S;
    let to = match (from, event) {
        (S::New, E::Commissioned) => S::Ready,
        (S::Ready | S::Deployed | S::Failed, E::DeployStarted) => S::Deploying,
        (S::Deploying, E::DeploySucceeded) => S::Deployed,
        (S::Deploying | S::Deployed | S::Ready | S::Rescue, E::JobFailed) => S::Failed,
        (S::Deployed | S::Failed, E::RescueStarted) => S::Rescue,
        (S::Rescue | S::Failed, E::RescueEnded) => S::Deployed,
        (S::Deployed | S::Failed, E::Released) => S::Ready,
        (s, E::MarkedBroken) if s != S::Retired => S::Maintenance,
        (S::Maintenance, E::Repaired) => S::Ready,
        (S::New | S::Ready | S::Failed | S::Maintenance, E::Retired) => S::Retired,
        _ => return Err(TransitionError { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::LifecycleEvent as E;
    use super::PiState as S;
    use super::*;

    #[test]
    fn the_happy_path_goes_new_ready_deploying_deployed() {
        let mut s = S::New;
        for e in [E::Commissioned, E::DeployStarted, E::DeploySucceeded] {
            s = transition(s, e).unwrap();
        }
        assert_eq!(s, S::Deployed);
        // Reinstalling a deployed Pi deploys again.
        assert_eq!(transition(s, E::DeployStarted), Ok(S::Deploying));
    }

    #[test]
    fn table_of_allowed_and_refused_transitions() {
        let cases: &[(S, E, Option<S>)] = &[
            (S::New, E::DeployStarted, None),
            (S::Deploying, E::DeployStarted, None),
            (S::Deploying, E::JobFailed, Some(S::Failed)),
            (S::Failed, E::DeployStarted, Some(S::Deploying)),
            (S::Deployed, E::RescueStarted, Some(S::Rescue)),
            (S::Rescue, E::RescueEnded, Some(S::Deployed)),
            (S::Ready, E::RescueStarted, None),
            (S::Failed, E::RescueStarted, Some(S::Rescue)),
            (S::Rescue, E::RescueStarted, None),
            (S::Deploying, E::RescueStarted, None),
            (S::Failed, E::RescueEnded, Some(S::Deployed)),
            (S::Deployed, E::RescueEnded, None),
            (S::Rescue, E::JobFailed, Some(S::Failed)),
            (S::Rescue, E::DeployStarted, None),
            (S::Rescue, E::Released, None),
            (S::Deployed, E::Released, Some(S::Ready)),
            (S::Deployed, E::Retired, None),
            (S::Retired, E::MarkedBroken, None),
            (S::Retired, E::Commissioned, None),
            (S::Deploying, E::MarkedBroken, Some(S::Maintenance)),
            (S::Maintenance, E::Repaired, Some(S::Ready)),
            (S::Maintenance, E::Retired, Some(S::Retired)),
        ];
        for &(from, event, want) in cases {
            let got = transition(from, event).ok();
            assert_eq!(got, want, "{from} --{event:?}-->");
        }
    }

    #[test]
    fn retired_is_terminal() {
        let events = [
            E::Commissioned,
            E::DeployStarted,
            E::DeploySucceeded,
            E::JobFailed,
            E::RescueStarted,
            E::RescueEnded,
            E::Released,
            E::MarkedBroken,
            E::Repaired,
            E::Retired,
        ];
        for e in events {
            assert!(transition(S::Retired, e).is_err(), "retired accepted {e:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in PiState::ALL {
            assert_eq!(PiState::parse(s.as_str()), Some(s));
        }
        assert_eq!(PiState::parse("booting"), None);
    }
}
