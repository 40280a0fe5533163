//! The snapshot sweeper: on every controller with an image store, every `sweep_seconds`,
//! prunes rows by the [`policy`](super::policy) and deletes each snapshot directory of
//! its store that has no row and that no active job is making or restoring. API handlers
//! only delete rows (a customer's delete, a change of owner, a retirement); this is where
//! the directories follow, on the controller whose disk holds them.
//!
//! Both halves are idempotent, so controllers sharing a store or a database may repeat
//! each other's work. The order of the checks matters: a directory is judged by first
//! asking whether an active job uses it, then whether its row exists. A job records the
//! row before it ends, so a job seen finished has its row visible to the second query.

use std::future::Future;
use std::sync::Arc;

use bramble_images::{PiName, Roots};
use bramble_report::chain;

use super::{SnapshotsConfig, policy};
use crate::db::{Db, DbError};
use crate::ids::PiId;
use crate::jobs::ImagesHost;
use crate::jobs::reimage::blocking;
use crate::time::now_millis;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub pruned_rows: usize,
    pub deleted_dirs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("snapshot bookkeeping")]
    Db(#[from] DbError),
    #[error("snapshot directories")]
    Images(#[from] bramble_images::ImagesError),
}

pub struct Sweeper {
    db: Db,
    images: Arc<ImagesHost>,
    cfg: SnapshotsConfig,
}

impl Sweeper {
    pub fn new(db: Db, images: Arc<ImagesHost>, cfg: SnapshotsConfig) -> Sweeper {
        Sweeper { db, images, cfg }
    }

    /// Sweeps now and then every `sweep_seconds` until `shutdown` resolves; a failed
    /// pass is logged and tried again at the next.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.sweep() => match r {
                    Ok(SweepReport { pruned_rows: 0, deleted_dirs: 0 }) => {}
                    Ok(r) => tracing::info!(pruned = r.pruned_rows, deleted = r.deleted_dirs, "snapshots swept"),
                    Err(e) => tracing::error!(error = %chain(&e), "snapshot sweep failed"),
                },
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.cfg.sweep) => {}
            }
        }
    }

    /// One pass: prune rows, then delete directories without rows.
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
        let rows = self.db.all_snapshots().await?;
        let in_use = self.db.snapshots_being_restored().await?;
        let mut report = SweepReport::default();
        for id in policy::prune(&rows, &self.cfg, now_millis(), &in_use) {
            if let Some(s) = rows.iter().find(|s| s.id == id)
                && self.db.delete_snapshot(&s.pi, &id).await?
            {
                tracing::info!(pi = %s.pi, snapshot = %id, reason = s.reason.as_str(), "snapshot pruned");
                report.pruned_rows += 1;
            }
        }
        let images = self.images.clone();
        let on_disk =
            blocking(move || Roots::new(&images.store, images.runner.as_ref()).list_snapshots())
                .await?;
        for (pi, id) in on_disk {
            let pi_id = PiId(pi.as_str().to_string());
            // First the jobs, then the row: see the module docs.
            if self.db.snapshot_in_use(&pi_id, &id).await?
                || self.db.get_snapshot(&pi_id, &id).await?.is_some()
            {
                continue;
            }
            self.delete_dir(pi, id).await?;
            report.deleted_dirs += 1;
        }
        Ok(report)
    }

    async fn delete_dir(&self, pi: PiName, id: String) -> Result<(), SweepError> {
        let images = self.images.clone();
        tracing::info!(pi = %pi, snapshot = %id, "deleting a snapshot without a row");
        blocking(move || {
            Roots::new(&images.store, images.runner.as_ref()).delete_snapshot(&pi, &id)
        })
        .await?;
        Ok(())
    }
}
