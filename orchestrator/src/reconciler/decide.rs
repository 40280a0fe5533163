//! The reconciler's decisions as pure functions: from what the inventory wants and what
//! a switch reported, which repair to apply, which slots to flag or unflag and which
//! Pis' recorded power to correct. No I/O here; `mod.rs` carries the plan out.

use std::collections::BTreeSet;

use bramble_switch::model::{self, DetectionStatus};
use bramble_switch::{DesiredConfig, Drift, PortPower, SwitchSnapshot};

use crate::ids::{CustomerId, PiId, ShelfId, SlotId, SwitchId};
use crate::jobs::model::JobKind;
use crate::model::{PowerState, Shelf};

/// Every flag the reconciler sets starts with this; it only ever clears its own flags.
pub const NO_DRAW_PREFIX: &str = "no power draw on port ";

/// A slot on the switch being reconciled, as the inventory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    pub slot: SlotId,
    pub port: u16,
    pub flag: Option<String>,
    pub pi: Option<PiView>,
}

/// The Pi in a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiView {
    pub id: PiId,
    pub owner: Option<CustomerId>,
    pub power: PowerState,
    /// A job is queued or running for it, or its record changed while the switch was
    /// being read: the job owns the port, so the reconciler leaves the slot alone.
    pub busy: bool,
}

/// Why a no-power-draw flag is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearCause {
    /// The port delivers power again.
    Restored,
    /// The port was switched off, so no draw is expected.
    PortOff,
    /// The slot no longer holds a Pi.
    SlotEmpty,
}

/// One change to a slot or its Pi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotAction {
    /// Record the PoE admin state read from the switch as the Pi's power.
    ObservePower {
        pi: PiId,
        owner: Option<CustomerId>,
        port: u16,
        from: PowerState,
        to: PowerState,
    },
    /// The port is on but nothing draws power: flag the slot with `flag`.
    FlagNoDraw { slot: SlotId, pi: PiId, owner: Option<CustomerId>, port: u16, flag: String },
    /// Clear a flag this reconciler set.
    ClearNoDraw {
        slot: SlotId,
        pi: Option<PiId>,
        owner: Option<CustomerId>,
        port: u16,
        cause: ClearCause,
    },
}

/// Everything to do on one switch after one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchPlan {
    /// VLAN, membership, PVID and edge-port differences (PoE admin state never counts).
    pub drift: Vec<Drift>,
    /// What to apply when there is drift: the desired configuration without PoE.
    pub repair: Option<DesiredConfig>,
    pub slots: Vec<SlotAction>,
}

/// Decides what to do about one switch. Pure. `racking` says a rack-shelf job may be
/// configuring this switch right now: its read-modify-write of whole port lists must
/// not race a repair, so drift is only reported.
pub fn plan_switch(
    desired: &DesiredConfig,
    snapshot: &SwitchSnapshot,
    slots: &[SlotView],
    racking: bool,
) -> SwitchPlan {
    let wanted = without_poe(desired);
    let drift = model::drift(&wanted, snapshot);
    let repair = (!drift.is_empty() && !racking).then_some(wanted);
    let slots = slots.iter().flat_map(|s| plan_slot(s, snapshot.poe.get(&s.port))).collect();
    SwitchPlan { drift, repair, slots }
}

/// The configuration a repair may apply: `desired` with every PoE entry removed, so a
/// repair can never power a port on or off.
pub fn without_poe(desired: &DesiredConfig) -> DesiredConfig {
    DesiredConfig { poe: Default::default(), ..desired.clone() }
}

/// Decides what to do about one slot given its port's PoE state (`None` when the
/// switch did not report the port). Pure.
pub fn plan_slot(slot: &SlotView, port: Option<&PortPower>) -> Vec<SlotAction> {
    let ours = slot.flag.as_deref().is_some_and(|f| f.starts_with(NO_DRAW_PREFIX));
    let Some(pi) = &slot.pi else {
        return if ours { vec![clear(slot, None, ClearCause::SlotEmpty)] } else { Vec::new() };
    };
    let Some(power) = port else { return Vec::new() };
    if pi.busy {
        return Vec::new();
    }
    let mut out = Vec::new();
    let observed = if power.admin_enabled { PowerState::On } else { PowerState::Off };
    if pi.power != observed {
        out.push(SlotAction::ObservePower {
            pi: pi.id.clone(),
            owner: pi.owner.clone(),
            port: slot.port,
            from: pi.power,
            to: observed,
        });
    }
    match (no_draw_reason(slot.port, power), ours) {
        (Some(flag), false) if slot.flag.is_none() => out.push(SlotAction::FlagNoDraw {
            slot: slot.slot.clone(),
            pi: pi.id.clone(),
            owner: pi.owner.clone(),
            port: slot.port,
            flag,
        }),
        (None, true) => {
            let cause =
                if power.admin_enabled { ClearCause::Restored } else { ClearCause::PortOff };
            out.push(clear(slot, Some(pi), cause));
        }
        // Already flagged (by us, or by a job with its own reason), or drawing as it should.
        _ => {}
    }
    out
}

fn clear(slot: &SlotView, pi: Option<&PiView>, cause: ClearCause) -> SlotAction {
    SlotAction::ClearNoDraw {
        slot: slot.slot.clone(),
        pi: pi.map(|p| p.id.clone()),
        owner: pi.and_then(|p| p.owner.clone()),
        port: slot.port,
        cause,
    }
}

/// The flag text when `port` is switched on but delivers no power or draws nothing.
pub fn no_draw_reason(port: u16, power: &PortPower) -> Option<String> {
    if !power.admin_enabled {
        return None;
    }
    let draw =
        power.draw_mw.map_or_else(|| "draw not reported".to_string(), |mw| format!("{mw} mW"));
    let delivering = power.detection == DetectionStatus::DeliveringPower;
    if delivering && power.draw_mw != Some(0) {
        return None;
    }
    Some(format!(
        "{NO_DRAW_PREFIX}{port}: PoE on, detection {}, {draw}",
        detection_name(power.detection)
    ))
}

fn detection_name(d: DetectionStatus) -> &'static str {
    match d {
        DetectionStatus::Disabled => "disabled",
        DetectionStatus::Searching => "searching (nothing plugged in)",
        DetectionStatus::DeliveringPower => "delivering power",
        DetectionStatus::Fault => "fault",
        DetectionStatus::Test => "test",
        DetectionStatus::OtherFault => "other fault",
    }
}

/// Switches a rack-shelf job may be configuring, from the active jobs' kinds and
/// shelves: those holding the shelf of an active rack-shelf job, or every switch when
/// such a job names no known shelf. Pure.
pub fn racking_switches<'a>(
    active_jobs: impl IntoIterator<Item = (JobKind, Option<&'a ShelfId>)>,
    shelves: &[Shelf],
) -> Racking {
    let mut out = Racking::default();
    for (_, shelf) in active_jobs.into_iter().filter(|(kind, _)| *kind == JobKind::RackShelf) {
        match shelves.iter().find(|s| Some(&s.id) == shelf) {
            Some(shelf) => {
                out.switches.insert(shelf.switch.clone());
            }
            None => out.every_switch = true,
        }
    }
    out
}

/// Where racking is under way (see [`racking_switches`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Racking {
    pub every_switch: bool,
    pub switches: BTreeSet<SwitchId>,
}

impl Racking {
    pub fn covers(&self, switch: &SwitchId) -> bool {
        self.every_switch || self.switches.contains(switch)
    }
}

/// A change in whether a switch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageEdge {
    Began,
    Ended,
}

/// What the reconciler remembers about one switch between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchMemory {
    /// The switch failed to answer the last read.
    pub unreachable: bool,
    /// The drift of the last repair that failed and was recorded.
    pub failed_repair: Option<Vec<Drift>>,
}

impl SwitchMemory {
    /// Notes the outcome of a read; returns the edge to record, if the outage began or
    /// ended (so an outage is recorded once, not on every pass).
    pub fn note_read(&mut self, ok: bool) -> Option<OutageEdge> {
        let edge = match (self.unreachable, ok) {
            (false, false) => Some(OutageEdge::Began),
            (true, true) => Some(OutageEdge::Ended),
            _ => None,
        };
        self.unreachable = !ok;
        edge
    }

    /// Notes a failed repair of `drift`; true when it should be recorded (the first
    /// failure, or a failure with different drift than the one recorded last).
    pub fn note_repair_failed(&mut self, drift: &[Drift]) -> bool {
        if self.failed_repair.as_deref() == Some(drift) {
            return false;
        }
        self.failed_repair = Some(drift.to_vec());
        true
    }

    /// Notes a successful repair (or no drift at all).
    pub fn note_repair_ok(&mut self) {
        self.failed_repair = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_switch::{PortNo, ShelfPlan, VlanId};

    fn power(admin: bool, detection: DetectionStatus, mw: Option<u32>) -> PortPower {
        PortPower { admin_enabled: admin, detection, draw_mw: mw }
    }

    fn slot(flag: Option<&str>, pi_power: Option<PowerState>, busy: bool) -> SlotView {
        SlotView {
            slot: SlotId("slot-1".into()),
            port: 4,
            flag: flag.map(str::to_string),
            pi: pi_power.map(|power| PiView { id: PiId("pi-1".into()), owner: None, power, busy }),
        }
    }

    /// What each action amounts to, in a word, for table-driven checks.
    fn kinds(actions: &[SlotAction]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                SlotAction::ObservePower { to, .. } => format!("observe-{}", to.as_str()),
                SlotAction::FlagNoDraw { .. } => "flag".to_string(),
                SlotAction::ClearNoDraw { cause, .. } => format!("clear-{cause:?}"),
            })
            .collect()
    }

    const DELIVERING: DetectionStatus = DetectionStatus::DeliveringPower;
    const SEARCHING: DetectionStatus = DetectionStatus::Searching;

    #[test]
    fn slot_decisions() {
        use PowerState::{Off, On, Unknown};
        let ours =
            "no power draw on port 4: PoE on, detection searching (nothing plugged in), 0 mW";
        let cases: &[(&str, SlotView, Option<PortPower>, &[&str])] = &[
            (
                "healthy Pi",
                slot(None, Some(On), false),
                Some(power(true, DELIVERING, Some(2000))),
                &[],
            ),
            (
                "unplugged Pi is flagged",
                slot(None, Some(On), false),
                Some(power(true, SEARCHING, Some(0))),
                &["flag"],
            ),
            (
                "delivering but 0 mW is flagged",
                slot(None, Some(On), false),
                Some(power(true, DELIVERING, Some(0))),
                &["flag"],
            ),
            (
                "PSE fault is flagged",
                slot(None, Some(On), false),
                Some(power(true, DetectionStatus::Fault, None)),
                &["flag"],
            ),
            (
                "no draw reading is fine when delivering",
                slot(None, Some(On), false),
                Some(power(true, DELIVERING, None)),
                &[],
            ),
            (
                "flagged once only",
                slot(Some(ours), Some(On), false),
                Some(power(true, SEARCHING, Some(0))),
                &[],
            ),
            (
                "draw back clears our flag",
                slot(Some(ours), Some(On), false),
                Some(power(true, DELIVERING, Some(2000))),
                &["clear-Restored"],
            ),
            (
                "someone else's flag is kept",
                slot(Some("did not DHCP"), Some(On), false),
                Some(power(true, DELIVERING, Some(2000))),
                &[],
            ),
            (
                "someone else's flag is not overwritten",
                slot(Some("did not DHCP"), Some(On), false),
                Some(power(true, SEARCHING, Some(0))),
                &[],
            ),
            (
                "powered off on purpose: recorded, not flagged",
                slot(None, Some(On), false),
                Some(power(false, DetectionStatus::Disabled, Some(0))),
                &["observe-off"],
            ),
            (
                "switched off while flagged clears the flag",
                slot(Some(ours), Some(Off), false),
                Some(power(false, DetectionStatus::Disabled, Some(0))),
                &["clear-PortOff"],
            ),
            (
                "unknown power learned",
                slot(None, Some(Unknown), false),
                Some(power(true, DELIVERING, Some(2000))),
                &["observe-on"],
            ),
            (
                "switched on elsewhere and unplugged",
                slot(None, Some(Off), false),
                Some(power(true, SEARCHING, Some(0))),
                &["observe-on", "flag"],
            ),
            (
                "a job owns the Pi",
                slot(None, Some(On), true),
                Some(power(false, SEARCHING, Some(0))),
                &[],
            ),
            (
                "a job owns the flagged Pi",
                slot(Some(ours), Some(On), true),
                Some(power(true, DELIVERING, Some(2000))),
                &[],
            ),
            ("port not reported", slot(None, Some(On), false), None, &[]),
            ("empty slot", slot(None, None, false), Some(power(true, SEARCHING, Some(0))), &[]),
            (
                "emptied slot loses our flag",
                slot(Some(ours), None, false),
                Some(power(true, SEARCHING, Some(0))),
                &["clear-SlotEmpty"],
            ),
        ];
        for (name, s, p, want) in cases {
            assert_eq!(kinds(&plan_slot(s, p.as_ref())), *want, "{name}");
        }
    }

    #[test]
    fn flag_text_names_the_port_and_what_the_switch_saw() {
        let f = no_draw_reason(7, &power(true, SEARCHING, Some(0))).expect("flagged");
        assert!(f.starts_with("no power draw on port 7: "), "{f}");
        assert!(f.contains("searching") && f.contains("0 mW"), "{f}");
    }

    fn shelf_desired() -> DesiredConfig {
        let mut d = ShelfPlan {
            public_vlan: VlanId(131),
            trunk: PortNo(9),
            pis: [(PortNo(1), VlanId(200))].into_iter().collect(),
        }
        .desired();
        d.poe.insert(PortNo(1), true);
        d
    }

    #[test]
    fn repairs_strip_poe_and_only_happen_on_drift() {
        let desired = shelf_desired();
        let mut configured =
            model::apply_desired(&SwitchSnapshot::default(), &without_poe(&desired));
        configured.poe.insert(1, power(false, DetectionStatus::Disabled, Some(0)));
        let clean = plan_switch(&desired, &configured, &[], false);
        assert!(
            clean.drift.is_empty() && clean.repair.is_none(),
            "PoE off is not drift: {:?}",
            clean.drift
        );

        configured.pvid.insert(1, 131);
        let plan = plan_switch(&desired, &configured, &[], false);
        assert_eq!(plan.drift, [Drift::Pvid { port: 1, expected: 200, actual: Some(131) }]);
        let repair = plan.repair.expect("repair");
        assert!(repair.poe.is_empty(), "a repair must not touch PoE");
        assert_eq!(repair.access_ports, desired.access_ports);

        let racking = plan_switch(&desired, &configured, &[], true);
        assert_eq!(racking.drift.len(), 1);
        assert!(racking.repair.is_none(), "no repair while racking");
    }

    #[test]
    fn a_pi_port_that_lost_its_edge_setting_is_drift_and_the_repair_restores_it() {
        let desired = shelf_desired();
        let mut configured =
            model::apply_desired(&SwitchSnapshot::default(), &without_poe(&desired));
        assert!(plan_switch(&desired, &configured, &[], false).drift.is_empty());
        configured.edge.insert(1, false);
        let plan = plan_switch(&desired, &configured, &[], false);
        assert_eq!(plan.drift, [Drift::Edge { port: 1, expected: true, actual: Some(false) }]);
        let repair = plan.repair.expect("repair");
        assert_eq!(repair.edge, [(PortNo(1), true)].into_iter().collect());
        assert!(model::drift(&repair, &model::apply_desired(&configured, &repair)).is_empty());
    }

    #[test]
    fn outages_and_failed_repairs_are_recorded_once() {
        let mut m = SwitchMemory::default();
        let edges: Vec<_> = [true, false, false, false, true, true, false]
            .iter()
            .map(|ok| m.note_read(*ok))
            .collect();
        use OutageEdge::{Began, Ended};
        assert_eq!(edges, [None, Some(Began), None, None, Some(Ended), None, Some(Began)]);

        let a = [Drift::VlanMissing { vlan: 200 }];
        let b = [Drift::VlanMissing { vlan: 201 }];
        assert!(m.note_repair_failed(&a));
        assert!(!m.note_repair_failed(&a));
        assert!(m.note_repair_failed(&b));
        m.note_repair_ok();
        assert!(m.note_repair_failed(&b));
    }

    #[test]
    fn only_switches_being_racked_defer_repairs() {
        let shelf = |id: &str, sw: &str| Shelf {
            id: ShelfId(id.into()),
            name: id.into(),
            switch: SwitchId(sw.into()),
            first_port: 1,
            last_port: 8,
            slots: Vec::new(),
            created_at: 0,
        };
        let shelves = [shelf("shelf-a", "sw-a"), shelf("shelf-b", "sw-b")];
        let (a, b) = (ShelfId("shelf-a".into()), ShelfId("shelf-new".into()));
        let r =
            racking_switches([(JobKind::Reboot, None), (JobKind::RackShelf, Some(&a))], &shelves);
        assert!(r.covers(&SwitchId("sw-a".into())) && !r.covers(&SwitchId("sw-b".into())));
        let r = racking_switches([(JobKind::RackShelf, Some(&b))], &shelves);
        assert!(r.covers(&SwitchId("sw-b".into())), "a shelf not enrolled yet could be anywhere");
        assert_eq!(racking_switches([(JobKind::PowerOn, None)], &shelves), Racking::default());
    }
}
