//! Durable jobs: the model (kinds, steps, states) and the runner that executes them.

pub mod model;
pub mod runner;

pub use runner::{Executor, Runner, StepError};
