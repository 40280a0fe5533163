//! The DHCP server against real clients in network namespaces: dhclient and udhcpc on
//! storage slots and a flat network, a replayed Pi 3B ROM DISCOVER, and perfdhcp.
//! The server runs in a namespace of each test's own while the test holds UDP 67 on the
//! machine. Needs root, iproute2, isc-dhcp-client, busybox and perfdhcp (kea-admin).

mod dhcp_common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bramble_lab::{Netns, NetnsRuntime, Veth, VethLinks, VethSpec, unique_name};
use bramble_netboot::dhcp::*;
use bramble_netboot::events::{BootStage, MemorySink};
use dhcp_common::*;

/// A namespace of the test's own for the server under test, with a runtime whose threads
/// all live in it: the server's sockets, port 67 included, are made there.
fn controller_netns() -> NetnsRuntime {
    NetnsRuntime::new(&unique_name("dhc")).expect("server namespace")
}

async fn server(store: Arc<MemoryLeaseStore>, sink: Arc<MemorySink>) -> DhcpServer {
    let opts =
        ServerOptions { pxe_reply_delay: Duration::from_millis(20), ..ServerOptions::default() };
    DhcpServer::start(opts, store, sink).await.expect("server starts")
}

/// Runs dhclient once in `ns` with its own lease/pid files and a no-op script; returns
/// the address it was given (from its lease file) and stops the daemon it leaves.
fn dhclient(ns: &str, dir: &std::path::Path) -> Option<Ipv4Addr> {
    let (lf, pf, cf) = (
        dir.join(format!("{ns}.leases")),
        dir.join(format!("{ns}.pid")),
        dir.join(format!("{ns}.conf")),
    );
    std::fs::write(&cf, "timeout 20;\nretry 1;\ninitial-interval 1;\n").ok()?;
    let out = Netns::existing(ns)
        .command("dhclient")
        .args(["-1", "-4", "-sf", "/bin/true"])
        .arg("-lf")
        .arg(&lf)
        .arg("-pf")
        .arg(&pf)
        .arg("-cf")
        .arg(&cf)
        .arg("eth0")
        .output()
        .expect("run dhclient");
    // The daemon dhclient forks after binding writes its pid file a moment later.
    let read_pid = || std::fs::read_to_string(&pf).ok().and_then(|p| p.trim().parse::<i32>().ok());
    let mut pid = read_pid();
    for _ in 0..30 {
        if pid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        pid = read_pid();
    }
    if let Some(pid) = pid {
        // SAFETY: signalling the dhclient daemon this test started (pid from its pid file).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let leases = std::fs::read_to_string(&lf).unwrap_or_default();
    let addr = leases
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("fixed-address "))
        .and_then(|a| a.trim_end_matches(';').parse().ok());
    if addr.is_none() {
        eprintln!("dhclient in {ns} got nothing: {}", String::from_utf8_lossy(&out.stderr));
    }
    addr
}

/// Runs `busybox udhcpc` once in `ns`; returns the address it reports.
fn udhcpc(ns: &str) -> Option<Ipv4Addr> {
    let out = Netns::existing(ns)
        .command("busybox")
        .args(["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", "/bin/true", "-t", "5", "-T", "1"])
        .output()
        .expect("run udhcpc");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let addr = text
        .lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    if addr.is_none() {
        eprintln!("udhcpc in {ns} got nothing: {text}");
    }
    addr
}

#[test]
fn dhclient_gets_each_slot_address_on_three_storage_interfaces_at_once() {
    require(&["ip", "dhclient"]);
    hold_machine_port(67);
    let ctl = controller_netns();
    let netns = ctl.name().to_string();
    ctl.run(async move {
        let links = VethLinks::in_netns(&unique_name("dhs"), &netns);
        let store = Arc::new(MemoryLeaseStore::default());
        let sink = Arc::new(MemorySink::default());
        let srv = server(store.clone(), sink.clone()).await;
        let mut slots = vec![];
        for vid in [11u16, 12, 13] {
            let controller = Ipv4Addr::new(10, 101, vid as u8, 1);
            let ifname = links.ensure(vid, controller).expect("veth link");
            let slot = SlotKey(format!("shelf/{vid}"));
            srv.add_storage(StorageIface::new(&ifname, controller, controller, slot).unwrap())
                .expect("serve");
            slots.push((links.pi_netns(vid).unwrap(), Ipv4Addr::new(10, 101, vid as u8, 2)));
        }
        let dir = tempfile::tempdir().unwrap();
        let runs: Vec<_> = slots
            .iter()
            .map(|(ns, _)| {
                let (ns, dir) = (ns.clone(), dir.path().to_path_buf());
                tokio::task::spawn_blocking(move || dhclient(&ns, &dir))
            })
            .collect();
        for ((_, want), run) in slots.iter().zip(runs) {
            assert_eq!(run.await.unwrap(), Some(*want));
        }
        let leases = store.leases();
        assert_eq!(leases.len(), 3, "every ACKed lease is stored: {leases:?}");
        assert!(sink.events().iter().any(|e| matches!(e.stage, BootStage::DhcpAck { .. })));
        // A slot removed at runtime is no longer served.
        let gone = links.ifname(13);
        assert!(srv.remove_interface(&gone));
        assert_eq!(
            tokio::task::spawn_blocking(move || udhcpc(&links.pi_netns(13).unwrap()))
                .await
                .unwrap(),
            None
        );
    });
}

#[test]
fn replayed_pi3b_rom_discover_gets_the_documented_offer_unless_the_store_fails() {
    require(&["ip"]);
    hold_machine_port(67);
    let ctl = controller_netns();
    let netns = ctl.name().to_string();
    ctl.run(async move {
        let links = VethLinks::in_netns(&unique_name("dhr"), &netns);
        let store = Arc::new(MemoryLeaseStore::default());
        let sink = Arc::new(MemorySink::default());
        let srv = server(store.clone(), sink.clone()).await;
        let controller = Ipv4Addr::new(10, 101, 21, 1);
        let ifname = links.ensure(21, controller).unwrap();
        srv.add_storage(
            StorageIface::new(&ifname, controller, controller, SlotKey("s21".into())).unwrap(),
        )
        .unwrap();
        let ns = links.pi_netns(21).unwrap();
        let mac: MacAddr = "b8:27:eb:28:f6:6d".parse().unwrap();
        Netns::existing(&ns).ip(&["link", "set", "eth0", "address", &mac.to_string()]).unwrap();

        let exchange = move |ns: String| {
            let sock = client_socket_in(&ns);
            sock.send_to(&pi3b_rom_discover(mac), "255.255.255.255:67").expect("send DISCOVER");
            let mut buf = [0u8; 1500];
            sock.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
        };
        let ns2 = ns.clone();
        let reply =
            tokio::task::spawn_blocking(move || exchange(ns2)).await.unwrap().expect("an OFFER");
        let m = decode(&reply);
        assert_eq!(msg_type(&m), Some(dhcproto::v4::MessageType::Offer));
        assert_eq!((m.xid(), m.yiaddr()), (PI3_XID, Ipv4Addr::new(10, 101, 21, 2)));
        let mut want43 = vec![
            0x06, 0x01, 0x03, 0x0a, 0x04, 0x00, b'P', b'X', b'E', 0x09, 0x17, 0x00, 0x00, 0x14,
        ];
        want43.extend(b"Raspberry Pi Boot   ");
        want43.push(0xff);
        assert_eq!(raw_option(&reply, 43), Some(want43));
        assert_eq!(raw_option(&reply, 66), Some(b"10.101.21.1".to_vec()));
        assert_eq!(store.leases().len(), 1, "the OFFER a ROM boots from was stored first");
        assert_eq!(store.sightings()[0].model, Some(PiModel::Pi3B));

        store.set_fail_commits(true);
        let none = tokio::task::spawn_blocking(move || exchange(ns)).await.unwrap();
        assert!(none.is_none(), "no OFFER may be sent when the lease cannot be stored");
        assert_eq!(srv.counters().snapshot().dropped(DropReason::StoreFailed), 1);
    });
}

/// A flat network on a veth pair: server end in namespace `server`, client in `ns`.
fn flat_net(
    server: &str,
    third: u8,
    prefix: &str,
    pool: (u8, u8),
    reservations: Vec<Reservation>,
) -> (Netns, Veth, FlatNetwork) {
    let ns = Netns::new(&unique_name(prefix)).unwrap();
    let server_addr = Ipv4Addr::new(10, 101, third, 1);
    let spec = VethSpec {
        host_if: unique_name(prefix),
        host_addr: server_addr,
        prefix_len: 24,
        peer_if: "eth0".into(),
        peer_addr: None,
    };
    let veth = Veth::create_between(spec, &Netns::existing(server), &ns).unwrap();
    let net = FlatNetwork {
        ifname: veth.host_if().to_string(),
        server_addr,
        network: Ipv4Addr::new(10, 101, third, 0),
        prefix: 24,
        pool: Some((Ipv4Addr::new(10, 101, third, pool.0), Ipv4Addr::new(10, 101, third, pool.1))),
        router: Some(server_addr),
        dns: vec![],
        tftp_server: Some(server_addr),
        reservations,
        discovery: true,
        lease_time: Duration::from_secs(600),
    };
    (ns, veth, net)
}

#[test]
fn flat_network_serves_reservations_and_pool_to_udhcpc_and_dhclient() {
    require(&["ip", "dhclient", "busybox"]);
    hold_machine_port(67);
    let ctl = controller_netns();
    let netns = ctl.name().to_string();
    ctl.run(async move {
        let reserved: MacAddr = "dc:a6:32:00:00:07".parse().unwrap();
        let res = vec![Reservation {
            key: ReservationKey::Mac(reserved),
            addr: Ipv4Addr::new(10, 101, 200, 7),
        }];
        let (ns, _veth, net) = flat_net(&netns, 200, "dhf", (100, 150), res);
        let store = Arc::new(MemoryLeaseStore::default());
        let srv = server(store.clone(), Arc::new(MemorySink::default())).await;
        srv.add_flat(net).unwrap();
        let name = ns.name().to_string();
        ns.ip(&["link", "set", "eth0", "address", &reserved.to_string()]).unwrap();
        let n = name.clone();
        assert_eq!(
            tokio::task::spawn_blocking(move || udhcpc(&n)).await.unwrap(),
            Some(Ipv4Addr::new(10, 101, 200, 7))
        );
        ns.ip(&["link", "set", "eth0", "address", "02:00:00:00:00:42"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        assert_eq!(
            tokio::task::spawn_blocking(move || dhclient(&name, &d)).await.unwrap(),
            Some(Ipv4Addr::new(10, 101, 200, 100))
        );
        let sightings = store.sightings();
        assert!(
            sightings
                .iter()
                .any(|s| s.mac == reserved && s.reserved && s.model == Some(PiModel::NewerPi)),
            "{sightings:?}"
        );
    });
}

#[test]
fn perfdhcp_completes_exchanges_against_flat_mode() {
    require(&["ip", "perfdhcp"]);
    hold_machine_port(67);
    let ctl = controller_netns();
    let netns = ctl.name().to_string();
    ctl.run(async move {
        let (ns, _veth, net) = flat_net(&netns, 201, "dhp", (10, 250), vec![]);
        // perfdhcp acts as a relay on the link: it needs an address (outside the pool).
        ns.ip(&["addr", "add", "10.101.201.2/24", "dev", "eth0"]).unwrap();
        let store = Arc::new(MemoryLeaseStore::default());
        let srv = server(store.clone(), Arc::new(MemorySink::default())).await;
        srv.add_flat(net).unwrap();
        let name = ns.name().to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("ip")
                .args([
                    "netns", "exec", &name, "perfdhcp", "-4", "-l", "eth0", "-r", "100", "-R",
                    "200", "-p", "3",
                ])
                .output()
                .expect("run perfdhcp")
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let counts = |key: &str| -> Vec<u64> {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix(key))
                .filter_map(|v| v.split_whitespace().next()?.parse().ok())
                .collect()
        };
        let (sent, received) = (counts("sent packets:"), counts("received packets:"));
        assert_eq!(sent.len(), 2, "perfdhcp output has both exchanges:\n{text}");
        for (s, r) in sent.iter().zip(&received) {
            assert!(
                *s > 100 && *r * 100 >= *s * 95,
                "fewer than 95% answered ({r} of {s}):\n{text}"
            );
        }
        let snap = srv.counters().snapshot();
        assert!(snap.acks > 100 && snap.store_leases >= snap.acks, "{snap:?}");
    });
}
