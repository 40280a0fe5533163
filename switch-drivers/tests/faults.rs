//! Every fault switch of the virtual switch produces a clear, bounded failure from the
//! standard driver, and nothing is reported as applied unless it verifiably was.

mod common;

use bramble_switch::{
    PortNo, Session, ShelfPlan, StandardDriver, SwitchDriver, SwitchError, VlanId,
};
use common::{COMMUNITY, Sim, driver, v2c};
use std::time::{Duration, Instant};

fn shelf8() -> ShelfPlan {
    ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(9),
        pis: (1..=8).map(|p| (PortNo(p), VlanId(100 + p))).collect(),
    }
}

/// 500 ms per attempt, one retry: every failure must come back well within 3 s.
const BOUND: Duration = Duration::from_secs(3);

#[tokio::test]
async fn silent_switch_times_out_naming_switch_and_object() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    sim.handle.set_silent(true);
    let start = Instant::now();
    let err = d.set_port_power(PortNo(2), false).await.expect_err("silent switch");
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    assert!(matches!(err, SwitchError::Timeout { attempts: 2, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&sim.addr.to_string()) && msg.contains("1.3.6.1"), "{msg}");
    assert!(
        !msg.contains(COMMUNITY) && !format!("{err:?}").contains(COMMUNITY),
        "credential leaked: {msg}"
    );
    assert_eq!(sim.handle.power_changes(2), 0);
    sim.handle.set_silent(false);
    d.set_port_power(PortNo(2), false).await.expect("recovers when the switch answers again");
}

#[tokio::test]
async fn rejected_sets_fail_with_status_and_change_nothing() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    let before = sim.handle.state();
    sim.handle.set_reject_sets(true);
    let start = Instant::now();
    let err = d.configure_shelf(&shelf8()).await.expect_err("SETs rejected");
    assert!(start.elapsed() < BOUND);
    match &err {
        SwitchError::Snmp { status, oid, .. } => {
            assert!(
                status.contains("resourceUnavailable") || status.contains("ResourceUnavailable"),
                "{status}"
            );
            // The plan's first SET: a BRIDGE-MIB object (an edge port, then VLANs).
            assert!(oid.starts_with("1.3.6.1.2.1.17."), "{oid}");
        }
        other => panic!("expected an SNMP error status, got {other:?}"),
    }
    assert_eq!(sim.handle.state(), before, "a rejected SET must change nothing");
    let err = d.set_port_power(PortNo(3), false).await.expect_err("rejected");
    assert!(err.to_string().contains("port 3"), "error names the port: {err}");
    assert!(d.snapshot().await.is_ok(), "reads still work");
}

#[tokio::test]
async fn slow_answers_time_out_or_succeed_within_bounds() {
    let sim = Sim::start(8, None).await;
    let d = driver(v2c(sim.addr)).await;
    sim.handle.set_delay(Duration::from_millis(1500));
    let start = Instant::now();
    let err = d.port_power(PortNo(1)).await.expect_err("slower than the timeout");
    assert!(start.elapsed() < BOUND);
    assert!(matches!(err, SwitchError::Timeout { .. }), "{err:?}");
    sim.handle.set_delay(Duration::from_millis(50));
    assert!(d.port_power(PortNo(1)).await.expect("slow but in time").admin_enabled);
}

#[tokio::test]
async fn dropped_requests_never_yield_an_unverified_success() {
    let sim = Sim::start(8, None).await;
    let mut cfg = v2c(sim.addr);
    cfg.limits.max_varbinds = 4;
    let d = StandardDriver::new(Session::connect(cfg).await.expect("connect"));
    sim.handle.set_drop_fraction(1.0);
    let start = Instant::now();
    assert!(matches!(d.configure_shelf(&shelf8()).await, Err(SwitchError::Timeout { .. })));
    assert!(start.elapsed() < BOUND);
    sim.handle.set_drop_fraction(0.3);
    for _ in 0..5 {
        let start = Instant::now();
        let result = d.configure_shelf(&shelf8()).await;
        assert!(start.elapsed() < Duration::from_secs(30), "bounded: {:?}", start.elapsed());
        if let Ok(report) = result {
            assert!(report.verified);
            sim.handle.set_drop_fraction(0.0);
            assert!(
                d.drift(&shelf8().desired()).await.expect("drift").is_empty(),
                "reported applied but drifted"
            );
            return;
        }
    }
    sim.handle.set_drop_fraction(0.0);
    d.configure_shelf(&shelf8()).await.expect("completes once the network is clean");
}

#[tokio::test]
async fn a_shelf_cut_off_midway_is_an_error_and_a_rerun_completes_it() {
    let sim = Sim::start(96, None).await;
    let d = driver(v2c(sim.addr)).await;
    let plan = ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(97),
        pis: (1..=96).map(|p| (PortNo(p), VlanId(1000 + p))).collect(),
    };
    // Reject every SET once the first message of the plan has been committed.
    let mut events = sim.handle.subscribe();
    let handle = sim.handle.clone();
    let tripwire = tokio::spawn(async move {
        if events.recv().await.is_ok() {
            handle.set_reject_sets(true);
        }
    });
    let err = d.configure_shelf(&plan).await.expect_err("cut off after the first SET");
    assert!(matches!(err, SwitchError::Snmp { .. }), "{err:?}");
    let _ = tripwire.await;
    sim.handle.set_reject_sets(false);
    let drift = d.drift(&plan.desired()).await.expect("drift");
    assert!(
        !drift.is_empty(),
        "the switch holds a partial configuration, and it was not reported as applied"
    );
    assert!(sim.handle.state().vlans.len() > 1, "the first message did apply");
    let report = d.configure_shelf(&plan).await.expect("re-run resumes from what is there");
    assert!(report.verified && report.varbinds < 485, "{report:?}");
    assert!(d.drift(&plan.desired()).await.expect("drift").is_empty());
}

/// What `bramble doctor` can tell from a switch: the right credentials identify it
/// (sysObjectID, sysDescr, driver); a wrong SNMPv3 user or password is refused (the
/// virtual switch's agent sends an authentication Report, taken as a terminal
/// `SwitchError::Auth`), while a wrong v2c community gets no answer at all and ends as
/// a timeout; both within the bound, and no error names a secret.
#[tokio::test]
async fn identify_names_the_switch_and_wrong_credentials_are_refused_or_time_out() {
    use bramble_switch::detect::{DriverKind, identify};
    use bramble_switch::{Credentials, Secret};
    let sim = Sim::start(8, None).await;
    let (id, kind) = identify(common::v3(sim.addr)).await.expect("right v3 credentials");
    assert_eq!(kind, DriverKind::Standard);
    assert!(id.sys_object_id.starts_with("1.3.6.1.4.1"), "{id:?}");
    assert!(id.sys_descr.contains("Bramble virtual PoE switch"), "{id:?}");
    let mut wrong_user = common::v3(sim.addr);
    let mut wrong_pass = common::v3(sim.addr);
    if let Credentials::V3 { user, .. } = &mut wrong_user.credentials {
        *user = "not-a-user".into();
    }
    if let Credentials::V3 { auth_pass, .. } = &mut wrong_pass.credentials {
        *auth_pass = Secret::new("not-the-SECRET");
    }
    let mut wrong_community = v2c(sim.addr);
    wrong_community.credentials = Credentials::V2c { community: Secret::new("not-the-SECRET") };
    for (cfg, refused) in [(wrong_user, true), (wrong_pass, true), (wrong_community, false)] {
        let start = Instant::now();
        let err = identify(cfg).await.expect_err("wrong credentials");
        assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
        if refused {
            assert!(matches!(err, SwitchError::Auth { .. }), "{err:?}");
        } else {
            assert!(matches!(err, SwitchError::Timeout { .. }), "{err:?}");
        }
        assert!(
            !err.to_string().contains("SECRET") && !format!("{err:?}").contains("SECRET"),
            "{err}"
        );
    }
}
