//! The rescue and unrescue jobs.
//!
//! **Rescue** powers the Pi off, makes its rescue root `roots/<pi>_rescue` from the
//! `[rescue] image` base with the store's strategy (customised like any root: hostname,
//! public network, the customer's keys, new host keys and machine-id, plus an fstab
//! line mounting the Pi's own root at `/mnt/root`), exports it to the Pi's `/32` beside
//! the Pi's own export, checks its boot files, powers on and waits for the boot (and SSH).
//! While the rescue root exists the slot boots it ([`crate::bootplan::BootPlanner::plan`]).
//!
//! **Unrescue** powers the Pi off, withdraws the rescue export and deletes the rescue
//! root, checks the Pi's own boot files, powers on and waits for the boot.
//!
//! **Invariant:** neither job writes to the Pi's own root: they only read its plan (its
//! export path) and make sure it stays exported. Every step is idempotent: a rescue
//! root made by this job (its result names the version) is kept on a re-run, anything
//! else is made afresh; removing an absent export or root changes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use bramble_images::{Roots, add_rescue_mount};
use bramble_report::chain;
use serde::Deserialize;
use serde_json::json;

use super::hardware::{Hardware, Target};
use super::model::JobStep;
use super::power::unknown_step;
use super::reimage::{blocking, check_boot_files, identity, images_error, plan, store_name};
use super::runner::{Executor, StepError};
use crate::bootplan::RootKind;
use crate::db::events::NewEvent;
use crate::model::Job;

/// What a rescue job carries: the keys for the rescue system (the API fills in the Pi's
/// current keys when the request names none).
#[derive(Debug, Clone, Deserialize)]
pub struct RescueParams {
    pub ssh_keys: Vec<String>,
}

/// rescue (`entering`) or unrescue.
pub struct RescueExecutor {
    hw: Arc<Hardware>,
    entering: bool,
}

impl RescueExecutor {
    pub fn new(hw: Arc<Hardware>, entering: bool) -> Self {
        RescueExecutor { hw, entering }
    }

    async fn provision(&self, job: &Job, t: &Target) -> Result<(), StepError> {
        let params: RescueParams = serde_json::from_value(job.params.clone()).map_err(|e| {
            StepError::permanent(
                format!("rescue parameters: {e}"),
                "The rescue request was incomplete.",
            )
        })?;
        let own = plan(&self.hw, t, RootKind::Own)?;
        if !own.root.is_dir() {
            return Err(StepError::permanent(
                format!("no root at {} to rescue", own.root.display()),
                "This Pi has no system to rescue; reinstall it instead.",
            ));
        }
        let images = self.hw.images()?.clone();
        let name = store_name(&t.pi.id, RootKind::Rescue)?;
        let identity = identity(&self.hw, t, &params.ssh_keys);
        let image = self.hw.config.get().rescue.image.clone();
        let done = self.hw.db.job_result(&job.id).await?;
        let (server, path) = (own.nfs_server, own.nfs_path.clone());
        let image_name = image.clone();
        let root = blocking(move || {
            let base = images.store.latest(&image)?;
            let roots = Roots::new(&images.store, images.runner.as_ref());
            let root = match (done, roots.get(&name)?) {
                // Made by this job before a restart: keep it.
                (Some(done), Some(live))
                    if done["rescue"]["version"] == json!(live.version) && live.image == image =>
                {
                    live
                }
                _ => roots.reimage(&name, &base, &identity)?,
            };
            add_rescue_mount(&root.path, server, &path)?;
            Ok(root)
        })
        .await
        .map_err(|e| match e {
            bramble_images::ImagesError::NoBase { .. } => StepError::permanent(
                format!("rescue image {image_name}: {}", chain(&e)),
                "Rescue is not available right now; contact support.",
            ),
            e => images_error(e, "prepare the rescue system"),
        })?;
        self.hw
            .db
            .set_job_result(
                &job.id,
                &json!({ "rescue": { "image": root.image, "version": root.version } }),
            )
            .await?;
        let e = NewEvent::new(
            "rescue.provisioned",
            "controller",
            format!("rescue root made from {} {}", root.image, root.version),
        )
        .pi(&t.pi.id)
        .job(&job.id)
        .customer(t.pi.owner.as_ref());
        self.hw.db.append_event(&e).await?;
        Ok(())
    }

    /// Exports the rescue root (withdrawn and added: it was just made) and makes sure the
    /// Pi's own root is exported beside it.
    async fn export(&self, t: &Target) -> Result<(), StepError> {
        let Some(exporter) = self.hw.images()?.exporter.clone() else {
            tracing::info!(pi = %t.pi.id, "no NFS backend configured; rescue root not exported by this controller");
            return Ok(());
        };
        let rescue = plan(&self.hw, t, RootKind::Rescue)?.export;
        let own = plan(&self.hw, t, RootKind::Own)?.export;
        blocking(move || {
            exporter.add(&own)?;
            exporter.reexport(&rescue)
        })
        .await
        .map_err(|e| {
            StepError::retryable(
                format!("export: {}", chain(&e)),
                "The rescue system could not be shared with the Pi yet.",
            )
        })
    }
}

/// Deletes the Pi's rescue root (and any half-made one), then withdraws its export; the
/// Pi's own root stays exported. The root goes first, so a controller pass
/// ([`crate::exports::ExportSync`]) that still saw it cannot leave its export behind: it
/// withdraws rescue exports whose root is gone. Nothing to do when neither is there.
pub(super) async fn remove_rescue(hw: &Hardware, job: &Job, t: &Target) -> Result<(), StepError> {
    let images = hw.images()?.clone();
    let rescue = plan(hw, t, RootKind::Rescue)?;
    let own = plan(hw, t, RootKind::Own)?;
    let name = store_name(&t.pi.id, RootKind::Rescue)?;
    let removed = blocking(move || {
        let roots_dir = images.store.roots_dir();
        let leftovers = ["", ".journal", ".new"]
            .iter()
            .any(|s| std::fs::symlink_metadata(roots_dir.join(format!("{name}{s}"))).is_ok());
        let exported = match &images.exporter {
            Some(x) => x.list()?.contains(&rescue.export),
            None => false,
        };
        if !leftovers && !exported {
            return Ok(false);
        }
        Roots::new(&images.store, images.runner.as_ref()).remove(&name)?;
        if let Some(exporter) = &images.exporter {
            exporter.remove(&rescue.export)?;
            if own.root.is_dir() {
                exporter.add(&own.export)?;
            }
        }
        Ok(true)
    })
    .await
    .map_err(|e| images_error(e, "remove the rescue system"))?;
    if removed {
        let e = NewEvent::new("rescue.removed", "controller", "rescue root and its export removed")
            .pi(&t.pi.id)
            .job(&job.id)
            .customer(t.pi.owner.as_ref());
        hw.db.append_event(&e).await?;
    }
    Ok(())
}

#[async_trait]
impl Executor for RescueExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        use JobStep as S;
        let t = self.hw.target(job).await?;
        let booted = if self.entering { RootKind::Rescue } else { RootKind::Own };
        match step {
            S::PowerOff if self.entering => {
                self.hw.set_power(job, &t, false).await?;
                self.hw.confirm_power(&t, false).await.map(|_| ())
            }
            S::PowerOff => self.hw.set_power(job, &t, false).await,
            S::ConfirmOff => self.hw.confirm_power(&t, false).await.map(|_| ()),
            S::ProvisionRescue => self.provision(job, &t).await,
            S::ExportRescue => self.export(&t).await,
            S::RemoveRescue => remove_rescue(&self.hw, job, &t).await,
            S::RenderBootFiles => check_boot_files(&self.hw, job, &t, booted).await,
            S::PowerOn => self.hw.set_power(job, &t, true).await,
            S::AwaitBoot => self.hw.await_boot(job, &t).await.map(|_| ()),
            S::ConfirmPower
            | S::Settle
            | S::ProvisionRoot
            | S::ExportRoot
            | S::CreateStorageLinks
            | S::ConfigureSwitch
            | S::VerifySwitch
            | S::PowerOnStaggered
            | S::AwaitPis
            | S::TakeSnapshot
            | S::RestoreRoot => Err(unknown_step(job, step)),
        }
    }
}
