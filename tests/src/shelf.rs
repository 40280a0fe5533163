//! Helpers for tests on a virtual shelf ([`bramble::lab::Lab`]): fast timings, a racked
//! and optionally deployed shelf, customers with their own tokens, and checks of a
//! Pi's root on disk.
//!
//! Labs are heavy (nfs-ganesha, a shelf of simulated Pis booting at once), so every test
//! takes [`serial`] first, which also holds `flock /tmp/bramble-lab.lock` so that labs of
//! other test processes on the machine wait too; their servers live in namespaces of
//! their own.

use std::path::PathBuf;
use std::time::Duration;

use bramble::jobs::model::JobState;
use bramble::lab::{LAB_IMAGES, Lab, LabOptions};
use bramble::lifecycle::PiState;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

static ONE_LAB: Mutex<()> = Mutex::const_new(());

/// The machine-wide lock file of lab tests (`flock(1)` takes the same lock).
const MACHINE_LOCK: &str = "/tmp/bramble-lab.lock";

/// A lab test's turn: this process's lock and the machine's, released on drop.
pub struct LabTurn {
    _process: MutexGuard<'static, ()>,
    _machine: std::fs::File,
}

/// Serialises tests that bring up a lab, in this process and on the machine (and sends
/// logs to stderr when `BRAMBLE_LOG` is set, e.g. `BRAMBLE_LOG=info`).
pub async fn serial() -> LabTurn {
    if let Ok(filter) = std::env::var("BRAMBLE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let process = ONE_LAB.lock().await;
    let machine = tokio::task::spawn_blocking(|| {
        let file = std::fs::File::options().create(true).append(true).open(MACHINE_LOCK)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .expect("lock task")
    .unwrap_or_else(|e| panic!("flock {MACHINE_LOCK}: {e}"));
    LabTurn { _process: process, _machine: machine }
}

/// A lowercase, process-unique link prefix (letters only, as the lab requires).
pub fn prefix(tag: char) -> String {
    let mut n = std::process::id();
    let mut s = String::from(tag);
    for _ in 0..4 {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    s
}

/// A lab of `pis` Pis with test timings, on storage addresses from `10.108.<net>.0/24`.
/// (The kill-after-every-step tests power-cycle one Pi dozens of times in minutes, so
/// `[power] max_cycles` is off here; `orchestrator/tests/api.rs` tests the limit.)
pub fn options(pis: u16, net: u8, tag: char) -> LabOptions {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bramble-e2e-{}-{tag}", std::process::id()));
    let mut o = LabOptions::new(pis, &dir);
    o.prefix = prefix(tag);
    o.shelf = "e2e".into();
    o.listen = "127.0.0.1:0".parse().expect("address");
    o.storage_supernet = format!("10.108.{net}.0/24");
    o.pi.dhcp_interval = Duration::from_secs(1);
    o.jobs_toml = "lease_seconds = 2\npoll_interval_ms = 50\nrack_group_size = 4\nrack_group_pause_ms = 200\n\
                   rack_await_seconds = 40\nsettle_ms = 200\nboot_timeout_seconds = 40\nmax_parallel = 8\npower_confirm_seconds = 5\n\
                   [power]\nmax_cycles = 0\n"
        .into();
    o.deploy = None;
    o
}

/// Brings a lab up and racks it; every slot must end ready.
pub async fn racked(opts: LabOptions) -> Lab {
    let pis = opts.pis;
    let lab = Lab::up(opts).await.unwrap_or_else(|e| {
        panic!("lab up: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string()))
    });
    let job = lab.rack(Duration::from_secs(120)).await.expect("rack job");
    assert_eq!(job.state, JobState::Succeeded, "rack job: {job:?}");
    let listed = lab.pis().await.expect("pis");
    let ready = listed.iter().filter(|p| p.state == PiState::Ready).count();
    assert_eq!(
        ready,
        usize::from(pis),
        "every slot has a ready Pi; rack job {job:?}; Pis {listed:?}"
    );
    lab
}

/// Deploys `image` to every ready Pi and waits for every job and every simulator.
pub async fn deploy_all(lab: &Lab, image: &str) {
    let jobs = lab.deploy_all(image).await.expect("deploy");
    for job in jobs {
        let done =
            lab.wait_job(job.id.as_str(), Duration::from_secs(120)).await.expect("deploy job");
        assert_eq!(done.state, JobState::Succeeded, "deploy job: {done:?}");
    }
    for (port, sim) in lab.cabling.sims() {
        let state = sim
            .wait_for(Duration::from_secs(30), |s| *s == bramble_lab::pisim::PiState::Booted)
            .await;
        assert_eq!(
            state,
            bramble_lab::pisim::PiState::Booted,
            "Pi in port {port} after deploying {image}"
        );
    }
}

/// The second lab image (the first is what `deploy_all` callers usually start with).
pub fn other_image() -> &'static str {
    LAB_IMAGES[1].0
}

/// A customer token for `customer` (through the API).
pub async fn customer_token(lab: &Lab, customer: &str) -> String {
    let t = lab
        .call(
            reqwest::Method::POST,
            "/v1/tokens",
            Some(json!({ "role": "customer", "customer": customer, "label": "e2e" })),
            &[201],
        )
        .await
        .expect("token");
    t["token"].as_str().expect("token").to_string()
}

/// Gives a Pi to a customer.
pub async fn assign(lab: &Lab, pi: &str, customer: &str) {
    lab.call(
        reqwest::Method::PATCH,
        &format!("/v1/pis/{pi}"),
        Some(json!({ "owner": customer })),
        &[200],
    )
    .await
    .expect("assign");
}

/// A Pi's timeline, oldest first.
pub async fn timeline(lab: &Lab, pi: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = lab
            .call(
                reqwest::Method::GET,
                &format!("/v1/pis/{pi}/events?limit=500&order=asc{cursor}"),
                None,
                &[200],
            )
            .await
            .expect("events");
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

/// The events after the job's last `power.on`: what the Pi did when it booted.
pub fn boot_after_power_on(events: &[Value], job: &str) -> Vec<String> {
    let start = events
        .iter()
        .rposition(|e| e["kind"] == "power.on" && e["job"] == job)
        .unwrap_or_else(|| panic!("job {job} powered on"));
    events[start..]
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap_or(""),
                e["data"]["stage"]["file"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The image and version recorded in a Pi's live root on disk.
pub fn root_marker(lab: &Lab, pi: &str) -> Value {
    let path = lab.opts.state_dir.join("images/roots").join(pi).join("etc/bramble/root.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("root marker")
}

/// The SSH host keys of a Pi's live root on disk, as the API shows them: for every
/// `etc/ssh/ssh_host_*_key.pub` (the shell's glob), the key type its line starts with and
/// the fingerprint the real `ssh-keygen -l -E sha256 -f` prints.
pub fn live_host_keys(lab: &Lab, pi: &str) -> Value {
    let root = lab.opts.state_dir.join("images/roots").join(pi);
    let script = "export LC_ALL=C; for f in \"$1\"/etc/ssh/ssh_host_*_key.pub; do \
                  printf '%s ' \"$(cut -d' ' -f1 \"$f\")\"; ssh-keygen -l -E sha256 -f \"$f\" | cut -d' ' -f2; done";
    let out = std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&root)
        .output()
        .expect("sh");
    assert!(out.status.success(), "ssh-keygen -lf of {}: {out:?}", root.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let keys = text.lines().filter_map(|l| l.split_once(' '));
    keys.map(|(t, fp)| json!({ "type": t, "fingerprint": fp })).collect()
}

/// Leftovers of an unfinished reimage next to a Pi's root.
pub fn leftovers(lab: &Lab, pi: &str) -> Vec<String> {
    let roots = lab.opts.state_dir.join("images/roots");
    ["new", "journal"]
        .iter()
        .map(|s| format!("{pi}.{s}"))
        .filter(|n| roots.join(n).exists())
        .collect()
}

/// A Pi (by inventory id) and the port it is in.
pub async fn pi_ports(lab: &Lab) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = lab
        .pis()
        .await
        .expect("pis")
        .iter()
        .map(|p| (p.id.to_string(), p.port.unwrap_or(0)))
        .collect();
    v.sort_by_key(|(_, port)| *port);
    v
}

/// The kernel a simulated board of `model` reads from a lab (synthetic) root: the 3B
/// falls back to the 32-bit kernel, the Pi 5 takes its own `kernel_2712.img`.
pub fn kernel_of(model: bramble_lab::pisim::PiModel) -> &'static str {
    use bramble_lab::pisim::PiModel;
    match model {
        PiModel::Pi3B => "kernel7.img",
        PiModel::Pi5 => "kernel_2712.img",
        PiModel::Pi3BPlus | PiModel::Pi4 => "kernel8.img",
    }
}
