//! Snapshots of Pis' roots as the inventory knows them: the API's [`Snapshot`], the
//! `[snapshots]` config, the pure pruning policy ([`policy`]) and the [`Sweeper`] that
//! makes the serving controller's disk follow the rows.
//!
//! A snapshot's id derives from the job that made it (`job-X` makes `snap-X`), so a job
//! step re-run after a crash finds its own snapshot on disk, and the sweeper can tell a
//! directory an active job is still making from a leftover.
//!
//! **Invariant:** a snapshot row exists only while its directory does or is about to be
//! deleted: rows are written after the directory exists, deleted first (by the API, a
//! change of owner, retirement or pruning), and the sweeper then deletes every directory
//! that has no row and no active job making or restoring it.

pub mod config;
pub mod policy;
pub mod sweeper;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, JobId, PiId};

pub use config::{RawSnapshots, SnapshotsConfig};
pub use sweeper::Sweeper;

/// Why a snapshot exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The root a reinstall replaced.
    Reinstall,
    /// The root a restore replaced (restoring it undoes the restore).
    Restore,
    /// Taken on demand (`POST /v1/pis/{id}/snapshots`).
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reinstall => "reinstall",
            Reason::Restore => "restore",
            Reason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        [Reason::Reinstall, Reason::Restore, Reason::Manual].into_iter().find(|r| r.as_str() == s)
    }
}

/// A snapshot of a Pi's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// `snap-...`; pass it to `POST /v1/pis/{id}/restore`.
    pub id: String,
    pub pi: PiId,
    /// The Pi's owner when it was taken.
    pub owner: Option<CustomerId>,
    /// The job that made it.
    pub job: JobId,
    pub reason: Reason,
    /// The image and version of the root it holds, where its marker says.
    pub image: Option<String>,
    pub version: Option<String>,
    /// Bytes, where known: plain copies only (a btrfs or reflink snapshot shares its
    /// data with the root it came from).
    pub size_bytes: Option<i64>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The snapshot a job makes: `job-X` makes `snap-X`.
pub fn snapshot_of_job(job: &JobId) -> String {
    let suffix = job.as_str().strip_prefix("job-").unwrap_or(job.as_str());
    format!("snap-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_snapshot_id_is_a_valid_directory_name() {
        let job = JobId::generate();
        let id = snapshot_of_job(&job);
        assert_eq!(id, format!("snap-{}", &job.as_str()[4..]));
        bramble_images::provision::snapshots::check_id(&id).expect("valid");
        for r in [Reason::Reinstall, Reason::Restore, Reason::Manual] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
