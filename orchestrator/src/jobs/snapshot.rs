//! The snapshot and restore jobs.
//!
//! A snapshot job (`take-snapshot`) copies the live root into the snapshot place
//! (`bramble-images` `Roots::snapshot`: a btrfs snapshot, reflink or copy, whole or
//! absent) and records its row. The Pi keeps running: a btrfs snapshot is atomic, a copy
//! of a running root is only as consistent as a copy of a disk in use.
//!
//! A restore job is a reimage whose new root is a snapshot: power off, `restore-root`
//! (the snapshot moved into place by the same journaled swap as a reimage, the replaced
//! root kept as this job's snapshot, then in one transaction the restored snapshot's
//! row removed, the kept one's added and the job's result written), then the reimage's
//! own export, boot-file check, power-on and boot wait.
//!
//! **Invariant:** each step's disk work is found on a re-run: the kept snapshot's id
//! derives from the job (`snapshot_of_job`), so its presence says the swap happened.

use std::sync::Arc;

use async_trait::async_trait;
use bramble_images::{ImagesError, Roots, host_key_fingerprints};
use serde::Deserialize;
use serde_json::json;

use super::hardware::{Hardware, Target};
use super::model::JobStep;
use super::power::unknown_step;
use super::reimage::{ReimageExecutor, blocking, images_error, recorded, store_name};
use super::runner::{Executor, StepError};
use crate::bootplan::RootKind;
use crate::db::events::NewEvent;
use crate::model::Job;
use crate::snapshots::{Reason, snapshot_of_job};

/// What a restore request carries: the snapshot to swap in.
#[derive(Debug, Clone, Deserialize)]
pub struct RestoreParams {
    pub snapshot: String,
}

pub struct SnapshotExecutor {
    hw: Arc<Hardware>,
}

impl SnapshotExecutor {
    pub fn new(hw: Arc<Hardware>) -> Self {
        SnapshotExecutor { hw }
    }

    async fn take(&self, job: &Job, t: &Target) -> Result<(), StepError> {
        let images = self.hw.images()?.clone();
        let name = store_name(&t.pi.id, RootKind::Own)?;
        let id = snapshot_of_job(&job.id);
        let info = blocking(move || {
            Roots::new(&images.store, images.runner.as_ref()).snapshot(&name, &id)
        })
        .await
        .map_err(|e| images_error(e, "take the snapshot"))?;
        let snap = recorded(job, &t.pi, info, Reason::Manual);
        if !self.hw.db.record_snapshot(&snap).await? {
            return Err(StepError::permanent(
                "the Pi changed owner while its snapshot was taken",
                "The snapshot could not be recorded.",
            ));
        }
        let e =
            NewEvent::new("snapshot.taken", "controller", format!("snapshot {} taken", snap.id))
                .pi(&t.pi.id)
                .job(&job.id)
                .customer(t.pi.owner.as_ref())
                .data(json!({ "snapshot": snap.id, "image": snap.image, "version": snap.version }));
        self.hw.db.append_event(&e).await?;
        Ok(())
    }
}

#[async_trait]
impl Executor for SnapshotExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        let t = self.hw.target(job).await?;
        match step {
            JobStep::TakeSnapshot => self.take(job, &t).await,
            _ => Err(unknown_step(job, step)),
        }
    }
}

pub struct RestoreExecutor {
    hw: Arc<Hardware>,
    /// Power, export, boot files and boot wait are the reimage's own steps.
    reimage: ReimageExecutor,
}

impl RestoreExecutor {
    pub fn new(hw: Arc<Hardware>) -> Self {
        RestoreExecutor { reimage: ReimageExecutor::new(hw.clone()), hw }
    }

    async fn restore(&self, job: &Job, t: &Target) -> Result<(), StepError> {
        let params: RestoreParams = serde_json::from_value(job.params.clone()).map_err(|e| {
            StepError::permanent(
                format!("restore parameters: {e}"),
                "The restore request was incomplete.",
            )
        })?;
        let images = self.hw.images()?.clone();
        let name = store_name(&t.pi.id, RootKind::Own)?;
        let keep = snapshot_of_job(&job.id);
        let done = self.hw.db.job_result(&job.id).await?;
        let image = match done.as_ref().map(|d| &d["restored"]) {
            Some(r) if r.is_object() => r["image"].as_str().map(str::to_string),
            _ => {
                let Some(row) = self.hw.db.get_snapshot(&t.pi.id, &params.snapshot).await? else {
                    return Err(StepError::permanent(
                        format!("snapshot {} of {} has no row", params.snapshot, t.pi.id),
                        "The snapshot no longer exists.",
                    ));
                };
                let (from, image, version) = (
                    row.id.clone(),
                    row.image.clone().unwrap_or_default(),
                    row.version.clone().unwrap_or_default(),
                );
                let kept = blocking(move || {
                    let roots = Roots::new(&images.store, images.runner.as_ref());
                    roots.resume(&name)?;
                    // The kept snapshot exists once this job's swap happened.
                    if roots.get_snapshot(&name, &keep)?.is_none() {
                        roots.restore(&name, &from, &keep, &image, &version)?;
                    }
                    roots.get_snapshot(&name, &keep)
                })
                .await
                .map_err(|e| match e {
                    ImagesError::SnapshotMissing { .. } => StepError::permanent(
                        bramble_report::chain(&e),
                        "The snapshot no longer exists.",
                    ),
                    e => images_error(e, "restore the snapshot"),
                })?;
                let kept = kept.map(|k| recorded(job, &t.pi, k, Reason::Restore));
                let result = json!({ "restored": {
                    "snapshot": row.id, "image": row.image, "version": row.version,
                    "kept": kept.as_ref().map(|k| k.id.clone()),
                }});
                self.hw
                    .db
                    .record_restore(&t.pi.id, &row.id, kept.as_ref(), &job.id, &result)
                    .await?;
                row.image
            }
        };
        let images = self.hw.images()?.clone();
        let name = store_name(&t.pi.id, RootKind::Own)?;
        let live = blocking(move || {
            let root = Roots::new(&images.store, images.runner.as_ref()).get(&name)?;
            Ok(root.map(|r| r.path))
        })
        .await
        .map_err(|e| images_error(e, "check the restored system"))?
        .ok_or_else(|| {
            StepError::permanent(
                "no live root after the restore",
                "The restored system is missing; contact support.",
            )
        })?;
        let keys = tokio::task::spawn_blocking(move || host_key_fingerprints(&live))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()));
        let keys = self.reimage.record_root(t, image.as_deref(), keys).await?;
        let e = NewEvent::new(
            "root.restored",
            "controller",
            format!("root restored from snapshot {}", params.snapshot),
        )
        .pi(&t.pi.id)
        .job(&job.id)
        .customer(t.pi.owner.as_ref())
        .data(json!({ "snapshot": params.snapshot, "image": image, "ssh_host_keys": keys }));
        self.hw.db.append_event(&e).await?;
        Ok(())
    }
}

#[async_trait]
impl Executor for RestoreExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        match step {
            JobStep::RestoreRoot => {
                let t = self.hw.target(job).await?;
                self.restore(job, &t).await
            }
            JobStep::ProvisionRoot => Err(unknown_step(job, step)),
            other => self.reimage.run_step(job, other).await,
        }
    }
}
