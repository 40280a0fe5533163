//! Killing `bramble serve` with SIGKILL during a burst of writes loses nothing that was
//! acknowledged: every Pi and job the API answered for is there after a restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bramble");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(state_dir: &std::path::Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(state_dir)
        .env("BRAMBLE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bramble serve")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("controller did not become healthy");
}

/// Every item of a paginated list.
async fn collect(http: &reqwest::Client, token: &str, url: &str) -> Vec<Value> {
    let mut all = vec![];
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{url}{cursor}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_write_burst_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "operator", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("brm_"), "token create printed {token:?}");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(dir.path(), port);
    let http = bramble::tls::ClientTls::default()
        .reqwest_builder()
        .unwrap()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_healthy(&http, &base).await;

    // 8 writers register Pis as fast as they can; each remembers what was acknowledged.
    let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = vec![];
    for w in 0..8u32 {
        let (http, base, token, count) =
            (http.clone(), base.clone(), token.clone(), acked_so_far.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = vec![];
            for i in 0..10_000u32 {
                let serial = format!("{:04x}{:04x}", w, i);
                let r = http
                    .post(format!("{base}/v1/pis"))
                    .bearer_auth(&token)
                    .json(&json!({"serial": serial, "model": "4b"}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        acked.push(
                            r.json::<Value>()
                                .await
                                .map(|v| v["id"].as_str().unwrap_or_default().to_string())
                                .unwrap_or_default(),
                        );
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    // Kill mid-burst, once enough writes were acknowledged to mean something.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_so_far.load(std::sync::atomic::Ordering::Relaxed) < 100 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut acked = vec![];
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    acked.retain(|id| !id.is_empty());
    assert!(acked.len() > 50, "the burst was too small to mean anything: {}", acked.len());

    let mut child = start(dir.path(), port);
    wait_healthy(&http, &base).await;
    let found: std::collections::HashSet<String> =
        collect(&http, &token, &format!("{base}/v1/pis?limit=500"))
            .await
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !found.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged Pis lost after SIGKILL: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // Every acknowledged registration also has its audit event.
    let events =
        collect(&http, &token, &format!("{base}/v1/events?kind=pi.registered&limit=500")).await;
    let with_event: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e["pi"].as_str()).collect();
    assert!(
        acked.iter().all(|id| with_event.contains(id.as_str())),
        "a registered Pi has no audit event"
    );
    assert_eq!(with_event.len(), found.len(), "Pis and registration events disagree");
    eprintln!("{} acknowledged writes, all present after SIGKILL", acked.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
