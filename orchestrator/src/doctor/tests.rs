//! Every rule with facts written by hand, the socket table parsing, and a whole run on
//! a fake host (the default config of a fresh install, offline).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bramble_images::Strategy;
use bramble_switch::detect::DriverKind;

use super::rules::*;
use super::*;
use crate::config::NfsBackend;
use crate::fabric::SnmpTiming;

fn v(c: &Check) -> Verdict {
    c.verdict
}

#[test]
fn config_fails_with_the_loaders_message() {
    assert_eq!(v(&config("f.toml", Ok(()))), Verdict::Ok);
    let c = config("f.toml", Err("f.toml: `listen` must be ADDRESS:PORT".into()));
    assert_eq!(v(&c), Verdict::Fail);
    assert!(c.detail.contains("`listen`"), "{c:?}");
}

#[test]
fn schema_states() {
    let ok = |v: &[i64]| v.iter().map(|n| (*n, true)).collect::<Vec<_>>();
    assert_eq!(schema(&[1, 2, 3], &ok(&[1, 2, 3])), Schema::Current);
    assert_eq!(schema(&[1, 2, 3], &ok(&[1])), Schema::Pending(vec![2, 3]));
    assert_eq!(schema(&[1, 2, 3], &[]), Schema::Pending(vec![1, 2, 3]));
    assert_eq!(schema(&[1, 2], &ok(&[1, 2, 3])), Schema::Newer(vec![3]));
    assert_eq!(schema(&[1, 2], &[(1, true), (2, false)]), Schema::Dirty(vec![2]));
}

#[test]
fn database_verdicts() {
    let open = |applied: &[i64]| DbFacts::Open {
        url: "sqlite:///x".into(),
        known: vec![1, 2, 3],
        applied: applied.iter().map(|n| (*n, true)).collect(),
    };
    let fresh = database(&DbFacts::NoFile { path: "/var/lib/bramble/bramble.db".into() });
    assert_eq!(v(&fresh), Verdict::Warn);
    assert!(fresh.advice.contains("created at first start"), "{fresh:?}");
    assert_eq!(v(&database(&open(&[1, 2, 3]))), Verdict::Ok);
    let pending = database(&open(&[1]));
    assert_eq!(v(&pending), Verdict::Warn);
    assert!(pending.advice.contains("serve will apply 2 migration"), "{pending:?}");
    let newer = database(&open(&[1, 2, 3, 4]));
    assert_eq!(v(&newer), Verdict::Fail);
    assert!(newer.detail.contains("0004") && newer.detail.contains("newer"), "{newer:?}");
    let down =
        DbFacts::Unreachable { url: "postgres://b:***@db/b".into(), error: "refused".into() };
    assert_eq!(v(&database(&down)), Verdict::Fail);
    assert_eq!(v(&database(&DbFacts::NotAsked)), Verdict::Skip);
}

fn trunk_facts(vlan: VlanSupport) -> TrunkFacts {
    TrunkFacts { name: "enp1s0".into(), exists: true, ethernet: true, up: true, vlan }
}

#[test]
fn trunk_verdicts() {
    assert_eq!(v(&trunk(false, None)), Verdict::Skip);
    assert!(trunk(false, None).detail.contains("netboot is disabled"));
    for s in [VlanSupport::Loaded, VlanSupport::Builtin, VlanSupport::Loadable] {
        assert_eq!(v(&trunk(true, Some(&trunk_facts(s)))), Verdict::Ok, "{s:?}");
    }
    let none = trunk(true, Some(&trunk_facts(VlanSupport::Absent)));
    assert_eq!(v(&none), Verdict::Fail);
    assert!(none.detail.contains("8021q") && none.advice.contains("veth"), "{none:?}");
    let missing = TrunkFacts { exists: false, ..trunk_facts(VlanSupport::Loaded) };
    assert!(trunk(true, Some(&missing)).detail.contains("no interface enp1s0"));
    let lo = TrunkFacts { ethernet: false, ..trunk_facts(VlanSupport::Loaded) };
    assert_eq!(v(&trunk(true, Some(&lo))), Verdict::Fail);
    let down = TrunkFacts { up: false, ..trunk_facts(VlanSupport::Loaded) };
    assert_eq!(v(&trunk(true, Some(&down))), Verdict::Warn);
}

#[test]
fn port_verdicts() {
    let ours = Holder { pid: 7, command: "bramble serve".into(), ours: true };
    let theirs = Holder { pid: 123, command: "dnsmasq".into(), ours: false };
    let c = port("port dhcp", Proto::Udp, 67, true, &PortFacts::Free);
    assert_eq!(v(&c), Verdict::Ok);
    let c = port("port dhcp", Proto::Udp, 67, true, &PortFacts::Held(vec![ours.clone()]));
    assert_eq!(v(&c), Verdict::Ok);
    assert!(c.detail.contains("held by bramble serve (pid 7)"), "{c:?}");
    let c = port("port dhcp", Proto::Udp, 67, true, &PortFacts::Held(vec![ours, theirs]));
    assert_eq!(v(&c), Verdict::Fail);
    assert_eq!(c.detail, "dnsmasq (pid 123) holds UDP 67");
    let c = port("port dhcp", Proto::Udp, 67, true, &PortFacts::Held(vec![]));
    assert_eq!(v(&c), Verdict::Fail);
    assert!(c.advice.contains("root"));
    assert_eq!(v(&port("port tftp", Proto::Udp, 69, false, &PortFacts::Free)), Verdict::Skip);
    assert_eq!(
        v(&port("port api", Proto::Tcp, 8080, true, &PortFacts::Unknown("x".into()))),
        Verdict::Warn
    );
}

#[test]
fn nfs_verdicts() {
    let addr = "127.0.0.1:2049".parse().unwrap();
    let ganesha =
        |installed, process, answering| NfsFacts::Ganesha { installed, process, answering };
    assert_eq!(v(&nfs(&NfsFacts::None)), Verdict::Warn);
    assert_eq!(v(&nfs(&ganesha(false, None, None))), Verdict::Fail);
    assert_eq!(v(&nfs(&ganesha(true, None, None))), Verdict::Skip);
    let gone = nfs(&ganesha(true, Some(PidState::Gone(42)), Some((addr, false))));
    assert_eq!(v(&gone), Verdict::Fail);
    assert!(gone.detail.contains("not running") && gone.detail.contains("42"), "{gone:?}");
    assert_eq!(v(&nfs(&ganesha(true, Some(PidState::Missing), Some((addr, true))))), Verdict::Fail);
    let silent = nfs(&ganesha(true, Some(PidState::Alive(9)), Some((addr, false))));
    assert!(silent.detail.contains("nothing answers NFS on 127.0.0.1:2049"), "{silent:?}");
    let fine = nfs(&ganesha(true, Some(PidState::Alive(9)), Some((addr, true))));
    assert_eq!(v(&fine), Verdict::Ok);
    assert!(fine.detail.contains("pid 9"));
    let kernel = |exportfs, nfsd, answering| NfsFacts::Kernel { exportfs, nfsd, answering };
    assert_eq!(v(&nfs(&kernel(false, true, None))), Verdict::Fail);
    assert!(nfs(&kernel(true, false, None)).detail.contains("/proc/fs/nfsd"));
    assert_eq!(v(&nfs(&kernel(true, true, None))), Verdict::Skip);
    assert_eq!(v(&nfs(&kernel(true, true, Some((addr, true))))), Verdict::Ok);
}

fn store_facts(strategy: Strategy, free: u64, roots: u64) -> StoreFacts {
    StoreFacts {
        dir: "/srv/images".into(),
        exists: true,
        filesystem: "ext4".into(),
        strategy: Ok(strategy),
        free: Ok(free),
        base_sizes: vec![200 << 20, 700 << 20],
        roots,
    }
}

#[test]
fn store_warns_for_copy_at_scale_only() {
    let copy = store_facts(Strategy::Copy, 1 << 40, 0);
    assert_eq!(v(&store(&copy, Some(COPY_WARN_SLOTS))), Verdict::Ok);
    let many = store(&copy, Some(COPY_WARN_SLOTS + 1));
    assert_eq!(v(&many), Verdict::Warn);
    assert!(many.advice.contains("btrfs"), "{many:?}");
    let snap = store_facts(Strategy::BtrfsSnapshot, 1 << 40, 0);
    let c = store(&snap, Some(500));
    assert_eq!(v(&c), Verdict::Ok);
    assert!(c.detail.contains("btrfs-snapshot"), "{c:?}");
    let fresh = StoreFacts { exists: false, ..copy.clone() };
    assert!(store(&fresh, None).detail.contains("created at first start"));
    let unprobed = StoreFacts { strategy: Err("permission denied".into()), ..copy };
    assert_eq!(v(&store(&unprobed, None)), Verdict::Warn);
}

#[test]
fn disk_needs_a_copy_per_missing_root_or_little_on_cow() {
    assert_eq!(roots_needed(Strategy::Copy, 10, 4, &[200 << 20, 700 << 20]), 6 * (700 << 20));
    assert_eq!(roots_needed(Strategy::Reflink, 10, 4, &[700 << 20]), 6 * COW_ROOT_BYTES);
    assert_eq!(roots_needed(Strategy::Copy, 3, 5, &[700 << 20]), 0);
    assert_eq!(roots_needed(Strategy::Copy, 3, 0, &[]), 0);
    let need = 10 * (700u64 << 20);
    assert_eq!(v(&disk(&store_facts(Strategy::Copy, need - 1, 0), Some(10))), Verdict::Fail);
    assert_eq!(v(&disk(&store_facts(Strategy::Copy, need + 1, 0), Some(10))), Verdict::Warn);
    assert_eq!(v(&disk(&store_facts(Strategy::Copy, need * 3, 0), Some(10))), Verdict::Ok);
    assert_eq!(v(&disk(&store_facts(Strategy::BtrfsSnapshot, need - 1, 0), Some(10))), Verdict::Ok);
    assert_eq!(v(&disk(&store_facts(Strategy::Copy, 1, 0), None)), Verdict::Ok);
}

fn switch_facts(version: &'static str, driver: &str, answer: SnmpAnswer) -> SwitchFacts {
    SwitchFacts {
        name: "sw1".into(),
        address: "10.0.0.2:161".into(),
        driver: driver.into(),
        version,
        protocols: (version == "v3").then(|| "SHA-256/AES".into()),
        answer,
    }
}

#[test]
fn switch_verdicts_word_silence_and_refusal_truthfully() {
    let id = |kind| SnmpAnswer::Identified {
        sys_object_id: "1.3.6.1.4.1.9.1.2277".into(),
        sys_descr: "Cisco IOS\nline 2".into(),
        kind,
    };
    let c = switch(&switch_facts("v3", "auto", id(DriverKind::Cisco)));
    assert_eq!(v(&c), Verdict::Ok);
    assert!(c.detail.contains("\"Cisco IOS\"") && c.detail.contains("cisco driver"), "{c:?}");
    assert_eq!(v(&switch(&switch_facts("v3", "cisco", id(DriverKind::Cisco)))), Verdict::Ok);
    let wrong = switch(&switch_facts("v3", "standard", id(DriverKind::Cisco)));
    assert_eq!(v(&wrong), Verdict::Fail);
    assert!(wrong.detail.contains("registered with driver standard"), "{wrong:?}");
    let v3 = switch(&switch_facts("v3", "auto", SnmpAnswer::Silent));
    assert_eq!(v(&v3), Verdict::Fail);
    assert!(v3.detail.starts_with("no answer from sw1 (10.0.0.2:161)"), "{v3:?}");
    assert!(v3.detail.contains("privacy password or protocol is wrong"), "{v3:?}");
    assert!(v3.detail.contains("SHA-256/AES") && !v3.detail.contains("community"), "{v3:?}");
    let v2 = switch(&switch_facts("v2c", "auto", SnmpAnswer::Silent));
    assert!(
        v2.detail.starts_with("no answer from sw1") && v2.detail.contains("community is wrong"),
        "{v2:?}"
    );
    let refused = switch(&switch_facts(
        "v3",
        "auto",
        SnmpAnswer::Refused("SNMPv3 Report from 10.0.0.2:161: usmStatsWrongDigests".into()),
    ));
    assert_eq!(v(&refused), Verdict::Fail);
    assert!(
        refused.detail.contains("refused the stored SNMPv3 credentials (protocols SHA-256/AES)")
            && refused.detail.contains("usmStatsWrongDigests"),
        "{refused:?}"
    );
    assert!(refused.advice.contains("auth_protocol"), "{refused:?}");
    assert_eq!(refused.name, "switch sw1");
}

/// Against the virtual switch, whose v3 user is SHA-1 as on many real PoE switches:
/// stored with `auth_protocol: SHA`, the credentials reach it through `to_driver` and
/// the row is ok; stored as before the field existed (SHA-256), the switch refuses them
/// and the row says so, well before one 2-second timeout, without a password.
#[tokio::test]
async fn switch_row_tells_a_sha1_switch_from_refused_v3_credentials() {
    use crate::secret::SnmpCredentials;
    use bramble_switch::sim::{SimOptions, SimSwitch, SimV3User};
    use bramble_switch::{Secret, V3Auth, V3Priv};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let mut opts = SimOptions::new(4, "unused-community");
    opts.v3 = Some(SimV3User {
        user: "bramble".into(),
        auth_pass: Secret::new("auth-SECRET-1"),
        priv_pass: Secret::new("priv-SECRET-2"),
    });
    let sim = SimSwitch::new(opts).expect("sim");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sim.serve(socket, async move {
        let _ = stopped.await;
    }));
    let timing = SnmpTiming { timeout: Duration::from_secs(2), retries: 1 };
    let row = |auth_protocol| async move {
        let credentials = SnmpCredentials::V3 {
            user: "bramble".into(),
            auth_protocol,
            auth_pass: Secret::new("auth-SECRET-1"),
            priv_protocol: V3Priv::Aes128,
            priv_pass: Secret::new("priv-SECRET-2"),
        };
        let sw = RegisteredSwitch {
            name: "sw1".into(),
            address: addr.to_string(),
            driver: "auto".into(),
            credentials,
        };
        let start = std::time::Instant::now();
        let answer = SystemHost::new().switch(&sw, timing).await;
        (switch_row(&sw, answer), start.elapsed())
    };
    let (ok, _) = row(V3Auth::Sha1).await;
    assert_eq!(v(&ok), Verdict::Ok, "{ok:?}");
    let (refused, took) = row(V3Auth::Sha256).await;
    assert_eq!(v(&refused), Verdict::Fail, "{refused:?}");
    assert!(
        refused.detail.contains("refused the stored SNMPv3 credentials (protocols SHA-256/AES)")
            && refused.detail.contains("usmStatsWrongDigests"),
        "{refused:?}"
    );
    assert!(!format!("{refused:?}").contains("SECRET"), "{refused:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let _ = stop.send(());
    let _ = task.await;
}

#[test]
fn clock_verdicts() {
    let at = |now_ms, newest_ms, db_ms| clock(&ClockFacts { now_ms, newest_ms, db_ms });
    assert_eq!(v(&at(1_000_000, None, None)), Verdict::Ok);
    assert_eq!(v(&at(1_000_000, Some(1_000_000 + INVENTORY_SLACK_MS), None)), Verdict::Ok);
    let back = at(1_000_000, Some(1_000_000 + INVENTORY_SLACK_MS + 1_000), None);
    assert_eq!(v(&back), Verdict::Fail);
    assert!(back.detail.contains("behind the newest inventory record"), "{back:?}");
    assert_eq!(v(&at(1_000_000, None, Some(1_000_000 - DB_SKEW_WARN_MS))), Verdict::Ok);
    assert_eq!(v(&at(1_000_000, None, Some(1_000_000 + DB_SKEW_WARN_MS + 1))), Verdict::Warn);
    assert_eq!(v(&at(1_000_000, None, Some(1_000_000 - DB_SKEW_FAIL_MS - 1))), Verdict::Fail);
}

#[test]
fn proc_net_tables_name_the_bound_sockets() {
    let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  12: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 51234 2 0000000000000000 0\n\
  13: 0100007F:0045 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 51235 2 0000000000000000 0\n";
    assert_eq!(sockets::inodes(udp, Proto::Udp, 67), vec![51234]);
    assert_eq!(sockets::inodes(udp, Proto::Udp, 69), vec![51235]);
    assert!(sockets::inodes(udp, Proto::Udp, 68).is_empty());
    let tcp = "  sl  local_address rem_address   st\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7001 1\n\
   1: 0100007F:D3A2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 7002 1\n\
   2: 0100007F:1F91 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 7003 1\n";
    assert_eq!(sockets::inodes(tcp, Proto::Tcp, 8080), vec![7001]);
    assert!(
        sockets::inodes(tcp, Proto::Tcp, 8081).is_empty(),
        "a client socket does not hold its port"
    );
    assert_eq!(sockets::socket_inode("socket:[51234]"), Some(51234));
    assert_eq!(sockets::socket_inode("pipe:[1]"), None);
}

#[test]
fn commands_are_named_as_people_name_them() {
    assert_eq!(
        sockets::command(b"/usr/bin/bramble\0serve\0--config\0/etc/b.toml\0", "bramble"),
        "bramble serve"
    );
    assert_eq!(
        sockets::command(b"/usr/sbin/dnsmasq\0--keep-in-foreground\0", "dnsmasq"),
        "dnsmasq"
    );
    assert_eq!(sockets::command(b"", "kworker\n"), "kworker");
}

#[test]
fn proc_holders_find_this_process_as_ours() {
    // A real socket of this test process, looked up through /proc as doctor does.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    match sockets::holders(Proto::Udp, port) {
        PortFacts::Held(h) => {
            assert!(h.iter().any(|h| h.pid == std::process::id() && h.ours), "{h:?}")
        }
        other => panic!("UDP {port}: {other:?}"),
    }
}

/// A machine freshly installed: nothing but the defaults.
struct Fresh;

#[async_trait]
impl Host for Fresh {
    async fn database(&self, url: &str, _offline: bool) -> (DbFacts, Option<Inventory>) {
        let path = crate::db::sqlite_path(url).unwrap_or_default();
        (DbFacts::NoFile { path }, None)
    }
    fn trunk(&self, _: &str) -> TrunkFacts {
        panic!("netboot is disabled by default: the trunk is not looked at")
    }
    fn port(&self, _: Proto, _: u16) -> PortFacts {
        PortFacts::Free
    }
    fn nfs(&self, backend: &NfsBackend, _offline: bool) -> NfsFacts {
        assert_eq!(*backend, NfsBackend::None);
        NfsFacts::None
    }
    fn store(&self, dir: &Path) -> StoreFacts {
        StoreFacts { exists: false, ..store_facts(Strategy::Copy, 10 << 30, 0) }.with_dir(dir)
    }
    async fn switch(&self, _: &RegisteredSwitch, _: SnmpTiming) -> SnmpAnswer {
        panic!("offline: no switch is asked")
    }
    fn now_ms(&self) -> i64 {
        1_700_000_000_000
    }
}

impl StoreFacts {
    fn with_dir(mut self, dir: &Path) -> Self {
        self.dir = PathBuf::from(dir);
        self
    }
}

fn default_config() -> crate::config::Config {
    let o = crate::config::Overrides {
        state_dir: Some("/var/lib/bramble".into()),
        ..Default::default()
    };
    crate::config::Config::from_raw(Default::default(), "built-in defaults", &o).unwrap()
}

#[tokio::test]
async fn a_fresh_install_passes_offline_with_warnings_only() {
    let config = default_config();
    let opts = Options { scope: Scope::All, offline: true, skip: vec![] };
    let checks = run(Ok(&config), "built-in defaults", &Fresh, &opts).await;
    assert!(!failed(&checks), "{checks:#?}");
    let row =
        |n: &str| checks.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("{n}: {checks:#?}"));
    assert_eq!(row("database").verdict, Verdict::Warn);
    assert_eq!(row("trunk").verdict, Verdict::Skip);
    assert_eq!(row("port dhcp").verdict, Verdict::Skip);
    assert_eq!(row("port api").verdict, Verdict::Ok);
    assert_eq!(row("switches").verdict, Verdict::Skip);
    assert_eq!(row("tls").verdict, Verdict::Skip);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "database",
            "trunk",
            "port dhcp",
            "port tftp",
            "port api",
            "nfs",
            "image store",
            "disk",
            "switches",
            "clock",
            "tls"
        ]
    );
}

#[tokio::test]
async fn serve_checks_only_the_local_subset() {
    let config = default_config();
    let opts = Options { scope: Scope::Local, offline: false, skip: vec![] };
    let checks = run(Ok(&config), "x", &Fresh, &opts).await;
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["config", "database", "trunk", "image store", "disk", "clock"]);
}

#[tokio::test]
async fn a_bad_config_fails_and_skips_the_rest() {
    let opts = Options { scope: Scope::All, offline: true, skip: vec![] };
    let checks = run(Err("f: `listen` bad".into()), "f", &Fresh, &opts).await;
    assert!(failed(&checks));
    assert!(checks[1..].iter().all(|c| c.verdict == Verdict::Skip), "{checks:#?}");
}

#[tokio::test]
async fn skip_turns_a_named_row_into_a_skip_that_quotes_it() {
    let config = default_config();
    let opts =
        Options { scope: Scope::All, offline: true, skip: vec!["database".into(), "api".into()] };
    let checks = run(Ok(&config), "x", &Fresh, &opts).await;
    let db = checks.iter().find(|c| c.name == "database").unwrap();
    assert_eq!(db.verdict, Verdict::Skip);
    assert!(db.detail.contains("--skip database") && db.detail.contains("no database"), "{db:?}");
    assert_eq!(checks.iter().find(|c| c.name == "port api").unwrap().verdict, Verdict::Skip);
}

#[test]
fn verdicts_serialize_lowercase() {
    let c = Check::fail("x", "d", "a");
    assert_eq!(serde_json::to_value(&c).unwrap()["verdict"], "fail");
}

/// The real probe on both backends: a missing SQLite file is not created, an empty
/// database has every migration pending, a migrated one is current with its inventory,
/// and a schema changed behind doctor's back is reported, never migrated.
#[tokio::test]
async fn the_database_probe_compares_migrations_without_applying_them() {
    let host = SystemHost::new();
    for tdb in crate::testing::test_databases().await {
        let known = crate::db::migrator(if tdb.label == "sqlite" {
            crate::db::Backend::Sqlite
        } else {
            crate::db::Backend::Postgres
        })
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect::<Vec<_>>();
        let last = *known.last().unwrap();
        let (facts, inv) = host.database(&tdb.url, false).await;
        match &facts {
            DbFacts::NoFile { path } => assert!(!path.exists(), "{}", tdb.label),
            DbFacts::Open { applied, .. } => {
                assert!(applied.is_empty(), "{}: {facts:?}", tdb.label);
                assert_eq!(v(&database(&facts)), Verdict::Warn);
            }
            other => panic!("{}: {other:?}", tdb.label),
        }
        assert!(inv.is_none());
        let db = crate::db::Db::connect(&tdb.url).await.unwrap();
        let (facts, inv) = host.database(&tdb.url, false).await;
        assert_eq!(v(&database(&facts)), Verdict::Ok, "{}: {facts:?}", tdb.label);
        let inv = inv.expect("inventory of a current schema");
        assert_eq!(inv.slots, 0);
        assert!(inv.switches.is_empty());
        match tdb.label {
            "sqlite" => assert_eq!(inv.db_offset_ms, None),
            _ => assert!(inv.db_offset_ms.is_some_and(|o| o.abs() < 2_000), "{inv:?}"),
        }
        let (offline, _) = host.database(&tdb.url, true).await;
        if tdb.label == "postgres" {
            assert_eq!(offline, DbFacts::NotAsked);
        }
        db.q("UPDATE _sqlx_migrations SET version = 9999 WHERE version = $1")
            .bind(last)
            .execute(db.pool())
            .await
            .unwrap();
        let (facts, inv) = host.database(&tdb.url, false).await;
        let c = database(&facts);
        assert_eq!(v(&c), Verdict::Fail, "{}: {c:?}", tdb.label);
        assert!(c.detail.contains("9999") && inv.is_none(), "{c:?}");
        db.q("DELETE FROM _sqlx_migrations WHERE version = 9999").execute(db.pool()).await.unwrap();
        for _ in 0..2 {
            let (facts, _) = host.database(&tdb.url, false).await;
            let c = database(&facts);
            assert_eq!(v(&c), Verdict::Warn, "{}: {c:?}", tdb.label);
            assert!(c.advice.contains("serve will apply 1 migration"), "{c:?}");
        }
        db.close().await;
        tdb.drop().await;
    }
}

fn summary(not_before: SystemTime, not_after: SystemTime) -> crate::tls::CertSummary {
    crate::tls::CertSummary {
        subject: "CN=bramble.example".into(),
        issuer: "CN=ca".into(),
        serial: "01".into(),
        not_before,
        not_after,
        dns_names: vec!["bramble.example".into()],
        ip_addresses: vec![],
        chain_len: 1,
        key_matches: Some(true),
    }
}

#[test]
fn tls_verdicts() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let listen = |a: &str| a.parse().unwrap();
    let configured = |s: Result<crate::tls::CertSummary, String>| TlsFacts::Configured {
        cert: "/etc/bramble/tls/server.pem".into(),
        summary: s,
        client_ca: true,
    };
    let v = |f: &TlsFacts| tls(f, now).verdict;
    assert_eq!(
        v(&TlsFacts::Plain { listen: listen("127.0.0.1:8080"), exposed: false }),
        Verdict::Skip
    );
    assert_eq!(
        v(&TlsFacts::Plain { listen: listen("0.0.0.0:8080"), exposed: true }),
        Verdict::Warn
    );
    assert_eq!(v(&configured(Err("no PEM certificate".into()))), Verdict::Fail);
    let mut wrong_key = summary(now - day, now + 90 * day);
    wrong_key.key_matches = Some(false);
    assert_eq!(v(&configured(Ok(wrong_key))), Verdict::Fail);
    assert_eq!(v(&configured(Ok(summary(now - 90 * day, now - day)))), Verdict::Fail, "expired");
    assert_eq!(v(&configured(Ok(summary(now + day, now + 90 * day)))), Verdict::Fail, "not yet");
    let soon = tls(&configured(Ok(summary(now - day, now + 10 * day))), now);
    assert_eq!(soon.verdict, Verdict::Warn, "{soon:?}");
    assert!(
        soon.detail.contains("expires in 9 days") || soon.detail.contains("expires in 10 days"),
        "{soon:?}"
    );
    let fine = tls(&configured(Ok(summary(now - day, now + 60 * day))), now);
    assert_eq!(fine.verdict, Verdict::Ok, "{fine:?}");
    assert!(fine.detail.contains("client certificates required"), "{fine:?}");
}

/// The real files: a certificate made by `openssl`, its key and another key.
#[test]
fn tls_reads_real_certificates() {
    let pki = crate::tls::testpki::TestPki::new();
    let host = SystemHost::new();
    let good = host.tls(&pki.server_cert, &pki.server_key).expect("inspect");
    assert_eq!(good.key_matches, Some(true));
    let facts =
        TlsFacts::Configured { cert: pki.server_cert.clone(), summary: Ok(good), client_ca: false };
    assert_eq!(tls(&facts, SystemTime::now()).verdict, Verdict::Ok, "a fresh 30-day certificate");
    let other = host.tls(&pki.server_cert, &pki.client_key).expect("inspect");
    let facts = TlsFacts::Configured {
        cert: pki.server_cert.clone(),
        summary: Ok(other),
        client_ca: false,
    };
    assert_eq!(tls(&facts, SystemTime::now()).verdict, Verdict::Fail, "another key");
    let missing = host.tls(Path::new("/nonexistent/server.pem"), &pki.server_key);
    let facts = TlsFacts::Configured {
        cert: "/nonexistent/server.pem".into(),
        summary: missing,
        client_ca: false,
    };
    assert_eq!(tls(&facts, SystemTime::now()).verdict, Verdict::Fail);
}
