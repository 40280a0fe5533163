//! The reimage (reinstall) job: power the Pi off, provision a fresh root from the chosen
//! image with the customer's SSH keys (built beside the live root and swapped in
//! atomically by `bramble-images`), export it to the Pi's storage address, check its boot
//! files render for the slot, power on and wait for the boot evidence.
//!
//! **Invariant:** the live root is only ever replaced whole: a crash anywhere leaves the
//! old root or the new one, never a mix; the step re-run after a restart finishes or
//! redoes the swap from the image store's journal.
//! The replaced root is kept as this job's snapshot (`snapshot_of_job`), recorded for
//! the Pi's owner: a reinstall can be undone with a restore.
//!
//! **Invariant:** the Pi's `image` and `ssh_host_keys` describe its live root. The
//! provision step writes them after the swap, with the fingerprints read back from the
//! live root's `etc/ssh/ssh_host_*_key.pub`, and a re-run of the step rewrites them from
//! the root then live. A reinstall that fails before the swap leaves the old root live,
//! and with it the old image and keys; one that fails after it (export, boot files, boot)
//! leaves the new root live, whose keys are already recorded. If the keys cannot be read
//! back after the swap, the Pi shows none (the step fails) rather than the old root's.

use std::sync::Arc;

use async_trait::async_trait;
use bramble_images::{
    ImagesError, KeyFingerprint, PiIdentity, PiName, Roots, host_key_fingerprints,
};
use bramble_netboot::bootfiles::{named_boot_files, render_cmdline, render_config};
use bramble_netboot::hw::PiSerial;
use serde::Deserialize;
use serde_json::json;

use super::hardware::{Hardware, Target};
use super::model::JobStep;
use super::power::unknown_step;
use super::runner::{Executor, StepError};
use crate::bootplan::{BootPlan, RootKind, root_name};
use crate::db::events::NewEvent;
use crate::model::{Job, Pi, SshHostKey};
use crate::snapshots::{Reason, Snapshot, snapshot_of_job};
use bramble_report::chain;

/// What a reimage request carries (validated by the API before the job exists).
#[derive(Debug, Clone, Deserialize)]
pub struct ReimageParams {
    pub image: String,
    pub ssh_keys: Vec<String>,
}

/// Kernel files a Pi's firmware loads when `config.txt` names none; a root whose
/// `config.txt` names no kernel and that holds none of these cannot boot.
const KERNELS: &[&str] = &["kernel8.img", "kernel7l.img", "kernel7.img", "kernel.img"];
/// The Pi 5's: `kernel_2712.img`, else `kernel8.img` (raspberrypi/documentation,
/// config_txt boot.adoc, `kernel`); it runs no 32-bit kernel.
const KERNELS_PI5: &[&str] = &["kernel_2712.img", "kernel8.img"];

pub struct ReimageExecutor {
    hw: Arc<Hardware>,
}

impl ReimageExecutor {
    pub fn new(hw: Arc<Hardware>) -> Self {
        ReimageExecutor { hw }
    }

    async fn provision(&self, job: &Job, t: &Target) -> Result<(), StepError> {
        let params = params(job)?;
        let images = self.hw.images()?.clone();
        let name = store_name(&t.pi.id, RootKind::Own)?;
        let identity = identity(&self.hw, t, &params.ssh_keys);
        let image = params.image.clone();
        let done = self.hw.db.job_result(&job.id).await?;
        // The replaced root is kept as this job's snapshot: its presence also says that
        // this job's swap happened before a restart.
        let keep = snapshot_of_job(&job.id);
        let (root, keys, kept) = blocking(move || {
            let base = images.store.latest(&image)?;
            let roots = Roots::new(&images.store, images.runner.as_ref());
            roots.resume(&name)?;
            let swapped = roots.get_snapshot(&name, &keep)?.is_some();
            let root = match (done, roots.get(&name)?) {
                // Already provisioned by this job before a restart: keep that root.
                (Some(done), Some(live))
                    if done["provisioned"]["version"] == json!(live.version)
                        && live.image == image =>
                {
                    live
                }
                (_, Some(live)) if swapped => live,
                _ => roots.reimage_keeping(&name, &base, &identity, Some(&keep))?,
            };
            // From the live root on disk, never from memory: a re-run reports the same.
            let keys = host_key_fingerprints(&root.path);
            let kept = roots.get_snapshot(&name, &keep)?;
            Ok((root, keys, kept))
        })
        .await
        .map_err(|e| images_error(e, "prepare the new system"))?;
        if let Some(kept) = kept {
            let snap = recorded(job, &t.pi, kept, Reason::Reinstall);
            self.hw.db.record_snapshot(&snap).await?;
        }
        self.hw
            .db
            .set_job_result(
                &job.id,
                &json!({ "provisioned": { "image": root.image, "version": root.version } }),
            )
            .await?;
        let keys = self.record_root(t, Some(&params.image), keys).await?;
        let e = NewEvent::new(
            "root.provisioned",
            "controller",
            format!("root provisioned from {} {}", root.image, root.version),
        )
        .pi(&t.pi.id)
        .job(&job.id)
        .customer(t.pi.owner.as_ref())
        .data(json!({ "ssh_host_keys": keys }));
        self.hw.db.append_event(&e).await?;
        Ok(())
    }

    /// Records the live root's image and SSH host keys on the Pi. Keys that could not be
    /// read are recorded as none, never left as the old root's, and fail the step.
    pub(crate) async fn record_root(
        &self,
        t: &Target,
        image: Option<&str>,
        keys: Result<Vec<KeyFingerprint>, ImagesError>,
    ) -> Result<Vec<SshHostKey>, StepError> {
        match keys {
            Ok(keys) => {
                let keys: Vec<SshHostKey> = keys.into_iter().map(SshHostKey::from).collect();
                self.hw.db.set_pi_root(&t.pi.id, image, &keys).await?;
                Ok(keys)
            }
            Err(e) => {
                self.hw.db.set_pi_root(&t.pi.id, image, &[]).await?;
                Err(images_error(e, "read the new system's SSH host keys"))
            }
        }
    }

    async fn export(&self, t: &Target) -> Result<(), StepError> {
        let images = self.hw.images()?.clone();
        let Some(exporter) = images.exporter.clone() else {
            tracing::info!(pi = %t.pi.id, "no NFS backend configured; root not exported by this controller");
            return Ok(());
        };
        let plan = plan(&self.hw, t, RootKind::Own)?;
        blocking(move || exporter.reexport(&plan.export)).await.map_err(|e| {
            let customer = "The new system could not be shared with the Pi yet.";
            StepError::retryable(format!("export: {}", chain(&e)), customer)
        })
    }
}

/// The slot's boot plan for the Pi's root of `kind`: what the Pi is told to mount and
/// where its boot files are.
pub(super) fn plan(hw: &Hardware, t: &Target, kind: RootKind) -> Result<BootPlan, StepError> {
    let (c, ip, pi) = (t.slot.controller_ip, t.slot.pi_ip, &t.pi.id);
    let plan = match kind {
        RootKind::Own => hw.boot.own(c, ip, pi),
        RootKind::Rescue => hw.boot.rescue(c, ip, pi),
    };
    plan.map_err(|e| {
        StepError::permanent(
            format!("boot plan: {}", chain(&e)),
            "This Pi cannot be reinstalled; contact support.",
        )
    })
}

/// Checks that the Pi's live root of `kind` is the one netboot serves and that its boot
/// files render for the slot and name a kernel that is there; records `boot.rendered`.
pub(super) async fn check_boot_files(
    hw: &Hardware,
    job: &Job,
    t: &Target,
    kind: RootKind,
) -> Result<(), StepError> {
    let images = hw.images()?.clone();
    let name = store_name(&t.pi.id, kind)?;
    let live = blocking(move || Roots::new(&images.store, images.runner.as_ref()).get(&name))
        .await
        .map_err(|e| images_error(e, "check the new system"))?
        .ok_or_else(|| {
            StepError::permanent(
                "no live root after provisioning",
                "The new system is missing; contact support.",
            )
        })?;
    let plan = plan(hw, t, kind)?;
    if plan.root != live.path {
        return Err(StepError::permanent(
            format!(
                "netboot serves {} but the live root is {}",
                plan.root.display(),
                live.path.display()
            ),
            "The new system is missing; contact support.",
        ));
    }
    let dir = plan.boot_dir.clone();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let params = plan.params();
    let bad = |e: &dyn std::error::Error| {
        StepError::permanent(
            format!("boot files of {}: {e}", dir.display()),
            "The chosen image cannot boot this Pi.",
        )
    };
    let cmdline = render_cmdline(&params, read("cmdline.txt").as_deref()).map_err(|e| bad(&e))?;
    let config = read("config.txt");
    render_config(config.as_deref(), &params).map_err(|e| bad(&e))?;
    let kernel = boot_check(&dir, config.as_deref(), &t.pi.model)
        .map_err(|reason| StepError::permanent(reason, "The chosen image cannot boot this Pi."))?;
    let e = NewEvent::new("boot.rendered", "controller", format!("boot files ready: {kernel}"))
        .pi(&t.pi.id)
        .job(&job.id)
        .customer(t.pi.owner.as_ref())
        .data(json!({ "cmdline": cmdline.trim_end(), "kernel": kernel, "boot_dir": dir }));
    hw.db.append_event(&e).await?;
    Ok(())
}

/// Who a root provisioned for the Pi of `t` is: its hostname, public network and the
/// customer's keys.
pub(super) fn identity(hw: &Hardware, t: &Target, ssh_keys: &[String]) -> PiIdentity {
    let config = hw.config.get();
    PiIdentity {
        hostname: hostname(&t.pi),
        public_vlan: config.public_vlan,
        ipv6_address: t.slot.public_ipv6,
        ipv6_prefix_len: config.pools.public_prefix.prefix_len(),
        ipv6_gateway: config.public_gateway,
        authorized_keys: ssh_keys.to_vec(),
    }
}

/// The row for a snapshot this job made on disk, owned by the Pi's owner.
pub(crate) fn recorded(
    job: &Job,
    pi: &Pi,
    info: bramble_images::provision::snapshots::SnapshotInfo,
    reason: Reason,
) -> Snapshot {
    Snapshot {
        id: info.id,
        pi: pi.id.clone(),
        owner: pi.owner.clone(),
        job: job.id.clone(),
        reason,
        image: info.image,
        version: info.version,
        size_bytes: info.size_bytes.and_then(|b| i64::try_from(b).ok()),
        created_at: crate::time::now_millis(),
    }
}

/// The kernel a Pi would load from `dir`: what `config.txt` names (every file it names,
/// kernels and initramfs, must be there), or else the first default name present.
fn boot_check(dir: &std::path::Path, config: Option<&str>, model: &str) -> Result<String, String> {
    let defaults = if model == "5" { KERNELS_PI5 } else { KERNELS };
    let named = config.map(named_boot_files).unwrap_or_default();
    if let Some(missing) = named.files().find(|f| !dir.join(f).is_file()) {
        return Err(format!("config.txt names {missing}, which is not in {}", dir.display()));
    }
    if let Some(kernel) = named.kernels.first() {
        return Ok(kernel.clone());
    }
    defaults.iter().find(|k| dir.join(k).is_file()).map(|k| k.to_string()).ok_or_else(|| {
        format!(
            "no kernel (config.txt names none; none of {}) in {}",
            defaults.join(", "),
            dir.display()
        )
    })
}

#[async_trait]
impl Executor for ReimageExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        use JobStep as S;
        let t = self.hw.target(job).await?;
        match step {
            S::PowerOff => {
                self.hw.set_power(job, &t, false).await?;
                self.hw.confirm_power(&t, false).await?;
                // A rescue root left by a failed rescue would be booted instead.
                super::rescue::remove_rescue(&self.hw, job, &t).await
            }
            S::ProvisionRoot => self.provision(job, &t).await,
            S::ExportRoot => self.export(&t).await,
            S::RenderBootFiles => check_boot_files(&self.hw, job, &t, RootKind::Own).await,
            S::PowerOn => self.hw.set_power(job, &t, true).await,
            S::AwaitBoot => self.hw.await_boot(job, &t).await.map(|_| ()),
            S::ConfirmPower
            | S::ConfirmOff
            | S::Settle
            | S::CreateStorageLinks
            | S::ConfigureSwitch
            | S::VerifySwitch
            | S::PowerOnStaggered
            | S::AwaitPis
            | S::TakeSnapshot
            | S::RestoreRoot
            | S::ProvisionRescue
            | S::ExportRescue
            | S::RemoveRescue => Err(unknown_step(job, step)),
        }
    }
}

fn params(job: &Job) -> Result<ReimageParams, StepError> {
    serde_json::from_value(job.params.clone()).map_err(|e| {
        StepError::permanent(
            format!("reimage parameters: {e}"),
            "The reinstall request was incomplete.",
        )
    })
}

/// The directory name in the image store of the Pi's root of `kind`: its inventory id,
/// with `_rescue` for its rescue root.
pub(crate) fn store_name(pi: &crate::ids::PiId, kind: RootKind) -> Result<PiName, StepError> {
    root_name(pi, kind).map_err(|e| {
        StepError::permanent(
            format!("Pi id as a root name: {}", chain(&e)),
            "This Pi cannot be reinstalled; contact support.",
        )
    })
}

/// The Pi's hostname: where it is (`<shelf>-p<port>`, so a replacement board in the slot
/// keeps the name), else `pi-<serial>`, else its inventory id.
pub fn hostname(pi: &Pi) -> String {
    hostname_for(pi.shelf.as_deref(), pi.port, pi.serial, pi.id.as_str())
}

pub fn hostname_for(
    shelf: Option<&str>,
    port: Option<u16>,
    serial: Option<PiSerial>,
    id: &str,
) -> String {
    let raw = match (shelf, port, serial) {
        (Some(s), Some(p), _) => format!("{s}-p{p:02}"),
        (_, _, Some(serial)) => format!("pi-{serial}"),
        _ => id.to_string(),
    };
    let label: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let label = label.trim_matches('-');
    label[..label.len().min(63)].trim_end_matches('-').to_string()
}

pub(crate) fn images_error(e: ImagesError, doing: &str) -> StepError {
    let customer = if e.is_disk_full() {
        "There is not enough storage to prepare the new system; contact support.".to_string()
    } else {
        format!("Bramble could not {doing}.")
    };
    StepError::permanent(chain(&e), customer)
}

/// Runs image-store work (file I/O, external commands) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImagesError> + Send + 'static,
) -> Result<T, ImagesError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(ImagesError::InvalidInput {
            what: "image task",
            value: String::new(),
            reason: "panicked".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{PiSerial, boot_check, hostname_for};

    #[test]
    fn a_pi5_model_boots_kernel_2712_first_and_never_a_32_bit_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kernel7.img"), b"k7").expect("write");
        assert_eq!(boot_check(dir.path(), None, "3b"), Ok("kernel7.img".into()));
        assert!(boot_check(dir.path(), None, "5").is_err(), "a Pi 5 runs no kernel7.img");
        std::fs::write(dir.path().join("kernel8.img"), b"k8").expect("write");
        std::fs::write(dir.path().join("kernel_2712.img"), b"k5").expect("write");
        assert_eq!(boot_check(dir.path(), None, "5"), Ok("kernel_2712.img".into()));
        assert_eq!(boot_check(dir.path(), None, "4b"), Ok("kernel8.img".into()));
    }

    #[test]
    fn hostnames_follow_the_slot_and_are_valid_labels() {
        assert_eq!(hostname_for(Some("rack1"), Some(7), Some(PiSerial(1)), "pi-x"), "rack1-p07");
        assert_eq!(hostname_for(Some("Rack_A"), Some(96), None, "pi-x"), "rack-a-p96");
        assert_eq!(hostname_for(None, None, Some(PiSerial(0xabcd)), "pi-x"), "pi-0000abcd");
        assert_eq!(hostname_for(None, None, None, "pi-0192f3"), "pi-0192f3");
        assert!(hostname_for(Some(&"x".repeat(80)), Some(1), None, "p").len() <= 63);
    }
}
