//! Saying why a Pi did not boot, on a virtual shelf of simulated Pis: one Pi whose root
//! lost its kernels, one whose storage link carries no data (PoE on, nothing heard: a
//! cable or spanning-tree fault). Their reboots fail with the stage in the job's
//! messages (operator details for operators only), `GET /v1/pis/{id}` shows the last
//! boot, `bramble shelf show`'s status read flags them, and `/metrics` counts the
//! diagnoses and times the boot phases of the Pis that did boot.

use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::LAB_IMAGES;
use bramble_tests::shelf;
use reqwest::Method;
use serde_json::{Value, json};

const JOB_LIMIT: Duration = Duration::from_secs(90);

/// Deletes every `kernel*.img` of the Pi's live root (the boot dir and the root's top).
fn delete_kernels(lab: &bramble::lab::Lab, pi: &str) -> Vec<String> {
    let root = lab.opts.state_dir.join("images/roots").join(pi);
    let mut gone = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() && dir == root && name.starts_with("boot") {
                dirs.push(path);
            } else if kind.is_file() && name.starts_with("kernel") && name.ends_with(".img") {
                std::fs::remove_file(&path).expect("remove kernel");
                gone.push(name);
            }
        }
    }
    gone
}

/// Asks for a reboot as the operator; the job's id.
async fn reboot(lab: &bramble::lab::Lab, pi: &str) -> String {
    let path = format!("/v1/pis/{pi}/reboot");
    let job = lab.call(Method::POST, &path, Some(json!({})), &[202]).await.expect("reboot");
    job["id"].as_str().expect("job id").to_string()
}

async fn get(lab: &bramble::lab::Lab, path: &str, token: &str) -> Value {
    let resp = bramble::tls::client::http()
        .get(format!("{}{path}", lab.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "GET {path}");
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_boots_say_where_they_stopped_in_jobs_the_pi_the_shelf_and_metrics() {
    let _one = shelf::serial().await;
    let began = Instant::now();
    let mut opts = shelf::options(2, 41, 'd');
    opts.jobs_toml =
        opts.jobs_toml.replace("boot_timeout_seconds = 40", "boot_timeout_seconds = 16");
    let lab = shelf::racked(opts).await;
    shelf::deploy_all(&lab, LAB_IMAGES[0].0).await;
    println!("racked and deployed: {:.1?}", began.elapsed());
    let pis = shelf::pi_ports(&lab).await;
    let ((missing, _), (silent, silent_port)) = (pis[0].clone(), pis[1].clone());
    shelf::assign(&lab, &missing, "ann").await;
    let ann = shelf::customer_token(&lab, "ann").await;

    // A root without kernels; a storage link that carries nothing (the controller's end
    // down) while PoE stays on.
    let gone = delete_kernels(&lab, &missing);
    assert!(!gone.is_empty(), "the lab root has kernels to delete");
    let status = lab.call(Method::GET, "/v1/shelves/e2e/status", None, &[200]).await.unwrap();
    let vlan = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == silent_port)
        .and_then(|s| s["vlan"].as_u64())
        .expect("the silent Pi's vlan");
    let link = format!("{}{vlan}", lab.opts.prefix);
    let down = std::process::Command::new("ip")
        .args(["-n", lab.controller_netns(), "link", "set", &link, "down"])
        .status()
        .expect("ip");
    assert!(down.success(), "ip link set {link} down");

    let t = Instant::now();
    let (a, b) = (reboot(&lab, &missing).await, reboot(&lab, &silent).await);
    let (done_a, done_b) = tokio::join!(lab.wait_job(&a, JOB_LIMIT), lab.wait_job(&b, JOB_LIMIT));
    let (done_a, done_b) = (done_a.unwrap(), done_b.unwrap());
    println!("both reboots failed after {:.1?}", t.elapsed());

    // The missing kernel: named, with the stage, for both audiences.
    assert_eq!(
        (done_a.state, done_a.current_step.as_deref()),
        (JobState::Failed, Some("await-boot")),
        "{done_a:?}"
    );
    let operator = done_a.operator_message.clone().unwrap_or_default();
    assert!(
        operator.starts_with("step await-boot: tftp_file_missing: TFTP stopped at ")
            && operator.contains("kernel"),
        "{operator}"
    );
    let customer = done_a.customer_message.clone().unwrap_or_default();
    assert!(customer.contains("is missing from its system's boot files"), "{customer}");
    let as_ann = get(&lab, &format!("/v1/jobs/{a}"), &ann).await;
    assert_eq!(as_ann["customer_message"], customer.as_str());
    assert!(as_ann["operator_message"].is_null() && as_ann["last_error"].is_null(), "{as_ann}");
    let pi = get(&lab, &format!("/v1/pis/{missing}"), &lab.token).await;
    assert_eq!(
        (pi["last_boot"]["stage"].as_str(), pi["last_boot"]["diagnosis"].as_str()),
        (Some("tftp"), Some("tftp_file_missing")),
        "{pi}"
    );
    assert!(pi["last_boot"]["file"].as_str().unwrap_or_default().contains("kernel"), "{pi}");
    let mine = get(&lab, &format!("/v1/pis/{missing}"), &ann).await;
    assert_eq!(mine["last_boot"]["diagnosis"], "tftp_file_missing");
    assert!(mine["last_boot"]["operator_message"].is_null() && mine["last_boot"]["poe"].is_null());

    // The silent Pi: no DHCP, with what the port's PoE read (powered and drawing).
    assert_eq!(done_b.state, JobState::Failed, "{done_b:?}");
    let operator = done_b.operator_message.clone().unwrap_or_default();
    assert!(
        operator.starts_with("step await-boot: no_dhcp: no DHCP from the Pi within 16 s"),
        "{operator}"
    );
    assert!(operator.contains("(power-cycled once)"), "{operator}");
    assert!(
        operator.contains(&format!(
            "port {silent_port} PoE admin on, detection delivering_power, draw "
        )),
        "{operator}"
    );
    let customer = done_b.customer_message.clone().unwrap_or_default();
    assert!(
        customer.contains("never asked the network")
            && !customer.contains(&format!("port {silent_port}"))
            && !customer.contains("PoE"),
        "{customer}"
    );
    let pi = get(&lab, &format!("/v1/pis/{silent}"), &lab.token).await;
    assert_eq!(
        (pi["last_boot"]["stage"].as_str(), pi["last_boot"]["diagnosis"].as_str()),
        (Some("power_on"), Some("no_dhcp")),
        "{pi}"
    );
    assert_eq!(pi["last_boot"]["poe"]["detection"], "delivering_power", "{pi}");

    // The shelf's status (what `bramble shelf show` and /ui draw) carries both.
    let status = lab.call(Method::GET, "/v1/shelves/e2e/status", None, &[200]).await.unwrap();
    let mut shown: Vec<(String, String)> = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let boot = &s["pi"]["last_boot"];
            (
                s["pi"]["id"].as_str().unwrap().to_string(),
                boot["diagnosis"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    shown.sort();
    let mut want = vec![
        (missing.clone(), "tftp_file_missing".to_string()),
        (silent.clone(), "no_dhcp".to_string()),
    ];
    want.sort();
    assert_eq!(shown, want, "{status}");

    // Metrics: the two failures and the deploys' boots, timed per model.
    let metrics = bramble::tls::client::http()
        .get(format!("{}/metrics", lab.api))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "bramble_boot_diagnoses_total{kind=\"tftp_file_missing\"} 1",
        "bramble_boot_diagnoses_total{kind=\"no_dhcp\"} 1",
        "bramble_boot_diagnoses_total{kind=\"booted\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    for phase in ["discover", "kernel", "booted"] {
        let counted: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("bramble_boot_phase_seconds_count{")
                    && l.contains(&format!("phase=\"{phase}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        // Two deploys reached every phase; the Pi without kernels reached DISCOVER.
        let want = if phase == "discover" { 3.0 } else { 2.0 };
        assert_eq!(counted, want, "phase {phase} in\n{metrics}");
    }
    println!("test: {:.1?}", began.elapsed());
    lab.down().await;
}
