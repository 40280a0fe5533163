//! net-snmp's snmpwalk/snmpget/snmpset against the virtual switch, over v2c and v3
//! authPriv: walks every table, sets PoE and VLAN membership, and checks that the
//! Q-BRIDGE consistency rules answer with inconsistentValue.

mod common;

use common::{Sim, run, v2c_args, v3_args};

const TABLES: &[(&str, &str)] = &[
    ("system", "1.3.6.1.2.1.1.2.0"),
    ("ifTable", "1.3.6.1.2.1.2.2.1.2.105"),
    ("dot1dBasePortIfIndex", "1.3.6.1.2.1.17.1.4.1.2.5"),
    ("dot1qVlanStaticTable", "1.3.6.1.2.1.17.7.1.4.3.1.2.1"),
    ("dot1qPvid", "1.3.6.1.2.1.17.7.1.4.5.1.1.9"),
    ("pethPsePortTable", "1.3.6.1.2.1.105.1.1.1.6.1.8"),
    ("pethMainPseTable", "1.3.6.1.2.1.105.1.3.1.1.4.1"),
    ("dot1qTpFdbTable", "1.3.6.1.2.1.17.7.1.2.2.1.2.10.184.39.235.1.2.3"),
];

async fn walk_all_tables(args: Vec<String>) {
    let (ok, out, err) = run("snmpwalk", &args, &["1.3.6.1"]).await;
    assert!(ok, "snmpwalk failed: {err}");
    for (table, oid) in TABLES {
        assert!(out.contains(&format!(".{oid} = ")), "{table} ({oid}) missing from walk:\n{out}");
    }
    let (ok, out, err) = run("snmpbulkwalk", &args, &["1.3.6.1.2.1.17.7.1.4.3"]).await;
    assert!(ok && out.contains("Hex-STRING: FF 80"), "bulkwalk: {out} {err}");
}

#[tokio::test]
async fn walks_every_table_over_v2c_and_v3_auth_priv() {
    let sim = Sim::start(8, None).await;
    sim.handle.inject_mac(10, [0xb8, 0x27, 0xeb, 1, 2, 3], 4).expect("inject");
    walk_all_tables(v2c_args(sim.addr)).await;
    walk_all_tables(v3_args(sim.addr)).await;
    let mut wrong = v3_args(sim.addr);
    let pos = wrong.iter().position(|a| a == "-X").expect("-X");
    wrong[pos + 1] = "not-the-priv-pass".into();
    let (ok, _, _) = run("snmpget", &wrong, &["1.3.6.1.2.1.1.1.0"]).await;
    assert!(!ok, "a wrong privacy password must not be answered");
    sim.shutdown().await;
}

async fn set_poe_and_vlans(args: Vec<String>, sim: &Sim) {
    let mut events = sim.handle.subscribe();
    let (ok, _, err) = run("snmpset", &args, &["1.3.6.1.2.1.105.1.1.1.3.1.2", "i", "2"]).await;
    assert!(ok, "PoE off: {err}");
    let (_, out, _) =
        run("snmpget", &args, &["1.3.6.1.2.1.105.1.1.1.6.1.2", "1.3.6.1.4.1.99999.105.1.1.2"])
            .await;
    assert!(
        out.contains("105.1.1.1.6.1.2 = INTEGER: 1") && out.contains("Gauge32: 0"),
        "port 2 should be disabled, 0 mW: {out}"
    );
    assert_eq!(sim.handle.power_changes(2), 1);
    let ev = events.try_recv().expect("power event");
    assert_eq!(ev, bramble_switch::sim::SimEvent::PowerChanged { port: 2, on: false });
    run("snmpset", &args, &["1.3.6.1.2.1.105.1.1.1.3.1.2", "i", "1"]).await;
    let (_, out, _) =
        run("snmpget", &args, &["1.3.6.1.2.1.105.1.1.1.6.1.2", "1.3.6.1.4.1.99999.105.1.1.2"])
            .await;
    assert!(
        out.contains("INTEGER: 3") && !out.contains("Gauge32: 0"),
        "port 2 should deliver power: {out}"
    );

    // Create VLAN 10 and move port 3 into it, untagged, in DESIGN order.
    let row = [
        "1.3.6.1.2.1.17.7.1.4.3.1.5.10",
        "i",
        "4",
        "1.3.6.1.2.1.17.7.1.4.3.1.1.10",
        "s",
        "storage-3",
    ];
    let (ok, _, err) = run("snmpset", &args, &row).await;
    assert!(ok, "createAndGo: {err}");
    let (ok, out, err) = run("snmpset", &args, &["1.3.6.1.2.1.17.7.1.4.5.1.1.3", "u", "10"]).await;
    assert!(
        !ok && err.contains("inconsistentValue"),
        "PVID on a non-member must be inconsistentValue: {out} {err}"
    );
    let (ok, _, err) = run("snmpset", &args, &["1.3.6.1.2.1.17.7.1.4.3.1.2.10", "x", "2000"]).await;
    assert!(ok, "egress: {err}");
    let (ok, _, err) = run("snmpset", &args, &["1.3.6.1.2.1.17.7.1.4.3.1.4.10", "x", "2000"]).await;
    assert!(
        !ok && err.contains("inconsistentValue"),
        "untagged in two VLANs must be inconsistentValue: {err}"
    );
    let mv = [
        "1.3.6.1.2.1.17.7.1.4.3.1.4.1",
        "x",
        "DF80",
        "1.3.6.1.2.1.17.7.1.4.3.1.4.10",
        "x",
        "2000",
        "1.3.6.1.2.1.17.7.1.4.5.1.1.3",
        "u",
        "10",
        "1.3.6.1.2.1.17.7.1.4.3.1.2.1",
        "x",
        "DF80",
    ];
    let (ok, _, err) = run("snmpset", &args, &mv).await;
    assert!(ok, "move: {err}");
    let (_, out, _) = run("snmpwalk", &args, &["1.3.6.1.2.1.17.7.1.4.3.1.4"]).await;
    assert!(
        out.contains(".4.1 = Hex-STRING: DF 80") && out.contains(".4.10 = Hex-STRING: 20 00"),
        "{out}"
    );
    let (ok, _, err) = run("snmpset", &args, &["1.3.6.1.2.1.17.7.1.4.3.1.5.10", "i", "6"]).await;
    assert!(!ok && err.contains("inconsistentValue"), "destroying a PVID's VLAN must fail: {err}");
}

#[tokio::test]
async fn snmpset_power_and_vlans_over_v2c() {
    let sim = Sim::start(8, None).await;
    set_poe_and_vlans(v2c_args(sim.addr), &sim).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn snmpset_power_and_vlans_over_v3_auth_priv() {
    let sim = Sim::start(8, None).await;
    set_poe_and_vlans(v3_args(sim.addr), &sim).await;
    sim.shutdown().await;
}
