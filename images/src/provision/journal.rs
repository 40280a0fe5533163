//! The reimage journal and its state machine. [`next_step`] is a pure function from what
//! is on disk to the one step that moves the job forward; running steps until `Done`
//! converges from any crash point.
//!
//! One machine serves a reimage (the new root cloned from a base) and a restore (the new
//! root moved in from a snapshot). Either may keep the root it replaces as a snapshot
//! (`keep`): after the swap the old root sits at `<pi>.new` and is renamed into the
//! snapshot place instead of deleted.

use serde::{Deserialize, Serialize};

use crate::customize::{PiIdentity, PiName};

/// Where a reimage job is, as recorded in `roots/<pi>.journal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// `<pi>.new` is being built; it may be partial.
    Preparing,
    /// `<pi>.new` was complete and customised when this was recorded; swap it in.
    Prepared,
}

/// A reimage job: enough to redo it from scratch with no caller input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub pi: PiName,
    pub image: String,
    pub version: String,
    /// Random token written into the new root's marker; identifies it after a swap.
    pub token: String,
    pub phase: Phase,
    /// The identity a reimage customises the new root with; `None` for a restore.
    pub identity: Option<PiIdentity>,
    /// Where the new root comes from.
    #[serde(default)]
    pub source: Source,
    /// Keep the replaced root as the snapshot with this id instead of deleting it.
    #[serde(default)]
    pub keep: Option<String>,
}

/// Where a job's new root comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Cloned from the base `image`/`version` and customised.
    #[default]
    Base,
    /// The snapshot with this id, moved (not copied) to `<pi>.new`.
    Snapshot(String),
}

/// What the driver sees on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Phase recorded in the journal, if one exists.
    pub journal: Option<Phase>,
    /// `<pi>.new` exists.
    pub new_exists: bool,
    /// `<pi>.new` carries the marker with the journal's token (complete and customised).
    pub new_complete: bool,
    /// `<pi>` carries the marker with the journal's token (the swap happened).
    pub live_is_new: bool,
    /// The job restores a snapshot (its source is not a base).
    pub from_snapshot: bool,
    /// The snapshot a restore moves in still exists in the snapshot place.
    pub source_exists: bool,
    /// The job keeps the replaced root as a snapshot.
    pub keep: bool,
}

/// The next action of a reimage job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delete `<pi>.new`: a partial build, or the old root after the swap.
    DeleteNew,
    /// Clone the base to `<pi>.new`, customise it, write the marker.
    Provision,
    /// Rename the snapshot being restored to `<pi>.new`.
    MoveIn,
    /// Write the marker with the journal's token into the moved-in `<pi>.new`.
    Mark,
    /// Rename the replaced root (at `<pi>.new` after the swap) into the snapshot place.
    Keep,
    /// The snapshot to restore is gone and nothing was moved: drop the journal and fail,
    /// the live root untouched.
    Abandon,
    /// Record `Prepared` in the journal.
    MarkPrepared,
    /// Exchange `<pi>.new` with `<pi>` (or rename it into place if there is no `<pi>`).
    Swap,
    /// Record `Preparing` again: the prepared tree vanished (deleted by hand).
    Restart,
    /// Remove the journal: the job is finished.
    Finish,
    Done,
}

/// The pure transition function of the reimage job.
pub fn next_step(o: Observed) -> Step {
    match o.journal {
        None if o.new_exists => Step::DeleteNew,
        None => Step::Done,
        Some(Phase::Preparing) if o.new_complete => Step::MarkPrepared,
        Some(Phase::Preparing) if o.from_snapshot => match (o.new_exists, o.source_exists) {
            // Moved in, marker not yet written: never delete it, it is the snapshot.
            (true, false) => Step::Mark,
            (true, true) => Step::DeleteNew,
            (false, true) => Step::MoveIn,
            (false, false) => Step::Abandon,
        },
        Some(Phase::Preparing) if o.new_exists => Step::DeleteNew,
        Some(Phase::Preparing) => Step::Provision,
        Some(Phase::Prepared) if o.live_is_new && o.new_exists && o.keep => Step::Keep,
        Some(Phase::Prepared) if o.live_is_new && o.new_exists => Step::DeleteNew,
        Some(Phase::Prepared) if o.live_is_new => Step::Finish,
        Some(Phase::Prepared) if o.new_complete => Step::Swap,
        Some(Phase::Prepared) => Step::Restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(
        journal: Option<Phase>,
        new_exists: bool,
        new_complete: bool,
        live_is_new: bool,
    ) -> Observed {
        Observed {
            journal,
            new_exists,
            new_complete,
            live_is_new,
            from_snapshot: false,
            source_exists: true,
            keep: false,
        }
    }

    #[test]
    fn transition_table() {
        use Phase::*;
        use Step::*;
        let table = [
            (o(None, false, false, false), Done),
            (o(None, true, false, false), DeleteNew),
            (o(Some(Preparing), false, false, false), Provision),
            (o(Some(Preparing), true, false, false), DeleteNew),
            (o(Some(Preparing), true, true, false), MarkPrepared),
            (o(Some(Prepared), true, true, false), Swap),
            (o(Some(Prepared), true, false, true), DeleteNew),
            (o(Some(Prepared), false, false, true), Finish),
            (o(Some(Prepared), false, false, false), Restart),
        ];
        for (obs, step) in table {
            assert_eq!(next_step(obs), step, "{obs:?}");
        }
    }

    #[test]
    fn restores_move_the_snapshot_in_and_keep_the_replaced_root() {
        use Phase::*;
        use Step::*;
        let r = |journal, new_exists, new_complete, live_is_new, source_exists| Observed {
            from_snapshot: true,
            source_exists,
            keep: true,
            ..o(journal, new_exists, new_complete, live_is_new)
        };
        let table = [
            (r(Some(Preparing), false, false, false, true), MoveIn),
            (r(Some(Preparing), true, false, false, false), Mark),
            (r(Some(Preparing), true, false, false, true), DeleteNew),
            (r(Some(Preparing), false, false, false, false), Abandon),
            (r(Some(Preparing), true, true, false, false), MarkPrepared),
            (r(Some(Prepared), true, true, false, false), Swap),
            (r(Some(Prepared), true, false, true, false), Keep),
            (r(Some(Prepared), false, false, true, false), Finish),
            (r(None, false, false, false, false), Done),
        ];
        for (obs, step) in table {
            assert_eq!(next_step(obs), step, "{obs:?}");
        }
    }

    #[test]
    fn every_state_reaches_done_under_the_intended_effects() {
        // Model each step's effect on the observation and check termination from all states.
        for bits in 0u8..128 {
            let journal = match bits & 3 {
                0 => None,
                1 => Some(Phase::Preparing),
                _ => Some(Phase::Prepared),
            };
            let mut s = o(journal, bits & 4 != 0, bits & 8 != 0, bits & 16 != 0);
            s.new_complete &= s.new_exists;
            s.from_snapshot = bits & 32 != 0;
            s.source_exists = bits & 64 != 0 || !s.from_snapshot;
            s.keep = s.from_snapshot;
            let mut steps = 0;
            loop {
                let step = next_step(s);
                s = match step {
                    Step::Done => break,
                    Step::Abandon => Observed { journal: None, ..s },
                    Step::DeleteNew | Step::Keep => {
                        Observed { new_exists: false, new_complete: false, ..s }
                    }
                    Step::MoveIn => Observed { new_exists: true, source_exists: false, ..s },
                    Step::Mark => Observed { new_complete: true, ..s },
                    Step::Provision => Observed { new_exists: true, new_complete: true, ..s },
                    Step::MarkPrepared => Observed { journal: Some(Phase::Prepared), ..s },
                    Step::Swap => {
                        Observed { new_exists: true, new_complete: false, live_is_new: true, ..s }
                    }
                    Step::Restart => Observed { journal: Some(Phase::Preparing), ..s },
                    Step::Finish => Observed { journal: None, ..s },
                };
                steps += 1;
                assert!(steps < 10, "no convergence from {bits:#b}");
            }
        }
    }
}
