//! Upgrades. Every fixture in `tests/fixtures/upgrade/` is an inventory made by a
//! released bramble (`TAG.sqlite.sql`, a `sqlite3 .dump`, and `TAG.tokens`, its API
//! tokens). Each is loaded with sqlite3 and served by this build's real `bramble serve`,
//! which applies the newer migrations; its data must come back through the API and in
//! its tables, and `bramble db backup` of the upgraded inventory must restore to an
//! equal one.
//!
//! ONE FIXTURE PER RELEASE, from now on: when you tag a release, run
//! `scripts/make-upgrade-fixture.sh TAG` and commit the two files it writes (see
//! docs/backups.md). Never edit a fixture, nor a released migration: a fixture records
//! the checksum of every migration its release applied, and this test fails when this
//! build's migration of that number differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bramble::db::Backend;
use bramble::db::schema::{self, Applied, Verdict};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bramble-e2e");

/// Tables the serving controller writes by itself (heartbeats, leases, its own events,
/// the image catalogue): their counts may grow on an upgrade.
const GROWING: &[&str] = &["events", "controllers", "leases", "images", "webhook_cursor"];

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sqlite.sql"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no fixtures in {}", dir.display());
    found
}

fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().expect("run sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn load(fixture: &Path, db: &Path) {
    let sql = std::fs::File::open(fixture).unwrap();
    let out = Command::new("sqlite3").arg(db).stdin(sql).output().expect("run sqlite3");
    assert!(
        out.status.success(),
        "load {}: {}",
        fixture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn counts(db: &Path) -> BTreeMap<String, i64> {
    let tables = sqlite3(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    );
    tables
        .lines()
        .map(|t| {
            (
                t.to_string(),
                sqlite3(db, &format!("SELECT COUNT(*) FROM \"{t}\"")).trim().parse().unwrap(),
            )
        })
        .collect()
}

/// The fixture's migrations, checked against this build's before anything runs.
fn check_migrations(name: &str, db: &Path) -> i64 {
    let applied: Vec<Applied> =
        sqlite3(db, "SELECT version, hex(checksum), success FROM _sqlx_migrations")
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split('|').collect();
                Applied {
                    version: fields[0].parse().unwrap(),
                    checksum: unhex(fields[1]),
                    success: fields[2] == "1",
                }
            })
            .collect();
    match schema::judge(&applied, &schema::known(Backend::Sqlite)) {
        Verdict::Compatible { at, .. } => at,
        Verdict::Modified { version } => panic!(
            "fixture {name}: migration {version} was released with other SQL than \
             orchestrator/migrations/sqlite/ has for it now (its checksum differs): someone \
             edited a released migration. Released migrations never change: revert the edit \
             and make the change in a new migration"
        ),
        v => panic!("fixture {name}: {v:?}"),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn bramble(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("BRAMBLE_LOG", "warn").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Serving(Child);

impl Serving {
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.0.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.get(token, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

fn by_serial<'a>(pis: &'a Value, serial: &str) -> &'a Value {
    pis["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["serial"] == serial)
        .unwrap_or_else(|| panic!("no Pi {serial} in {pis}"))
}

#[tokio::test]
async fn every_release_fixture_upgrades_with_its_data_intact() {
    for fixture in fixtures() {
        let started = Instant::now();
        let name = fixture.file_name().unwrap().to_string_lossy().replace(".sqlite.sql", "");
        let tokens =
            std::fs::read_to_string(fixture.with_file_name(format!("{name}.tokens"))).unwrap();
        let token = |role: &str| {
            tokens
                .lines()
                .find(|l| l.starts_with(role))
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let (operator, customer) = (token("operator "), token("customer "));
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bramble.db");
        load(&fixture, &db);
        let released_at = check_migrations(&name, &db);
        let before = counts(&db);

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let state = dir.path().join("state");
        // Nothing ages out of the fixture, however old it is.
        let config = dir.path().join("bramble.toml");
        std::fs::write(
            &config,
            "[snapshots]\nmax_age_days = 0\n[events]\nboot_retention_days = 0\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let server = Serving(
            Command::new(BIN)
                .args(["serve", "--config", config.to_str().unwrap(), "--database", &url])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--state-dir", state.to_str().unwrap(), "--name", "upgraded"])
                .env("BRAMBLE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let api =
            Api { base: format!("http://127.0.0.1:{port}"), http: bramble::tls::client::http() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.http.get(format!("{}/healthz", api.base)).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{name}: the upgraded controller did not answer: {}",
                std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let newest = schema::known_max(Backend::Sqlite);
        let upgraded_to = sqlite3(&db, "SELECT MAX(version) FROM _sqlx_migrations");
        assert_eq!(upgraded_to.trim(), newest.to_string(), "{name}: migrations from {released_at}");

        // The inventory through the API, as its operator and its customer see it.
        let pis = api.ok(&operator, "/v1/pis").await;
        assert_eq!(pis["items"].as_array().unwrap().len(), 6, "{name}: {pis}");
        assert_eq!(by_serial(&pis, "f1a70000")["state"], "new");
        let p1 = by_serial(&pis, "f1a70001");
        // Its reboot failed at the power step (the fixture's switches do not answer).
        assert_eq!(
            (p1["state"].as_str(), p1["owner"].as_str()),
            (Some("failed"), Some("cust-a")),
            "{p1}"
        );
        assert_eq!(p1["failed_step"], "power-off", "{p1}");
        assert_eq!((p1["model"].as_str(), p1["port"].as_i64()), (Some("3b+"), Some(2)));
        let p2 = by_serial(&pis, "f1a70002");
        assert_eq!(
            (p2["state"].as_str(), p2["image"].as_str()),
            (Some("deployed"), Some("fixture-image"))
        );
        assert_eq!(by_serial(&pis, "f1a70003")["owner"], "cust-b");
        assert_eq!(by_serial(&pis, "f1a70005")["state"], "retired");
        let (p2, p3, p4) = (
            p2["id"].as_str().unwrap(),
            by_serial(&pis, "f1a70003")["id"].as_str().unwrap(),
            by_serial(&pis, "f1a70004")["id"].as_str().unwrap(),
        );
        let mine = api.ok(&customer, "/v1/pis").await;
        let mut serials: Vec<_> =
            mine["items"].as_array().unwrap().iter().map(|p| p["serial"].clone()).collect();
        serials.sort_by_key(|s| s.to_string());
        assert_eq!(serials, ["f1a70001", "f1a70002"], "{name}: the customer token sees {mine}");
        assert_eq!(
            api.get(&customer, &format!("/v1/pis/{p3}")).await.0,
            404,
            "{name}: another's Pi"
        );
        let p4 = api.ok(&operator, &format!("/v1/pis/{p4}")).await;
        assert!(p4["maintenance"].is_object(), "{name}: {p4}");
        assert_eq!(p4["hardware_history"][0]["old_serial"], "f1a70099", "{name}: {p4}");
        let snaps = api.ok(&customer, &format!("/v1/pis/{p2}/snapshots")).await;
        let ids: Vec<_> = snaps
            .as_array()
            .unwrap_or_else(|| snaps["items"].as_array().unwrap())
            .iter()
            .map(|s| s["id"].clone())
            .collect();
        assert_eq!(ids.len(), 2, "{name}: {snaps}");
        let console = api.ok(&customer, &format!("/v1/pis/{p2}/console")).await;
        assert!(console.to_string().contains("fixture login:"), "{name}: {console}");
        let switches = api.ok(&operator, "/v1/switches").await;
        let switches_text = switches.to_string();
        assert!(switches_text.contains("sw-v3") && switches_text.contains("sw-v2c"), "{switches}");
        assert!(!switches_text.contains("authpass1"), "{name}: a credential in the API");
        let shelves = api.ok(&operator, "/v1/shelves").await;
        let mut slots: Vec<_> = shelves
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slots"].as_array().unwrap().len())
            .collect();
        slots.sort();
        assert_eq!(slots, [4, 8], "{name}");
        let images = api.ok(&operator, "/v1/images").await;
        assert!(images.to_string().contains("fixture-image"), "{name}: {images}");
        let jobs = api.ok(&operator, "/v1/jobs").await;
        assert_eq!(
            jobs["items"].as_array().unwrap().len() as i64,
            before["jobs"],
            "{name}: {jobs}"
        );

        // Every row is still there; the switch credentials unchanged.
        let after = counts(&db);
        for (table, n) in &before {
            if table == "_sqlx_migrations" || GROWING.contains(&table.as_str()) {
                assert!(after[table] >= *n, "{name}: {table} lost rows");
            } else {
                assert_eq!(after[table], *n, "{name}: rows in {table}");
            }
        }
        let creds = sqlite3(&db, "SELECT credentials FROM switch_credentials ORDER BY credentials");
        assert!(creds.contains("authpass1") && creds.contains("fixture-community"), "{creds}");

        // A backup while it serves; a restore refused while it serves.
        let backup = dir.path().join("serving.db");
        let out = bramble(&["db", "backup", backup.to_str().unwrap(), "--database", &url]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains(&format!("schema migration {newest}")), "{}", text(&out));
        let out = bramble(&["db", "restore", backup.to_str().unwrap(), "--database", &url]);
        assert!(
            !out.status.success() && text(&out).contains("a controller is serving"),
            "{}",
            text(&out)
        );
        server.stop();

        // A backup of the stopped inventory restores to an equal one.
        let backup = dir.path().join("stopped.db");
        let out = bramble(&["db", "backup", backup.to_str().unwrap(), "--database", &url]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let restored = dir.path().join("restored/bramble.db");
        std::fs::create_dir_all(restored.parent().unwrap()).unwrap();
        let restored_url = format!("sqlite://{}?mode=rwc", restored.display());
        let out =
            bramble(&["db", "restore", backup.to_str().unwrap(), "--database", &restored_url]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(
            sqlite3(&db, ".dump") == sqlite3(&restored, ".dump"),
            "{name}: the restored inventory differs"
        );
        eprintln!(
            "{name}: upgraded from migration {released_at} to {newest} in {:?}",
            started.elapsed()
        );
    }
}
