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
    /// In a controller: `[snapshots]` as configured now (a reload may change it).
    live: Option<crate::reload::LiveConfig>,
}

impl Sweeper {
    pub fn new(db: Db, images: Arc<ImagesHost>, cfg: SnapshotsConfig) -> Sweeper {
        Sweeper { db, images, cfg, live: None }
    }

    /// Reads `[snapshots]` from the running configuration at each pass.
    pub fn live(mut self, config: crate::reload::LiveConfig) -> Self {
        self.live = Some(config);
        self
    }

    fn cfg(&self) -> SnapshotsConfig {
        self.live.as_ref().map_or_else(|| self.cfg.clone(), |c| c.get().snapshots.clone())
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
                _ = tokio::time::sleep(self.cfg().sweep) => {}
            }
        }
    }

    /// One pass: prune rows, then delete directories without rows.
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
        let rows = self.db.all_snapshots().await?;
        let in_use = self.db.snapshots_being_restored().await?;
        let mut report = SweepReport::default();
        for id in policy::prune(&rows, &self.cfg(), now_millis(), &in_use) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::db::jobs::{CreateOutcome, NewJob};
    use crate::db::pis::NewPi;
    use crate::ids::{CustomerId, JobId, TokenId};
    use crate::jobs::model::JobKind;
    use crate::lifecycle::PiState;
    use crate::snapshots::{Reason, Snapshot, snapshot_of_job};
    use crate::testing::test_databases;

    /// One pass prunes the oldest automatic snapshot beyond `keep` and deletes its
    /// directory, deletes a directory without a row (and a partial one), and keeps the
    /// directory an active job is making though it has no row yet. A second pass does
    /// nothing.
    #[tokio::test]
    async fn a_sweep_prunes_rows_and_deletes_directories_without_one() {
        for t in test_databases().await {
            let (backend, db) = (t.label, Db::connect(&t.url).await.unwrap());
            let dir = tempfile::tempdir().unwrap();
            let images = Arc::new(ImagesHost::open(dir.path(), None).unwrap());
            let owner = CustomerId("cust-ann".into());
            let new = NewPi {
                serial: None,
                mac: None,
                model: "pi4".into(),
                slot: None,
                owner: Some(owner.clone()),
                state: PiState::Ready,
            };
            let pi = db.insert_pi(&new, "test").await.unwrap().id;
            let snaps = images.store.roots_dir().join(".snapshots").join(pi.as_str());
            let now = now_millis();
            let mut ids = Vec::new();
            for n in 1..=3u32 {
                let job = JobId(format!("job-{:012x}{:06x}", 1_000 + n, n));
                let snap = Snapshot {
                    id: snapshot_of_job(&job),
                    pi: pi.clone(),
                    owner: Some(owner.clone()),
                    job,
                    reason: Reason::Reinstall,
                    image: None,
                    version: None,
                    size_bytes: None,
                    created_at: now - 1_000 + i64::from(n),
                };
                std::fs::create_dir_all(snaps.join(&snap.id)).unwrap();
                assert!(db.record_snapshot(&snap).await.unwrap());
                ids.push(snap.id);
            }
            std::fs::create_dir_all(snaps.join("snap-orphan")).unwrap();
            std::fs::create_dir_all(snaps.join("snap-gone.partial")).unwrap();
            let op = Principal::Operator { token: TokenId("tok-test".into()) };
            let job = NewJob {
                kind: JobKind::Snapshot,
                pi: Some(pi.clone()),
                shelf: None,
                params: serde_json::json!({}),
                idempotency_key: None,
            };
            let CreateOutcome::Created(job) = db.create_job(&job, &op).await.unwrap() else {
                panic!("{backend}: job")
            };
            let making = format!("{}.partial", snapshot_of_job(&job.id));
            std::fs::create_dir_all(snaps.join(&making)).unwrap();

            let cfg = SnapshotsConfig { keep: 2, ..SnapshotsConfig::default() };
            let sweeper = Sweeper::new(db.clone(), images.clone(), cfg);
            let report = sweeper.sweep().await.unwrap();
            assert_eq!(report, SweepReport { pruned_rows: 1, deleted_dirs: 3 }, "{backend}");
            let mut left: Vec<String> = std::fs::read_dir(&snaps)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            let mut want = vec![ids[1].clone(), ids[2].clone(), making.clone()];
            want.sort();
            assert_eq!(left, want, "{backend}");
            assert_eq!(sweeper.sweep().await.unwrap(), SweepReport::default(), "{backend}");
            db.close().await;
        }
    }
}
