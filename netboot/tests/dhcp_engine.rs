//! The DHCP state machine driven directly with packets: Pi ROM offers, the REQUEST
//! states, flat pools and reservations, release/decline, and hostile input.

mod dhcp_common;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use bramble_netboot::dhcp::*;
use dhcp_common::*;
use dhcproto::v4::MessageType;

const C1: Ipv4Addr = Ipv4Addr::new(10, 101, 1, 1);
const C2: Ipv4Addr = Ipv4Addr::new(10, 101, 2, 1);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn engine() -> Engine {
    let mut e = Engine::new(ServerOptions {
        pxe_reply_delay: Duration::from_millis(50),
        ..ServerOptions::default()
    });
    e.set_interface(Role::Storage(
        StorageIface::new("st1", C1, C1, SlotKey("rack1/1".into())).unwrap(),
    ));
    e.set_interface(Role::Storage(
        StorageIface::new("st2", C2, C2, SlotKey("rack1/2".into())).unwrap(),
    ));
    e.set_interface(Role::Flat(flat(false)));
    e
}

fn flat(discovery: bool) -> FlatNetwork {
    FlatNetwork {
        ifname: "flat".into(),
        server_addr: Ipv4Addr::new(10, 101, 200, 1),
        network: Ipv4Addr::new(10, 101, 200, 0),
        prefix: 24,
        pool: Some((Ipv4Addr::new(10, 101, 200, 100), Ipv4Addr::new(10, 101, 200, 102))),
        router: Some(Ipv4Addr::new(10, 101, 200, 1)),
        dns: vec![],
        tftp_server: Some(Ipv4Addr::new(10, 101, 200, 1)),
        reservations: vec![
            Reservation {
                key: ReservationKey::Mac(mac("02:00:00:00:00:aa")),
                addr: Ipv4Addr::new(10, 101, 200, 10),
            },
            Reservation {
                key: ReservationKey::Serial(PiSerial(0x5a28f66d)),
                addr: Ipv4Addr::new(10, 101, 200, 11),
            },
        ],
        discovery,
        lease_time: Duration::from_secs(3600),
    }
}

/// The reply of an outcome, committing the lease first as the server would.
fn reply_of(e: &mut Engine, out: Outcome) -> Option<Reply> {
    match out.action {
        Action::Reply(r) => Some(r),
        Action::CommitThenReply { lease, reply } => {
            e.confirm(&lease);
            Some(reply)
        }
        _ => None,
    }
}

#[test]
fn pi3b_rom_discover_gets_a_bootable_offer_committed_first() {
    let mut e = engine();
    let pi = mac("b8:27:eb:28:f6:6d");
    let out = e.handle("st1", &pi3b_rom_discover(pi), SystemTime::now());
    let Action::CommitThenReply { lease, reply } = out.action else {
        panic!("ROM offer must be stored first: {:?}", out.action)
    };
    assert_eq!(
        (lease.addr, lease.slot.clone()),
        (Ipv4Addr::new(10, 101, 1, 2), Some(SlotKey("rack1/1".into())))
    );
    assert_eq!(reply.kind, MessageType::Offer);
    assert_eq!(reply.delay, Duration::from_millis(50), "PXE replies are delayed for the 3B ROM");
    assert_eq!(reply.dest.ip(), &Ipv4Addr::BROADCAST);
    let m = decode(&reply.bytes);
    assert_eq!((m.xid(), m.yiaddr(), m.siaddr()), (PI3_XID, Ipv4Addr::new(10, 101, 1, 2), C1));
    let mut want43 = vec![6, 1, 3, 10, 4, 0, b'P', b'X', b'E', 9, 0x17, 0, 0, 0x14];
    want43.extend(b"Raspberry Pi Boot   ");
    want43.push(255);
    assert_eq!(raw_option(&reply.bytes, 43).unwrap(), want43);
    assert_eq!(raw_option(&reply.bytes, 60).unwrap(), b"PXEClient");
    assert_eq!(raw_option(&reply.bytes, 66).unwrap(), b"10.101.1.1");
    let mut guid = vec![0u8];
    guid.extend([0x44; 16]);
    assert_eq!(raw_option(&reply.bytes, 97).unwrap(), guid);
    let s = out.sighting.expect("first sighting");
    assert_eq!((s.model, s.slot), (Some(PiModel::Pi3B), Some(SlotKey("rack1/1".into()))));
    // The timeline says what the ROM claimed and what the offer carried (boot diagnosis).
    let (_, seen) = out.seen.expect("the DISCOVER is reported");
    assert_eq!(
        seen,
        bramble_netboot::events::BootStage::DhcpDiscover { model: Some(PiModel::Pi3B) }
    );
    let bramble_netboot::events::BootStage::DhcpOffer { options, next_server, .. } = reply.stage
    else {
        panic!("an offer's stage: {:?}", reply.stage)
    };
    assert_eq!(next_server, Some(C1));
    for code in [1, 43, 53, 54, 60, 66, 97] {
        assert!(options.contains(&code), "option {code} in {options:?}");
    }
}

#[test]
fn same_xid_on_two_slots_gets_each_slot_address() {
    let mut e = engine();
    let a = e.handle("st1", &pi3b_rom_discover(mac("b8:27:eb:00:00:01")), SystemTime::now());
    let b = e.handle("st2", &pi3b_rom_discover(mac("b8:27:eb:00:00:02")), SystemTime::now());
    let ya = decode(&reply_of(&mut e, a).unwrap().bytes).yiaddr();
    let yb = decode(&reply_of(&mut e, b).unwrap().bytes).yiaddr();
    assert_eq!((ya, yb), (Ipv4Addr::new(10, 101, 1, 2), Ipv4Addr::new(10, 101, 2, 2)));
}

#[test]
fn request_states_ack_or_nak() {
    let mut e = engine();
    let pi = mac("dc:a6:32:03:22:20");
    let pi_addr = Ipv4Addr::new(10, 101, 1, 2);
    let now = SystemTime::now();
    let u = Ipv4Addr::UNSPECIFIED;
    let cases: Vec<(&str, Vec<u8>, MessageType, Ipv4Addr)> = vec![
        (
            "selecting",
            request(MessageType::Request, pi, u, Some(pi_addr), Some(C1)),
            MessageType::Ack,
            Ipv4Addr::BROADCAST,
        ),
        (
            "init-reboot",
            request(MessageType::Request, pi, u, Some(pi_addr), None),
            MessageType::Ack,
            Ipv4Addr::BROADCAST,
        ),
        (
            "init-reboot wrong",
            request(MessageType::Request, pi, u, Some(Ipv4Addr::new(10, 9, 9, 9)), None),
            MessageType::Nak,
            Ipv4Addr::BROADCAST,
        ),
        (
            "renewing",
            request(MessageType::Request, pi, pi_addr, None, None),
            MessageType::Ack,
            pi_addr,
        ),
        (
            "renew wrong",
            request(MessageType::Request, pi, Ipv4Addr::new(10, 101, 1, 3), None, None),
            MessageType::Nak,
            Ipv4Addr::BROADCAST,
        ),
        (
            "inform",
            request(MessageType::Inform, pi, pi_addr, None, None),
            MessageType::Ack,
            pi_addr,
        ),
    ];
    for (name, bytes, want, dest) in cases {
        let out = e.handle("st1", &bytes, now);
        let r = reply_of(&mut e, out).unwrap_or_else(|| panic!("{name}: no reply"));
        assert_eq!((r.kind, *r.dest.ip()), (want, dest), "{name}");
    }
    // SELECTING another server: silent.
    let other =
        request(MessageType::Request, pi, u, Some(pi_addr), Some(Ipv4Addr::new(10, 101, 9, 9)));
    assert_eq!(e.handle("st1", &other, now).action, Action::Drop(DropReason::NotForUs));
}

#[test]
fn flat_pool_reservations_release_and_decline() {
    let mut e = engine();
    let now = SystemTime::now();
    let u = Ipv4Addr::UNSPECIFIED;
    let offer = |e: &mut Engine, bytes: &[u8]| {
        let out = e.handle("flat", bytes, now);
        reply_of(e, out).map(|r| decode(&r.bytes).yiaddr())
    };
    assert_eq!(
        offer(&mut e, &request(MessageType::Discover, mac("02:00:00:00:00:aa"), u, None, None)),
        Some(Ipv4Addr::new(10, 101, 200, 10))
    );
    let pi3bplus =
        with_guid(&request(MessageType::Discover, mac("b8:27:eb:28:f6:6d"), u, None, None), {
            let mut g = [0u8; 16];
            g[12..].copy_from_slice(&[0x5a, 0x28, 0xf6, 0x6d]);
            g
        });
    assert_eq!(
        offer(&mut e, &pi3bplus),
        Some(Ipv4Addr::new(10, 101, 200, 11)),
        "reservation by serial"
    );
    let pool: Vec<_> = (1..=3)
        .map(|i| {
            offer(
                &mut e,
                &request(
                    MessageType::Discover,
                    mac(&format!("02:00:00:00:01:0{i}")),
                    u,
                    None,
                    None,
                ),
            )
        })
        .collect();
    assert_eq!(pool, [100, 101, 102].map(|o| Some(Ipv4Addr::new(10, 101, 200, o))));
    let fourth = request(MessageType::Discover, mac("02:00:00:00:01:04"), u, None, None);
    assert_eq!(
        e.handle("flat", &fourth, now).action,
        Action::Drop(DropReason::NoAddress),
        "pool of 3 is full"
    );

    // Client 1 takes its lease, then releases it: the fourth client gets that address.
    let c1 = mac("02:00:00:00:01:01");
    let a1 = Ipv4Addr::new(10, 101, 200, 100);
    let req = request(MessageType::Request, c1, u, Some(a1), Some(Ipv4Addr::new(10, 101, 200, 1)));
    assert!(matches!(e.handle("flat", &req, now).action, Action::CommitThenReply { .. }));
    let rel = request(MessageType::Release, c1, a1, None, Some(Ipv4Addr::new(10, 101, 200, 1)));
    assert!(
        matches!(e.handle("flat", &rel, now).action, Action::Release { addr, .. } if addr == a1)
    );
    assert_eq!(offer(&mut e, &fourth), Some(a1));

    // Client 2 declines its address: it is held out of the pool.
    let c2 = mac("02:00:00:00:01:02");
    let a2 = Ipv4Addr::new(10, 101, 200, 101);
    let dec = request(MessageType::Decline, c2, u, Some(a2), Some(Ipv4Addr::new(10, 101, 200, 1)));
    assert!(matches!(e.handle("flat", &dec, now).action, Action::Decline(d) if d.addr == a2));
    assert_eq!(
        offer(&mut e, &request(MessageType::Discover, mac("02:00:00:00:01:05"), u, None, None)),
        None
    );
    // Someone else asking for a held address is refused.
    let steal = request(
        MessageType::Request,
        mac("02:00:00:00:01:06"),
        u,
        Some(Ipv4Addr::new(10, 101, 200, 102)),
        None,
    );
    let out = e.handle("flat", &steal, now);
    assert_eq!(reply_of(&mut e, out).map(|r| r.kind), Some(MessageType::Nak));
}

#[test]
fn discovery_mode_reports_unknown_pis_only_when_enabled() {
    let mut e = engine();
    let pi = pi3b_rom_discover(mac("b8:27:eb:00:00:09"));
    assert!(e.handle("flat", &pi, SystemTime::now()).sighting.is_none());
    e.set_interface(Role::Flat(flat(true)));
    let s = e.handle("flat", &pi, SystemTime::now()).sighting.expect("reported");
    assert!(!s.reserved);
    assert!(e.handle("flat", &pi, SystemTime::now()).sighting.is_none(), "reported once");
}

#[test]
fn hostile_packets_are_dropped_with_a_reason_never_a_panic() {
    let mut e = engine();
    let now = SystemTime::now();
    let good =
        request(MessageType::Discover, mac("02:00:00:00:00:01"), Ipv4Addr::UNSPECIFIED, None, None);
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    let mut bad_magic = good.clone();
    bad_magic[236] = 0;
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 16;
    let mut relayed = good.clone();
    relayed[24] = 10;
    let bootp = {
        let mut b = good[..240].to_vec();
        b.push(255);
        b
    };
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], DropReason::Truncated),
        ("truncated", good[..200].to_vec(), DropReason::Truncated),
        ("oversized", vec![1; 3000], DropReason::Oversized),
        ("reply op", reply_op, DropReason::NotRequest),
        ("magic", bad_magic, DropReason::BadMagic),
        ("hlen", bad_hlen, DropReason::BadHardware),
        ("relayed", relayed, DropReason::Relayed),
        ("bootp", bootp, DropReason::UnsupportedType),
    ];
    for (name, bytes, reason) in cases {
        assert_eq!(e.handle("st1", &bytes, now).action, Action::Drop(reason), "{name}");
    }
    assert_eq!(e.handle("nope", &good, now).action, Action::Drop(DropReason::UnknownInterface));
    // Random mutations of valid packets: any outcome but a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut p = if x.is_multiple_of(2) {
            good.clone()
        } else {
            pi3b_rom_discover(mac("b8:27:eb:01:02:03"))
        };
        for _ in 0..(x % 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % p.len();
            p[i] = (x >> 32) as u8;
        }
        p.truncate(240 + (x as usize % (p.len() - 239)));
        let _ = e.handle(if x.is_multiple_of(3) { "flat" } else { "st1" }, &p, now);
    }
}

#[test]
fn inputs_that_crashed_the_fuzzer_are_dropped() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dhcp_fuzz_crashes");
    let mut e = engine();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("crash corpus") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for ifname in ["st1", "flat"] {
            let _ = e.handle(ifname, &bytes, SystemTime::now());
        }
        n += 1;
    }
    assert!(n > 0, "no saved crash inputs in {}", dir.display());
}
