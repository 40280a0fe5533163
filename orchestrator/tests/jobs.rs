//! The job engine against SQLite and PostgreSQL: steps run in order, failures record
//! the step and move the Pi to `failed`, and a job whose runner died is resumed by
//! another runner at the step it was on once the lease expires.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bramble::jobs::model::{JobKind, JobState};
use bramble::jobs::{Executor, Runner, StepError};
use bramble::model::Job;
use bramble::testing::{app_state, test_databases};
use common::{Api, KEY};
use serde_json::json;

/// Records every step it runs; fails the step named in `fail_at` (retryably `retry`
/// times first, then for good).
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<String>>,
    fail_at: Option<&'static str>,
    transient_failures: Mutex<u32>,
}

#[async_trait]
impl Executor for Recorder {
    async fn run_step(&self, job: &Job, step: usize) -> Result<(), StepError> {
        let name = job.steps[step].clone();
        self.ran.lock().unwrap().push(name.clone());
        let mut transient = self.transient_failures.lock().unwrap();
        if *transient > 0 {
            *transient -= 1;
            return Err(StepError::retryable("switch timed out", "temporary problem"));
        }
        if self.fail_at == Some(name.as_str()) {
            return Err(StepError::permanent(format!("{name} broke"), "The reinstall failed; support has been told."));
        }
        Ok(())
    }
}

fn runner(state: &bramble::api::AppState, id: &str, exec: Arc<dyn Executor>) -> Runner {
    Runner::new(state.db.clone(), id, Duration::from_millis(400), Duration::from_millis(20)).with_executor(JobKind::Reimage, exec)
}

#[tokio::test]
async fn a_reimage_runs_every_step_and_deploys_the_pi() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let pi = api.rack(&op, "s1", 1, &["ann"]).await.remove(0);
        let job = api.post(&format!("/v1/pis/{pi}/reimage"), &op, json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]})).await;
        let rec = Arc::new(Recorder { transient_failures: Mutex::new(2), ..Default::default() });
        assert!(runner(&state, "r1", rec.clone()).run_once().await.unwrap());
        let steps = JobKind::Reimage.steps();
        let ran = rec.ran.lock().unwrap().clone();
        // The first step failed twice transiently, then everything ran once, in order.
        assert_eq!(ran[..3], [steps[0], steps[0], steps[0]]);
        assert_eq!(ran[2..], *steps);
        let j = state.db.get_job(&bramble::ids::JobId(job.body["id"].as_str().unwrap().into())).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.progress_percent, 100);
        let p = api.get(&format!("/v1/pis/{pi}"), &op).await;
        assert_eq!(p.body["state"], "deployed");
        let audit = api.get(&format!("/v1/pis/{pi}/events?kind=job."), &op).await;
        let kinds: Vec<&str> = audit.body["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["job.created"], "job.* events for the Pi: {kinds:?}");
        state.db.close().await;
        db.drop().await;
    }
}

#[tokio::test]
async fn a_failed_step_is_recorded_for_operator_and_customer() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let pi = api.rack(&op, "s2", 1, &["ben"]).await.remove(0);
        let job = api.post(&format!("/v1/pis/{pi}/reimage"), &op, json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]})).await;
        let rec = Arc::new(Recorder { fail_at: Some("export-root"), ..Default::default() });
        runner(&state, "r1", rec.clone()).run_once().await.unwrap();
        let j = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &op).await.body;
        assert_eq!(j["state"], "failed");
        assert_eq!(j["current_step"], "export-root");
        assert_eq!(j["last_error"], "step export-root: export-root broke");
        assert_eq!(j["customer_message"], "The reinstall failed; support has been told.");
        let p = api.get(&format!("/v1/pis/{pi}"), &op).await.body;
        assert_eq!((p["state"].as_str(), p["failed_step"].as_str()), (Some("failed"), Some("export-root")));
        // No step after the failed one ran.
        assert_eq!(rec.ran.lock().unwrap().last().map(String::as_str), Some("export-root"));
        state.db.close().await;
        db.drop().await;
    }
}

#[tokio::test]
async fn a_dead_runners_job_is_resumed_at_its_step_after_the_lease_expires() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let pi = api.rack(&op, "s3", 1, &["cat"]).await.remove(0);
        let job = api.post(&format!("/v1/pis/{pi}/reimage"), &op, json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]})).await;
        let id = bramble::ids::JobId(job.body["id"].as_str().unwrap().into());
        // Runner "dead" claims the job, gets to step 3, and dies (never finishes).
        let lease = Duration::from_millis(400);
        let claimed = state.db.claim_job("dead", &[JobKind::Reimage], lease).await.unwrap().unwrap();
        assert!(state.db.advance_job(&claimed.id, "dead", 3, lease).await.unwrap());
        // While the lease holds, nobody else gets it.
        assert!(state.db.claim_job("alive", &[JobKind::Reimage], lease).await.unwrap().is_none());
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let rec = Arc::new(Recorder::default());
        assert!(runner(&state, "alive", rec.clone()).run_once().await.unwrap());
        let steps = JobKind::Reimage.steps();
        assert_eq!(*rec.ran.lock().unwrap(), steps[3..], "resumed at the step it was on");
        let j = state.db.get_job(&id).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts), (JobState::Succeeded, 2));
        // The dead runner waking up cannot touch the job any more.
        assert!(!state.db.advance_job(&id, "dead", 4, lease).await.unwrap());
        state.db.close().await;
        db.drop().await;
    }
}

#[tokio::test]
async fn jobs_of_kinds_without_an_executor_stay_queued() {
    let db = bramble::testing::sqlite_db();
    let (state, op) = app_state(&db).await;
    let api = Api { router: bramble::api::app(state.clone()) };
    let pi = api.rack(&op, "s4", 1, &["dan"]).await.remove(0);
    let job = api.post(&format!("/v1/pis/{pi}/power-on"), &op, json!({})).await;
    assert_eq!(job.body["executable"], false);
    let rec = Arc::new(Recorder::default());
    assert!(!runner(&state, "r", rec).run_once().await.unwrap(), "a power-on job was claimed by a reimage-only runner");
    let j = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &op).await.body;
    assert_eq!(j["state"], "queued");
    state.db.close().await;
    db.drop().await;
}
