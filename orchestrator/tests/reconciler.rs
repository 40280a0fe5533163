//! The reconciler against virtual switches speaking real SNMP, on SQLite and PostgreSQL:
//! drift made by a real peer (net-snmp's `snmpset`) is found, repaired and recorded
//! once; PoE admin state survives repairs; a silent switch is one event per outage and
//! does not stop the others; an unplugged Pi's slot is flagged and unflagged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bramble::alloc::AddressPools;
use bramble::auth::Principal;
use bramble::db::events::EventFilter;
use bramble::db::fabric::NewSwitch;
use bramble::db::jobs::{CreateOutcome, NewJob};
use bramble::db::pis::NewPi;
use bramble::db::{Db, Order};
use bramble::fabric::{Fabric, SnmpTiming};
use bramble::ids::{PiId, SlotId, TokenId};
use bramble::jobs::model::JobKind;
use bramble::lifecycle::PiState;
use bramble::model::{Event, PowerState, Shelf, Switch};
use bramble::reconciler::{ReconcileReport, Reconciler, SwitchReport};
use bramble::secret::{Secret, SnmpCredentials};
use bramble::testing::{TestDb, test_databases};
use bramble_switch::Drift;
use bramble_switch::sim::{SimHandle, SimOptions, SimSwitch};
use serde_json::json;
use tokio::sync::oneshot;

const COMMUNITY: &str = "rc-private";
const PORTS: u16 = 8;
const TRUNK: u16 = PORTS + 1;

/// A virtual switch on a loopback port; stops when dropped.
struct Sim {
    addr: SocketAddr,
    handle: SimHandle,
    _stop: oneshot::Sender<()>,
}

async fn start_sim() -> Sim {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = socket.local_addr().expect("local addr");
    let sim = SimSwitch::new(SimOptions::new(PORTS, COMMUNITY)).expect("sim options");
    let handle = sim.handle();
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = sim
            .serve(socket, async {
                let _ = rx.await;
            })
            .await;
    });
    Sim { addr, handle, _stop: stop }
}

/// Runs a net-snmp tool against `sim` (v2c); panics with its stderr if it fails.
async fn snmp(tool: &'static str, sim: &Sim, args: &[&str]) -> String {
    let mut argv: Vec<String> =
        ["-v2c", "-c", COMMUNITY, "-On", "-t", "2", "-r", "1"].map(String::from).to_vec();
    argv.push(format!("udp:{}", sim.addr));
    argv.extend(args.iter().map(|a| a.to_string()));
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(tool).args(&argv).output())
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{tool} not runnable ({e}); install Debian package `snmp`"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PVID: &str = "1.3.6.1.2.1.17.7.1.4.5.1.1";
const EGRESS: &str = "1.3.6.1.2.1.17.7.1.4.3.1.2";
const POE_ADMIN: &str = "1.3.6.1.2.1.105.1.1.1.3.1";

/// One switch with one enrolled, configured shelf of `PORTS` slots, a Pi (recorded
/// powered on) in each.
struct Rig {
    sim: Sim,
    switch: Switch,
    shelf: Shelf,
    pis: Vec<PiId>,
}

impl Rig {
    fn slot(&self, port: u16) -> SlotId {
        self.shelf.slots.iter().find(|s| s.port == port).expect("slot").id.clone()
    }

    fn vlan(&self, port: u16) -> u16 {
        self.shelf.slots.iter().find(|s| s.port == port).expect("slot").vlan
    }

    fn pi(&self, port: u16) -> &PiId {
        &self.pis[usize::from(port - 1)]
    }
}

struct Lab {
    db: Db,
    fabric: Arc<Fabric>,
    pools: AddressPools,
    public_vlan: u16,
}

impl Lab {
    async fn new(tdb: &TestDb) -> Lab {
        let config = tdb.config();
        let db = Db::connect(&tdb.url).await.expect("database");
        let timing = SnmpTiming { timeout: Duration::from_millis(300), retries: 1 };
        let fabric = Arc::new(Fabric::new(db.clone(), timing, config.public_vlan));
        Lab { db, fabric, pools: config.pools, public_vlan: config.public_vlan }
    }

    fn reconciler(&self) -> Reconciler {
        Reconciler::new(self.db.clone(), self.fabric.clone(), Duration::from_secs(3600))
    }

    async fn rig(&self, name: &str) -> Rig {
        let sim = start_sim().await;
        let credentials = SnmpCredentials::V2c { community: Secret::new(COMMUNITY) };
        let new = NewSwitch {
            name: name.into(),
            address: sim.addr.to_string(),
            driver: "auto".into(),
            trunk_port: TRUNK,
            credentials,
            controller: "reconciler-test".into(),
            l2_domain: name.into(),
        };
        let switch = self.db.insert_switch(&new).await.expect("switch");
        let shelf = self
            .db
            .enroll_shelf(&format!("{name}-shelf"), &switch.id, 1, PORTS, &self.pools)
            .await
            .expect("shelf");
        let desired = self.fabric.desired_for(&switch).await.expect("desired");
        assert!(desired.vlans.contains_key(&bramble_switch::VlanId(self.public_vlan)));
        self.fabric
            .with_driver(&switch, |d| async move { d.apply(&desired).await })
            .await
            .expect("configure the shelf");
        let mut pis = Vec::new();
        for s in &shelf.slots {
            let new = NewPi {
                serial: None,
                mac: None,
                model: "3b".into(),
                slot: Some(s.id.clone()),
                owner: None,
                state: PiState::Ready,
            };
            let pi = self.db.insert_pi(&new, "test").await.expect("pi");
            self.db.set_pi_power(&pi.id, PowerState::On).await.expect("power");
            pis.push(pi.id);
        }
        Rig { sim, switch, shelf, pis }
    }

    async fn events(&self, kind: &str) -> Vec<Event> {
        let f = EventFilter { kind_prefix: Some(kind.into()), ..Default::default() };
        let page = self.db.list_events(&f, None, Order::Asc, 1000).await.expect("events");
        page.items.into_iter().filter(|e| e.kind == kind).collect()
    }

    async fn flag(&self, slot: &SlotId) -> Option<String> {
        self.db.slot_location(slot).await.expect("slot").expect("slot exists").flag
    }
}

fn operator() -> Principal {
    Principal::Operator { token: TokenId("tok-rc-test".into()) }
}

async fn pass(r: &Reconciler) -> ReconcileReport {
    r.reconcile_once().await.expect("pass")
}

fn of<'a>(report: &'a ReconcileReport, rig: &Rig) -> &'a SwitchReport {
    report.switch(&rig.switch.name).expect("switch in report")
}

#[tokio::test]
async fn drift_made_with_snmpset_is_repaired_once_and_poe_is_left_alone() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-drift").await;
        let rec = lab.reconciler();
        let first = pass(&rec).await;
        assert!(
            of(&first, &rig).drift.is_empty() && of(&first, &rig).errors.is_empty(),
            "{:?}",
            of(&first, &rig)
        );

        // A customer switched their Pi on port 2 off; someone misconfigured the switch.
        snmp("snmpset", &rig.sim, &[&format!("{POE_ADMIN}.2"), "i", "2"]).await;
        let (v3, v5) = (rig.vlan(3), rig.vlan(5));
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{EGRESS}.{v5}")])
                .await
                .contains("Hex-STRING: 08 80")
        );
        snmp("snmpset", &rig.sim, &[&format!("{PVID}.3"), "u", &lab.public_vlan.to_string()]).await;
        snmp("snmpset", &rig.sim, &[&format!("{EGRESS}.{v5}"), "x", "0800"]).await;
        let power_changes: Vec<u64> =
            (1..=PORTS).map(|p| rig.sim.handle.power_changes(p)).collect();

        let report = pass(&rec).await;
        let sw = of(&report, &rig);
        assert!(
            sw.drift.contains(&Drift::Pvid {
                port: 3,
                expected: v3,
                actual: Some(lab.public_vlan)
            }),
            "{:?}",
            sw.drift
        );
        assert!(
            sw.drift.contains(&Drift::Egress { vlan: v5, missing: vec![TRUNK], extra: vec![] }),
            "{:?}",
            sw.drift
        );
        assert!(sw.repaired, "{:?}", sw.errors);

        // Read back by a real peer and by the driver.
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{PVID}.3")])
                .await
                .contains(&format!("Gauge32: {v3}"))
        );
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{EGRESS}.{v5}")])
                .await
                .contains("Hex-STRING: 08 80")
        );
        let desired = lab.fabric.desired_for(&rig.switch).await.expect("desired");
        let snapshot = lab
            .fabric
            .with_driver(&rig.switch, |d| async move { d.snapshot().await })
            .await
            .expect("snapshot");
        assert_eq!(bramble_switch::model::drift(&desired, &snapshot), vec![]);

        // PoE untouched: port 2 still off, no port power-cycled by the repair.
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{POE_ADMIN}.2")]).await.contains("INTEGER: 2")
        );
        assert_eq!(
            (1..=PORTS).map(|p| rig.sim.handle.power_changes(p)).collect::<Vec<_>>(),
            power_changes
        );
        assert!(!snapshot.poe[&2].admin_enabled);
        assert_eq!(
            lab.db.get_pi(rig.pi(2)).await.expect("pi").expect("pi").power,
            PowerState::Off,
            "recorded power follows the port"
        );
        assert_eq!(sw.power_observed.len(), 1);
        assert!(sw.flagged.is_empty(), "a port switched off is not a missing draw");

        let repaired = lab.events("switch.drift_repaired").await;
        assert_eq!(repaired.len(), 1, "[{}] one event per repair", tdb.label);
        assert_eq!(
            repaired[0].data["drift"].as_array().map(Vec::len),
            Some(2),
            "{}",
            repaired[0].data
        );
        assert_eq!(repaired[0].data["switch"], json!(rig.switch.id));
        assert_eq!(lab.events("pi.power_observed").await.len(), 1);

        let again = pass(&rec).await;
        let sw = of(&again, &rig);
        assert!(sw.drift.is_empty() && !sw.repaired && sw.power_observed.is_empty(), "{sw:?}");
        assert_eq!(lab.events("switch.drift_repaired").await.len(), 1);
        assert_eq!(lab.events("pi.power_observed").await.len(), 1);

        // While the shelf is being racked the job owns the switch: drift is only reported.
        let rack = NewJob {
            kind: JobKind::RackShelf,
            pi: None,
            shelf: Some(rig.shelf.id.clone()),
            params: json!({}),
            idempotency_key: None,
        };
        let job = match lab.db.create_job(&rack, &operator()).await.expect("rack job") {
            CreateOutcome::Created(job) => job,
            other => panic!("rack job not created: {other:?}"),
        };
        snmp("snmpset", &rig.sim, &[&format!("{PVID}.3"), "u", &lab.public_vlan.to_string()]).await;
        // The rack job powers ports off and on: what the reconciler reads of them meanwhile
        // is not recorded as the Pis' power.
        snmp("snmpset", &rig.sim, &[&format!("{POE_ADMIN}.5"), "i", "2"]).await;
        let deferred = pass(&rec).await;
        let sw = of(&deferred, &rig);
        assert!(sw.drift.len() == 1 && !sw.repaired && sw.repair_deferred, "{sw:?}");
        assert!(sw.power_observed.is_empty(), "racking Pis are the job's: {sw:?}");
        let pi5 = lab.db.get_pi(rig.pi(5)).await.expect("pi").expect("pi 5");
        assert_eq!(pi5.power, PowerState::On, "[{}] recorded power left to the job", tdb.label);
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{PVID}.3")])
                .await
                .contains(&format!("Gauge32: {}", lab.public_vlan))
        );
        assert!(lab.db.cancel_job(&job.id, &operator()).await.expect("cancel"));
        let after = pass(&rec).await;
        assert!(of(&after, &rig).repaired);
        assert_eq!(of(&after, &rig).power_observed.iter().map(|o| o.port).collect::<Vec<_>>(), [5]);
        assert_eq!(lab.events("switch.drift_repaired").await.len(), 2);
        lab.db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_silent_switch_is_one_event_per_outage_and_the_others_still_reconcile() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let (quiet, busy) = (lab.rig("rc-quiet").await, lab.rig("rc-busy").await);
        let rec = lab.reconciler();
        quiet.sim.handle.set_silent(true);
        for round in 0..2 {
            snmp("snmpset", &busy.sim, &[&format!("{PVID}.1"), "u", &lab.public_vlan.to_string()])
                .await;
            let report = pass(&rec).await;
            let q = of(&report, &quiet);
            assert!(!q.reachable && !q.errors.is_empty(), "round {round}: {q:?}");
            let b = of(&report, &busy);
            assert!(b.reachable && b.repaired && b.drift.len() == 1, "round {round}: {b:?}");
        }
        let down = lab.events("switch.unreachable").await;
        assert_eq!(down.len(), 1, "[{}] one event per outage, not per pass", tdb.label);
        assert_eq!(down[0].data["name"], "rc-quiet");
        assert_eq!(lab.events("switch.drift_repaired").await.len(), 2);

        quiet.sim.handle.set_silent(false);
        let report = pass(&rec).await;
        assert!(
            of(&report, &quiet).reachable && of(&report, &quiet).errors.is_empty(),
            "{:?}",
            of(&report, &quiet)
        );
        assert_eq!(lab.events("switch.reachable").await.len(), 1);
        quiet.sim.handle.set_silent(true);
        pass(&rec).await;
        assert_eq!(lab.events("switch.unreachable").await.len(), 2, "a new outage is a new event");
        lab.db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_power_reading_older_than_the_pis_record_is_not_recorded() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-stale").await;
        let pi = rig.pi(2);
        // A switch read taken before a job recorded the Pi's power is stale.
        let read_at = bramble::time::now_millis() - 1;
        lab.db.set_pi_power(pi, PowerState::On).await.expect("power");
        let stale = lab.db.observe_pi_power(pi, PowerState::On, PowerState::Off, read_at);
        assert!(!stale.await.expect("observe"), "[{}] a stale read is refused", tdb.label);
        // So is one that expects a power the record no longer says.
        let later = bramble::time::now_millis() + 1000;
        let wrong = lab.db.observe_pi_power(pi, PowerState::Off, PowerState::On, later);
        assert!(!wrong.await.expect("observe"));
        assert_eq!(lab.db.get_pi(pi).await.expect("pi").expect("pi").power, PowerState::On);
        // A fresh read is recorded.
        let fresh = lab.db.observe_pi_power(pi, PowerState::On, PowerState::Off, later);
        assert!(fresh.await.expect("observe"));
        assert_eq!(lab.db.get_pi(pi).await.expect("pi").expect("pi").power, PowerState::Off);
        lab.db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn an_unplugged_pi_is_flagged_once_and_unflagged_when_it_draws_again() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-draw").await;
        let rec = lab.reconciler();
        let first = pass(&rec).await;
        assert!(of(&first, &rig).flagged.is_empty(), "{:?}", of(&first, &rig));

        // Port 6's Pi has a job running: the job owns it, even if it is unplugged.
        let job = NewJob {
            kind: JobKind::Reboot,
            pi: Some(rig.pi(6).clone()),
            shelf: None,
            params: json!({}),
            idempotency_key: None,
        };
        lab.db.create_job(&job, &operator()).await.expect("job");
        rig.sim.handle.set_device_present(4, false).expect("unplug");
        rig.sim.handle.set_device_present(6, false).expect("unplug");
        for _ in 0..2 {
            pass(&rec).await;
        }
        let flag = lab.flag(&rig.slot(4)).await.expect("port 4 flagged");
        assert!(flag.starts_with("no power draw on port 4:"), "{flag}");
        assert_eq!(
            lab.flag(&rig.slot(6)).await,
            None,
            "a Pi with a running job is left to the job"
        );
        let lost = lab.events("pi.no_power_draw").await;
        assert_eq!(lost.len(), 1, "[{}] flagged once, not on every pass", tdb.label);
        assert_eq!(lost[0].pi.as_ref(), Some(rig.pi(4)));
        assert_eq!(rig.sim.handle.power_changes(4), 0, "the reconciler never power-cycles");

        rig.sim.handle.set_device_present(4, true).expect("plug back");
        let report = pass(&rec).await;
        assert_eq!(of(&report, &rig).unflagged, [4]);
        assert_eq!(lab.flag(&rig.slot(4)).await, None);
        let back = lab.events("pi.power_draw_restored").await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].pi.as_ref(), Some(rig.pi(4)));
        lab.db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn the_background_task_runs_at_start_and_on_demand_until_shut_down() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-task").await;
        snmp("snmpset", &rig.sim, &[&format!("{PVID}.2"), "u", &lab.public_vlan.to_string()]).await;
        let rec = lab.reconciler();
        let trigger = rec.trigger();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(rec.run(async {
            let _ = stopped.await;
        }));
        wait_for_events(&lab, "switch.drift_repaired", 1).await;
        snmp("snmpset", &rig.sim, &[&format!("{PVID}.2"), "u", &lab.public_vlan.to_string()]).await;
        trigger.now();
        wait_for_events(&lab, "switch.drift_repaired", 2).await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
        lab.db.close().await;
        tdb.drop().await;
    }
}

/// Waits (at most 10 s) until `n` events of `kind` are in the log.
async fn wait_for_events(lab: &Lab, kind: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lab.events(kind).await.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "no {n} {kind} events after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_refused_repair_is_recorded_once_and_retried_every_pass() {
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-refuse").await;
        let rec = lab.reconciler();
        snmp("snmpset", &rig.sim, &[&format!("{PVID}.7"), "u", &lab.public_vlan.to_string()]).await;
        rig.sim.handle.set_reject_sets(true);
        for _ in 0..2 {
            let report = pass(&rec).await;
            let sw = of(&report, &rig);
            assert!(
                sw.reachable && !sw.repaired && sw.drift.len() == 1 && !sw.errors.is_empty(),
                "{sw:?}"
            );
        }
        let failed = lab.events("switch.repair_failed").await;
        assert_eq!(failed.len(), 1, "[{}] the same failure is recorded once", tdb.label);
        assert!(
            failed[0].data["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            failed[0].data
        );

        rig.sim.handle.set_reject_sets(false);
        assert!(of(&pass(&rec).await, &rig).repaired);
        assert!(
            snmp("snmpget", &rig.sim, &[&format!("{PVID}.7")])
                .await
                .contains(&format!("Gauge32: {}", rig.vlan(7)))
        );
        assert_eq!(lab.events("switch.drift_repaired").await.len(), 1);
        lab.db.close().await;
        tdb.drop().await;
    }
}

/// The non-slot rule (`bramble::poe::guard`): a PoE change that names the trunk, alone
/// or beside a slot, is refused with `FabricError::NotASlot` and the switch receives no
/// SET at all; the same change on slots only goes through.
#[tokio::test]
async fn power_on_a_port_that_is_not_a_slot_is_refused_before_any_set() {
    use bramble::fabric::FabricError;
    use bramble_switch::PortNo;
    for tdb in test_databases().await {
        let lab = Lab::new(&tdb).await;
        let rig = lab.rig("rc-guard").await;
        let sets = rig.sim.handle.sets();
        for ports in
            [vec![(PortNo(TRUNK), false)], vec![(PortNo(2), false), (PortNo(TRUNK), false)]]
        {
            let err = lab
                .fabric
                .with_driver(&rig.switch, |d| async move { d.set_ports_power(&ports).await })
                .await
                .expect_err("the trunk is not a slot");
            match &err {
                FabricError::NotASlot { ports, .. } => assert_eq!(ports, &[TRUNK]),
                other => panic!("[{}] want NotASlot, got {other:?}", tdb.label),
            }
        }
        let err = lab
            .fabric
            .with_driver(&rig.switch, |d| async move {
                d.power_cycle(&[PortNo(TRUNK)], Duration::ZERO).await
            })
            .await
            .expect_err("a power cycle of the trunk");
        assert!(matches!(err, FabricError::NotASlot { .. }), "{err:?}");
        assert_eq!(rig.sim.handle.sets(), sets, "[{}] a refused request sends no SET", tdb.label);
        assert_eq!(rig.sim.handle.power_changes(2), 0);
        lab.fabric
            .with_driver(&rig.switch, |d| async move { d.set_port_power(PortNo(2), false).await })
            .await
            .expect("a slot's power may change");
        assert_eq!(rig.sim.handle.sets(), sets + 1);
        lab.db.close().await;
        tdb.drop().await;
    }
}
