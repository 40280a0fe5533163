//! The operator's shelf view end to end: `GET /v1/shelves/{name}/status` on SQLite and
//! PostgreSQL, the `/ui` page as headless Chromium renders it (the port grid, a flagged
//! slot, a deep-linked boot timeline, a screenshot), and `bramble shelf show --once`.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`); fails, not skips, without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bramble::api::AppState;
use bramble::db::events::NewEvent;
use bramble::ids::{JobId, PiId};
use bramble::jobs::model::JobKind;
use bramble::lifecycle::PiState;
use bramble::model::PowerState;
use bramble::testing::{app_state, test_databases};
use common::{Api, assert_problem};
use serde_json::{Value, json};

const SHELF: &str = "ui-rack";
/// What each of the 8 ports shows, as `state-*` classes.
const SHOWN: [&str; 8] =
    ["ready", "deployed", "failed", "maintenance", "new", "empty", "deploying", "empty"];
/// The flag on port 6; markup in it must reach the page as text.
const FLAG: &str = "no Pi answered DHCP while racking <i>check cable</i>";
const BOOT: [(&str, &str); 5] = [
    ("dhcp.discover", "DHCP DISCOVER received"),
    ("dhcp.offer", "DHCP OFFER of 10.64.0.2 sent"),
    ("tftp.read", "TFTP read of <b>bootcode.bin</b>"),
    ("tftp.early_terminate", "TFTP 1000aaa1/start.elf: client stopped after the size"),
    ("tftp.complete", "TFTP sent bootcode.bin (52456 bytes)"),
];

struct Seeded {
    /// The Pi in each port, `None` for empty ports.
    pis: Vec<Option<PiId>>,
    job: JobId,
}

/// A switch, an 8-port shelf, Pis in several states, a flagged slot, one Pi's boot
/// timeline and another's running reboot.
async fn seed(api: &Api, st: &AppState, op: &str) -> Seeded {
    let r = api
        .post(
            "/v1/switches",
            op,
            json!({"name": "ui-sw", "address": "127.0.0.1:161", "trunk_port": 48,
            "credentials": {"version": "v2c", "community": "ui-community"}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let r = api
        .post(
            "/v1/shelves",
            op,
            json!({"name": SHELF, "switch": "ui-sw", "first_port": 1, "last_port": 8}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let slots: Vec<String> = r.body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let mut pis = Vec::new();
    for (i, shown) in SHOWN.iter().enumerate() {
        if *shown == "empty" {
            pis.push(None);
            continue;
        }
        let serial = format!("1000aaa{}", i + 1);
        let p = api.post("/v1/pis", op, json!({"model": if i % 2 == 0 { "3b" } else { "4b" }, "serial": serial, "slot": slots[i]})).await;
        assert_eq!(p.status.as_u16(), 201, "{:?}", p.body);
        let id = PiId(p.body["id"].as_str().unwrap().to_string());
        let state = PiState::parse(shown).unwrap();
        let failed = (state == PiState::Failed).then_some("await-boot");
        assert!(st.db.set_pi_state(&id, PiState::New, state, failed).await.unwrap());
        st.db
            .set_pi_power(&id, if i == 2 { PowerState::Off } else { PowerState::On })
            .await
            .unwrap();
        pis.push(Some(id));
    }
    st.db
        .q("UPDATE slots SET flag = $1, flagged_at = $2 WHERE id = $3")
        .bind(FLAG)
        .bind(1_700_000_000_000_i64)
        .bind(slots[5].clone())
        .execute(st.db.pool())
        .await
        .unwrap();
    // Port 3's last boot stopped at a missing kernel; port 1's booted.
    let boot = |diagnosis: &str, stage: &str, file: Option<&str>| -> bramble::diagnosis::LastBoot {
        serde_json::from_value(json!({
            "at": 1_700_000_000_000_i64, "job": null, "stage": stage, "diagnosis": diagnosis,
            "file": file, "customer_message": "c", "operator_message": "o <b>x</b>",
            "poe": {"admin_enabled": true, "detection": "delivering_power", "draw_mw": 2300},
            "phases": {"discover_ms": 1000, "kernel_ms": null, "booted_ms": null}
        }))
        .unwrap()
    };
    let failed_boot = boot("tftp_file_missing", "tftp", Some("1000aaa3/kernel8.img"));
    st.db.set_last_boot(pis[2].as_ref().unwrap(), &failed_boot).await.unwrap();
    st.db.set_last_boot(pis[0].as_ref().unwrap(), &boot("booted", "booted", None)).await.unwrap();
    let booted = pis[0].clone().unwrap();
    for (kind, message) in BOOT {
        let actor = kind.split('.').next().unwrap();
        st.db.append_event(&NewEvent::new(kind, actor, message).pi(&booted)).await.unwrap();
    }
    // A later non-boot event must not hide the latest boot stage.
    st.db
        .append_event(&NewEvent::new("pi.note", "controller", "checked by hand").pi(&booted))
        .await
        .unwrap();
    // Port 2: a reboot claimed by a runner and on its third step.
    let busy = pis[1].clone().unwrap();
    let r = api.post(&format!("/v1/pis/{busy}/reboot"), op, json!({})).await;
    assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
    let job = JobId(r.body["id"].as_str().unwrap().to_string());
    let lease = Duration::from_secs(600);
    // Claimed as the controller serving the shelf's switch (the only one that may).
    let runner = st.config.get().cluster.name.clone();
    let claimed = st
        .db
        .claim_job(&runner, &[JobKind::Reboot], lease)
        .await
        .unwrap()
        .expect("the reboot is claimable");
    assert_eq!(claimed.id, job);
    assert!(st.db.advance_job(&job, &runner, 2, lease).await.unwrap());
    Seeded { pis, job }
}

fn check_status_json(v: &Value, seeded: &Seeded) {
    assert_eq!(v["name"], SHELF);
    assert_eq!(v["switch_name"], "ui-sw");
    assert!(v["controller"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    let slots = v["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 8);
    for (i, slot) in slots.iter().enumerate() {
        assert_eq!(slot["port"], i + 1, "slots in port order");
        assert!(slot["vlan"].as_u64().is_some() && slot["storage_ip"].as_str().is_some(), "{slot}");
        let shown = slot["pi"]["state"].as_str().unwrap_or("empty");
        assert_eq!(shown, SHOWN[i], "port {}", i + 1);
        assert_eq!(
            slot["pi"]["id"].as_str(),
            seeded.pis[i].as_ref().map(|p| p.as_str()),
            "port {}",
            i + 1
        );
    }
    let first = &slots[0];
    assert_eq!(first["pi"]["serial"], "1000aaa1");
    assert_eq!(first["pi"]["power"], "on");
    assert_eq!(
        first["boot"]["kind"], "tftp.complete",
        "latest dhcp/tftp event, not the later pi.note"
    );
    assert!(first["job"].is_null());
    assert_eq!(
        slots[1]["job"],
        json!({"id": seeded.job.as_str(), "kind": "reboot", "state": "running", "step": "settle", "percent": 40})
    );
    assert!(slots[1]["boot"].is_null());
    assert_eq!(slots[2]["pi"]["failed_step"], "await-boot");
    assert_eq!(slots[2]["pi"]["power"], "off");
    assert_eq!(slots[5]["flag"], FLAG);
    assert_eq!(slots[5]["flagged_at"], 1_700_000_000_000_i64);
    assert!(slots[5]["pi"].is_null());
    assert!(slots.iter().enumerate().all(|(i, s)| i == 5 || s["flag"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shelf_view_shows_every_port_live() {
    for db in test_databases().await {
        eprintln!("-- shelf view on {}", db.label);
        let (state, op) = app_state(&db).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let seeded = seed(&api, &state, &op).await;

        let r = api.get(&format!("/v1/shelves/{SHELF}/status"), &op).await;
        assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
        check_status_json(&r.body, &seeded);
        let by_id =
            api.get(&format!("/v1/shelves/{}/status", r.body["id"].as_str().unwrap()), &op).await;
        assert_eq!(by_id.body["slots"], r.body["slots"], "the id names the same shelf");
        let customer = api.customer_token(&op, "cust-ui").await;
        assert_problem(
            &api.get(&format!("/v1/shelves/{SHELF}/status"), &customer).await,
            403,
            "forbidden",
        );
        assert_problem(
            &api.call("GET", &format!("/v1/shelves/{SHELF}/status"), None, None, &[]).await,
            401,
            "unauthorized",
        );
        assert_problem(&api.get("/v1/shelves/no-such-shelf/status", &op).await, 404, "not_found");

        if db.label == "sqlite" {
            through_a_browser_and_the_cli(&state, &op, &seeded).await;
        }
        state.db.close().await;
        db.drop().await;
    }
}

/// Serves the API on a loopback port and looks at it the way an operator would.
async fn through_a_browser_and_the_cli(state: &AppState, op: &str, seeded: &Seeded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(axum::serve(listener, bramble::api::app(state.clone())).into_future());

    // The static files need no token; data does.
    let page = bramble::tls::client::http().get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'")
    );

    let dom = chromium(&["--dump-dom"], &format!("{base}/ui#token={op}")).await;
    for (i, shown) in SHOWN.iter().enumerate() {
        let tag = opening_tag(&dom, &format!("data-port=\"{}\"", i + 1));
        assert!(tag.contains(&format!("state-{shown}")), "port {} should be {shown}: {tag}", i + 1);
        assert_eq!(tag.contains("flagged"), i == 5, "only port 6 is flagged: {tag}");
    }
    assert!(
        dom.contains("⚑ no Pi answered DHCP while racking &lt;i&gt;check cable&lt;/i&gt;"),
        "the flag, as text:\n{dom}"
    );
    assert!(!dom.contains("<i>check cable"), "the flag's markup was parsed");
    assert!(dom.contains("reboot settle 40%") && dom.contains("tftp.complete"), "{dom}");
    // A failed last boot fills its tile with its stage's colour and says why; the
    // tile shows model, owner, power and the draw read then.
    let tag = opening_tag(&dom, "data-port=\"3\"");
    assert!(tag.contains("diag-tftp") && tag.contains("unpowered"), "{tag}");
    assert!(tag.contains("data-diagnosis=\"tftp_file_missing\""), "{tag}");
    assert!(dom.contains("✗ missing file kernel8.img"), "{dom}");
    assert!(dom.contains(">4B<") && dom.contains(">unowned<") && dom.contains(">2.3 W"), "{dom}");
    assert!(!opening_tag(&dom, "data-port=\"1\"").contains("diag-"), "port 1 booted");
    assert!(dom.contains("class=\"legend\"") && dom.contains("maintenance"), "{dom}");

    let pi = seeded.pis[0].clone().unwrap();
    let deep = format!("{base}/ui#token={op}&shelf={SHELF}&pi={pi}");
    let dom = chromium(&["--dump-dom"], &deep).await;
    assert!(dom.contains(&format!("Pi {pi}")), "the deep link opens the Pi:\n{dom}");
    let timeline = &dom[dom.find("id=\"timeline\"").expect("timeline table")..];
    for (kind, message) in BOOT {
        assert!(
            timeline.contains(&format!("data-kind=\"{kind}\"")),
            "{kind} missing from the timeline:\n{timeline}"
        );
        let shown = message.replace('<', "&lt;").replace('>', "&gt;");
        assert!(timeline.contains(&shown), "{message} missing from the timeline:\n{timeline}");
    }
    let shot = screenshot_path();
    let _ =
        chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,900"], &deep)
            .await;
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {} looks empty",
        shot.display()
    );
    eprintln!("screenshot of the deep-linked shelf view: {}", shot.display());

    the_cli_prints_the_table(&base, op).await;
    server.abort();
}

async fn the_cli_prints_the_table(base: &str, op: &str) {
    let out = bramble(&["shelf", "show", SHELF, "--once", "--api", base, "--token", op]).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(&format!("shelf {SHELF} · switch ui-sw · controller ")), "{text}");
    assert!(lines[0].contains(" · ports 1-8 · "), "{text}");
    let header = lines.iter().position(|l| l.starts_with("PORT")).expect("a header row");
    for h in ["SERIAL", "MODEL", "STATE", "POWER", "BOOT STAGE", "JOB", "FLAG"] {
        assert!(lines[header].contains(h), "{h} column missing: {text}");
    }
    let rows = &lines[header + 1..];
    assert_eq!(rows.len(), 8, "{text}");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells[0], (i + 1).to_string(), "{text}");
        assert_eq!(cells[3], SHOWN[i], "{text}");
    }
    assert!(
        rows[0].contains("1000aaa1")
            && rows[0].contains("tftp.complete")
            && rows[0].contains(" on "),
        "{text}"
    );
    assert!(rows[1].contains("reboot settle 40%"), "{text}");
    assert!(rows[2].contains("✗ tftp_file_missing kernel8.img"), "{text}");
    assert!(rows[0].contains(" ok "), "{text}");
    assert!(lines[1].ends_with("1 last boot failed (✗)"), "{text}");
    assert!(rows[5].ends_with(FLAG), "{text}");

    let out =
        bramble(&["shelf", "show", "no-such-shelf", "--once", "--api", base, "--token", op]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("cannot show shelf \"no-such-shelf\"")
            && err.contains("not found"),
        "{err}"
    );
    let out = bramble(&["shelf", "show", SHELF, "--once", "--api", base]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no API token"), "{err}");
}

async fn bramble(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_bramble"))
        .args(args)
        .env_remove("BRAMBLE_TOKEN")
        .env_remove("BRAMBLE_API")
        .env("BRAMBLE_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Runs headless Chromium once on `url` with a fresh profile and `mode` (`--dump-dom`,
/// `--screenshot=...`); its stdout.
async fn chromium(mode: &[&str], url: &str) -> String {
    let profile = tempfile::Builder::new().prefix("bramble-ui-chromium-").tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=5000")
        .args(mode)
        .arg(url)
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let child = cmd.output();
    let out = match tokio::time::timeout(Duration::from_secs(40), child).await {
        Err(_) => panic!("chromium did not finish within 40 s on {url}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "chromium is not installed: this test needs Debian's `chromium` (apt-get install -y chromium)"
            )
        }
        Ok(r) => r.unwrap(),
    };
    eprintln!("chromium {} took {:.1} s", mode.join(" "), started.elapsed().as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The opening tag of the element carrying `attr`.
fn opening_tag<'a>(dom: &'a str, attr: &str) -> &'a str {
    let at = dom.find(attr).unwrap_or_else(|| panic!("no element with {attr} in the page:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap_or(0);
    let end = dom[at..].find('>').map_or(dom.len(), |e| at + e + 1);
    &dom[start..end]
}

/// Where the screenshot goes: `$BRAMBLE_UI_SCREENSHOT`, else the target's tmp directory.
fn screenshot_path() -> PathBuf {
    match std::env::var_os("BRAMBLE_UI_SCREENSHOT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("bramble-ui-shelf.png"),
    }
}
