//! The netboot adapters against real databases (SQLite and PostgreSQL), without sockets:
//! lease storage, sightings into the inventory, boot events into timelines, and the TFTP
//! resolver's view of slots.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bramble::bootplan::BootPlanner;
use bramble::config::{Config, Overrides, RawConfig};
use bramble::db::events::EventFilter;
use bramble::db::fabric::NewSwitch;
use bramble::db::pis::NewPi;
use bramble::db::{Db, DbError, Order};
use bramble::ids::SlotId;
use bramble::lifecycle::PiState;
use bramble::netboot::directory::Directory;
use bramble::netboot::events::DbEventSink;
use bramble::netboot::leases::DbLeaseStore;
use bramble::netboot::resolver::DbBootResolver;
use bramble::secret::{Secret, SnmpCredentials};
use bramble::server::Controller;
use bramble::testing::{TestDb, test_databases};
use bramble_netboot::dhcp::{
    ClientKey, Decline, Lease, LeaseStore, MacAddr, PiModel, PiSerial, Sighting, SlotKey,
};
use bramble_netboot::events::{BootEvent, BootEventSink, BootStage, ClientRef};
use bramble_netboot::tftp::BootResolver;

async fn open(db: &TestDb) -> (Db, Vec<(String, Ipv4Addr)>) {
    let text = "[addressing]\nstorage_supernet = \"10.106.250.0/24\"\nstorage_vlan_first = 200\n";
    let raw: RawConfig = toml::from_str(text).expect("config");
    let o = Overrides {
        listen: Some("127.0.0.1:0".into()),
        database: Some(db.url.clone()),
        state_dir: Some(std::env::temp_dir()),
        name: None,
    };
    let config = Config::from_raw(raw, "netboot store test", &o).expect("valid config");
    let pools = config.pools.clone();
    let c = Controller::open(config).await.expect("open controller");
    let sw = NewSwitch {
        name: "sw".into(),
        address: "127.0.0.1:1161".into(),
        driver: "standard".into(),
        trunk_port: 24,
        credentials: SnmpCredentials::V2c { community: Secret::new("public") },
        controller: c.state.config.get().cluster.name.clone(),
        l2_domain: "store".into(),
    };
    let sw = c.state.db.insert_switch(&sw).await.expect("switch");
    let shelf = c.state.db.enroll_shelf("s", &sw.id, 1, 2, &pools).await.expect("shelf");
    let slots =
        shelf.slots.iter().map(|s| (s.id.0.clone(), s.pi_ip.parse().expect("ip"))).collect();
    (c.state.db, slots)
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0xb8, 0x27, 0xeb, 0, 0, last])
}

fn sighting(slot: Option<&str>, m: MacAddr, serial: Option<u32>) -> Sighting {
    Sighting {
        interface: "gl0".into(),
        slot: slot.map(|s| SlotKey(s.into())),
        mac: m,
        serial: serial.map(PiSerial),
        model: Some(PiModel::Pi3BPlus),
        reserved: slot.is_some(),
        at: SystemTime::now(),
    }
}

async fn kinds(db: &Db, pi: &str) -> Vec<String> {
    let f = EventFilter { pi: Some(bramble::ids::PiId(pi.into())), ..Default::default() };
    db.list_events(&f, None, Order::Asc, 100)
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn pi_in_slot(db: &Db, slot: &str) -> Option<bramble::model::Pi> {
    let page = db.list_pis(&Default::default(), None, 100).await.expect("pis");
    page.items.into_iter().find(|p| p.slot.as_ref().map(|s| s.0.as_str()) == Some(slot))
}

#[tokio::test]
async fn leases_are_stored_replaced_released_and_reloaded() {
    for tdb in test_databases().await {
        let (db, slots) = open(&tdb).await;
        let store = DbLeaseStore::new(db.clone(), Arc::new(Directory::new(db.clone())));
        let key = ClientKey { interface: "gl0".into(), mac: mac(1) };
        let expires = UNIX_EPOCH + Duration::from_millis(1_900_000_000_000);
        let lease = Lease {
            key: key.clone(),
            addr: slots[0].1,
            expires_at: expires,
            serial: Some(PiSerial(0x1234abcd)),
            slot: Some(SlotKey(slots[0].0.clone())),
        };
        let flat = Lease {
            key: ClientKey { interface: "gl9".into(), mac: mac(2) },
            addr: Ipv4Addr::new(10, 106, 251, 100),
            expires_at: expires,
            serial: None,
            slot: None,
        };
        store.commit_leases(&[lease.clone(), flat.clone()]).await.expect("commit");
        assert_eq!(
            store.load_leases().await.expect("load"),
            vec![lease.clone(), flat.clone()],
            "{}",
            tdb.label
        );
        // Same key again replaces, never duplicates.
        let renewed = Lease { expires_at: expires + Duration::from_secs(60), ..lease.clone() };
        store.commit_leases(std::slice::from_ref(&renewed)).await.expect("renew");
        assert_eq!(store.load_leases().await.expect("load"), vec![renewed.clone(), flat.clone()]);
        // A release for another address is ignored; for the leased one it removes the row.
        store.release_lease(&key, Ipv4Addr::new(1, 2, 3, 4)).await.expect("release other");
        assert_eq!(store.load_leases().await.expect("load").len(), 2);
        store.release_lease(&key, slots[0].1).await.expect("release");
        assert_eq!(store.load_leases().await.expect("load"), vec![flat]);
        store
            .record_decline(&Decline { key, addr: slots[0].1, at: SystemTime::now() })
            .await
            .expect("decline");
        db.close().await;
        tdb.drop().await;
    }
}

/// `read` failed on the `5EED0001` stored in `pis.serial`, as a corrupt row.
fn assert_bad_serial<T: std::fmt::Debug>(read: &str, got: Result<T, DbError>) {
    match got {
        Err(DbError::Corrupt { column: "pis.serial", value }) if value == "5EED0001" => {}
        other => panic!("{read}: wanted a corrupt pis.serial, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_serial_not_in_canonical_form_is_a_corrupt_row() {
    for tdb in test_databases().await {
        let (db, slots) = open(&tdb).await;
        let new = NewPi {
            serial: None,
            mac: Some("b8:27:eb:00:00:09".into()),
            model: "3b".into(),
            slot: Some(SlotId(slots[0].0.clone())),
            owner: None,
            state: PiState::New,
        };
        let pi = db.insert_pi(&new, "test").await.expect("pi");
        db.q("UPDATE pis SET serial = $1 WHERE id = $2")
            .bind("5EED0001")
            .bind(pi.id.0.clone())
            .execute(db.pool())
            .await
            .expect("store a bad serial");
        let what = |read: &str| format!("{read} on {}", tdb.label);
        assert_bad_serial(&what("get_pi"), db.get_pi(&pi.id).await);
        assert_bad_serial(&what("shelf_status"), db.shelf_status("s").await);
        assert_bad_serial(&what("directory"), Directory::new(db.clone()).refresh().await);
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn sightings_create_fill_and_detect_replacements() {
    for tdb in test_databases().await {
        let (db, slots) = open(&tdb).await;
        let store = DbLeaseStore::new(db.clone(), Arc::new(Directory::new(db.clone())));
        let slot = slots[0].0.as_str();
        store
            .record_sighting(&sighting(Some(slot), mac(1), Some(0x1234abcd)))
            .await
            .expect("first sighting");
        let pi = pi_in_slot(&db, slot).await.expect("new Pi in the slot");
        assert_eq!(
            (pi.state.as_str(), pi.mac.as_deref(), pi.serial, pi.model.as_str()),
            ("new", Some("b8:27:eb:00:00:01"), Some(PiSerial(0x1234abcd)), "3b+"),
            "{}",
            tdb.label
        );
        // The same board again changes nothing.
        store
            .record_sighting(&sighting(Some(slot), mac(1), Some(0x1234abcd)))
            .await
            .expect("again");
        assert_eq!(pi_in_slot(&db, slot).await.expect("pi").updated_at, pi.updated_at);
        // Another board in the slot: outside maintenance it is only flagged for an
        // operator (tests/hardware.rs has the rest of the rule).
        store
            .record_sighting(&sighting(Some(slot), mac(2), Some(0x99990000)))
            .await
            .expect("another board");
        let kept = pi_in_slot(&db, slot).await.expect("pi");
        assert_eq!(
            (kept.id.clone(), kept.mac.as_deref(), kept.serial),
            (pi.id.clone(), Some("b8:27:eb:00:00:01"), Some(PiSerial(0x1234abcd)))
        );
        assert!(kinds(&db, pi.id.as_str()).await.contains(&"pi.hardware_flagged".to_string()));
        assert!(db.pending_sighting(&pi.id).await.expect("sighting").is_some());
        // Flat discovery: an unknown Pi becomes a `new` Pi without a slot, once.
        for _ in 0..2 {
            store.record_sighting(&sighting(None, mac(3), None)).await.expect("flat sighting");
        }
        let all = db.list_pis(&Default::default(), None, 100).await.expect("pis").items;
        let flat: Vec<_> =
            all.iter().filter(|p| p.mac.as_deref() == Some("b8:27:eb:00:00:03")).collect();
        assert_eq!(flat.len(), 1, "{all:?}");
        assert_eq!(flat[0].slot, None);
        // That board racked into slot 2 is adopted, not duplicated.
        store.record_sighting(&sighting(Some(&slots[1].0), mac(3), None)).await.expect("adopt");
        assert_eq!(pi_in_slot(&db, &slots[1].0).await.map(|p| p.id), Some(flat[0].id.clone()));
        db.close().await;
        tdb.drop().await;
    }
}

fn event(client: ClientRef, stage: BootStage) -> BootEvent {
    BootEvent { at: SystemTime::now(), client, stage }
}

#[tokio::test]
async fn events_reach_the_right_timeline_and_the_resolver_finds_the_slot() {
    for tdb in test_databases().await {
        let (db, slots) = open(&tdb).await;
        let directory = Arc::new(Directory::new(db.clone()));
        let store = DbLeaseStore::new(db.clone(), directory.clone());
        store.record_sighting(&sighting(Some(&slots[0].0), mac(1), None)).await.expect("sighting");
        let pi = pi_in_slot(&db, &slots[0].0).await.expect("pi");
        let roots = std::env::temp_dir().join("gl-roots");
        let plans = Arc::new(BootPlanner::new(roots.clone(), None, None));
        let resolver = DbBootResolver::new(directory.clone(), plans);
        let boot = resolver.resolve(IpAddr::V4(slots[0].1)).await.expect("slot 1 resolves");
        assert_eq!(boot.boot_dir, roots.join(pi.id.as_str()).join("boot"));
        assert_eq!(boot.params.nfs_export, format!("/export/{}", slots[0].1));
        assert_eq!(resolver.resolve(IpAddr::V4(slots[1].1)).await, None, "no Pi in slot 2 yet");
        assert_eq!(resolver.resolve(IpAddr::V4(Ipv4Addr::new(10, 106, 99, 2))).await, None);

        let (sink, counters, task) = DbEventSink::start(db.clone(), directory.clone());
        let by_addr = ClientRef {
            interface: None,
            mac: None,
            serial: None,
            addr: Some(IpAddr::V4(slots[0].1)),
        };
        let by_mac = ClientRef {
            interface: Some("nowhere".into()),
            mac: Some("b8:27:eb:00:00:01".into()),
            serial: None,
            addr: None,
        };
        let stranger = ClientRef {
            interface: None,
            mac: Some("02:00:00:00:00:09".into()),
            serial: None,
            addr: None,
        };
        sink.record(event(by_addr, BootStage::TftpRead { file: "start.elf".into() }));
        sink.record(event(by_mac, BootStage::DhcpDiscover { model: None }));
        sink.record(event(stranger, BootStage::DhcpDiscover { model: None }));
        drop(sink);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("drain ends")
            .expect("drain task");
        let k = kinds(&db, pi.id.as_str()).await;
        assert!(
            k.contains(&"tftp.read".to_string()) && k.contains(&"dhcp.discover".to_string()),
            "{}: {k:?}",
            tdb.label
        );
        assert_eq!(counters.written.load(Ordering::Relaxed), 2);
        assert_eq!(counters.unmatched.load(Ordering::Relaxed), 1);
        db.close().await;
        tdb.drop().await;
    }
}

/// `bramble serve` with `[netboot] enabled`: the servers start with the controller, their
/// counters are on `/metrics`, and they stop on the controller's shutdown.
#[tokio::test]
async fn controller_run_starts_and_stops_netboot() {
    let tdb = bramble::testing::sqlite_db();
    let text = "[netboot]\nenabled = true\ntftp_listen = [\"127.0.0.1:0\"]\ndhcp_port = 0\n";
    let raw: RawConfig = toml::from_str(text).expect("config");
    let dir = std::env::temp_dir().join(format!("bramble-gl-run-{}", std::process::id()));
    let o = Overrides {
        listen: Some("127.0.0.1:0".into()),
        database: Some(tdb.url.clone()),
        state_dir: Some(dir.clone()),
        name: None,
    };
    let config = Config::from_raw(raw, "netboot run test", &o).expect("valid config");
    assert!(config.netboot.enabled);
    let controller = Controller::open(config).await.expect("open controller");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        if let Ok(r) = bramble::tls::client::http().get(&url).send().await {
            let body = r.text().await.unwrap_or_default();
            if body.contains("bramble_dhcp_replies_total") {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "netboot counters never appeared on /metrics"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("bramble_tftp_transfers_total{outcome=\"started\"} 0"), "{text}");
    assert!(text.contains("bramble_boot_events_total{outcome=\"dropped\"} 0"), "{text}");
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("controller stops")
        .expect("join");
    assert!(result.is_ok(), "{result:?}");
    tdb.drop().await;
    let _ = std::fs::remove_dir_all(dir);
}
