//! Three controllers on one PostgreSQL inventory, as real processes: each serves its
//! own virtual switch and shelf of four Pis in namespaces of its own (a lab with its
//! controller as a child process), and every switch is reachable from every controller
//! over a shared management network, so a controller doing another's work would be
//! seen. Checked, in one run:
//!
//! - reboots and reinstalls on each shelf run only on that shelf's controller, whichever
//!   controller took the request (the job's `controller` and `runner`, the audit log's
//!   `job.succeeded` actor);
//! - the controllers answer the same: Pi lists, a job, 404 and 409 problems, idempotency
//!   keys, and a cursor from one controller continued on another;
//! - each switch is read by its own controller only, one reconcile pass per interval;
//! - `kill -9` of the controller holding the webhook lease: its shelf's new job waits
//!   and says for whom, the other shelves keep working, delivery moves to another
//!   controller within a lease period, and after a restart the job runs;
//! - a receiver got every job event (compared with the audit log), each with its id,
//!   never two deliveries of one event at once.
//!
//! Needs root, nfs-ganesha and `BRAMBLE_TEST_POSTGRES` (the README's test command).
//!
//! First, on its own: one lab's controller process killed with SIGKILL and started
//! again finds its Pis where they were.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::mgmt::ManagementNet;
use bramble::lab::{ClusterOptions, ControllerMode, LAB_IMAGES, Lab, LabOptions};
use bramble::lifecycle::PiState;
use bramble::testing::{TestDb, test_databases};
use bramble_lab::pisim::PiState as SimState;
use bramble_tests::shelf;
use bramble_tests::webhooks::{Receiver, id_text};
use reqwest::Method;
use serde_json::{Value, json};

const NAMES: [&str; 3] = ["ctl-a", "ctl-b", "ctl-c"];
const SHELVES: [&str; 3] = ["shelf-a", "shelf-b", "shelf-c"];
const PIS: u16 = 4;
const LEASE_MS: u64 = 2000;
const RECONCILE_SECONDS: u64 = 2;
/// Slack on top of a lease period for "within a lease period": polling, scheduling on
/// a busy two-core machine.
const SLACK: Duration = Duration::from_secs(3);
const JOB_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_controllers_share_one_postgres_inventory() {
    let _turn = shelf::serial().await;
    let Some(db) = postgres().await else { return };
    let mgmt = ManagementNet::new(&format!("{}mg", shelf::prefix('m')), 24).expect("mgmt net");
    let receiver = Receiver::start().await.expect("webhook receiver");
    let options: Vec<LabOptions> = (0..3).map(|k| options(k, &db, &receiver, &mgmt)).collect();
    let _leftovers =
        Leftovers(options.iter().map(|o| (o.prefix.clone(), o.state_dir.clone())).collect());
    let mut labs = Vec::new();
    for o in options {
        labs.push(Lab::up(o).await.unwrap_or_else(|e| panic!("lab up: {}", chain(&e))));
    }
    let started = Instant::now();
    let jobs = rack_and_deploy(&labs).await;
    eprintln!("racked and deployed in {:?}", started.elapsed());
    let jobs = reboots_and_reinstalls_run_on_their_shelfs_controller(&labs, jobs).await;
    controllers_answer_alike(&labs, &jobs).await;
    each_switch_is_read_by_its_own_controller_once_per_interval(&labs).await;
    kill_nine(&mut labs, &receiver).await;
    every_job_event_delivered_with_its_id_never_twice_at_once(&labs[0], &receiver).await;
    for lab in labs {
        lab.down().await;
    }
    db.drop().await;
}

fn controller_exe() -> ControllerMode {
    ControllerMode::Process { exe: PathBuf::from(env!("CARGO_BIN_EXE_bramble-e2e")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_controller_process_killed_with_sigkill_comes_back_to_its_pis() {
    let _turn = shelf::serial().await;
    let mut o = shelf::options(2, 23, 'k');
    o.controller = controller_exe();
    // A restarted controller waits up to a lease for its killed instance: keep it short.
    o.cluster = Some(ClusterOptions { name: "solo".into(), heartbeat_ms: 500, lease_ms: 2000 });
    let _leftovers = Leftovers(vec![(o.prefix.clone(), o.state_dir.clone())]);
    let mut lab = shelf::racked(o).await;
    shelf::deploy_all(&lab, LAB_IMAGES[0].0).await;
    let cables = pi_namespaces(&lab.opts.prefix);
    assert_eq!(cables.len(), 2, "{cables:?}");
    let pid = lab.controller_pid().expect("a controller process");
    lab.kill_controller().await.expect("kill -9");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still there");
    let down = bramble::tls::client::http().get(format!("{}/healthz", lab.api)).send().await;
    assert!(down.is_err(), "the API still answers: {down:?}");
    lab.start_controller(None).await.expect("restart");
    assert!(lab.controller_pid().is_some_and(|p| p != pid));
    let (pi, port) = shelf::pi_ports(&lab).await[0].clone();
    let sim = lab.cabling.sim(port).expect("the Pi");
    let power_ons = sim.status().counters.power_ons;
    let (status, job) =
        call(&lab, Method::POST, &format!("/v1/pis/{pi}/reboot"), Some(json!({}))).await;
    assert_eq!(status, 202, "{job}");
    finished(&lab, job["id"].as_str().expect("job id")).await;
    assert!(sim.status().counters.power_ons > power_ons, "the Pi was not power-cycled");
    let booted = sim.wait_for(Duration::from_secs(30), |s| *s == SimState::Booted).await;
    assert_eq!(booted, SimState::Booted, "the Pi after the reboot");
    // The restarted controller took the Pis' links over: their namespaces are the ones
    // they were (a recreated namespace is a new one, with a new inode).
    assert_eq!(pi_namespaces(&lab.opts.prefix), cables, "the Pis' namespaces");
    lab.stop_controller().await.expect("graceful stop");
    lab.down().await;
}

/// The lab's Pi namespaces (`<prefix><vid>pi`) and the inode of each namespace.
fn pi_namespaces(prefix: &str) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::read_dir("/var/run/netns").expect("/var/run/netns");
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let vid = name.strip_prefix(prefix)?.strip_suffix("pi")?;
            vid.chars().all(|c| c.is_ascii_digit()).then_some(())?;
            Some((name, std::fs::metadata(e.path()).ok()?.ino()))
        })
        .collect()
}

/// The PostgreSQL half of the test databases; `None` (skipped) when the suite runs
/// with `BRAMBLE_TEST_POSTGRES=skip`.
async fn postgres() -> Option<TestDb> {
    let mut dbs = test_databases().await;
    let pg = dbs.iter().position(|d| d.label == "postgres");
    let pg = pg.map(|i| dbs.swap_remove(i));
    for other in dbs {
        other.drop().await;
    }
    if pg.is_none() {
        eprintln!("three-controller test SKIPPED: it needs PostgreSQL");
    }
    pg
}

/// Lab `k` of the cluster: its own prefix, shelf, switch, serials and storage addresses,
/// its controller `NAMES[k]` as a process on the shared database.
fn options(k: usize, db: &TestDb, receiver: &Receiver, mgmt: &ManagementNet) -> LabOptions {
    let tag = ['x', 'y', 'z'][k];
    let n = u8::try_from(k).expect("three labs");
    let mut o = shelf::options(PIS, 20 + n, tag);
    o.shelf = SHELVES[k].into();
    o.switch_name = switch_name(k);
    o.serial_base = 0x5eed_0000 | (u32::from(n) + 1) << 8;
    o.controller = controller_exe();
    o.database = Some(db.url.clone());
    o.cluster =
        Some(ClusterOptions { name: NAMES[k].into(), heartbeat_ms: 500, lease_ms: LEASE_MS });
    o.reconcile_seconds = RECONCILE_SECONDS;
    o.management = Some(mgmt.seat(manager_ip(k)));
    o.forward = vec![receiver.addr];
    o.extra_toml = format!(
        "[webhooks]\nurl = \"{}\"\nsecret = \"cluster-test-secret-0123456789\"\nfirst_backoff_ms = 200\nmax_attempts = 20\n",
        receiver.url()
    );
    o
}

fn switch_name(k: usize) -> String {
    format!("switch-{}", ['a', 'b', 'c'][k])
}

/// Lab `k`'s address on the management network: where its controller reads switches
/// from.
fn manager_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, u8::try_from(k + 1).expect("three labs"))
}

/// Removes the namespaces and links of the labs if the test fails before `down`, and
/// their state directories once it passed (a failed test keeps them: the controllers'
/// logs are there).
struct Leftovers(Vec<(String, PathBuf)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (prefix, dir) in &self.0 {
            bramble::lab::cleanup(prefix, dir);
            if std::thread::panicking() {
                eprintln!("kept {} (controller.log)", dir.display());
            } else if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("cannot remove {}: {e}", dir.display());
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// One API call through lab `via`'s controller with its operator token (any lab's token
/// works on every controller: they share the inventory).
async fn call(via: &Lab, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call_with(via, &via.token, method, path, body, None).await
}

async fn call_with(
    via: &Lab,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let mut req = bramble::tls::client::http()
        .request(method.clone(), format!("{}{path}", via.api))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(key) = idempotency_key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path} via {}: {e}", via.api));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A job as `via` shows it, once it has ended.
async fn finished(via: &Lab, id: &str) -> Value {
    let job = via.wait_job(id, JOB_LIMIT).await.unwrap_or_else(|e| panic!("job {id}: {e}"));
    assert_eq!(job.state, JobState::Succeeded, "job {id}: {job:?}");
    call(via, Method::GET, &format!("/v1/jobs/{id}"), None).await.1
}

/// Racks the three shelves at once, then installs every Pi; returns each shelf's job
/// ids (the racking and the reinstalls).
async fn rack_and_deploy(labs: &[Lab]) -> Vec<Vec<String>> {
    let (a, b, c) =
        tokio::join!(rack_deploy(&labs[0]), rack_deploy(&labs[1]), rack_deploy(&labs[2]));
    vec![a, b, c]
}

async fn rack_deploy(lab: &Lab) -> Vec<String> {
    let rack =
        lab.rack(JOB_LIMIT).await.unwrap_or_else(|e| panic!("{}: rack: {e}", lab.opts.shelf));
    assert_eq!(rack.state, JobState::Succeeded, "{}: rack job {rack:?}", lab.opts.shelf);
    let pis = lab.pis().await.expect("pis");
    let ready = pis.iter().filter(|p| p.state == PiState::Ready).count();
    assert_eq!(ready, usize::from(PIS), "{}: every slot ready: {pis:?}", lab.opts.shelf);
    let mut ids = vec![rack.id.to_string()];
    for job in lab.deploy_all(LAB_IMAGES[0].0).await.expect("deploy") {
        finished(lab, job.id.as_str()).await;
        ids.push(job.id.to_string());
    }
    ids
}

/// Every job of shelf `k` (the racking, the reinstalls, and a reboot and a reinstall
/// submitted through the *other* controllers) ran on controller `k`: the job says so,
/// and so does the audit log's `job.succeeded`. Returns the shelves' job ids.
async fn reboots_and_reinstalls_run_on_their_shelfs_controller(
    labs: &[Lab],
    mut jobs: Vec<Vec<String>>,
) -> Vec<Vec<String>> {
    for (k, lab) in labs.iter().enumerate() {
        let pis = shelf::pi_ports(lab).await;
        let (one, two) = (&labs[(k + 1) % 3], &labs[(k + 2) % 3]);
        let (status, reboot) =
            call(one, Method::POST, &format!("/v1/pis/{}/reboot", pis[0].0), Some(json!({}))).await;
        assert_eq!(status, 202, "reboot through {}: {reboot}", one.api);
        let body = json!({ "image": LAB_IMAGES[1].0, "ssh_keys": [lab.ssh_key] });
        let (status, reimage) =
            call(two, Method::POST, &format!("/v1/pis/{}/reimage", pis[1].0), Some(body)).await;
        assert_eq!(status, 202, "reimage through {}: {reimage}", two.api);
        for job in [reboot, reimage] {
            jobs[k].push(job["id"].as_str().expect("job id").to_string());
        }
    }
    for (k, ids) in jobs.iter().enumerate() {
        for id in ids {
            let job = finished(&labs[k], id).await;
            assert_eq!(job["controller"], NAMES[k], "job {id} of {}: {job}", SHELVES[k]);
            assert_eq!(job["runner"], NAMES[k], "job {id} of {}: {job}", SHELVES[k]);
        }
    }
    let actors = succeeded_actors(&labs[0]).await;
    for (k, ids) in jobs.iter().enumerate() {
        for id in ids {
            assert_eq!(actors.get(id).map(String::as_str), Some(NAMES[k]), "job.succeeded of {id}");
        }
    }
    jobs
}

/// Job id → the actor of its `job.succeeded` event.
async fn succeeded_actors(via: &Lab) -> BTreeMap<String, String> {
    audit(via, "job.succeeded")
        .await
        .into_iter()
        .filter_map(|e| Some((e["job"].as_str()?.to_string(), e["actor"].as_str()?.to_string())))
        .collect()
}

/// The audit log's events whose kind starts with `kind`, oldest first.
async fn audit(via: &Lab, kind: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/events?kind={kind}&order=asc&limit=500{cursor}");
        let (status, page) = call(via, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

/// The same request through each controller; answers compared as JSON.
async fn through_each(
    labs: &[Lab],
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for lab in labs {
        out.push(call(lab, method.clone(), path, body.clone()).await);
    }
    out
}

fn all_equal(answers: &[(u16, Value)], what: &str) {
    for (k, a) in answers.iter().enumerate().skip(1) {
        assert_eq!(a, &answers[0], "{what}: {} and {} answer differently", NAMES[0], NAMES[k]);
    }
}

/// Any controller answers any request as the others do.
async fn controllers_answer_alike(labs: &[Lab], jobs: &[Vec<String>]) {
    for shelf in SHELVES {
        let answers =
            through_each(labs, Method::GET, &format!("/v1/pis?shelf={shelf}&limit=100"), None)
                .await;
        assert_eq!(answers[0].0, 200);
        assert_eq!(
            answers[0].1["items"].as_array().map(Vec::len),
            Some(usize::from(PIS)),
            "{shelf}"
        );
        all_equal(&answers, &format!("Pis of {shelf}"));
    }
    let job = &jobs[1][0];
    all_equal(&through_each(labs, Method::GET, &format!("/v1/jobs/{job}"), None).await, "a job");
    let switches = through_each(labs, Method::GET, "/v1/switches", None).await;
    all_equal(&switches, "the switches");
    for (k, lab) in labs.iter().enumerate() {
        let items = switches[0].1["items"].as_array().or(switches[0].1.as_array()).cloned();
        let sw = items.into_iter().flatten().find(|s| s["name"] == lab.opts.switch_name.as_str());
        let sw = sw.unwrap_or_else(|| panic!("{} listed: {:?}", lab.opts.switch_name, switches[0]));
        assert_eq!(
            (&sw["controller"], &sw["l2_domain"]),
            (&json!(NAMES[k]), &json!(NAMES[k])),
            "{sw}"
        );
    }
    assert_eq!(controllers(&labs[0]).await, serving([true; 3]), "GET /v1/controllers");
    let missing = through_each(labs, Method::GET, "/v1/pis/pi_doesnotexist", None).await;
    assert_eq!(missing[0].0, 404, "{:?}", missing[0]);
    all_equal(&missing, "a missing Pi");
    let dup = json!({ "name": labs[0].opts.switch_name, "address": "192.0.2.1:161", "trunk_port": 5,
        "credentials": { "version": "v2c", "community": "x" } });
    let conflict = through_each(labs, Method::POST, "/v1/switches", Some(dup)).await;
    assert_eq!(conflict[0].0, 409, "{:?}", conflict[0]);
    all_equal(&conflict, "a switch that exists");
    cursors_continue_anywhere(labs).await;
    idempotency_keys_hold_across_controllers(labs).await;
}

/// `GET /v1/controllers` through `via`: name → (alive, switches served).
async fn controllers(via: &Lab) -> BTreeMap<String, (bool, Vec<String>)> {
    let (status, list) = call(via, Method::GET, "/v1/controllers", None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|c| {
            let switches = c["switches"].as_array().into_iter().flatten();
            let switches = switches.filter_map(|s| s.as_str().map(str::to_string)).collect();
            let name = c["name"].as_str().unwrap_or_default().to_string();
            (name, (c["alive"].as_bool().unwrap_or(false), switches))
        })
        .collect()
}

/// The cluster as `GET /v1/controllers` should show it, with `alive` by lab.
fn serving(alive: [bool; 3]) -> BTreeMap<String, (bool, Vec<String>)> {
    (0..3).map(|k| (NAMES[k].to_string(), (alive[k], vec![switch_name(k)]))).collect()
}

/// A page's cursor from one controller gives the same next page on the others.
async fn cursors_continue_anywhere(labs: &[Lab]) {
    for list in ["/v1/pis?limit=5", "/v1/jobs?limit=5", "/v1/events?limit=20&order=asc"] {
        let (status, first) = call(&labs[0], Method::GET, list, None).await;
        assert_eq!(status, 200, "{list}: {first}");
        let cursor = first["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("{list}: one page only: {first}"));
        let next = format!("{list}&cursor={cursor}");
        let answers = through_each(labs, Method::GET, &next, None).await;
        assert_eq!(answers[0].0, 200, "{next}: {:?}", answers[0]);
        all_equal(&answers, &next);
        let ids = |page: &Value| -> BTreeSet<String> {
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| id_text(&i["id"]))
                .collect()
        };
        assert!(
            ids(&first).is_disjoint(&ids(&answers[0].1)),
            "{list}: the next page repeats the first"
        );
    }
}

/// A job request repeated through another controller with the same Idempotency-Key is
/// the same job; a different request with that key is refused the same everywhere.
async fn idempotency_keys_hold_across_controllers(labs: &[Lab]) {
    let pi = shelf::pi_ports(&labs[2]).await[2].0.clone();
    let path = format!("/v1/pis/{pi}/reboot");
    // One caller (the key is the caller's), through every controller.
    let token = labs[0].token.as_str();
    let mut ids = BTreeSet::new();
    for lab in labs {
        let (status, job) =
            call_with(lab, token, Method::POST, &path, Some(json!({})), Some("cluster-k1")).await;
        assert!(matches!(status, 200 | 202), "{path} through {}: {status} {job}", lab.api);
        ids.insert(job["id"].as_str().expect("job id").to_string());
    }
    assert_eq!(ids.len(), 1, "one key, one job: {ids:?}");
    let other = format!("/v1/pis/{pi}/power-on");
    let mut refusals = Vec::new();
    for lab in labs {
        refusals.push(
            call_with(lab, token, Method::POST, &other, Some(json!({})), Some("cluster-k1")).await,
        );
    }
    assert_eq!(refusals[0].0, 422, "{:?}", refusals[0]);
    all_equal(&refusals, "a reused idempotency key");
    let id = ids.into_iter().next().expect("job");
    let job = finished(&labs[2], &id).await;
    assert_eq!(job["runner"], NAMES[2], "{job}");
}

/// Read requests on each switch by manager address, sampled every 100 ms over a quiet
/// window of several reconcile intervals: only the switch's own controller reads it,
/// in one burst (one reconcile pass) per interval.
async fn each_switch_is_read_by_its_own_controller_once_per_interval(labs: &[Lab]) {
    let intervals = 5;
    let window = Duration::from_secs(RECONCILE_SECONDS * intervals);
    let before: Vec<BTreeMap<IpAddr, u64>> = labs.iter().map(|l| l.switch.reads()).collect();
    eprintln!("counting switch reads for {window:?}");
    let bursts = read_bursts(labs, window).await;
    for (k, lab) in labs.iter().enumerate() {
        let after = lab.switch.reads();
        let delta: BTreeMap<IpAddr, u64> = after
            .iter()
            .map(|(ip, n)| (*ip, n - before[k].get(ip).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let own = IpAddr::V4(manager_ip(k));
        assert_eq!(
            delta.keys().copied().collect::<Vec<_>>(),
            vec![own],
            "readers of {}: {delta:?}",
            lab.opts.switch_name
        );
        assert!(
            (intervals - 1..=intervals + 1).contains(&bursts[k]),
            "{}: {} read bursts in {window:?}, one reconciler makes {intervals}; reads {delta:?}",
            lab.opts.switch_name,
            bursts[k]
        );
        eprintln!(
            "{}: {} bursts, {:?} reads in {window:?}",
            lab.opts.switch_name, bursts[k], delta
        );
    }
}

/// Read bursts on each lab's switch during `window`, sampled every 100 ms: reads after
/// at least half a second without any start a new burst (a reconcile pass is one, even
/// if its requests straggle).
async fn read_bursts(labs: &[Lab], window: Duration) -> [u64; 3] {
    const QUIET: u32 = 5;
    let mut bursts = [0u64; 3];
    let mut last: Vec<u64> = labs.iter().map(|l| l.switch.reads().values().sum()).collect();
    let mut quiet = [QUIET; 3];
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (k, lab) in labs.iter().enumerate() {
            let now: u64 = lab.switch.reads().values().sum();
            if now == last[k] {
                quiet[k] += 1;
                continue;
            }
            if quiet[k] >= QUIET {
                bursts[k] += 1;
            }
            (quiet[k], last[k]) = (0, now);
        }
    }
    bursts
}

/// The controller holding the webhook lease now, as `GET /v1/controllers` at `api`
/// shows it.
async fn webhook_holder(api: &str, token: &str) -> Option<String> {
    let resp = bramble::tls::client::http()
        .get(format!("{api}/v1/controllers"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    let list: Value = resp.json().await.ok()?;
    let items = list["items"].as_array()?;
    let holds =
        |c: &&Value| c["leases"].as_array().is_some_and(|l| l.iter().any(|n| n == "webhooks"));
    items.iter().find(holds).and_then(|c| c["name"].as_str()).map(str::to_string)
}

/// Polls until `f` gives `Some`, or panics with `what` after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kill -9` of the controller delivering webhooks: see the file's documentation.
async fn kill_nine(labs: &mut [Lab], receiver: &Receiver) {
    let (api, token) = (labs[0].api.as_str(), labs[0].token.as_str());
    let holder =
        eventually(SLACK, "a controller holds the webhook lease", || webhook_holder(api, token))
            .await;
    let v = NAMES
        .iter()
        .position(|n| *n == holder)
        .unwrap_or_else(|| panic!("unknown holder {holder}"));
    let others = [(v + 1) % 3, (v + 2) % 3];
    let victim_pi = shelf::pi_ports(&labs[v]).await[3].0.clone();
    let killed_at = Instant::now();
    labs[v].kill_controller().await.expect("kill -9");
    let survivor = (labs[others[0]].api.clone(), labs[others[0]].token.clone());
    let lease_moved = tokio::spawn(lease_moves(survivor, holder.clone(), killed_at));
    let via = &labs[others[0]];
    let (status, waiting) =
        call(via, Method::POST, &format!("/v1/pis/{victim_pi}/reboot"), Some(json!({}))).await;
    assert_eq!(status, 202, "{waiting}");
    let waiting_id = waiting["id"].as_str().expect("job id").to_string();
    let job_path = format!("/v1/jobs/{waiting_id}");
    let job_path = job_path.as_str();
    let reason = eventually(
        Duration::from_millis(LEASE_MS) + SLACK,
        "the job says whom it waits for",
        || async move {
            let job = call(via, Method::GET, job_path, None).await.1;
            let reason = job["waiting_for"].as_str().map(str::to_string);
            reason.map(|w| (w, job))
        },
    )
    .await;
    let mut alive = [true; 3];
    alive[v] = false;
    assert_eq!(controllers(via).await, serving(alive), "GET /v1/controllers after the kill");
    let prefix = format!("controller {holder}, last seen ");
    assert!(
        reason.0.starts_with(&prefix) && reason.0.len() > prefix.len() + 18,
        "waiting_for: {}",
        reason.0
    );
    assert_eq!(reason.1["state"], "queued", "{}", reason.1);
    // The other shelves keep working, through their own controllers.
    let mut later = Vec::new();
    for &o in &others {
        let pi = shelf::pi_ports(&labs[o]).await[3].0.clone();
        let (status, job) =
            call(&labs[o], Method::POST, &format!("/v1/pis/{pi}/reboot"), Some(json!({}))).await;
        assert_eq!(status, 202, "{job}");
        later.push((o, job["id"].as_str().expect("job id").to_string()));
    }
    for (o, id) in &later {
        let job = finished(&labs[*o], id).await;
        assert_eq!(job["runner"], NAMES[*o], "{job}");
    }
    let moved = lease_moved.await.expect("lease watcher");
    let limit = Duration::from_millis(LEASE_MS) + SLACK;
    assert!(
        moved.as_ref().is_some_and(|(_, after)| *after <= limit),
        "webhook lease after the kill: {moved:?}"
    );
    eprintln!("webhook lease moved from {holder}: {moved:?}");
    deliveries_resumed(receiver, killed_at, limit);
    let still = call(via, Method::GET, &format!("/v1/jobs/{waiting_id}"), None).await.1;
    assert_eq!(still["state"], "queued", "the dead controller's job ran elsewhere: {still}");
    assert!(still["waiting_for"].as_str().is_some_and(|w| w.starts_with(&prefix)), "{still}");
    labs[v].start_controller(None).await.expect("restart");
    let job = finished(&labs[v], &waiting_id).await;
    assert_eq!(job["runner"], holder.as_str(), "{job}");
    assert_eq!(
        controllers(&labs[v]).await,
        serving([true; 3]),
        "GET /v1/controllers after the restart"
    );
    assert!(job["waiting_for"].is_null(), "{job}");
}

/// Watches the webhook lease through a surviving controller's API (`api`, `token`)
/// after its holder `killed` was killed at `killed_at`: the new holder and how long
/// after the kill it took over (`None` if none did in 30 s).
async fn lease_moves(
    (api, token): (String, String),
    killed: String,
    killed_at: Instant,
) -> Option<(String, Duration)> {
    while killed_at.elapsed() < Duration::from_secs(30) {
        if let Some(h) = webhook_holder(&api, &token).await.filter(|h| *h != killed) {
            return Some((h, killed_at.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The first delivery after the kill (made by a survivor: the dead cannot send) came
/// within `limit` of it.
fn deliveries_resumed(receiver: &Receiver, killed_at: Instant, limit: Duration) {
    let after = killed_at + Duration::from_millis(200);
    let first = receiver.deliveries().into_iter().find(|d| d.at > after);
    let Some(first) = first else { panic!("no delivery after the kill") };
    assert!(
        first.at - killed_at <= limit,
        "deliveries resumed {:?} after the kill",
        first.at - killed_at
    );
}

/// Every job event in the audit log reached the receiver, with its id in the header and
/// the body, and no event was delivered twice at once.
async fn every_job_event_delivered_with_its_id_never_twice_at_once(via: &Lab, receiver: &Receiver) {
    let logged: BTreeSet<String> =
        audit(via, "job.").await.iter().filter_map(|e| id_text(&e["id"])).collect();
    assert!(logged.len() > 50, "job events in the log: {}", logged.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing: Vec<String> = logged.difference(&receiver.ids()).cloned().collect();
    while !missing.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        missing = logged.difference(&receiver.ids()).cloned().collect();
    }
    assert!(missing.is_empty(), "job events never delivered: {missing:?}");
    let deliveries = receiver.deliveries();
    for d in &deliveries {
        assert!(
            d.header_id.is_some() && d.header_id == d.body_id,
            "a delivery without its id: {d:?}"
        );
        assert!(d.kind.as_deref().is_some_and(|k| k.starts_with("job.")), "{d:?}");
    }
    assert_eq!(receiver.overlapping(), Vec::<String>::new(), "events delivered twice at once");
    let failed = audit(via, "webhook.").await;
    assert!(failed.is_empty(), "webhook failures: {failed:?}");
    eprintln!("{} deliveries of {} job events", deliveries.len(), logged.len());
}
