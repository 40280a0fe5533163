//! `bramble doctor`, the real binary, against a virtual shelf of one (unracked) Pi whose
//! controller runs as a process (`bramble-e2e lab controller`), from inside the lab's
//! controller namespace where its DHCP, TFTP, NFS server and switch live: a healthy lab
//! passes every check but the storage trunk (the lab's storage links are veth pairs; this
//! kernel has no 802.1Q), then each broken setup fails with its own verdict and exit 1:
//! switch silent, wrong stored credentials, UDP 67 taken by another process, no NFS
//! server. And a fresh install passes `--offline` with the default configuration.

use std::path::Path;
use std::process::Output;

use bramble::lab::{ControllerMode, Lab};
use bramble_tests::shelf;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_bramble-e2e");

/// Runs `bramble doctor --json` with `args`, in namespace `netns` if given.
async fn doctor(netns: Option<&str>, args: &[&str]) -> (i32, Vec<Value>, Output) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, EXE]);
            c
        }
        None => tokio::process::Command::new(EXE),
    };
    let out = cmd
        .args(["doctor", "--json"])
        .args(args)
        .env("BRAMBLE_LOG", "error")
        .output()
        .await
        .expect("run bramble doctor");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor's JSON: {e}; stdout {}; stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), rows, out)
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no row {name}: {rows:#?}"))
}

fn verdict<'a>(rows: &'a [Value], name: &str) -> &'a str {
    row(rows, name)["verdict"].as_str().unwrap_or("")
}

fn failing(rows: &[Value]) -> Vec<&str> {
    rows.iter().filter(|r| r["verdict"] == "fail").filter_map(|r| r["name"].as_str()).collect()
}

async fn in_lab(lab: &Lab, config: &Path, extra: &[&str]) -> (i32, Vec<Value>, Output) {
    let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    doctor(Some(lab.controller_netns()), &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_lab_and_names_each_broken_part() {
    let _turn = shelf::serial().await;
    let mut o = shelf::options(1, 51, 'q');
    o.controller = ControllerMode::Process { exe: EXE.into() };
    let mut lab = Lab::up(o).await.unwrap_or_else(|e| {
        panic!("lab up: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string()))
    });
    let config = lab.opts.state_dir.join("controller.toml");

    // Healthy: only the trunk fails (no 802.1Q here; the lab uses veth pairs).
    let (code, rows, _) = in_lab(&lab, &config, &[]).await;
    assert_eq!(failing(&rows), ["trunk"], "{rows:#?}");
    assert_eq!(code, 1);
    for name in [
        "config",
        "database",
        "nfs",
        "switch lab-switch",
        "port dhcp",
        "port tftp",
        "port api",
        "image store",
        "disk",
        "clock",
    ] {
        assert_eq!(verdict(&rows, name), "ok", "{name}: {rows:#?}");
    }
    let tftp = row(&rows, "port tftp")["detail"].as_str().unwrap_or("");
    assert!(
        tftp.contains("this controller")
            && tftp.contains(&format!("pid {}", lab.controller_pid().unwrap())),
        "{tftp}"
    );
    let (code, rows, _) = in_lab(&lab, &config, &["--skip", "trunk"]).await;
    assert_eq!((code, failing(&rows)), (0, vec![]), "{rows:#?}");

    // The switch goes silent.
    lab.switch.set_silent(true);
    let (code, rows, _) = in_lab(&lab, &config, &["--skip", "trunk"]).await;
    lab.switch.set_silent(false);
    assert_eq!((code, failing(&rows)), (1, vec!["switch lab-switch"]), "{rows:#?}");
    let detail = row(&rows, "switch lab-switch")["detail"].as_str().unwrap_or("");
    assert!(detail.starts_with("no answer from lab-switch"), "{detail}");

    // Wrong stored credentials: a v2c agent ignores a wrong community, and doctor says
    // that is what silence may mean; the community itself is never printed.
    let db = lab.opts.state_dir.join("bramble.db");
    let wrong = r#"UPDATE switch_credentials SET credentials = '{"version":"v2c","community":"wrong-SECRET-community"}'"#;
    let status =
        std::process::Command::new("sqlite3").arg(&db).arg(wrong).status().expect("sqlite3");
    assert!(status.success());
    let (code, rows, out) = in_lab(&lab, &config, &["--skip", "trunk"]).await;
    assert_eq!((code, failing(&rows)), (1, vec!["switch lab-switch"]), "{rows:#?}");
    let detail = row(&rows, "switch lab-switch")["detail"].as_str().unwrap_or("");
    assert!(detail.contains("community is wrong"), "{detail}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SECRET"), "a credential was printed");

    // UDP 67 taken by another process (this test) in the namespace doctor checks.
    lab.stop_controller().await.expect("stop the controller");
    let squatter = lab
        .in_controller_netns(async { std::net::UdpSocket::bind("0.0.0.0:67") })
        .await
        .expect("in the namespace")
        .expect("bind UDP 67");
    let (code, rows, _) = in_lab(&lab, &config, &["--skip", "trunk", "--skip", "switch"]).await;
    drop(squatter);
    assert_eq!((code, failing(&rows)), (1, vec!["port dhcp"]), "{rows:#?}");
    let detail = row(&rows, "port dhcp")["detail"].as_str().unwrap_or("");
    assert!(detail.ends_with(&format!("(pid {}) holds UDP 67", std::process::id())), "{detail}");

    // No NFS server: the configured pid file names a process that is gone.
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let dead = gone.id();
    gone.wait().expect("wait");
    let pid_file = lab.opts.state_dir.join("doctor-gone.pid");
    std::fs::write(&pid_file, format!("{dead}\n")).expect("pid file");
    let text = std::fs::read_to_string(&config).expect("config");
    let real = lab.opts.state_dir.join("ganesha/ganesha.pid");
    let broken = lab.opts.state_dir.join("doctor-nfs.toml");
    std::fs::write(
        &broken,
        text.replace(&real.display().to_string(), &pid_file.display().to_string()),
    )
    .expect("config");
    let (code, rows, _) = in_lab(&lab, &broken, &["--skip", "trunk", "--skip", "switch"]).await;
    assert_eq!((code, failing(&rows)), (1, vec!["nfs"]), "{rows:#?}");
    let detail = row(&rows, "nfs")["detail"].as_str().unwrap_or("");
    assert!(detail.contains("not running") && detail.contains(&dead.to_string()), "{detail}");
    lab.down().await;
}

/// What the package test runs in its chroot: a fresh install, default configuration,
/// no database yet, netboot off.
#[tokio::test]
async fn a_fresh_install_passes_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--offline", "--state-dir", state.to_str().unwrap(), "--listen", &listen];
    let (code, rows, _) = doctor(None, &args).await;
    assert_eq!((code, failing(&rows)), (0, vec![]), "{rows:#?}");
    assert_eq!(verdict(&rows, "database"), "warn");
    assert!(
        row(&rows, "database")["advice"].as_str().unwrap_or("").contains("created at first start")
    );
    assert_eq!(verdict(&rows, "trunk"), "skip");
    assert!(!state.exists(), "doctor created the state directory");
    // The same, with the API port taken by someone else: a fail, exit 1.
    let held = std::net::TcpListener::bind(&listen).expect("hold the API port");
    let (code, rows, _) = doctor(None, &args).await;
    drop(held);
    assert_eq!((code, failing(&rows)), (1, vec!["port api"]), "{rows:#?}");
}

/// `bramble serve` runs the local checks at start, logs what is not ok with its advice,
/// and starts anyway.
#[tokio::test]
async fn serve_logs_its_preflight_warnings_and_starts() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = std::process::Command::new(EXE)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(dir.path().join("state"))
        .env("BRAMBLE_LOG", "warn")
        .env("BRAMBLE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bramble serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bramble serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.kill().expect("kill");
    serve.wait().expect("wait");
    let mut log = String::new();
    serve.stderr.take().expect("stderr").read_to_string(&mut log).expect("read log");
    let warned = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "WARN" && l["fields"]["check"] == "database");
    let warned = warned.unwrap_or_else(|| panic!("no preflight warning for the database: {log}"));
    assert!(
        warned["fields"]["message"].as_str().unwrap_or("").contains("no database at"),
        "{warned}"
    );
    assert!(
        warned["fields"]["advice"].as_str().unwrap_or("").contains("created at first start"),
        "{warned}"
    );
}
