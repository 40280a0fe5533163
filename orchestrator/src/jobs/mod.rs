//! Durable jobs: the model (kinds, steps, states), the runner that executes them, and
//! the executors that do each kind's steps against the hardware.

pub mod config;
pub mod hardware;
pub mod model;
pub mod power;
pub mod rack;
pub mod reimage;
pub mod rescue;
pub mod runner;
pub mod snapshot;

use std::sync::Arc;

pub use hardware::{Hardware, ImagesHost, NoStorage, StorageSync};
pub use runner::{CrashPlan, CrashPoint, Executor, RunEnd, Runner, StepError};

use model::JobKind;

/// Adds an executor for every job kind to `runner`.
pub fn with_executors(runner: Runner, hw: &Arc<Hardware>) -> Runner {
    runner
        .with_executor(JobKind::PowerOn, Arc::new(power::PowerExecutor::new(hw.clone(), true)))
        .with_executor(JobKind::PowerOff, Arc::new(power::PowerExecutor::new(hw.clone(), false)))
        .with_executor(JobKind::Reboot, Arc::new(power::RebootExecutor::new(hw.clone())))
        .with_executor(JobKind::Reimage, Arc::new(reimage::ReimageExecutor::new(hw.clone())))
        .with_executor(JobKind::RackShelf, Arc::new(rack::RackExecutor::new(hw.clone())))
        .with_executor(JobKind::Snapshot, Arc::new(snapshot::SnapshotExecutor::new(hw.clone())))
        .with_executor(JobKind::Restore, Arc::new(snapshot::RestoreExecutor::new(hw.clone())))
        .with_executor(JobKind::Rescue, Arc::new(rescue::RescueExecutor::new(hw.clone(), true)))
        .with_executor(JobKind::Unrescue, Arc::new(rescue::RescueExecutor::new(hw.clone(), false)))
}
