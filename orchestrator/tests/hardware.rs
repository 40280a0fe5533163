//! Slot identity against real databases (SQLite and PostgreSQL): DHCP and TFTP sightings
//! through the netboot adapters (no sockets) and the operator's API. A crafted sighting
//! on a deployed Pi changes nothing and is flagged; another Pi's MAC or serial is never
//! taken; during maintenance a new board becomes the Pi's hardware with its history; a
//! Pi 3B's serial is learned from a TFTP path; operators accept or dismiss a flagged
//! sighting; jobs are refused in maintenance; customers see only their own.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bramble::db::Db;
use bramble::ids::PiId;
use bramble::lifecycle::PiState;
use bramble::netboot::directory::Directory;
use bramble::netboot::events::DbEventSink;
use bramble::netboot::identity::Sightings;
use bramble::netboot::leases::DbLeaseStore;
use bramble::testing::{app_state, test_databases};
use bramble_netboot::dhcp::{LeaseStore, MacAddr, PiModel, PiSerial, Sighting, SlotKey};
use bramble_netboot::events::{BootEvent, BootEventSink, BootStage, ClientRef};
use common::{Api, KEY, assert_problem};
use serde_json::{Value, json};

fn mac(last: u8) -> MacAddr {
    MacAddr([0xb8, 0x27, 0xeb, 0, 0, last])
}

fn dhcp(slot: &str, m: MacAddr, serial: Option<u32>, model: PiModel) -> Sighting {
    Sighting {
        interface: "hw0".into(),
        slot: Some(SlotKey(slot.into())),
        mac: m,
        serial: serial.map(PiSerial),
        model: Some(model),
        reserved: true,
        at: SystemTime::now(),
    }
}

/// TFTP reads from a slot's Pi address, through the event sink as the TFTP server
/// reports them; returns once they are handled.
async fn tftp(
    db: &Db,
    directory: &Arc<Directory>,
    sightings: &Arc<Sightings>,
    ip: Ipv4Addr,
    files: &[&str],
) {
    directory.refresh().await.expect("refresh");
    let (sink, _, task) =
        DbEventSink::start_with(db.clone(), directory.clone(), Some(sightings.clone()));
    for f in files {
        let client =
            ClientRef { interface: None, mac: None, serial: None, addr: Some(IpAddr::V4(ip)) };
        sink.record(BootEvent {
            at: SystemTime::now(),
            client,
            stage: BootStage::TftpRead { file: (*f).into() },
        });
    }
    drop(sink);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("drain").expect("task");
}

fn identity(p: &Value) -> (Value, Value, Value) {
    (p["mac"].clone(), p["serial"].clone(), p["model"].clone())
}

#[tokio::test]
async fn slot_identity_sightings_maintenance_and_accepting() {
    for tdb in test_databases().await {
        let (state, op) = app_state(&tdb).await;
        let api = Api { router: bramble::api::app(state.clone()) };
        let db = state.db.clone();
        eprintln!("-- on {}", tdb.label);
        let op = op.as_str();

        // A shelf of two slots whose Pis DHCP'd in as 3B+ boards.
        let r = api
            .post(
                "/v1/switches",
                op,
                json!({"name": "sw-hw", "address": "127.0.0.1:161", "trunk_port": 200,
                "credentials": {"version": "v2c", "community": "private-community"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let r = api
            .post(
                "/v1/shelves",
                op,
                json!({"name": "hw", "switch": "sw-hw", "first_port": 1, "last_port": 2}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let slots: Vec<(String, Ipv4Addr)> = r.body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["pi_ip"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let directory = Arc::new(Directory::new(db.clone()));
        let sightings = Sightings::new(db.clone(), directory.clone());
        let store = DbLeaseStore::with_sightings(db.clone(), sightings.clone());
        store
            .record_sighting(&dhcp(&slots[0].0, mac(1), Some(0x1111_0001), PiModel::Pi3BPlus))
            .await
            .unwrap();
        store
            .record_sighting(&dhcp(&slots[1].0, mac(2), Some(0x2222_0002), PiModel::Pi3BPlus))
            .await
            .unwrap();
        let pis = api.get("/v1/pis", op).await.body["items"].as_array().unwrap().clone();
        let id_in = |slot: &str| {
            pis.iter().find(|p| p["slot"] == slot).unwrap()["id"].as_str().unwrap().to_string()
        };
        let (a, b) = (id_in(&slots[0].0), id_in(&slots[1].0));
        // Both deployed for their customers.
        for (pi, owner) in [(&a, "alice"), (&b, "bob")] {
            let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"owner": owner})).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let id = PiId(pi.clone());
            assert!(db.set_pi_state(&id, PiState::New, PiState::Deployed, None).await.unwrap());
        }
        let alice = api.customer_token(op, "alice").await;
        let bob = api.customer_token(op, "bob").await;
        let show = |pi: &str, who: &str| {
            let (pi, who) = (pi.to_string(), who.to_string());
            let api = &api;
            async move { api.get(&format!("/v1/pis/{pi}"), &who).await }
        };
        let a0 = show(&a, op).await.body;
        let b0 = show(&b, op).await.body;
        assert_eq!(identity(&a0), (json!("b8:27:eb:00:00:01"), json!("11110001"), json!("3b+")));

        // 1. The bug: a crafted Pi 3B DISCOVER from the deployed 3B+'s slot.
        store.record_sighting(&dhcp(&slots[0].0, mac(1), None, PiModel::Pi3B)).await.unwrap();
        let a1 = show(&a, op).await.body;
        assert_eq!(
            identity(&a1),
            identity(&a0),
            "{}: the crafted packet changed the Pi",
            tdb.label
        );
        assert_eq!(a1["hardware_sighting"]["reason"], "differs", "{a1}");
        assert_eq!(a1["hardware_sighting"]["model"], "3b");
        assert_eq!(a1["hardware_history"], json!([]));
        // The flag is the operator's: alice sees her Pi unchanged and no sighting.
        let mine = show(&a, &alice).await;
        assert_eq!(mine.status, 200);
        assert!(mine.body.get("hardware_sighting").is_none(), "{}", mine.body);
        let events = api.get(&format!("/v1/pis/{a}/events?kind=pi.hardware"), &alice).await;
        assert_eq!(events.body["items"], json!([]), "operators-only event leaked");
        let events = api.get(&format!("/v1/pis/{a}/events?kind=pi.hardware"), op).await;
        assert_eq!(events.body["items"].as_array().unwrap().len(), 1, "{}", events.body);
        assert_problem(&show(&a, &bob).await, 404, "not_found");
        // The shelf status flags the slot.
        let status = api.get("/v1/shelves/hw/status", op).await.body;
        assert!(
            status["slots"][0]["flag"].as_str().unwrap_or("").contains("hardware sighting"),
            "{status}"
        );
        assert_eq!(status["slots"][1]["flag"], Value::Null);

        // 2. Claiming the other Pi's MAC (from A's slot) or serial (from B's) changes
        // neither Pi.
        store.record_sighting(&dhcp(&slots[0].0, mac(2), None, PiModel::Pi3BPlus)).await.unwrap();
        store
            .record_sighting(&dhcp(&slots[1].0, mac(9), Some(0x1111_0001), PiModel::Pi3BPlus))
            .await
            .unwrap();
        let (a2, b2) = (show(&a, op).await.body, show(&b, op).await.body);
        assert_eq!(identity(&a2), identity(&a0));
        assert_eq!(identity(&b2), identity(&b0));
        assert_eq!(
            (a2["slot"].clone(), b2["slot"].clone()),
            (a0["slot"].clone(), b0["slot"].clone())
        );
        assert_eq!(a2["hardware_sighting"]["reason"], "mac_taken");
        assert_eq!(a2["hardware_sighting"]["other_pi"], json!(b));
        assert_eq!(b2["hardware_sighting"]["reason"], "serial_taken");
        // Accepting another Pi's MAC is refused; dismissing clears the flag.
        let sid = a2["hardware_sighting"]["id"].as_str().unwrap().to_string();
        let r =
            api.post(&format!("/v1/pis/{a}/hardware/accept"), op, json!({"sighting": sid})).await;
        assert_problem(&r, 409, "identity_taken");
        let r = api
            .post(&format!("/v1/pis/{a}/hardware/accept"), op, json!({"sighting": "hws-old"}))
            .await;
        assert_problem(&r, 409, "sighting_changed");
        let r = api
            .post(&format!("/v1/pis/{a}/hardware/dismiss"), &alice, json!({"sighting": sid}))
            .await;
        assert_problem(&r, 403, "forbidden");
        let r =
            api.post(&format!("/v1/pis/{a}/hardware/dismiss"), op, json!({"sighting": sid})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.body.get("hardware_sighting").is_none(), "{}", r.body);

        // 3. Maintenance: operators only, and no job then but an operator's power.
        let r = api.post(&format!("/v1/pis/{a}/maintenance"), &alice, json!({"on": true})).await;
        assert_problem(&r, 403, "forbidden");
        let r = api.post(&format!("/v1/pis/{b}/maintenance"), &alice, json!({"on": true})).await;
        assert_problem(&r, 404, "not_found");
        let r = api.post(&format!("/v1/pis/{a}/maintenance"), op, json!({"on": true})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.body["maintenance"]["since"].as_i64().is_some(), "{}", r.body);
        for (path, who, body) in [
            ("reboot", alice.as_str(), json!({})),
            ("power-off", alice.as_str(), json!({})),
            ("rescue", op, json!({"ssh_keys": [KEY]})),
            ("power-on", alice.as_str(), json!({})),
        ] {
            let r = api.post(&format!("/v1/pis/{a}/{path}"), who, body).await;
            assert_problem(&r, 409, "maintenance");
        }

        // 4. A new 3B+ board in A's slot during maintenance becomes A's hardware, keeping
        // owner, state and addresses, with history and a `pi.replaced` event.
        store
            .record_sighting(&dhcp(&slots[0].0, mac(3), Some(0x3333_0003), PiModel::Pi3BPlus))
            .await
            .unwrap();
        let a4 = show(&a, op).await.body;
        assert_eq!(identity(&a4), (json!("b8:27:eb:00:00:03"), json!("33330003"), json!("3b+")));
        for k in ["owner", "state", "storage_ip", "public_ipv6", "slot", "ssh_host_keys"] {
            assert_eq!(a4[k], a0[k], "{k} changed");
        }
        let h = &a4["hardware_history"][0];
        assert_eq!(
            (h["old_mac"].clone(), h["old_serial"].clone()),
            (json!("b8:27:eb:00:00:01"), json!("11110001"))
        );
        assert_eq!(
            (h["new_mac"].clone(), h["new_serial"].clone()),
            (json!("b8:27:eb:00:00:03"), json!("33330003"))
        );
        assert_eq!(
            (h["how"].clone(), h["accepted_by"].clone(), h["customer"].clone()),
            (json!("maintenance"), json!("dhcp"), json!("alice"))
        );
        // Alice sees her Pi's replacement, and its event.
        let mine = show(&a, &alice).await.body;
        assert_eq!(mine["hardware_history"].as_array().unwrap().len(), 1, "{mine}");
        let ev = api.get(&format!("/v1/pis/{a}/events?kind=pi.replaced"), &alice).await.body;
        assert_eq!(ev["items"].as_array().unwrap().len(), 1, "{ev}");
        // B never moved.
        assert_eq!(identity(&show(&b, op).await.body), identity(&b0));

        // 5. A Pi 3B in its place: DHCP shows no serial; the first TFTP path naming one
        // teaches it (the replacement's history row gets it too).
        store.record_sighting(&dhcp(&slots[0].0, mac(4), None, PiModel::Pi3B)).await.unwrap();
        assert_eq!(show(&a, op).await.body["serial"], Value::Null);
        tftp(
            &db,
            &directory,
            &sightings,
            slots[0].1,
            &["bootcode.bin", "4444abcd/start.elf", "4444abcd/config.txt"],
        )
        .await;
        let a5 = show(&a, op).await.body;
        assert_eq!(identity(&a5), (json!("b8:27:eb:00:00:04"), json!("4444abcd"), json!("3b")));
        assert_eq!(a5["hardware_history"][1]["new_serial"], "4444abcd", "{a5}");

        // 6. Out of maintenance, a TFTP path naming another serial is only flagged; an
        // operator accepts it.
        let r = api.post(&format!("/v1/pis/{a}/maintenance"), op, json!({"on": false})).await;
        assert_eq!((r.status.as_u16(), r.body["maintenance"].clone()), (200, Value::Null));
        tftp(&db, &directory, &sightings, slots[0].1, &["5555abcd/start.elf"]).await;
        let a6 = show(&a, op).await.body;
        assert_eq!(a6["serial"], "4444abcd");
        assert_eq!(
            (a6["hardware_sighting"]["reason"].clone(), a6["hardware_sighting"]["source"].clone()),
            (json!("differs"), json!("tftp"))
        );
        // A TFTP path from B's address never concerns A.
        tftp(&db, &directory, &sightings, slots[1].1, &["4444abcd/start.elf"]).await;
        assert_eq!(identity(&show(&b, op).await.body), identity(&b0));
        let sid = a6["hardware_sighting"]["id"].as_str().unwrap();
        let r =
            api.post(&format!("/v1/pis/{a}/hardware/accept"), op, json!({"sighting": sid})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(identity(&r.body), (json!("b8:27:eb:00:00:04"), json!("5555abcd"), json!("3b")));
        assert_eq!(r.body["hardware_history"][2]["how"], "operator");
        assert!(r.body.get("hardware_sighting").is_none());
        // Jobs run again.
        let r = api.post(&format!("/v1/pis/{a}/reboot"), &alice, json!({})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        // Maintenance waits for no job: refused while one is active.
        let r = api.post(&format!("/v1/pis/{a}/maintenance"), op, json!({"on": true})).await;
        assert_problem(&r, 409, "pi_busy");

        state.db.close().await;
        tdb.drop().await;
    }
}
