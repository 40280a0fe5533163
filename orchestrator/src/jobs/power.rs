//! Power jobs: power-on and power-off (PoE toggled and confirmed by reading the port
//! back) and reboot (off, confirmed off, a settle delay, on, then the Pi must DHCP and
//! fetch its kernel).
//!
//! Steps are looked up by name, not position, so the list in [`super::model`] stays the
//! single source of the order.

use std::sync::Arc;

use async_trait::async_trait;

use super::hardware::Hardware;
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
    async fn run_step(&self, job: &Job, step: usize) -> Result<(), StepError> {
        let t = self.hw.target(job).await?;
        match job.steps[step].as_str() {
            "power-on" | "power-off" => self.hw.set_power(job, &t, self.on).await,
            "confirm-power" => self.hw.confirm_power(&t, self.on).await.map(|_| ()),
            other => Err(unknown_step(job, other)),
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
    async fn run_step(&self, job: &Job, step: usize) -> Result<(), StepError> {
        let t = self.hw.target(job).await?;
        match job.steps[step].as_str() {
            "power-off" => self.hw.set_power(job, &t, false).await,
            "confirm-off" => self.hw.confirm_power(&t, false).await.map(|_| ()),
            "settle" => {
                tokio::time::sleep(self.hw.timing.settle).await;
                Ok(())
            }
            "power-on" => self.hw.set_power(job, &t, true).await,
            "await-boot" => self.hw.await_boot(job, &t).await.map(|_| ()),
            other => Err(unknown_step(job, other)),
        }
    }
}

/// A step name this executor does not know: the database holds a job from a newer
/// controller. Never retried.
pub fn unknown_step(job: &Job, step: &str) -> StepError {
    StepError::permanent(
        format!("{} job has unknown step {step:?}", job.kind),
        "This request cannot be carried out; contact support.",
    )
}
