//! Boot storms on the hand-configured anchor shelf (dnsmasq DHCP + tftpd-hpa +
//! nfs-ganesha, one netns per Pi): every Pi boots, a Pi whose root lacks its key is
//! reported failed, a crashed shelf is cleaned up, and ganesha reloads its exports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_lab::anchor::{AnchorConfig, AnchorShelf};
use bramble_lab::ganesha::{GaneshaOptions, GaneshaServer};
use bramble_lab::pisim::{PiModel, PiSim};
use bramble_lab::storm::{SimPower, StormMode, StormOptions, run_storm};
use bramble_lab::{Netns, unique_name};

/// The anchor and simulators for `pis` mixed Pis, with a 1 s DHCP interval and no
/// reply delay so a test storm takes seconds.
fn fast_shelf(pis: usize) -> (AnchorShelf, SimPower) {
    let mut cfg = AnchorConfig::mixed("bs", pis);
    cfg.dhcp_reply_delay_secs = 0;
    let shelf =
        AnchorShelf::start(cfg).expect("anchor shelf (needs root, dnsmasq, tftpd-hpa, ganesha)");
    let sims = shelf
        .sim_configs()
        .into_iter()
        .map(|mut c| {
            c.dhcp_interval = Duration::from_secs(1);
            Arc::new(PiSim::new(c))
        })
        .collect();
    (shelf, SimPower::new(sims))
}

fn timelines(power: &SimPower) -> String {
    let mut out = String::new();
    for (i, sim) in power.sims().iter().enumerate() {
        out.push_str(&format!("Pi {i} ({:?}):\n", sim.config().model));
        for e in sim.status().timeline {
            out.push_str(&format!("  {:>8.3?} {:?}\n", e.elapsed, e.event));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_mixed_pis_all_boot_in_a_storm() {
    let (shelf, power) = fast_shelf(6);
    let models: Vec<PiModel> = shelf.slots().iter().map(|s| s.model).collect();
    assert!(
        models.contains(&PiModel::Pi3B)
            && models.contains(&PiModel::Pi3BPlus)
            && models.contains(&PiModel::Pi4)
    );
    let opts = StormOptions { mode: StormMode::AllAtOnce, timeout: Duration::from_secs(90) };
    let report = run_storm("anchor", &power, power.watches(), opts).await.expect("storm runs");
    assert_eq!(
        (report.pis, report.booted),
        (6, 6),
        "{report}\n{:?}\n{}\ndnsmasq:\n{}",
        report.failed,
        timelines(&power),
        shelf.dnsmasq_log()
    );
    let all = report.time_to_all_booted.expect("all booted");
    assert!(report.max.is_some_and(|m| m <= all), "{report}");
    assert!(report.p50 <= report.p90 && report.p90 <= report.max, "{report}");

    // A second, staggered storm power-cycles the same Pis and boots them again.
    let opts = StormOptions {
        mode: StormMode::Staggered { group: 2, pause: Duration::from_millis(500) },
        timeout: Duration::from_secs(90),
    };
    let report = run_storm("anchor", &power, power.watches(), opts).await.expect("storm runs");
    assert_eq!(report.booted, 6, "{report}\n{:?}", report.failed);
    for sim in power.sims() {
        assert_eq!(sim.status().counters.boots, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_without_the_customer_key_is_reported_failed() {
    let (shelf, power) = fast_shelf(2);
    let keys = shelf.root_dir(1).join("root/.ssh/authorized_keys");
    std::fs::write(&keys, "ssh-ed25519 AAAAsomeoneelse other@x\n").expect("rewrite keys");
    let opts = StormOptions { mode: StormMode::AllAtOnce, timeout: Duration::from_secs(60) };
    let report = run_storm("anchor", &power, power.watches(), opts).await.expect("storm runs");
    assert_eq!(report.booted, 1, "{report}\n{:?}\n{}", report.failed, timelines(&power));
    assert_eq!(report.time_to_all_booted, None);
    let [(pi, reason)] = report.failed.as_slice() else {
        panic!("one failure expected: {:?}", report.failed)
    };
    assert_eq!(*pi, 1);
    assert!(reason.contains("authorized_keys lacks the expected key"), "{reason}");
}

fn netns_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/var/run/netns/{name}")).exists()
}

#[test]
fn a_crashed_shelf_is_cleaned_up_by_the_next_run() {
    let shelf = AnchorShelf::start(AnchorConfig::mixed("bsx", 2)).expect("anchor shelf");
    let (dir, ctl) = (shelf.state_dir().to_path_buf(), shelf.anchor_netns().to_string());
    let ganesha_pid: i32 = std::fs::read_to_string(dir.join("ganesha/ganesha.pid"))
        .expect("ganesha pid file")
        .trim()
        .parse()
        .expect("pid");
    // Simulate a crash: the shelf is never dropped and its owner is a dead process.
    std::mem::forget(shelf);
    let mut dead = std::process::Command::new("true").spawn().expect("spawn true");
    let dead_pid = dead.id();
    dead.wait().expect("reap");
    std::fs::write(dir.join("owner.pid"), dead_pid.to_string()).expect("fake owner");

    assert!(AnchorShelf::cleanup_stale("bsx") >= 1);
    assert!(!dir.exists(), "state dir {} left behind", dir.display());
    assert!(!netns_exists(&ctl), "namespace {ctl} left behind");
    let start = Instant::now();
    while running(ganesha_pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(ganesha_pid), "ganesha {ganesha_pid} still running");
}

/// Alive and not a zombie (the forgotten shelf's children are ours to reap, so a
/// killed one lingers as a zombie; after a real crash init reaps them).
fn running(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
}

fn nfs_cat(ns: &Netns, url: &str) -> Result<String, String> {
    let out = ns.command("nfs-cat").arg(url).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn ganesha_serves_the_included_exports_and_reloads_on_sighup() {
    let ns = Netns::new(&unique_name("bs")).expect("netns");
    let dir = tempfile::Builder::new().prefix("bs-ganesha").tempdir().expect("tempdir");
    let export = |id: u32, name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        std::fs::write(path.join("hello"), format!("from {name}\n")).expect("write");
        format!(
            "EXPORT {{ Export_Id = {id}; Path = \"{p}\"; Pseudo = \"{p}\"; Protocols = 3, 4; \
             Access_Type = RO; Squash = No_Root_Squash; FSAL {{ Name = VFS; }} }}\n",
            p = path.display()
        )
    };
    let include = dir.path().join("exports.conf");
    std::fs::write(&include, export(1, "one")).expect("exports");
    let mut opts = GaneshaOptions::new(dir.path().join("state"), &include);
    opts.netns = Some(ns.name().to_string());
    let mut server = GaneshaServer::start(opts).expect("ganesha starts");
    let url = |name: &str| format!("nfs://127.0.0.1{}/hello", dir.path().join(name).display());
    assert_eq!(nfs_cat(&ns, &url("one")).as_deref(), Ok("from one\n"));
    assert!(nfs_cat(&ns, &url("two")).is_err(), "not exported yet");

    std::fs::write(&include, format!("{}{}", export(1, "one"), export(2, "two"))).expect("exports");
    server.reload().expect("reload");
    let start = Instant::now();
    let mut got = nfs_cat(&ns, &url("two"));
    while got.is_err() && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        got = nfs_cat(&ns, &url("two"));
    }
    assert_eq!(
        got.as_deref(),
        Ok("from two\n"),
        "log: {}",
        std::fs::read_to_string(server.log_file()).unwrap_or_default()
    );

    let pid = std::fs::read_to_string(server.pid_file()).expect("pid file");
    drop(server);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap_or_default();
    assert!(!comm.starts_with("ganesha"), "ganesha still running after drop");
}
