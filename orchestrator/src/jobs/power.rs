//! Power jobs: power-on and power-off (PoE toggled and confirmed by reading the port
//! back) and reboot (off, confirmed off, a settle delay, on, then the Pi must DHCP and
//! fetch its kernel).
//!
//! Steps are matched by [`JobStep`], not position, so the list in [`super::model`] stays
//! the single source of the order; every match names every step, so a new step must be
//! placed in each executor.

use std::sync::Arc;

use async_trait::async_trait;

use super::hardware::Hardware;
use super::model::JobStep;
use super::runner::{Executor, StepError};
use crate::model::Job;

/// power-on or power-off.
pub struct PowerExecutor {
    hw: Arc<Hardware>,
    on: bool,
}

impl PowerExecutor {
    pub fn new(hw: Arc<Hardware>, on: bool) -> Self {
        PowerExecutor { hw, on }
    }
}

#[async_trait]
impl Executor for PowerExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        use JobStep as S;
        let t = self.hw.target(job).await?;
        match step {
            S::PowerOn | S::PowerOff => self.hw.set_power(job, &t, self.on).await,
            S::ConfirmPower => self.hw.confirm_power(&t, self.on).await.map(|_| ()),
            S::ConfirmOff
            | S::Settle
            | S::AwaitBoot
            | S::ProvisionRoot
            | S::ExportRoot
            | S::RenderBootFiles
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

pub struct RebootExecutor {
    hw: Arc<Hardware>,
}

impl RebootExecutor {
    pub fn new(hw: Arc<Hardware>) -> Self {
        RebootExecutor { hw }
    }
}

#[async_trait]
impl Executor for RebootExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        use JobStep as S;
        let t = self.hw.target(job).await?;
        match step {
            S::PowerOff => self.hw.set_power(job, &t, false).await,
            S::ConfirmOff => self.hw.confirm_power(&t, false).await.map(|_| ()),
            S::Settle => {
                tokio::time::sleep(self.hw.timing().settle).await;
                Ok(())
            }
            S::PowerOn => self.hw.set_power(job, &t, true).await,
            S::AwaitBoot => self.hw.await_boot(job, &t).await.map(|_| ()),
            S::ConfirmPower
            | S::ProvisionRoot
            | S::ExportRoot
            | S::RenderBootFiles
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

/// A step that is not one of this kind's: the runner only hands an executor its kind's
/// steps, so this is a bug. Never retried.
pub fn unknown_step(job: &Job, step: JobStep) -> StepError {
    StepError::permanent(
        format!("{} job has no step {step}", job.kind),
        "This request cannot be carried out; contact support.",
    )
}
