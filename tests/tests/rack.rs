//! Racking a 96-port shelf against the virtual switch, on SQLite and PostgreSQL: the
//! job configures every port in batches, verifies by reading back, powers the ports on
//! in staggered groups, and ends with every slot flagged (no Pis are cabled here), each
//! with the reason. The switch is then read by a peer nobody here wrote: net-snmp's
//! `snmpwalk`.

use std::process::Command;
use std::time::Duration;

use bramble::testing::test_databases;
use bramble_switch::sim::{SimOptions, SimSwitch};
use bramble_tests::RunningController;
use serde_json::{Value, json};

const PORTS: u16 = 96;
const COMMUNITY: &str = "rack-test";

/// `snmpwalk -On` of one column, as (last arc, integer value).
fn walk(addr: &str, oid: &str) -> Vec<(u32, i64)> {
    let out = Command::new("snmpwalk")
        .args(["-v2c", "-c", COMMUNITY, "-On", "-OQ", "-t", "2", addr, oid])
        .output()
        .expect("snmpwalk from Debian's snmp package (scripts/test.sh installs it)");
    assert!(out.status.success(), "snmpwalk: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(" = ")?;
            Some((name.rsplit('.').next()?.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racking_96_ports_configures_and_verifies_every_port() {
    for db in test_databases().await {
        let sim = SimSwitch::new(SimOptions::new(PORTS, COMMUNITY)).unwrap();
        let handle = sim.handle();
        // Room for every port at the worst-case draw of an unknown Pi, so the groups of
        // 16 are the limit (tests/poe.rs racks under a tight budget).
        handle.set_poe_budget(2_000).unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let switch = tokio::spawn(sim.serve(socket, async move {
            let _ = stopped.await;
        }));
        let mut config = db.config();
        config.jobs.rack_group_size = 16;
        config.jobs.rack_group_pause = Duration::from_millis(100);
        config.jobs.rack_await = Duration::from_secs(1);
        let (controller, token) = bramble::testing::controller_with(&db, config).await;
        let c = RunningController::serve(controller, token).await.unwrap();
        let http = bramble::tls::client::http();
        let post = |path: &str, body: Value| {
            http.post(c.url(path)).bearer_auth(&c.token).json(&body).send()
        };
        let r = post(
            "/v1/switches",
            json!({"name": "sw96", "address": addr, "trunk_port": PORTS + 1,
            "credentials": {"version": "v2c", "community": COMMUNITY}}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let shelf: Value = post(
            "/v1/shelves",
            json!({"name": "r96", "switch": "sw96", "first_port": 1, "last_port": PORTS}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let r = post("/v1/shelves/r96/rack", json!({})).await.unwrap();
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        // A second racking of the same shelf while one runs is refused.
        assert_eq!(post("/v1/shelves/r96/rack", json!({})).await.unwrap().status(), 409);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let done = loop {
            let j: Value = http
                .get(c.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(&c.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if j["state"] != "queued" && j["state"] != "running" {
                break j;
            }
            assert!(std::time::Instant::now() < deadline, "rack job stuck: {j}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(done["state"], "succeeded", "{done}");

        // Every port: its storage VLAN untagged (PVID), all VLANs tagged on the trunk,
        // PoE on; read through SNMP by snmpwalk.
        let pvids = walk(&addr, "1.3.6.1.2.1.17.7.1.4.5.1.1");
        for slot in shelf["slots"].as_array().unwrap() {
            let port = slot["port"].as_u64().unwrap() as u32;
            let vlan = slot["vlan"].as_i64().unwrap();
            assert!(pvids.contains(&(port, vlan)), "port {port} PVID should be {vlan}: {pvids:?}");
        }
        let admin = walk(&addr, "1.3.6.1.2.1.105.1.1.1.3");
        assert_eq!(
            admin.iter().filter(|(_, v)| *v == 1).count(),
            usize::from(PORTS),
            "PoE admin on for every port: {admin:?}"
        );
        let state = handle.state();
        assert_eq!(
            (1..=PORTS).filter(|p| state.delivering(*p)).count(),
            usize::from(PORTS),
            "the switch delivers power on every port"
        );

        // Powered on in six groups of 16, and every slot ended flagged with a reason.
        let events: Value = http
            .get(c.url("/v1/events?kind=shelf.&limit=100"))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["job"] == json!(id))
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k == "shelf.power_group").count(), 6, "{kinds:?}");
        assert!(
            kinds.contains(&"shelf.switch_verified") && kinds.contains(&"shelf.racked"),
            "{kinds:?}"
        );
        let shelf_now: Value = http
            .get(c.url("/v1/shelves/r96/status"))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let flagged = shelf_now["slots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["flag"].as_str().is_some_and(|f| f.contains("no Pi answered DHCP")))
            .count();
        assert_eq!(flagged, usize::from(PORTS), "{shelf_now}");

        c.stop().await;
        let _ = stop.send(());
        let _ = switch.await;
        db.drop().await;
    }
}
