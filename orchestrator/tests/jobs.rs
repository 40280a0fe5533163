//! The job engine against SQLite and PostgreSQL: steps run in order, failures record
//! the step and move the Pi to `failed`, and a job whose runner died is resumed by
//! another runner at the step it was on once the lease expires.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bramble::jobs::model::{JobKind, JobState, JobStep};
use bramble::jobs::{CrashPlan, CrashPoint, Executor, Runner, StepError};
use bramble::model::Job;
use bramble::testing::{app_state, test_databases};
use common::{Api, KEY, unroute};
use serde_json::json;

/// Records every step it runs; fails the step named in `fail_at` (retryably `retry`
/// times first, then for good).
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<JobStep>>,
    fail_at: Option<JobStep>,
    transient_failures: Mutex<u32>,
}

#[async_trait]
impl Executor for Recorder {
    async fn run_step(&self, _job: &Job, step: JobStep) -> Result<(), StepError> {
        self.ran.lock().unwrap().push(step);
        let mut transient = self.transient_failures.lock().unwrap();
        if *transient > 0 {
            *transient -= 1;
            return Err(StepError::retryable("switch timed out", "temporary problem"));
        }
        if self.fail_at == Some(step) {
            return Err(StepError::permanent(
                format!("{step} broke"),
                "The reinstall failed; support has been told.",
            ));
        }
        Ok(())
    }
}

fn runner(state: &bramble::api::AppState, id: &str, exec: Arc<dyn Executor>) -> Runner {
    Runner::new(state.db.clone(), id, Duration::from_millis(400), Duration::from_millis(20))
        .with_executor(JobKind::Reimage, exec)
}

#[tokio::test]
async fn a_reimage_runs_every_step_and_deploys_the_pi() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let pi = api.rack(&op, "s1", 1, &["ann"]).await.remove(0);
        unroute(&state.db).await;
        let job = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        let rec = Arc::new(Recorder { transient_failures: Mutex::new(2), ..Default::default() });
        assert!(runner(&state, "r1", rec.clone()).run_once().await.unwrap());
        let steps = JobKind::Reimage.steps();
        let ran = rec.ran.lock().unwrap().clone();
        // The first step failed twice transiently, then everything ran once, in order.
        assert_eq!(ran[..3], [steps[0], steps[0], steps[0]]);
        assert_eq!(ran[2..], *steps);
        let j = state
            .db
            .get_job(&bramble::ids::JobId(job.body["id"].as_str().unwrap().into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.progress_percent, 100);
        let p = api.get(&format!("/v1/pis/{pi}"), &op).await;
        assert_eq!(p.body["state"], "deployed");
        let audit = api.get(&format!("/v1/pis/{pi}/events?kind=job.&order=asc"), &op).await;
        let kinds: Vec<&str> = audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        let mut want = vec!["job.created", "job.started"];
        want.extend(std::iter::repeat_n("job.step", steps.len()));
        want.push("job.succeeded");
        assert_eq!(kinds, want, "job.* events for the Pi (its audit trail)");
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
        unroute(&state.db).await;
        let job = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        let rec = Arc::new(Recorder { fail_at: Some(JobStep::ExportRoot), ..Default::default() });
        runner(&state, "r1", rec.clone()).run_once().await.unwrap();
        let j = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &op).await.body;
        assert_eq!(j["state"], "failed");
        assert_eq!(j["current_step"], "export-root");
        assert_eq!(j["last_error"], "step export-root: export-root broke");
        assert_eq!(j["operator_message"], "step export-root: export-root broke");
        assert_eq!(j["customer_message"], "The reinstall failed; support has been told.");
        // The Pi's customer reads the customer's sentence only.
        let ben = api.customer_token(&op, "ben").await;
        let theirs = api.get(&format!("/v1/jobs/{}", j["id"].as_str().unwrap()), &ben).await.body;
        assert_eq!(theirs["customer_message"], "The reinstall failed; support has been told.");
        assert!(theirs["last_error"].is_null() && theirs["operator_message"].is_null(), "{theirs}");
        let listed = api.get(&format!("/v1/jobs?pi={pi}"), &ben).await.body;
        assert!(listed["items"][0]["last_error"].is_null(), "{listed}");
        let p = api.get(&format!("/v1/pis/{pi}"), &op).await.body;
        assert_eq!(
            (p["state"].as_str(), p["failed_step"].as_str()),
            (Some("failed"), Some("export-root"))
        );
        // No step after the failed one ran.
        assert_eq!(rec.ran.lock().unwrap().last(), Some(&JobStep::ExportRoot));
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
        unroute(&state.db).await;
        let job = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        let id = bramble::ids::JobId(job.body["id"].as_str().unwrap().into());
        // Runner "dead" claims the job, gets to step 3, and dies (never finishes).
        let lease = Duration::from_millis(400);
        let claimed =
            state.db.claim_job("dead", &[JobKind::Reimage], lease).await.unwrap().unwrap();
        assert!(state.db.advance_job(&claimed.id, "dead", 3, lease).await.unwrap());
        // The claim itself moved the Pi to deploying (one transaction).
        assert_eq!(api.get(&format!("/v1/pis/{pi}"), &op).await.body["state"], "deploying");
        // While the lease holds, nobody else gets it.
        assert!(state.db.claim_job("alive", &[JobKind::Reimage], lease).await.unwrap().is_none());
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let rec = Arc::new(Recorder::default());
        assert!(runner(&state, "alive", rec.clone()).run_once().await.unwrap());
        let steps = JobKind::Reimage.steps();
        assert_eq!(*rec.ran.lock().unwrap(), steps[3..], "resumed at the step it was on");
        let j = state.db.get_job(&id).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts), (JobState::Succeeded, 2));
        assert_eq!(api.get(&format!("/v1/pis/{pi}"), &op).await.body["state"], "deployed");
        // The dead runner waking up cannot touch the job any more.
        assert!(!state.db.advance_job(&id, "dead", 4, lease).await.unwrap());
        state.db.close().await;
        db.drop().await;
    }
}

#[tokio::test]
async fn a_runner_claims_only_kinds_it_has_an_executor_for() {
    let db = bramble::testing::sqlite_db();
    let (state, op) = app_state(&db).await;
    let api = Api { router: bramble::api::app(state.clone()) };
    let pi = api.rack(&op, "s4", 1, &["dan"]).await.remove(0);
    unroute(&state.db).await;
    let job = api.post(&format!("/v1/pis/{pi}/power-on"), &op, json!({})).await;
    let rec = Arc::new(Recorder::default());
    assert!(
        !runner(&state, "r", rec).run_once().await.unwrap(),
        "a power-on job was claimed by a reimage-only runner"
    );
    let j = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &op).await.body;
    assert_eq!(j["state"], "queued");
    state.db.close().await;
    db.drop().await;
}

/// One step run: job, runner, step index, start, end.
type StepRun = (String, &'static str, usize, std::time::Instant, std::time::Instant);

/// Each step takes a while and is recorded with the runner that ran it and when.
struct Slow {
    runner: &'static str,
    log: Arc<Mutex<Vec<StepRun>>>,
}

#[async_trait]
impl Executor for Slow {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        let step = job.kind.steps().iter().position(|s| *s == step).expect("a step of its kind");
        let start = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.log.lock().unwrap().push((
            job.id.0.clone(),
            self.runner,
            step,
            start,
            std::time::Instant::now(),
        ));
        Ok(())
    }
}

/// Runner "a" dies after the second step of every job it runs.
struct DieAfterStep1;

impl CrashPlan for DieAfterStep1 {
    fn crash_at(&self, job: &Job, at: CrashPoint) -> bool {
        at == CrashPoint::AfterStep(job.kind.steps()[1])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runners_on_postgres_share_jobs_and_one_takes_over_the_others_after_it_dies() {
    let url = std::env::var("BRAMBLE_TEST_POSTGRES")
        .expect("BRAMBLE_TEST_POSTGRES must name a PostgreSQL server (scripts/test.sh starts one)");
    assert!(!url.is_empty());
    let db = test_databases()
        .await
        .into_iter()
        .find(|d| d.url.starts_with("postgres"))
        .expect("a PostgreSQL test database");
    let (state, op) = app_state(&db).await;
    let api = Api { router: bramble::api::app(state.clone()) };
    let owners = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let pis = api.rack(&op, "tk", 1, &owners).await;
    unroute(&state.db).await;
    for pi in &pis {
        let r = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let lease = Duration::from_secs(1);
    let poll = Duration::from_millis(20);
    let a = Runner::new(state.db.clone(), "a", lease, poll)
        .with_executor(JobKind::Reimage, Arc::new(Slow { runner: "a", log: log.clone() }))
        .with_max_parallel(3)
        .with_crash_plan(Arc::new(DieAfterStep1));
    let b = Runner::new(state.db.clone(), "b", lease, poll)
        .with_executor(JobKind::Reimage, Arc::new(Slow { runner: "b", log: log.clone() }))
        .with_max_parallel(3);
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let a_run = tokio::spawn(a.run(std::future::pending::<()>()));
    let b_run = tokio::spawn(b.run(async move {
        let _ = stopped_b.await;
    }));
    assert_eq!(a_run.await.unwrap(), bramble::jobs::RunEnd::Crashed, "runner a died");
    let died = std::time::Instant::now();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = state
            .db
            .list_jobs(&Default::default(), None, bramble::db::Order::Asc, 100)
            .await
            .unwrap();
        if page.items.iter().all(|j| j.state == JobState::Succeeded) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not all finish: {:?}",
            page.items.iter().map(|j| (j.state, j.current_step.clone())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_b.send(());
    assert_eq!(b_run.await.unwrap(), bramble::jobs::RunEnd::Done);

    let log = log.lock().unwrap().clone();
    let steps = JobKind::Reimage.steps().len();
    let by_a: std::collections::BTreeSet<&String> =
        log.iter().filter(|r| r.1 == "a").map(|r| &r.0).collect();
    assert!(!by_a.is_empty(), "runner a claimed jobs");
    assert!(
        log.iter().any(|r| r.1 == "b" && !by_a.contains(&r.0)),
        "runner b claimed other jobs at the same time (SKIP LOCKED)"
    );
    for job in &by_a {
        let runs: Vec<_> = log.iter().filter(|r| &&r.0 == job).collect();
        // a ran the first steps in order, then died (after step 1 or in the middle of a
        // step); b resumed at the step on record (re-running it: steps are idempotent)
        // and ran the rest, only after a died, never alongside a.
        let a_steps: Vec<usize> = runs.iter().filter(|r| r.1 == "a").map(|r| r.2).collect();
        let b_steps: Vec<usize> = runs.iter().filter(|r| r.1 == "b").map(|r| r.2).collect();
        assert_eq!(a_steps, (0..a_steps.len()).collect::<Vec<_>>(), "{job}");
        let resumed_at = *b_steps.first().unwrap_or_else(|| panic!("{job}: b never ran it"));
        assert!(
            resumed_at <= a_steps.len() && a_steps.len() <= resumed_at + 1,
            "{job}: a ran {a_steps:?}, b resumed at {resumed_at}"
        );
        assert_eq!(b_steps, (resumed_at..steps).collect::<Vec<_>>(), "{job}");
        let b_first = runs.iter().filter(|r| r.1 == "b").map(|r| r.3).min().unwrap();
        assert!(b_first >= died, "{job}: b started before a died");
        let j = state.db.get_job(&bramble::ids::JobId((*job).clone())).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts), (JobState::Succeeded, 2), "{job}");
    }
    state.db.close().await;
    db.drop().await;
}

#[tokio::test]
async fn a_runner_shutting_down_hands_its_jobs_back_at_their_step() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let pi = api.rack(&op, "hb", 1, &["eve"]).await.remove(0);
        unroute(&state.db).await;
        let job = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        let id = bramble::ids::JobId(job.body["id"].as_str().unwrap().into());
        let log = Arc::new(Mutex::new(Vec::new()));
        let slow = |name| {
            Runner::new(state.db.clone(), name, Duration::from_secs(30), Duration::from_millis(20))
                .with_executor(JobKind::Reimage, Arc::new(Slow { runner: name, log: log.clone() }))
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(slow("first").run(async move {
            let _ = stopped.await;
        }));
        while log.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let asked = std::time::Instant::now();
        let _ = stop.send(());
        assert_eq!(run.await.unwrap(), bramble::jobs::RunEnd::Done);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "shutdown did not wait for the job: {:?}",
            asked.elapsed()
        );
        let j = state.db.get_job(&id).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts), (JobState::Queued, 1), "handed back to the queue");
        // Half done: it cannot be cancelled any more.
        let r = api.post(&format!("/v1/jobs/{}/cancel", id.0), &op, json!({})).await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        // The next runner resumes at once (no lease to wait for), at the step it was on.
        let done_before = log.lock().unwrap().len();
        assert!(slow("second").run_once().await.unwrap());
        let second: Vec<usize> = log.lock().unwrap()[done_before..].iter().map(|r| r.2).collect();
        assert_eq!(second, (2..JobKind::Reimage.steps().len()).collect::<Vec<_>>());
        assert_eq!(state.db.get_job(&id).await.unwrap().unwrap().state, JobState::Succeeded);
        state.db.close().await;
        db.drop().await;
    }
}

/// Stops the runner right after the job's final commit.
struct DieAfterFinish;

impl CrashPlan for DieAfterFinish {
    fn crash_at(&self, _job: &Job, at: CrashPoint) -> bool {
        at == CrashPoint::AfterFinish
    }
}

/// A runner killed right after a reimage's final commit leaves the Pi where the job's
/// end put it (deployed, or failed at the step), never `deploying`, so it can be
/// reinstalled again.
#[tokio::test]
async fn a_runner_killed_after_the_final_commit_leaves_the_pi_in_its_final_state() {
    let cases = [
        (None, "succeeded", "deployed", None),
        (Some(JobStep::ExportRoot), "failed", "failed", Some("export-root")),
    ];
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        for (i, (fail_at, job_state, pi_state, failed_step)) in cases.iter().enumerate() {
            let pi = api.rack(&op, &format!("k{i}"), 1, &["kim"]).await.remove(0);
            unroute(&state.db).await;
            let reimage = json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]});
            let job = api.post(&format!("/v1/pis/{pi}/reimage"), &op, reimage.clone()).await;
            let rec = Arc::new(Recorder { fail_at: *fail_at, ..Default::default() });
            let dying = runner(&state, "dying", rec).with_crash_plan(Arc::new(DieAfterFinish));
            assert!(dying.run_once().await.unwrap());
            let j = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &op).await;
            assert_eq!(j.body["state"], *job_state, "{:?}", j.body);
            let p = api.get(&format!("/v1/pis/{pi}"), &op).await.body;
            assert_eq!(
                (p["state"].as_str(), p["failed_step"].as_str()),
                (Some(*pi_state), *failed_step),
                "Pi after a kill after the final commit of a {job_state} reimage"
            );
            let again = api.post(&format!("/v1/pis/{pi}/reimage"), &op, reimage).await;
            assert_eq!(again.status, 202, "a new reinstall is accepted: {:?}", again.body);
            let cancel = format!("/v1/jobs/{}/cancel", again.body["id"].as_str().unwrap());
            assert_eq!(api.post(&cancel, &op, json!({})).await.status, 200);
        }
        state.db.close().await;
        db.drop().await;
    }
}

/// Jobs are routed to the controller serving their Pi's switch: another controller never
/// claims them, the serving one does and is recorded as the runner, and while the
/// serving controller is down the job says so.
#[tokio::test]
async fn a_job_runs_only_on_the_controller_serving_its_switch() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let me = state.config.get().cluster.name.clone();
        let pi = api.rack(&op, "rt", 1, &["rita"]).await.remove(0);
        let job = api.post(&format!("/v1/pis/{pi}/reboot"), &op, json!({})).await;
        assert_eq!(job.status, 202, "{:?}", job.body);
        assert_eq!(job.body["controller"], me.as_str(), "{}", db.label);
        let id = job.body["id"].as_str().unwrap().to_string();
        let lease = Duration::from_secs(30);
        assert!(
            state.db.claim_job("elsewhere", &[JobKind::Reboot], lease).await.unwrap().is_none(),
            "{}: a controller not serving the switch claimed its job",
            db.label
        );
        let claimed = state.db.claim_job(&me, &[JobKind::Reboot], lease).await.unwrap();
        assert_eq!(claimed.map(|j| j.id.0), Some(id.clone()), "{}", db.label);
        let shown = api.get(&format!("/v1/jobs/{id}"), &op).await;
        assert_eq!(shown.body["runner"], me.as_str(), "{}", db.label);

        // A controller that stopped: a job for its switch waits and says why.
        state.db.register_controller("ghost", "g1", "http://ghost", lease, false).await.unwrap();
        state.db.controller_stopped("ghost", "g1").await.unwrap();
        let pi2 = api.rack(&op, "rg", 1, &["gus"]).await.remove(0);
        let moved = api.patch("/v1/switches/sw-rg", &op, json!({"controller": "ghost"})).await;
        assert_eq!(moved.status, 200, "{:?}", moved.body);
        assert_eq!(moved.body["controller"], "ghost");
        let job = api.post(&format!("/v1/pis/{pi2}/reboot"), &op, json!({})).await;
        assert_eq!(job.status, 202, "{:?}", job.body);
        let waiting = job.body["waiting_for"].as_str().unwrap_or_default().to_string();
        assert!(waiting.starts_with("controller ghost, last seen 20"), "{}: {waiting:?}", db.label);
        assert!(state.db.claim_job(&me, &[JobKind::Reboot], lease).await.unwrap().is_none());
        // Moving the switch back routes its queued job back too.
        let back = api.patch("/v1/switches/sw-rg", &op, json!({"controller": me})).await;
        assert_eq!(back.status, 200, "{:?}", back.body);
        let claimed = state.db.claim_job(&me, &[JobKind::Reboot], lease).await.unwrap();
        assert_eq!(claimed.and_then(|j| j.pi).map(|p| p.0), Some(pi2.clone()), "{}", db.label);
        // An unknown controller is refused, naming the field.
        let bad = api.patch("/v1/switches/sw-rg", &op, json!({"controller": "nobody"})).await;
        common::assert_problem(&bad, 422, "invalid_input");
        db.drop().await;
    }
}

/// Reboot requests for one Pi race its active job ending (here: being cancelled) through
/// the API: each is accepted (202) or told the Pi is busy (409), never a 500. Before the
/// fix, an insert that hit the one-active-job index after the job in the way had ended
/// found nothing to explain and returned the constraint violation as a 500 (seen on
/// PostgreSQL with three controllers under load).
#[tokio::test]
async fn racing_requests_for_a_pi_are_accepted_or_busy_never_an_error() {
    for db in test_databases().await {
        let (state, op) = app_state(&db).await;
        // Hundreds of reboots of one Pi: the power-cycle limit is not what this tests.
        let mut config = (*state.config.get()).clone();
        config.power.max_cycles = 0;
        state.config.set(config);
        let api = Arc::new(Api { router: bramble::api::app(state.clone()) });
        let pi = api.rack(&op, "race", 1, &["rae"]).await.remove(0);
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for _ in 0..60 {
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (api, op, pi) = (api.clone(), op.clone(), pi.clone());
                tasks.push(tokio::spawn(async move {
                    api.post(&format!("/v1/pis/{pi}/reboot"), &op, json!({})).await
                }));
            }
            // Meanwhile the active job ends, as many times as it can.
            let (api2, op2, pi2) = (api.clone(), op.clone(), pi.clone());
            let canceller = tokio::spawn(async move {
                for _ in 0..4 {
                    let jobs = api2.get(&format!("/v1/jobs?pi={pi2}&state=queued"), &op2).await;
                    for j in jobs.body["items"].as_array().cloned().unwrap_or_default() {
                        let id = j["id"].as_str().unwrap_or_default().to_string();
                        api2.post(&format!("/v1/jobs/{id}/cancel"), &op2, json!({})).await;
                    }
                }
            });
            for t in tasks {
                let r = t.await.unwrap();
                assert!(
                    r.status == 202 || r.status == 409,
                    "{}: {} {:?}",
                    db.label,
                    r.status,
                    r.body
                );
                *statuses.entry(r.status.as_u16()).or_default() += 1;
            }
            canceller.await.unwrap();
        }
        assert!(statuses.get(&202).is_some_and(|n| *n > 1), "{}: {statuses:?}", db.label);
        db.drop().await;
    }
}
