//! The SET plans the standard driver sends are consistent at every prefix: replaying
//! them varbind by varbind through the virtual switch's own checks never fails, for
//! shelves, moves and teardown, whatever the batch size.

use bramble_switch::model::{self, AccessPort, DesiredConfig, SwitchSnapshot};
use bramble_switch::plan::{self, BatchLimits};
use bramble_switch::sim::state::{self, SimState};
use bramble_switch::stp::StpMib;
use bramble_switch::{PortNo, ShelfPlan, VlanId};

fn snapshot_of(st: &SimState) -> SwitchSnapshot {
    SwitchSnapshot {
        ports: (1..=st.bridge_ports()).map(|p| (p, u32::from(p))).collect(),
        vlans: st.vlans.clone(),
        pvid: st.pvid.clone(),
        poe: Default::default(),
        edge: (1..=st.bridge_ports()).map(|p| (p, st.forwards_at_link_up(p))).collect(),
    }
}

/// Applies `desired` to `st` through plan + checks; panics on the first rejected varbind.
fn replay(st: &mut SimState, desired: &DesiredConfig) -> usize {
    let cur = snapshot_of(st);
    let target = model::apply_desired(&cur, desired);
    // Edge ports first, as the standard driver sends them (the sim has the RSTP-MIB).
    let mut plan = plan::edge_plan(&cur, &target, StpMib::Rstp);
    plan.extend(plan::standard_plan(&cur, &target, st.bridge_ports()));
    let n = plan.len();
    for (i, (oid, value)) in plan.iter().enumerate() {
        let change = state::decode(st, oid, value)
            .unwrap_or_else(|e| panic!("varbind {i} {oid}: decode {e:?}"));
        state::check(st, &change)
            .unwrap_or_else(|e| panic!("varbind {i} {oid}: {e:?} in plan {plan:?}"));
        state::apply(st, &change);
    }
    assert!(model::drift(desired, &snapshot_of(st)).is_empty(), "plan did not reach the target");
    n
}

fn shelf(ports: u16, storage_base: u16) -> ShelfPlan {
    ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(ports + 1),
        pis: (1..=ports).map(|p| (PortNo(p), VlanId(storage_base + p))).collect(),
    }
}

#[test]
fn shelf_then_renumber_then_move_every_prefix_is_consistent() {
    let mut st = SimState::new(96);
    let n = replay(&mut st, &shelf(96, 1000).desired());
    assert!(n > 96 * 3, "a fresh shelf touches every port (VLANs, PVID, edge): {n}");
    assert!((1..=96).all(|p| st.forwards_at_link_up(p)), "every Pi port an edge port");
    assert!(!st.forwards_at_link_up(97), "the trunk is left alone");
    assert_eq!(replay(&mut st, &shelf(96, 1000).desired()), 0, "idempotent");
    replay(&mut st, &shelf(96, 2000).desired());
    let mut mv = DesiredConfig::default();
    mv.access_ports.insert(
        PortNo(5),
        AccessPort { untagged: VlanId(2010), tagged: [VlanId(131)].into_iter().collect() },
    );
    replay(&mut st, &mv);
    let mut teardown = DesiredConfig::default();
    teardown.trunk_removed.insert(PortNo(97), [VlanId(2001)].into_iter().collect());
    replay(&mut st, &teardown);
}

#[test]
fn splitting_respects_limits_and_never_repeats_an_oid_in_a_message() {
    let st = SimState::new(96);
    let cur = snapshot_of(&st);
    let target = model::apply_desired(&cur, &shelf(96, 1000).desired());
    let plan = plan::standard_plan(&cur, &target, 97);
    let total = plan.len();
    for limits in [
        BatchLimits { max_varbinds: 1, max_bytes: 1100 },
        BatchLimits { max_varbinds: 7, max_bytes: 300 },
        BatchLimits::default(),
    ] {
        let batches = plan::split(plan.clone(), limits);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), total);
        for b in &batches {
            assert!(b.len() <= limits.max_varbinds);
            let bytes: usize = b.iter().map(|(o, v)| plan::varbind_size(o, v)).sum();
            assert!(b.len() == 1 || bytes <= limits.max_bytes);
            let mut oids: Vec<_> = b.iter().map(|(o, _)| o.clone()).collect();
            oids.sort();
            oids.dedup();
            assert_eq!(oids.len(), b.len());
        }
    }
}
