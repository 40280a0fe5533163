//! The sighting rule, case by case, and exhaustively over trust, what was seen and what
//! other Pis hold.

use super::*;

const M1: &str = "b8:27:eb:00:00:01";
const M2: &str = "b8:27:eb:00:00:02";
const S1: PiSerial = PiSerial(0x1234abcd);
const S2: PiSerial = PiSerial(0x99990000);

fn slot() -> SlotId {
    SlotId("slot-1".into())
}

fn pi() -> PiId {
    PiId("pi-1".into())
}

fn other() -> PiId {
    PiId("pi-2".into())
}

fn id(mac: Option<&str>, serial: Option<PiSerial>, model: &str) -> Identity {
    Identity { mac: mac.map(Into::into), serial, model: model.into() }
}

fn known(identity: Identity, trust: Trust) -> Known {
    Known { id: pi(), identity, slot: Some(slot()), trust }
}

fn dhcp(mac: &str, serial: Option<PiSerial>, model: Option<&'static str>) -> Seen {
    Seen { source: Source::Dhcp, mac: Some(mac.into()), serial, model }
}

fn tftp(serial: PiSerial) -> Seen {
    Seen { source: Source::Tftp, mac: None, serial: Some(serial), model: None }
}

fn holder(id: PiId, slot: Option<&str>, trust: Trust) -> Holder {
    Holder { id, slot: slot.map(|s| SlotId(s.into())), trust }
}

fn no_claims() -> Claims {
    Claims::default()
}

#[test]
fn trust_follows_state_owner_root_and_maintenance() {
    use PiState as S;
    let cases = [
        (S::New, false, false, false, Trust::Open),
        (S::Ready, false, false, false, Trust::Open),
        // A released Pi keeps its former customer's root (and may still run it).
        (S::Ready, false, true, false, Trust::Guarded),
        (S::Ready, true, false, false, Trust::Guarded),
        (S::New, true, false, false, Trust::Guarded),
        (S::Deploying, false, false, false, Trust::Guarded),
        (S::Deployed, true, true, false, Trust::Guarded),
        (S::Rescue, true, true, false, Trust::Guarded),
        (S::Failed, false, false, false, Trust::Guarded),
        (S::Deployed, true, true, true, Trust::Maintenance),
        (S::Maintenance, false, false, false, Trust::Maintenance),
        (S::Retired, false, false, true, Trust::Guarded),
        (S::Retired, false, false, false, Trust::Guarded),
    ];
    for (state, owned, root, maint, want) in cases {
        assert_eq!(
            trust(state, owned, root, maint),
            want,
            "{state} owned={owned} root={root} maintenance={maint}"
        );
    }
}

/// The bug of issue 16: one crafted Pi 3B DISCOVER from a deployed 3B+'s slot.
#[test]
fn a_crafted_3b_discover_on_a_deployed_3b_plus_is_flagged_not_applied() {
    let k = known(id(Some(M1), Some(S1), "3b+"), Trust::Guarded);
    let crafted = dhcp(M1, None, Some("3b"));
    assert_eq!(
        decide(Some(&slot()), Some(&k), &crafted, &no_claims()),
        Decision::Flag { pi: pi(), reason: FlagReason::Differs }
    );
}

#[test]
fn decisions_case_by_case() {
    let s = Some(slot());
    let s = s.as_ref();
    let open_3bp = known(id(Some(M1), Some(S1), "3b+"), Trust::Open);
    let maint_3bp = known(id(Some(M1), Some(S1), "3b+"), Trust::Maintenance);
    let guarded_3b = known(id(Some(M1), None, "3b"), Trust::Guarded);
    let open_bare = known(id(None, None, UNKNOWN_MODEL), Trust::Open);
    let cases: Vec<(&str, Option<Known>, Seen, Claims, Decision)> = vec![
        ("empty slot", None, dhcp(M1, None, Some("3b")), no_claims(), Decision::Create),
        (
            "same board",
            Some(open_3bp.clone()),
            dhcp(M1, Some(S1), Some("3b+")),
            no_claims(),
            Decision::Nothing,
        ),
        (
            "open Pi learns its MAC and model",
            Some(open_bare.clone()),
            dhcp(M1, None, Some("3b")),
            no_claims(),
            Decision::Fill { pi: pi(), identity: id(Some(M1), None, "3b") },
        ),
        (
            "open 3B learns its serial over TFTP",
            Some(known(id(Some(M1), None, "3b"), Trust::Open)),
            tftp(S1),
            no_claims(),
            Decision::Fill { pi: pi(), identity: id(Some(M1), Some(S1), "3b") },
        ),
        (
            "guarded 3B's serial over TFTP is only flagged",
            Some(guarded_3b.clone()),
            tftp(S1),
            no_claims(),
            Decision::Flag { pi: pi(), reason: FlagReason::Adds },
        ),
        (
            "a 3B's DHCP without serial is its usual self",
            Some(known(id(Some(M1), Some(S1), "3b"), Trust::Guarded)),
            dhcp(M1, None, Some("3b")),
            no_claims(),
            Decision::Nothing,
        ),
        (
            "an undecodable model says nothing",
            Some(known(id(Some(M1), Some(S1), "3b+"), Trust::Guarded)),
            dhcp(M1, Some(S1), None),
            no_claims(),
            Decision::Nothing,
        ),
        (
            "a different board on an open Pi is flagged",
            Some(open_3bp.clone()),
            dhcp(M2, Some(S2), Some("3b+")),
            no_claims(),
            Decision::Flag { pi: pi(), reason: FlagReason::Differs },
        ),
        (
            "a different board in maintenance replaces it",
            Some(maint_3bp.clone()),
            dhcp(M2, Some(S2), Some("3b+")),
            no_claims(),
            Decision::Replace { pi: pi(), identity: id(Some(M2), Some(S2), "3b+") },
        ),
        (
            "a replacement 3B (no serial in DHCP) drops the old board's serial",
            Some(maint_3bp.clone()),
            dhcp(M2, None, Some("3b")),
            no_claims(),
            Decision::Replace { pi: pi(), identity: id(Some(M2), None, "3b") },
        ),
        (
            "a TFTP serial differing in maintenance replaces the serial only",
            Some(maint_3bp.clone()),
            tftp(S2),
            no_claims(),
            Decision::Replace { pi: pi(), identity: id(Some(M1), Some(S2), "3b+") },
        ),
        (
            "another Pi's MAC is never taken, even in maintenance",
            Some(maint_3bp.clone()),
            dhcp(M2, None, Some("3b+")),
            Claims { mac: Some(holder(other(), Some("slot-2"), Trust::Guarded)), serial: None },
            Decision::Flag {
                pi: pi(),
                reason: FlagReason::Taken { claim: Claim::Mac, other: other() },
            },
        ),
        (
            "another Pi's serial is never taken",
            Some(open_bare.clone()),
            dhcp(M2, Some(S2), Some("3b+")),
            Claims { mac: None, serial: Some(holder(other(), None, Trust::Open)) },
            Decision::Flag {
                pi: pi(),
                reason: FlagReason::Taken { claim: Claim::Serial, other: other() },
            },
        ),
        (
            "another slot's Pi's MAC in an empty slot changes nothing",
            None,
            dhcp(M2, None, Some("3b")),
            Claims { mac: Some(holder(other(), Some("slot-2"), Trust::Open)), serial: None },
            Decision::Foreign { claim: Claim::Mac, other: other() },
        ),
        (
            "a slotless open Pi seen in an empty slot is adopted",
            None,
            dhcp(M2, None, Some("3b")),
            Claims { mac: Some(holder(other(), None, Trust::Open)), serial: None },
            Decision::Adopt { pi: other() },
        ),
        (
            "a slotless guarded Pi is not adopted",
            None,
            dhcp(M2, None, Some("3b")),
            Claims { mac: Some(holder(other(), None, Trust::Guarded)), serial: None },
            Decision::Foreign { claim: Claim::Mac, other: other() },
        ),
        (
            "adoption needs the serial not to be a third Pi's",
            None,
            dhcp(M2, Some(S2), Some("3b+")),
            Claims {
                mac: Some(holder(other(), None, Trust::Open)),
                serial: Some(holder(PiId("pi-3".into()), Some("slot-3"), Trust::Guarded)),
            },
            Decision::Foreign { claim: Claim::Mac, other: other() },
        ),
    ];
    for (what, k, seen, claims, want) in cases {
        assert_eq!(decide(s, k.as_ref(), &seen, &claims), want, "{what}");
    }
}

#[test]
fn flat_network_sightings_never_touch_a_slotted_pi() {
    let mut k = known(id(Some(M1), Some(S1), "4b"), Trust::Open);
    let seen = dhcp(M1, Some(S2), Some("4b"));
    assert_eq!(
        decide(None, Some(&k), &seen, &no_claims()),
        Decision::Foreign { claim: Claim::Mac, other: pi() }
    );
    k.slot = None;
    assert_eq!(
        decide(None, Some(&k), &seen, &no_claims()),
        Decision::Flag { pi: pi(), reason: FlagReason::Differs }
    );
    assert_eq!(decide(None, None, &dhcp(M2, None, Some("4b")), &no_claims()), Decision::Create);
}

/// Every combination of trust, what a sighting shows about the slot's Pi, and whether
/// another Pi holds it: the Pi's record changes only as the rule allows, and nothing is
/// ever decided about another Pi.
#[test]
fn exhaustive_rule() {
    let record = id(Some(M1), Some(S1), "3b+");
    let seens = [
        ("same", dhcp(M1, Some(S1), Some("3b+"))),
        ("model differs", dhcp(M1, Some(S1), Some("3b"))),
        ("model only (crafted 3B)", dhcp(M1, None, Some("3b"))),
        ("MAC differs", dhcp(M2, Some(S1), Some("3b+"))),
        ("serial differs", dhcp(M1, Some(S2), Some("3b+"))),
        ("new board", dhcp(M2, Some(S2), Some("3b+"))),
        ("tftp serial differs", tftp(S2)),
        ("tftp same serial", tftp(S1)),
    ];
    let holders = [
        ("nobody", Claims::default()),
        (
            "MAC held",
            Claims { mac: Some(holder(other(), Some("slot-2"), Trust::Guarded)), serial: None },
        ),
        ("serial held", Claims { mac: None, serial: Some(holder(other(), None, Trust::Open)) }),
    ];
    let mut partial = record.clone();
    partial.serial = None;
    for trust in [Trust::Open, Trust::Guarded, Trust::Maintenance] {
        for rec in [&record, &partial] {
            let k = known(rec.clone(), trust);
            for (what, seen) in &seens {
                for (held, claims) in &holders {
                    let label = format!("{trust:?} {rec:?} {what} {held}");
                    let d = decide(Some(&slot()), Some(&k), seen, claims);
                    let diff = compare(rec, seen);
                    match &d {
                        Decision::Nothing => {
                            assert_eq!(diff, Diff::Same, "{label}");
                            assert!(claims.taken(Some(&pi())).is_none(), "{label}");
                        }
                        Decision::Fill { pi: p, identity } => {
                            assert_eq!(p, &pi(), "{label}");
                            assert_ne!(trust, Trust::Guarded, "{label}: a guarded Pi filled");
                            assert_eq!(diff, Diff::Adds, "{label}");
                            // Only what was missing changes.
                            assert_eq!(identity.mac, rec.mac, "{label}");
                            assert_eq!(identity.model, rec.model, "{label}");
                            assert!(rec.serial.is_none() || identity.serial == rec.serial);
                        }
                        Decision::Replace { pi: p, .. } => {
                            assert_eq!(p, &pi(), "{label}");
                            assert_eq!(
                                trust,
                                Trust::Maintenance,
                                "{label}: replaced outside maintenance"
                            );
                            assert_eq!(diff, Diff::Differs, "{label}");
                        }
                        Decision::Flag { pi: p, reason } => {
                            assert_eq!(p, &pi(), "{label}: flagged another Pi");
                            if claims.taken(Some(&pi())).is_some() {
                                assert!(matches!(reason, FlagReason::Taken { .. }), "{label}");
                            } else {
                                assert_ne!(diff, Diff::Same, "{label}");
                            }
                        }
                        other => panic!("{label}: {other:?}"),
                    }
                    // Whatever is held by another Pi is never written.
                    if claims.taken(Some(&pi())).is_some() {
                        assert!(
                            matches!(d, Decision::Flag { .. } | Decision::Nothing),
                            "{label}: {d:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn merged_and_filled_identities() {
    let rec = id(Some(M1), Some(S1), "3b+");
    assert_eq!(merged(&rec, &dhcp(M2, None, Some("3b"))), id(Some(M2), None, "3b"));
    assert_eq!(merged(&rec, &dhcp(M1, None, None)), rec);
    assert_eq!(merged(&rec, &tftp(S2)), id(Some(M1), Some(S2), "3b+"));
    let bare = id(None, Some(S1), UNKNOWN_MODEL);
    assert_eq!(merged(&bare, &dhcp(M1, None, None)), id(Some(M1), Some(S1), UNKNOWN_MODEL));
    assert_eq!(filled(&bare, &dhcp(M1, Some(S2), Some("4b"))), id(Some(M1), Some(S1), "4b"));
}

#[test]
fn serial_directories_in_tftp_paths() {
    assert_eq!(serial_in_path("1234abcd/start.elf"), Some(S1));
    assert_eq!(serial_in_path("1234ABCD/overlays/x.dtbo"), Some(S1));
    for no in [
        "start.elf",
        "1234abcd",
        "1234abcd/",
        "1234abc/start.elf",
        "1234abcg/x",
        "b8-27-eb-00-00-01/start4.elf",
        "+234abcd/x",
    ] {
        assert_eq!(serial_in_path(no), None, "{no}");
    }
}
