//! End to end on a virtual shelf: a controller with real DHCP and TFTP on veth pairs, a
//! virtual PoE switch over SNMP, nfs-ganesha exporting per-Pi roots from a real image
//! store, and simulated Pis that boot as the real boot ROMs do and check their NFS root.
//! Customers act through the HTTP API with their own tokens.

use std::time::Duration;

use bramble::jobs::CrashPoint;
use bramble::jobs::model::{JobKind, JobState};
use bramble_lab::pisim::PiState;
use bramble_tests::shelf::{self, boot_after_power_on, other_image, timeline};
use serde_json::{Value, json};

/// Kernel bytes a Pi fetched over TFTP in its latest boot (the last kernel transfer).
fn last_kernel_bytes(sim: &bramble_lab::pisim::PiSim) -> Option<u64> {
    sim.status().timeline.iter().rev().find_map(|e| match &e.event {
        bramble_lab::pisim::Event::TftpFetched { file, bytes, .. } if file.contains("kernel") => {
            Some(*bytes)
        }
        _ => None,
    })
}

fn kernel_size(lab: &bramble::lab::Lab, pi: &str, model_kernel: &str) -> u64 {
    let path = lab.opts.state_dir.join("images/roots").join(pi).join("boot").join(model_kernel);
    std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

/// The Pi 5 of a lab (port 3): the inventory knows its model and the serial its option 97
/// carries, and it read the bcm2712 device tree and `kernel_2712.img` from its own
/// directory, never a `start*.elf`.
async fn pi5_booted_as_itself(lab: &bramble::lab::Lab, (pi, port): &(String, u16)) {
    let sim = lab.cabling.sim(*port).unwrap();
    assert_eq!((*port, sim.config().model), (3, bramble_lab::pisim::PiModel::Pi5));
    let p = lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await.unwrap();
    let serial = sim.config().serial.to_string();
    assert_eq!((p["model"].as_str(), p["serial"].as_str()), (Some("5"), Some(serial.as_str())));
    let read: Vec<String> = sim
        .status()
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            bramble_lab::pisim::Event::TftpFetched { file, .. } => Some(file.clone()),
            _ => None,
        })
        .collect();
    for file in ["config.txt", "bcm2712-rpi-5-b.dtb", "cmdline.txt", "kernel_2712.img"] {
        assert!(read.contains(&format!("{serial}/{file}")), "{file} in {read:?}");
    }
    assert!(!read.iter().any(|f| f.contains("start")), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eight_pi_lab_reinstalls_one_pi_and_reboots_another() {
    let _one = shelf::serial().await;
    let lab = shelf::racked(shelf::options(8, 1, 'a')).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let pis = shelf::pi_ports(&lab).await;
    let (reinstalled, reinstalled_port) = pis[1].clone();
    let (rebooted, rebooted_port) = pis[4].clone();
    pi5_booted_as_itself(&lab, &pis[2]).await;
    shelf::assign(&lab, &reinstalled, "cust-ann").await;
    shelf::assign(&lab, &rebooted, "cust-ann").await;
    let ann = shelf::customer_token(&lab, "cust-ann").await;
    let power_ons: Vec<(u16, u64)> =
        lab.cabling.sims().iter().map(|(p, s)| (*p, s.status().counters.power_ons)).collect();

    let http = bramble::tls::client::http();
    let post = |path: String, body: Value| {
        http.post(format!("{}{path}", lab.api)).bearer_auth(&ann).json(&body).send()
    };
    let r = post(
        format!("/v1/pis/{reinstalled}/reimage"),
        json!({ "image": other_image(), "ssh_keys": [lab.ssh_key] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let reimage: Value = r.json().await.unwrap();
    let r = post(format!("/v1/pis/{rebooted}/reboot"), json!({})).await.unwrap();
    assert_eq!(r.status(), 202);
    let reboot: Value = r.json().await.unwrap();
    for job in [&reimage, &reboot] {
        let done =
            lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(90)).await.unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        assert_eq!(done.progress_percent, 100);
    }

    // Exactly those two Pis lost power and booted again; the others never blinked.
    for (port, before) in power_ons {
        let sim = lab.cabling.sim(port).unwrap();
        let now = sim.status().counters.power_ons;
        if port == reinstalled_port || port == rebooted_port {
            assert_eq!(now, before + 1, "port {port} was power-cycled once");
            assert_eq!(
                sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await,
                PiState::Booted,
                "port {port}"
            );
        } else {
            assert_eq!(now, before, "port {port} was not touched");
            assert_eq!(sim.state(), PiState::Booted);
        }
    }
    // The boot timelines show DHCP and the kernel fetch after each job's power-on.
    for (pi, job) in [(&reinstalled, &reimage), (&rebooted, &reboot)] {
        let events = timeline(&lab, pi).await;
        let boot = boot_after_power_on(&events, job["id"].as_str().unwrap());
        assert!(
            boot.iter().any(|k| k.starts_with("dhcp.ack") || k.starts_with("dhcp.offer")),
            "{pi}: {boot:?}"
        );
        assert!(
            boot.iter().any(|k| k.starts_with("tftp.") && k.contains("kernel")),
            "{pi}: {boot:?}"
        );
        assert!(boot.iter().any(|k| k.starts_with("pi.booted")), "{pi}: {boot:?}");
    }
    // The reinstalled Pi booted the new root: the marker on disk names the new image,
    // and the kernel it fetched is that image's kernel (the images' kernels differ).
    assert_eq!(shelf::root_marker(&lab, &reinstalled)["image"], other_image());
    let sim = lab.cabling.sim(reinstalled_port).unwrap();
    let kernel = shelf::kernel_of(sim.config().model);
    assert_eq!(last_kernel_bytes(&sim), Some(kernel_size(&lab, &reinstalled, kernel)));
    let p = lab
        .call(reqwest::Method::GET, &format!("/v1/pis/{reinstalled}"), None, &[200])
        .await
        .unwrap();
    assert_eq!((p["state"].as_str(), p["image"].as_str()), (Some("deployed"), Some(other_image())));
    lab.down().await;
}

/// Crashes the controller at the point it is armed with, once: one plan serves a whole
/// test, so each kill costs one controller restart.
#[derive(Default)]
struct CrashAt {
    armed: std::sync::Mutex<Option<(JobKind, CrashPoint)>>,
}

impl bramble::jobs::CrashPlan for CrashAt {
    fn crash_at(&self, job: &bramble::model::Job, at: CrashPoint) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let hit = *armed == Some((job.kind, at));
        if hit {
            *armed = None;
        }
        hit
    }
}

/// Restarts the lab's controller with `plan` (disarmed) for [`kill_and_resume`].
async fn with_crash_plan(lab: &mut bramble::lab::Lab) -> std::sync::Arc<CrashAt> {
    let plan = std::sync::Arc::new(CrashAt::default());
    lab.stop_controller().await.unwrap();
    lab.start_controller(Some(plan.clone())).await.unwrap();
    plan
}

/// Every point a job of `kind` can be killed at: after each of its steps, then right
/// after its final commit.
fn kill_points(kind: JobKind) -> Vec<CrashPoint> {
    let mut points: Vec<CrashPoint> =
        kind.steps().iter().map(|s| CrashPoint::AfterStep(*s)).collect();
    points.push(CrashPoint::AfterFinish);
    points
}

/// Arms `plan` so that the controller dies at `at` in the job of `kind` that `POST path`
/// starts, checks what the killed controller left, restarts it (disarmed) and returns
/// the job once it ended (it must have succeeded).
async fn kill_and_resume(
    lab: &mut bramble::lab::Lab,
    plan: &std::sync::Arc<CrashAt>,
    kind: JobKind,
    at: CrashPoint,
    path: &str,
    body: Option<Value>,
) -> bramble::model::Job {
    *plan.armed.lock().unwrap() = Some((kind, at));
    let job = lab.call(reqwest::Method::POST, path, body, &[202]).await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert!(lab.wait_controller_crash(Duration::from_secs(90)).await, "{kind} crashed at {at:?}");
    // The killed controller left the job running at the step it had finished, or
    // finished for good.
    let db = bramble::db::Db::connect(&lab.config().unwrap().database_url).await.unwrap();
    let left = db.get_job(&bramble::ids::JobId(id.clone())).await.unwrap().unwrap();
    let want = match at {
        CrashPoint::AfterStep(step) => (JobState::Running, Some(step.as_str())),
        CrashPoint::AfterFinish => (JobState::Succeeded, None),
    };
    assert_eq!((left.state, left.current_step.as_deref()), want, "{kind} killed at {at:?}");
    db.close().await;
    lab.start_controller(Some(plan.clone())).await.unwrap();
    let done = lab.wait_job(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{kind} killed at {at:?}: {done:?}");
    let attempts = if at == CrashPoint::AfterFinish { 1 } else { 2 };
    assert_eq!(done.attempts, attempts, "{kind} killed at {at:?}: {done:?}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reinstall_killed_at_every_step_resumes_and_leaves_exactly_the_new_root() {
    let _one = shelf::serial().await;
    let mut lab = shelf::racked(shelf::options(1, 2, 'c')).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);
    let plan = with_crash_plan(&mut lab).await;
    for (i, at) in kill_points(JobKind::Reimage).into_iter().enumerate() {
        let image = bramble::lab::LAB_IMAGES[(i + 1) % 2].0;
        let body = json!({ "image": image, "ssh_keys": [lab.ssh_key] });
        let path = format!("/v1/pis/{pi}/reimage");
        kill_and_resume(&mut lab, &plan, JobKind::Reimage, at, &path, Some(body)).await;
        // Exactly the new root: its marker, nothing half-built beside it, and the Pi
        // booted it (its simulator verified hostname and key over NFS and fetched the
        // new image's kernel).
        assert_eq!(shelf::root_marker(&lab, &pi)["image"], image, "after a crash at {at:?}");
        assert_eq!(shelf::leftovers(&lab, &pi), Vec::<String>::new(), "after a crash at {at:?}");
        let sim = lab.cabling.sim(port).unwrap();
        assert_eq!(
            sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await,
            PiState::Booted,
            "after a crash at {at:?}"
        );
        let kernel = shelf::kernel_of(sim.config().model);
        assert_eq!(
            last_kernel_bytes(&sim),
            Some(kernel_size(&lab, &pi, kernel)),
            "after a crash at {at:?}"
        );
        let p =
            lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await.unwrap();
        assert_eq!(
            (p["state"].as_str(), p["image"].as_str()),
            (Some("deployed"), Some(image)),
            "after a crash at {at:?}"
        );
        // The host keys shown are the live root's, whichever root the resumed job kept.
        assert_eq!(p["ssh_host_keys"], shelf::live_host_keys(&lab, &pi), "after a crash at {at:?}");
    }
    lab.down().await;
}

/// `GET path` with a customer's token: the status and the JSON body (`null` if none).
async fn get_as(lab: &bramble::lab::Lab, token: &str, path: &str) -> (u16, Value) {
    let r = bramble::tls::client::http()
        .get(format!("{}{path}", lab.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reinstall_shows_its_owner_the_host_keys_of_the_new_root() {
    let _one = shelf::serial().await;
    let lab = shelf::racked(shelf::options(2, 6, 's')).await;
    let pis = shelf::pi_ports(&lab).await;
    let (pi, other) = (pis[0].0.clone(), pis[1].0.clone());
    shelf::assign(&lab, &pi, "cust-ann").await;
    shelf::assign(&lab, &other, "cust-ben").await;
    let ann = shelf::customer_token(&lab, "cust-ann").await;
    let ben = shelf::customer_token(&lab, "cust-ben").await;
    let pi_path = format!("/v1/pis/{pi}");
    // Racked, never reinstalled: no root, no keys.
    let (status, shown) = get_as(&lab, &ann, &pi_path).await;
    assert_eq!((status, &shown["ssh_host_keys"]), (200, &json!([])), "{shown}");

    let mut seen = Vec::new();
    for (image, _) in bramble::lab::LAB_IMAGES {
        let r = bramble::tls::client::http()
            .post(format!("{}{pi_path}/reimage", lab.api))
            .bearer_auth(&ann)
            .json(&json!({ "image": image, "ssh_keys": [lab.ssh_key] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        let done =
            lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(90)).await.unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        let keys = get_as(&lab, &ann, &pi_path).await.1["ssh_host_keys"].clone();
        assert_eq!(keys, shelf::live_host_keys(&lab, &pi), "after reinstalling {image}");
        let types: Vec<&str> =
            keys.as_array().unwrap().iter().map(|k| k["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["ssh-ed25519", "ssh-rsa"], "{keys}");
        seen.push(keys);
    }
    for (old, new) in seen[0].as_array().unwrap().iter().zip(seen[1].as_array().unwrap()) {
        assert_ne!(old["fingerprint"], new["fingerprint"], "a reinstall renews every host key");
    }
    // Her list shows the same keys; the other customer cannot see her Pi at all, and his
    // own never-reinstalled Pi has none.
    let (_, list) = get_as(&lab, &ann, "/v1/pis").await;
    assert_eq!(list["items"][0]["ssh_host_keys"], seen[1], "{list}");
    assert_eq!(get_as(&lab, &ben, &pi_path).await.0, 404);
    let (status, his) = get_as(&lab, &ben, &format!("/v1/pis/{other}")).await;
    assert_eq!((status, &his["ssh_host_keys"]), (200, &json!([])), "{his}");
    lab.down().await;
}

/// Power-off, power-on, reboot and racking, each killed after every step and after its
/// final commit, on one deployed Pi: every job resumes and succeeds, the port and the
/// inventory agree on the power, the Pi stays `deployed` (and boots after a reboot), and
/// its slot ends ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn power_jobs_and_racking_killed_at_every_step_resume_and_keep_the_pi_deployed() {
    let _one = shelf::serial().await;
    let mut lab = shelf::racked(shelf::options(1, 5, 'k')).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);
    let plan = with_crash_plan(&mut lab).await;
    let rack_path = format!("/v1/shelves/{}/rack", lab.opts.shelf);
    let kinds = [
        (JobKind::PowerOff, format!("/v1/pis/{pi}/power-off"), Some(json!({})), "off"),
        (JobKind::PowerOn, format!("/v1/pis/{pi}/power-on"), Some(json!({})), "on"),
        (JobKind::Reboot, format!("/v1/pis/{pi}/reboot"), Some(json!({})), "on"),
        (JobKind::RackShelf, rack_path, None, "on"),
    ];
    for (kind, path, body, power) in kinds {
        for at in kill_points(kind) {
            kill_and_resume(&mut lab, &plan, kind, at, &path, body.clone()).await;
            let p = lab
                .call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200])
                .await
                .unwrap();
            assert_eq!(
                (p["state"].as_str(), p["power"].as_str()),
                (Some("deployed"), Some(power)),
                "{kind} killed at {at:?}: {p}"
            );
            assert_eq!(lab.switch.state().delivering(port), power == "on", "{kind} at {at:?}");
            // Only a reboot waits for the boot: a power-on or a racking killed while the
            // Pi was netbooting leaves it to a later power cycle, as a dead netboot
            // server would.
            if kind == JobKind::Reboot {
                let sim = lab.cabling.sim(port).unwrap();
                let booted = sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted);
                assert_eq!(booted.await, PiState::Booted, "{kind} killed at {at:?}");
            }
        }
    }
    let db = bramble::db::Db::connect(&lab.config().unwrap().database_url).await.unwrap();
    let slot = db.get_pi(&bramble::ids::PiId(pi.clone())).await.unwrap().unwrap().slot.unwrap();
    let flag = db.slot_location(&slot).await.unwrap().unwrap().flag;
    assert_eq!(flag, None, "the slot ends ready after racking");
    db.close().await;
    lab.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switch_faults_fail_jobs_cleanly_and_the_port_state_is_known() {
    let _one = shelf::serial().await;
    let lab = shelf::racked(shelf::options(1, 3, 'f')).await;
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);
    let (pi_path, off_path) = (format!("/v1/pis/{pi}"), format!("/v1/pis/{pi}/power-off"));
    let pi_json =
        || async { lab.call(reqwest::Method::GET, &pi_path, None, &[200]).await.unwrap() };
    let power_off = || lab.call(reqwest::Method::POST, &off_path, Some(json!({})), &[202]);

    // A silent switch: the job fails after its retries; nobody knows the port state.
    lab.switch.set_silent(true);
    let job = power_off().await.unwrap();
    let done = lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(90)).await.unwrap();
    assert_eq!(
        (done.state, done.current_step.as_deref()),
        (JobState::Failed, Some("power-off")),
        "{done:?}"
    );
    assert!(done.last_error.as_deref().unwrap_or_default().contains("no answer"), "{done:?}");
    assert_eq!(
        done.customer_message.as_deref(),
        Some("The network switch did not accept the request to power the Pi off.")
    );
    let p = pi_json().await;
    assert_eq!(
        (p["state"].as_str(), p["failed_step"].as_str(), p["power"].as_str()),
        (Some("failed"), Some("power-off"), Some("unknown")),
        "{p}"
    );

    // A switch that refuses SETs: the job fails at once; the port read back is still on.
    lab.switch.set_silent(false);
    lab.switch.set_reject_sets(true);
    let job = power_off().await.unwrap();
    let done = lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(60)).await.unwrap();
    assert_eq!((done.state, done.attempts), (JobState::Failed, 1), "{done:?}");
    assert!(lab.switch.state().delivering(port));
    assert_eq!(pi_json().await["power"], "on", "the inventory says what the switch reads back");

    // A healthy switch again: the same request works and the Pi really loses power.
    lab.switch.set_reject_sets(false);
    let job = power_off().await.unwrap();
    let done = lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert!(!lab.switch.state().delivering(port));
    assert_eq!(pi_json().await["power"], "off");
    assert_eq!(
        lab.cabling
            .sim(port)
            .unwrap()
            .wait_for(Duration::from_secs(5), |s| *s == PiState::Off)
            .await,
        PiState::Off
    );
    lab.down().await;
}

/// One customer's session: reboot their first Pi, reinstall their second, reboot it,
/// poking at the other customer's Pis and at their own busy Pi on the way. Returns the
/// ids of the jobs it started.
async fn hammer(
    lab: &bramble::lab::Lab,
    token: &str,
    mine: &[String],
    theirs: &[String],
) -> Vec<String> {
    let http = bramble::tls::client::http();
    let post = |path: String, body: Value| {
        http.post(format!("{}{path}", lab.api)).bearer_auth(token).json(&body).send()
    };
    let mut jobs = Vec::new();
    let plan = [(0, "reboot"), (1, "reimage"), (1, "reboot"), (0, "reimage")];
    for (i, (which, action)) in plan.iter().enumerate() {
        let pi = &mine[*which];
        let body = if *action == "reimage" {
            json!({ "image": bramble::lab::LAB_IMAGES[i % 2].0, "ssh_keys": [lab.ssh_key] })
        } else {
            json!({})
        };
        let r = post(format!("/v1/pis/{pi}/{action}"), body.clone()).await.unwrap();
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        // While it runs: the same Pi is busy (409 naming the job), the other customer's
        // Pis do not exist for this token.
        let busy = post(format!("/v1/pis/{pi}/reboot"), json!({})).await.unwrap();
        assert_eq!(busy.status(), 409);
        let problem: Value = busy.json().await.unwrap();
        assert!(problem.to_string().contains(&id), "409 names the running job: {problem}");
        for other in theirs {
            assert_eq!(
                post(format!("/v1/pis/{other}/{action}"), body.clone()).await.unwrap().status(),
                404
            );
        }
        let done = lab.wait_job(&id, Duration::from_secs(120)).await.unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        jobs.push(id);
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_customers_hammering_their_own_pis_never_touch_each_other() {
    let _one = shelf::serial().await;
    let lab = shelf::racked(shelf::options(4, 4, 'h')).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let pis = shelf::pi_ports(&lab).await;
    let (ann, ben): (Vec<_>, Vec<_>) = pis.iter().cloned().partition(|(_, port)| *port <= 2);
    for (pi, _) in &ann {
        shelf::assign(&lab, pi, "cust-ann").await;
    }
    for (pi, _) in &ben {
        shelf::assign(&lab, pi, "cust-ben").await;
    }
    let (ann_token, ben_token) = (
        shelf::customer_token(&lab, "cust-ann").await,
        shelf::customer_token(&lab, "cust-ben").await,
    );
    let changes_before: Vec<u64> =
        pis.iter().map(|(_, port)| lab.switch.power_changes(*port)).collect();
    let ids = |v: &[(String, u16)]| v.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let (ann_ids, ben_ids) = (ids(&ann), ids(&ben));
    let (ann_jobs, ben_jobs) = tokio::join!(
        hammer(&lab, &ann_token, &ann_ids, &ben_ids),
        hammer(&lab, &ben_token, &ben_ids, &ann_ids)
    );

    // Each Pi's port changed power exactly twice (off, on) per job its owner ran on it.
    for ((pi, port), before) in pis.iter().zip(changes_before) {
        let jobs = lab
            .call(reqwest::Method::GET, &format!("/v1/jobs?pi={pi}&limit=100"), None, &[200])
            .await
            .unwrap();
        let mine: Vec<String> = jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .filter(|id| ann_jobs.contains(id) || ben_jobs.contains(id))
            .collect();
        let owner_jobs = if *port <= 2 { &ann_jobs } else { &ben_jobs };
        assert!(
            mine.iter().all(|id| owner_jobs.contains(id)),
            "Pi in port {port} only ran its owner's jobs"
        );
        assert_eq!(
            lab.switch.power_changes(*port) - before,
            2 * mine.len() as u64,
            "port {port}: off and on once per job"
        );
        // The Pi's audit trail names only its owner's jobs.
        let events = timeline(&lab, pi).await;
        let foreign = if *port <= 2 { &ben_jobs } else { &ann_jobs };
        assert!(
            events.iter().all(|e| !foreign.iter().any(|id| e["job"] == json!(id))),
            "port {port} saw the other customer's job"
        );
        assert_eq!(
            lab.cabling
                .sim(*port)
                .unwrap()
                .wait_for(Duration::from_secs(30), |s| *s == PiState::Booted)
                .await,
            PiState::Booted,
            "port {port}"
        );
    }
    // Each customer's audit log lists their own jobs and nothing of the other's.
    let http = bramble::tls::client::http();
    let log: Value = http
        .get(format!("{}/v1/events?limit=500", lab.api))
        .bearer_auth(&ann_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = log["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["kind"] == "job.succeeded"), "ann sees her jobs finish");
    assert!(
        items.iter().all(|e| !ben_jobs.iter().any(|id| e["job"] == json!(id))),
        "ann sees nothing of ben's jobs"
    );
    lab.down().await;
}

/// A request with a customer's token: the status and the JSON body (`null` if none).
async fn send_as(
    lab: &bramble::lab::Lab,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = bramble::tls::client::http()
        .request(method, format!("{}{path}", lab.api))
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Submits a job as a customer and waits for it to succeed.
async fn job_as(
    lab: &bramble::lab::Lab,
    token: &str,
    path: &str,
    body: Value,
) -> bramble::model::Job {
    let (status, job) = send_as(lab, token, reqwest::Method::POST, path, Some(body)).await;
    assert_eq!(status, 202, "POST {path}: {job}");
    let done = lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(90)).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "POST {path}: {done:?}");
    done
}

/// The entries of a Pi's snapshot directory on the lab's disk.
fn snapshot_dirs(lab: &bramble::lab::Lab, pi: &str) -> Vec<String> {
    let dir = lab.opts.state_dir.join("images/roots/.snapshots").join(pi);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The ids of a Pi's snapshots the API lists to `token`, newest first, with their rows.
async fn snapshots_as(lab: &bramble::lab::Lab, token: &str, pi: &str) -> Vec<Value> {
    let (status, page) = get_as(lab, token, &format!("/v1/pis/{pi}/snapshots")).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// A Pi's snapshots as the operator sees them.
async fn operator_snapshots(lab: &bramble::lab::Lab, pi: &str) -> Vec<Value> {
    let path = format!("/v1/pis/{pi}/snapshots");
    let page = lab.call(reqwest::Method::GET, &path, None, &[200]).await.unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Undo, end to end through the API as a customer, with the lab's store on its own
/// filesystem's strategy (a plain copy, or reflink where the temp dir has it): a file
/// written into the root is gone after a reinstall and back after restoring the
/// snapshot the reinstall kept, with the old host keys; restoring the snapshot the
/// restore kept brings the reinstall back. On-demand snapshots stop at `max_manual`.
/// Then the Pi changes owner: the new owner lists no snapshot, restoring the old id is a
/// 404, and the directories are gone from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_undoes_a_reinstall_and_the_next_owner_cannot_reach_the_snapshots() {
    let _one = shelf::serial().await;
    undo_through_the_api(shelf::options(1, 7, 'u'), None).await;
}

/// The same with the lab's image store on a btrfs filesystem (a loop device). nfs-ganesha
/// cannot export a btrfs subvolume created after it started ("resolve_posix_filesystem
/// ... No such file or directory", "btrfs filesystem ... may have unsupported subvols" in
/// its log), so under ganesha a btrfs store makes roots and snapshots as reflink copies
/// (`ImageStore::without_subvolumes`), kept and restored by rename, and the simulated
/// Pi mounts each root it boots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_undoes_a_reinstall_on_btrfs() {
    let _one = shelf::serial().await;
    let opts = shelf::options(1, 10, 'b');
    let fs = BtrfsStore::mount(&opts.state_dir.join("images"));
    undo_through_the_api(opts, Some(&fs)).await;
}

/// A btrfs filesystem on a loop device mounted at a lab's image store; torn down on drop.
struct BtrfsStore {
    image: std::path::PathBuf,
    device: String,
    mount: std::path::PathBuf,
}

impl BtrfsStore {
    fn mount(at: &std::path::Path) -> BtrfsStore {
        let sh = |cmd: &str| {
            let out = std::process::Command::new("sh").args(["-c", cmd]).output().unwrap();
            assert!(out.status.success(), "{cmd}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        std::fs::create_dir_all(at).unwrap();
        let image = at.with_extension("btrfs.img");
        sh(&format!("truncate -s 1G {}", image.display()));
        let device = sh(&format!("losetup -f --show {}", image.display()));
        let fs = BtrfsStore { image, device, mount: at.to_path_buf() };
        sh(&format!("mkfs.btrfs -q {} && mount {} {}", fs.device, fs.device, at.display()));
        fs
    }
}

impl Drop for BtrfsStore {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::process::Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

async fn undo_through_the_api(mut opts: bramble::lab::LabOptions, btrfs: Option<&BtrfsStore>) {
    opts.extra_toml = "[snapshots]\nmax_manual = 1\nsweep_seconds = 0.2\n".into();
    let lab = shelf::racked(opts).await;
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(lab.opts.state_dir.join("images"))
        .output()
        .unwrap();
    let on_btrfs = String::from_utf8_lossy(&fs_type.stdout).trim() == "btrfs";
    assert_eq!(on_btrfs, btrfs.is_some(), "the store's filesystem");
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);
    shelf::assign(&lab, &pi, "cust-ann").await;
    let ann = shelf::customer_token(&lab, "cust-ann").await;
    let ben = shelf::customer_token(&lab, "cust-ben").await;
    let [(first, _), (second, _)] = bramble::lab::LAB_IMAGES;
    let reimage = |image: &str| json!({ "image": image, "ssh_keys": [lab.ssh_key] });
    let pi_path = format!("/v1/pis/{pi}");
    let root = lab.opts.state_dir.join("images/roots").join(&pi);
    let booted = || async {
        let sim = lab.cabling.sim(port).unwrap();
        assert_eq!(
            sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await,
            PiState::Booted
        );
    };
    let shown = |token: String| {
        let (lab, path) = (&lab, pi_path.clone());
        async move { get_as(lab, &token, &path).await.1 }
    };

    job_as(&lab, &ann, &format!("{pi_path}/reimage"), reimage(first)).await;
    assert!(snapshots_as(&lab, &ann, &pi).await.is_empty(), "a first install replaces nothing");
    std::fs::write(root.join("customer.txt"), "ann's data").unwrap();
    let keys_first = shown(ann.clone()).await["ssh_host_keys"].clone();
    assert_eq!(keys_first, shelf::live_host_keys(&lab, &pi));

    // Reinstall: the file is gone, the old root kept as a snapshot.
    job_as(&lab, &ann, &format!("{pi_path}/reimage"), reimage(second)).await;
    booted().await;
    assert!(!root.join("customer.txt").exists(), "a reinstall starts from the image");
    let keys_second = shown(ann.clone()).await["ssh_host_keys"].clone();
    assert_ne!(keys_second, keys_first);
    let snaps = snapshots_as(&lab, &ann, &pi).await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(
        (snaps[0]["reason"].as_str(), snaps[0]["image"].as_str()),
        (Some("reinstall"), Some(first))
    );
    let kept_by_reinstall = snaps[0]["id"].as_str().unwrap().to_string();
    if btrfs.is_some() {
        use std::os::unix::fs::MetadataExt;
        let kept =
            lab.opts.state_dir.join("images/roots/.snapshots").join(&pi).join(&kept_by_reinstall);
        assert_ne!(
            std::fs::metadata(&kept).unwrap().ino(),
            256,
            "a reflink copy, not a subvolume ganesha could not export, kept by rename"
        );
    }

    // Restore: the file and the old host keys are back.
    let restore =
        job_as(&lab, &ann, &format!("{pi_path}/restore"), json!({ "snapshot": kept_by_reinstall }))
            .await;
    assert_eq!(restore.kind, JobKind::Restore);
    booted().await;
    assert_eq!(std::fs::read_to_string(root.join("customer.txt")).unwrap(), "ann's data");
    let p = shown(ann.clone()).await;
    assert_eq!((p["state"].as_str(), p["image"].as_str()), (Some("deployed"), Some(first)), "{p}");
    assert_eq!(p["ssh_host_keys"], keys_first, "the old root's host keys");
    assert_eq!(p["ssh_host_keys"], shelf::live_host_keys(&lab, &pi));
    let snaps = snapshots_as(&lab, &ann, &pi).await;
    assert_eq!(snaps.len(), 1, "the restored snapshot is the live root now: {snaps:?}");
    assert_eq!(
        (snaps[0]["reason"].as_str(), snaps[0]["image"].as_str()),
        (Some("restore"), Some(second))
    );
    let kept_by_restore = snaps[0]["id"].as_str().unwrap().to_string();
    assert_eq!(snapshot_dirs(&lab, &pi), std::slice::from_ref(&kept_by_restore));

    // Restore again: the reinstall is back.
    job_as(&lab, &ann, &format!("{pi_path}/restore"), json!({ "snapshot": kept_by_restore })).await;
    booted().await;
    assert!(!root.join("customer.txt").exists());
    let p = shown(ann.clone()).await;
    assert_eq!((p["image"].as_str(), &p["ssh_host_keys"]), (Some(second), &keys_second), "{p}");

    // On demand, up to max_manual.
    job_as(&lab, &ann, &format!("{pi_path}/snapshots"), json!({})).await;
    let snaps = snapshots_as(&lab, &ann, &pi).await;
    assert_eq!(snaps.iter().filter(|s| s["reason"] == "manual").count(), 1, "{snaps:?}");
    let (status, problem) =
        send_as(&lab, &ann, reqwest::Method::POST, &format!("{pi_path}/snapshots"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("snapshot_limit")), "{problem}");
    let ids: Vec<String> = snaps.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(snapshot_dirs(&lab, &pi), sorted);

    // Another customer sees none of it.
    assert_eq!(get_as(&lab, &ben, &format!("{pi_path}/snapshots")).await.0, 404);
    let (status, _) = send_as(
        &lab,
        &ben,
        reqwest::Method::POST,
        &format!("{pi_path}/restore"),
        Some(json!({ "snapshot": ids[0] })),
    )
    .await;
    assert_eq!(status, 404);

    // The Pi changes owner: every snapshot goes, rows at once, directories by the sweeper.
    shelf::assign(&lab, &pi, "cust-ben").await;
    assert!(snapshots_as(&lab, &ben, &pi).await.is_empty(), "the new owner lists nothing");
    let all = lab
        .call(reqwest::Method::GET, &format!("{pi_path}/snapshots"), None, &[200])
        .await
        .unwrap();
    assert_eq!(all["items"], json!([]), "no row left at all");
    for id in &ids {
        let (status, problem) = send_as(
            &lab,
            &ben,
            reqwest::Method::POST,
            &format!("{pi_path}/restore"),
            Some(json!({ "snapshot": id })),
        )
        .await;
        assert_eq!(status, 404, "restoring the previous owner's {id}: {problem}");
    }
    assert_eq!(get_as(&lab, &ann, &format!("{pi_path}/snapshots")).await.0, 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !snapshot_dirs(&lab, &pi).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(snapshot_dirs(&lab, &pi), Vec::<String>::new(), "the directories are gone");
    lab.down().await;
}

/// Restore and snapshot jobs, each killed after every step and after its final commit:
/// every job resumes and succeeds, the Pi ends deployed with the live root's host keys,
/// nothing half-built is left beside the root, and each restore leaves exactly one
/// snapshot (the root it replaced) on disk and in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restores_and_snapshots_killed_at_every_step_resume_and_lose_no_snapshot() {
    let _one = shelf::serial().await;
    let mut opts = shelf::options(1, 8, 'x');
    opts.extra_toml = "[snapshots]\nmax_manual = 10\nsweep_seconds = 0.2\n".into();
    let mut lab = shelf::racked(opts).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);
    let body = json!({ "image": bramble::lab::LAB_IMAGES[1].0, "ssh_keys": [lab.ssh_key] });
    let job = lab
        .call(reqwest::Method::POST, &format!("/v1/pis/{pi}/reimage"), Some(body), &[202])
        .await
        .unwrap();
    let done = lab.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(90)).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let plan = with_crash_plan(&mut lab).await;
    for at in kill_points(JobKind::Restore) {
        let snaps = operator_snapshots(&lab, &pi).await;
        assert_eq!(snaps.len(), 1, "before a kill at {at:?}: {snaps:?}");
        let (from, image) =
            (snaps[0]["id"].as_str().unwrap().to_string(), snaps[0]["image"].clone());
        let path = format!("/v1/pis/{pi}/restore");
        kill_and_resume(
            &mut lab,
            &plan,
            JobKind::Restore,
            at,
            &path,
            Some(json!({ "snapshot": from })),
        )
        .await;
        assert_eq!(shelf::root_marker(&lab, &pi)["image"], image, "after a kill at {at:?}");
        assert_eq!(shelf::leftovers(&lab, &pi), Vec::<String>::new(), "after a kill at {at:?}");
        let sim = lab.cabling.sim(port).unwrap();
        assert_eq!(
            sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await,
            PiState::Booted,
            "after a kill at {at:?}"
        );
        let p =
            lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await.unwrap();
        assert_eq!(
            (p["state"].as_str(), &p["image"]),
            (Some("deployed"), &image),
            "after a kill at {at:?}"
        );
        assert_eq!(p["ssh_host_keys"], shelf::live_host_keys(&lab, &pi), "after a kill at {at:?}");
        let snaps = operator_snapshots(&lab, &pi).await;
        assert_eq!(snaps.len(), 1, "after a kill at {at:?}: {snaps:?}");
        assert_ne!(snaps[0]["id"].as_str(), Some(from.as_str()), "after a kill at {at:?}");
        assert_eq!(
            snapshot_dirs(&lab, &pi),
            [snaps[0]["id"].as_str().unwrap().to_string()],
            "after a kill at {at:?}"
        );
    }
    for (i, at) in kill_points(JobKind::Snapshot).into_iter().enumerate() {
        let path = format!("/v1/pis/{pi}/snapshots");
        let done = kill_and_resume(&mut lab, &plan, JobKind::Snapshot, at, &path, None).await;
        let snaps = operator_snapshots(&lab, &pi).await;
        assert_eq!(snaps.len(), 2 + i, "after a kill at {at:?}: {snaps:?}");
        let id = bramble::snapshots::snapshot_of_job(&done.id);
        assert!(
            snaps.iter().any(|s| s["id"] == id.as_str() && s["reason"] == "manual"),
            "{snaps:?}"
        );
        let mut ids: Vec<String> =
            snaps.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        assert_eq!(snapshot_dirs(&lab, &pi), ids, "after a kill at {at:?}");
    }
    lab.down().await;
}

/// The path a simulated Pi last checked its NFS root at (from its `nfsroot=`).
fn last_nfs_path(sim: &bramble_lab::pisim::PiSim) -> Option<String> {
    sim.status().timeline.iter().rev().find_map(|e| match &e.event {
        bramble_lab::pisim::Event::NfsCheck { path, .. } => Some(path.clone()),
        _ => None,
    })
}

/// Rescue and unrescue (asked as `unrescue`, then as `reboot`, in turn), each killed after
/// every step and after its final commit, on one deployed Pi of two: every job resumes
/// and succeeds; in rescue the Pi boots its rescue root (its simulator checks hostname and
/// key there) and after it its own root again; the Pi's own root is never changed; the
/// rescue root and its export are gone after each unrescue. In rescue, both of the Pi's
/// exports answer only it: the neighbouring Pi's `nfs-ls` of either is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rescue_and_unrescue_killed_at_every_step_leave_the_pis_root_alone() {
    let _one = shelf::serial().await;
    let mut lab = shelf::racked(shelf::options(2, 31, 'r')).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let pis = shelf::pi_ports(&lab).await;
    let ((pi, port), (_, neighbour_port)) = (pis[0].clone(), pis[1].clone());
    let roots = lab.opts.state_dir.join("images/roots");
    let own = roots.join(&pi);
    let rescue_root = roots.join(format!("{pi}_rescue"));
    let untouched = bramble_tests::rescue::tree_state(&own);
    let shown = lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await;
    let address = shown.unwrap()["storage_ip"].as_str().unwrap().to_string();
    let (own_path, rescue_path) = (format!("/export/{address}"), format!("/rescue/{address}"));
    let plan = with_crash_plan(&mut lab).await;
    let leaving = kill_points(JobKind::Unrescue);
    for (i, at) in kill_points(JobKind::Rescue).into_iter().enumerate() {
        let body = json!({ "ssh_keys": [lab.ssh_key] });
        let path = format!("/v1/pis/{pi}/rescue");
        kill_and_resume(&mut lab, &plan, JobKind::Rescue, at, &path, Some(body)).await;
        let p = lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await;
        assert_eq!(p.unwrap()["state"], "rescue", "rescue killed at {at:?}");
        let sim = lab.cabling.sim(port).unwrap();
        let booted = sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await;
        assert_eq!(booted, PiState::Booted, "rescue killed at {at:?}");
        assert_eq!(last_nfs_path(&sim).as_deref(), Some(rescue_path.as_str()), "{at:?}");
        assert!(rescue_root.join("etc/bramble/root.json").is_file(), "{at:?}");
        let fstab = std::fs::read_to_string(rescue_root.join("etc/fstab")).unwrap();
        assert!(fstab.contains(&format!(":{own_path} /mnt/root nfs ")), "{fstab}");
        assert_eq!(bramble_tests::rescue::tree_state(&own), untouched, "rescue killed at {at:?}");

        if i == 0 {
            // Only the Pi itself may mount either of its roots: the neighbour asks its
            // own `.1` (the same server) for them and is refused.
            let neighbour = lab.cabling.sim(neighbour_port).unwrap();
            let n_server = neighbour.status().timeline.iter().rev().find_map(|e| match &e.event {
                bramble_lab::pisim::Event::NfsCheck { server, .. } => Some(server.to_string()),
                _ => None,
            });
            let n_server = n_server.expect("the neighbour checked its root");
            let (ns, n_ns) = (sim.config().netns.clone(), neighbour.config().netns.clone());
            let server = {
                let ip: std::net::Ipv4Addr = address.parse().unwrap();
                std::net::Ipv4Addr::from(u32::from(ip) - 1).to_string()
            };
            for export in [&own_path, &rescue_path] {
                let mine = bramble_tests::rescue::nfs_ls(&ns, &server, export).await;
                assert!(mine.as_ref().is_ok_and(|l| l.contains("etc")), "{export}: {mine:?}");
                let theirs = bramble_tests::rescue::nfs_ls(&n_ns, &n_server, export).await;
                assert!(theirs.is_err(), "the neighbour listed {export}: {theirs:?}");
            }
        }

        let leave_at = leaving[i];
        let path = if i % 2 == 0 { "unrescue" } else { "reboot" };
        let path = format!("/v1/pis/{pi}/{path}");
        kill_and_resume(&mut lab, &plan, JobKind::Unrescue, leave_at, &path, Some(json!({}))).await;
        let p = lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await;
        assert_eq!(p.unwrap()["state"], "deployed", "unrescue killed at {leave_at:?}");
        let booted = sim.wait_for(Duration::from_secs(30), |s| *s == PiState::Booted).await;
        assert_eq!(booted, PiState::Booted, "unrescue killed at {leave_at:?}");
        assert_eq!(last_nfs_path(&sim).as_deref(), Some(own_path.as_str()), "{leave_at:?}");
        let left: Vec<String> = ["", ".new", ".journal"]
            .iter()
            .map(|s| format!("{pi}_rescue{s}"))
            .filter(|n| roots.join(n).exists())
            .collect();
        assert_eq!(left, Vec::<String>::new(), "unrescue killed at {leave_at:?}");
        let exports =
            std::fs::read_to_string(lab.opts.state_dir.join("ganesha-exports/exports.conf"))
                .unwrap_or_default();
        assert_eq!(exports.matches("%include").count(), 2, "two Pis, two exports: {exports}");
        assert_eq!(bramble_tests::rescue::tree_state(&own), untouched, "{leave_at:?}");
    }
    lab.down().await;
}
