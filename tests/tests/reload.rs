//! `bramble serve` reloads its config file on SIGHUP (docs/configuration.md): the real
//! binary on SQLite, two webhook receivers, and `kill -HUP`. Live keys take effect (the
//! webhook URL, the log filter, a `[power]` limit, job timings), a changed `listen` is
//! reported as needing a restart (log line and metric) while the old address keeps
//! serving, and an invalid file is refused and counted with nothing changed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bramble_tests::webhooks::Receiver;
use serde_json::{Value, json};

const SECRET: &str = "reload-test-secret-0123456789";

fn config_file(port: u16, dir: &Path, hook: &str, filter: &str, max_cycles: u32) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
state_dir = "{dir}"

[cluster]
name = "reload-test"

[switches]
reconcile_seconds = 0
snmp_timeout_ms = 100
snmp_retries = 0

[jobs]
boot_timeout_seconds = {boot}

[power]
max_cycles = {max_cycles}

[webhooks]
url = "{hook}"
secret = "{SECRET}"
kinds = ["switch.*"]

[log]
filter = "{filter}"
"#,
        dir = dir.display(),
        boot = if max_cycles == 0 { 180 } else { 60 },
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it holds, for at most `secs` seconds.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, secs: u64, mut check: F) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hup(pid: u32) {
    let s = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(s.success(), "kill -HUP {pid}");
}

/// The JSON body of a response.
async fn body(sent: impl Future<Output = reqwest::Result<reqwest::Response>>) -> Value {
    sent.await.unwrap().json().await.unwrap()
}

fn registered(r: &Receiver) -> usize {
    r.deliveries().iter().filter(|d| d.kind.as_deref() == Some("switch.registered")).count()
}

#[tokio::test]
async fn sighup_applies_live_keys_reports_restart_keys_and_refuses_a_bad_file() {
    let started = Instant::now();
    let exe = env!("CARGO_BIN_EXE_bramble-e2e");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bramble.toml");
    let stderr_path = dir.path().join("stderr.log");
    let (a, b) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    let (port, new_port) = (free_port(), free_port());
    std::fs::write(&path, config_file(port, dir.path(), &a.url(), "warn", 0)).unwrap();

    let out = std::process::Command::new(exe)
        .args(["token", "create", "--role", "operator", "--config"])
        .arg(&path)
        .env_remove("BRAMBLE_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut serve = tokio::process::Command::new(exe)
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("BRAMBLE_LOG")
        .env_remove("BRAMBLE_LOG_FORMAT")
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = serve.id().unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let http = bramble::tls::client::http();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let post =
        |path: &str, body: Value| http.post(url(path)).bearer_auth(&token).json(&body).send();
    let metrics = async || -> String {
        match http.get(url("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    eventually("the controller to serve", 20, async || {
        http.get(url("/healthz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;

    let switch = |name: &str| {
        json!({"name": name, "address": "192.0.2.10:161", "trunk_port": 49,
            "credentials": {"version": "v2c", "community": "private-community"}})
    };
    assert_eq!(post("/v1/switches", switch("sw1")).await.unwrap().status(), 201);
    eventually("sw1 at receiver A", 10, async || registered(&a) == 1).await;
    let shelf = body(post(
        "/v1/shelves",
        json!({"name": "rack1", "switch": "sw1", "first_port": 1, "last_port": 4}),
    ))
    .await;
    let pi = body(post(
        "/v1/pis",
        json!({"serial": "00000001", "mac": "b8:27:eb:00:00:01", "model": "3b",
            "slot": shelf["slots"][0]["id"]}),
    ))
    .await;
    let pi = pi["id"].as_str().unwrap().to_string();
    let ready = http
        .patch(url(&format!("/v1/pis/{pi}")))
        .bearer_auth(&token)
        .json(&json!({"state": "ready", "owner": "cust-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let power_on = || post(&format!("/v1/pis/{pi}/power-on"), json!({}));
    assert_eq!(power_on().await.unwrap().status(), 202, "[power] max_cycles = 0: no limit");
    assert!(!stderr().contains(" INFO "), "the file's filter `warn` at start:\n{}", stderr());

    // The new file: another receiver, filter, power limit and boot timeout (live), and
    // another listen address (restart).
    std::fs::write(&path, config_file(new_port, dir.path(), &b.url(), "info", 1)).unwrap();
    hup(pid);
    eventually("the reload to be counted", 10, async || {
        metrics().await.contains("bramble_config_reloads_total{result=\"applied\"} 1\n")
    })
    .await;
    let m = metrics().await;
    assert!(m.contains("bramble_config_restart_pending 1\n"), "{m}");
    let log = stderr();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap_or_else(|| panic!("no reload line:\n{log}"));
    assert!(line.contains("restart_needed=listen"), "{line}");
    for key in ["jobs.boot_timeout_seconds", "webhooks.url", "power.max_cycles", "log.filter"] {
        assert!(line.contains(key), "{key} applied: {line}");
    }

    let list = body(http.get(url("/v1/controllers")).bearer_auth(&token).send()).await;
    assert_eq!(list["items"][0]["restart_pending"], json!(["listen"]), "{list}");

    // The webhook URL: new events go to B, none to A.
    assert_eq!(post("/v1/switches", switch("sw2")).await.unwrap().status(), 201);
    eventually("sw2 at receiver B", 10, async || registered(&b) == 1).await;
    assert_eq!(registered(&a), 1, "A got nothing after the reload: {:?}", a.deliveries());
    // The log filter: info lines now show.
    eventually("an info line", 5, async || stderr().contains("webhook delivered")).await;
    // The power limit: one cycle in the window is now the most.
    assert_eq!(power_on().await.unwrap().status(), 429, "[power] max_cycles = 1 applied");
    // `listen` needs a restart: the old address serves, the new one does not.
    assert!(std::net::TcpStream::connect(("127.0.0.1", new_port)).is_err());

    // An invalid file: refused, counted, and the running configuration keeps serving.
    std::fs::write(&path, "[power]\nmax_cycles = \"many\"\n").unwrap();
    hup(pid);
    eventually("the rejected reload to be counted", 10, async || {
        metrics().await.contains("bramble_config_reloads_total{result=\"rejected\"} 1\n")
    })
    .await;
    let log = stderr();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("configuration reload rejected")
            && l.contains("bramble.toml")),
        "{log}"
    );
    let m = metrics().await;
    assert!(m.contains("bramble_config_reloads_total{result=\"applied\"} 1\n"), "{m}");
    assert!(m.contains("bramble_config_restart_pending 1\n"), "{m}");
    assert_eq!(post("/v1/switches", switch("sw3")).await.unwrap().status(), 201);
    eventually("sw3 at receiver B", 10, async || registered(&b) == 2).await;
    assert_eq!(registered(&a), 1);

    let term = std::process::Command::new("kill").arg(pid.to_string()).status().unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(20), serve.wait()).await.unwrap();
    assert!(status.unwrap().success(), "{}", stderr());
    eprintln!("reload test took {:.1} s", started.elapsed().as_secs_f64());
}
