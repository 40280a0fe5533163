//! The controller's netboot wiring against real peers: busybox udhcpc on two storage
//! veths at once obtains each slot's `.2`, tftp-hpa fetches files from the slot's own
//! boot directory, and the Pi's boot timeline (dhcp.*, tftp.*, pi.replaced) reads back
//! through the HTTP API. Leases are in the database after the ACK and survive a restart.
//! Runs on SQLite and PostgreSQL. The controller runs in a network namespace of the test's
//! own, as the lab's does, while the test holds UDP 67 and 69 on the machine. Needs root,
//! `busybox`, `tftp` (tftp-hpa) and `ip`.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble::api::{AppState, app};
use bramble::auth::{Role, generate_token};
use bramble::bootplan::BootPlanner;
use bramble::config::{Config, Overrides, RawConfig};
use bramble::db::fabric::NewSwitch;
use bramble::netboot::Netboot;
use bramble::netboot::directory::Directory;
use bramble::netboot::leases::DbLeaseStore;
use bramble::secret::{Secret, SnmpCredentials};
use bramble::server::Controller;
use bramble::testing::test_databases;
use bramble_lab::{NetnsRuntime, VethLinks};
use bramble_netboot::dhcp::LeaseStore;
use common::Api;
use serde_json::{Value, json};

/// Fails with a clear message when a tool the test drives is missing.
fn require_tools() {
    for tool in ["busybox", "tftp", "ip"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "`{tool}` is not installed: apt-get install -y busybox tftp-hpa iproute2");
    }
}

/// A name no concurrent run uses: `gl` + 4 hex digits (interface names stay short).
fn unique_prefix() -> String {
    let n: u32 = rand::random::<u32>() & 0xffff;
    format!("gl{n:04x}")
}

/// Holds UDP `port` on `0.0.0.0` in the machine's namespace until dropped (`None`: some
/// other process holds it already, which serves as well).
fn hold_machine_port(port: u16) -> Option<std::net::UdpSocket> {
    match std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(socket) => Some(socket),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
        Err(e) => panic!("cannot hold UDP port {port} on the machine: {e}"),
    }
}

/// The udhcpc script: configure the offered address, record it.
const SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$subnet\" dev \"$interface\"; echo \"$ip\" > \"$0.$interface.got\";; esac\nexit 0\n";

/// Runs `args` in namespace `ns` and waits, handing this runtime worker's tasks to another
/// thread meanwhile (the servers under test run on the same runtime).
fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    tokio::task::block_in_place(|| {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("run ip netns exec")
    })
}

fn udhcpc(ns: &str, script: &Path) -> std::process::Output {
    in_ns(
        ns,
        &[
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            "eth0",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            script.to_str().unwrap_or(""),
        ],
    )
}

fn ns_addr(ns: &str) -> String {
    String::from_utf8_lossy(&in_ns(ns, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout)
        .into_owned()
}

struct Lab {
    dir: PathBuf,
    links: Arc<VethLinks>,
    slots: Vec<(String, u16, Ipv4Addr, Ipv4Addr)>,
}

/// The test configuration: storage /30s from `10.106.<subnet>.0/24` (this test's range).
fn config(database: &str, subnet: u8, state_dir: &Path) -> Config {
    let text = format!(
        "[addressing]\nstorage_supernet = \"10.106.{subnet}.0/24\"\nstorage_vlan_first = 200\nstorage_vlan_last = 3999\n"
    );
    let raw: RawConfig = toml::from_str(&text).expect("test config");
    let o = Overrides {
        listen: Some("127.0.0.1:0".into()),
        database: Some(database.to_string()),
        state_dir: Some(state_dir.to_path_buf()),
        name: None,
    };
    Config::from_raw(raw, "netboot test", &o).expect("valid test config")
}

/// Opens a controller (migrating the database) and makes an operator token.
async fn open(config: Config) -> (AppState, String) {
    let c = Controller::open(config).await.expect("open controller");
    let token = generate_token();
    c.state
        .db
        .create_token(&token, Role::Operator, None, "netboot test")
        .await
        .expect("operator token");
    (c.state, token)
}

/// A controller state whose netboot serves two slots of a freshly enrolled shelf, the
/// controller ends of their links in namespace `netns`.
async fn setup(database: &str, subnet: u8, netns: &str) -> (AppState, String, Lab) {
    let dir = std::env::temp_dir().join(format!("bramble-{}", unique_prefix()));
    std::fs::create_dir_all(dir.join("firmware")).expect("firmware dir");
    let mut config = config(database, subnet, &dir);
    let (state, token) = open(config.clone()).await;
    let sw = NewSwitch {
        name: "sw-gl".into(),
        address: "127.0.0.1:1161".into(),
        driver: "standard".into(),
        trunk_port: 24,
        credentials: SnmpCredentials::V2c { community: Secret::new("public") },
        controller: config.cluster.name.clone(),
        l2_domain: "gl".into(),
    };
    let sw = state.db.insert_switch(&sw).await.expect("switch");
    let shelf =
        state.db.enroll_shelf("gl-shelf", &sw.id, 1, 2, &config.pools).await.expect("shelf");
    let slots: Vec<_> = shelf
        .slots
        .iter()
        .map(|s| {
            (s.id.0.clone(), s.vlan, s.controller_ip.parse().unwrap(), s.pi_ip.parse().unwrap())
        })
        .collect();
    config.netboot.enabled = true;
    config.netboot.firmware_dir = dir.join("firmware");
    config.netboot.roots_dir = dir.join("roots");
    config.netboot.refresh = Duration::from_secs(1);
    config.netboot.tftp_listen =
        slots.iter().map(|(_, _, c, _)| format!("{c}:69").parse().unwrap()).collect();
    let state = AppState::new(state.db.clone(), config, Default::default());
    let links = Arc::new(VethLinks::in_netns(&unique_prefix(), netns));
    std::fs::write(dir.join("udhcpc.sh"), SCRIPT).expect("script");
    Command::new("chmod")
        .args(["+x", dir.join("udhcpc.sh").to_str().unwrap()])
        .status()
        .expect("chmod");
    (state, token, Lab { dir, links, slots })
}

/// The value of one sample line of a Prometheus text page (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls the Pi's timeline until every wanted kind is there, as often as it is listed
/// (events are written asynchronously).
async fn timeline(api: &Api, token: &str, pi: &str, want: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get(&format!("/v1/pis/{pi}/events?limit=200"), token).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        let kinds: Vec<&str> = items.iter().filter_map(|e| e["kind"].as_str()).collect();
        let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
        if want.iter().all(|w| count(w) >= want.iter().filter(|x| *x == w).count()) {
            return items;
        }
        assert!(Instant::now() < deadline, "timeline of {pi} lacks some of {want:?}: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole case; run inside the controller's namespace.
async fn case(database: String, subnet: u8, netns: String) {
    let (state, token, lab) = setup(&database, subnet, &netns).await;
    let running = state.config.get();
    let plans = Arc::new(BootPlanner::new(running.netboot.roots_dir.clone(), None, None));
    let netboot = Netboot::start(
        &state.db,
        &running.netboot,
        &state.metrics,
        lab.links.clone(),
        plans,
        &running.cluster.name,
    )
    .await
    .expect("netboot starts");
    assert_eq!(netboot.dhcp().interfaces().len(), 2, "both slots served");
    let api = Api { router: app(state.clone()) };
    let script = lab.dir.join("udhcpc.sh");

    // Two Pis ask at once, each on its own storage network.
    let clients: Vec<_> = lab
        .slots
        .iter()
        .map(|(_, vlan, _, _)| {
            let ns = lab.links.pi_netns(*vlan).expect("pi namespace");
            let script = script.clone();
            std::thread::spawn(move || (udhcpc(&ns, &script), ns))
        })
        .collect();
    let mut namespaces = Vec::new();
    for (client, (_, _, _, pi_ip)) in clients.into_iter().zip(&lab.slots) {
        let (out, ns) = tokio::task::block_in_place(|| client.join()).expect("udhcpc thread");
        assert!(out.status.success(), "udhcpc in {ns}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(ns_addr(&ns).contains(&format!("{pi_ip}/30")), "{ns} got {}", ns_addr(&ns));
        namespaces.push(ns);
    }

    // The ACKed leases are rows already.
    let store = DbLeaseStore::new(state.db.clone(), Arc::new(Directory::new(state.db.clone())));
    let leases = store.load_leases().await.expect("load leases");
    for (slot, _, _, pi_ip) in &lab.slots {
        assert!(
            leases.iter().any(|l| l.addr == *pi_ip
                && l.slot.as_ref().map(|s| s.0.as_str()) == Some(slot.as_str())),
            "{leases:?}"
        );
    }

    // Each slot now has a `new` Pi recorded from DHCP.
    let pis =
        api.get("/v1/pis", &token).await.body["items"].as_array().cloned().unwrap_or_default();
    let pi_of = |slot: &str| {
        pis.iter()
            .find(|p| p["slot"] == slot)
            .cloned()
            .unwrap_or_else(|| panic!("no Pi in slot {slot}: {pis:?}"))
    };
    let pi = pi_of(&lab.slots[0].0);
    assert_eq!(pi["state"], "new");
    let pi_id = pi["id"].as_str().expect("pi id").to_string();
    let mac = pi["mac"].as_str().expect("mac recorded").to_string();

    // TFTP: the shared bootcode.bin and a file of this Pi's own boot directory.
    let boot = lab.dir.join("roots").join(&pi_id).join("boot");
    std::fs::create_dir_all(&boot).expect("boot dir");
    let kernel: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(boot.join("kernel7.img"), &kernel).expect("kernel");
    std::fs::write(lab.dir.join("firmware/bootcode.bin"), b"first stage").expect("bootcode");
    let server = lab.slots[0].2.to_string();
    for (remote, want) in
        [("bootcode.bin", b"first stage".to_vec()), ("kernel7.img", kernel.clone())]
    {
        let local = lab.dir.join(format!("got-{remote}"));
        let out = in_ns(
            &namespaces[0],
            &["tftp", "-m", "binary", &server, "-c", "get", remote, local.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "tftp get {remote}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&local).ok(), Some(want), "{remote} byte-identical");
    }

    // The boot timeline through the API.
    let want = [
        "pi.registered",
        "dhcp.discover",
        "dhcp.offer",
        "dhcp.request",
        "dhcp.ack",
        "tftp.read",
        "tftp.complete",
        "tftp.read",
        "tftp.complete",
    ];
    let items = timeline(&api, &token, &pi_id, &want).await;
    let read = items
        .iter()
        .find(|e| e["kind"] == "tftp.read" && e["data"]["stage"]["file"] == "kernel7.img");
    assert!(read.is_some(), "kernel read in timeline: {items:?}");
    let other = pi_of(&lab.slots[1].0)["id"].as_str().unwrap_or_default().to_string();
    let others = api.get(&format!("/v1/pis/{other}/events?kind=tftp."), &token).await;
    assert_eq!(
        others.body["items"].as_array().map(Vec::len),
        Some(0),
        "no TFTP of slot 1 in slot 2's timeline"
    );

    // A different board in slot 1 while an operator has the Pi in maintenance: logged
    // as a replacement, identity taken over (outside maintenance it is only flagged:
    // tests/hardware.rs).
    let r = api.post(&format!("/v1/pis/{pi_id}/maintenance"), &token, json!({"on": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new_mac = "02:00:00:06:0a:01";
    assert_ne!(mac, new_mac);
    let out = in_ns(&namespaces[0], &["ip", "link", "set", "dev", "eth0", "address", new_mac]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        udhcpc(&namespaces[0], &script).status.success(),
        "second board gets the slot's address"
    );
    let items = timeline(&api, &token, &pi_id, &["pi.replaced"]).await;
    let replaced = items.iter().find(|e| e["kind"] == "pi.replaced").expect("pi.replaced");
    assert_eq!(replaced["data"]["old_mac"], mac.as_str());
    assert_eq!(api.get(&format!("/v1/pis/{pi_id}"), &token).await.body["mac"], new_mac);

    // A retired slot's storage interface is withdrawn.
    state
        .db
        .q("UPDATE slots SET retired_at = 1 WHERE id = $1")
        .bind(lab.slots[1].0.clone())
        .execute(state.db.pool())
        .await
        .expect("retire slot 2");
    assert_eq!(netboot.sync_interfaces().await.expect("sync"), 1);
    assert_eq!(lab.links.pi_netns(lab.slots[1].1), None, "slot 2's link removed");

    // Counters are on /metrics.
    let metrics = api.get("/metrics", &token).await.body;
    let text = metrics.as_str().unwrap_or_default();
    assert!(sample(text, "bramble_dhcp_replies_total{type=\"ack\"}") >= 3.0, "{text}");
    assert!(sample(text, "bramble_tftp_transfers_total{outcome=\"completed\"}") >= 2.0, "{text}");
    assert!(sample(text, "bramble_boot_events_total{outcome=\"written\"}") >= 7.0, "{text}");

    // Stopping is prompt even while a handle (the rack job's) is held: the handle does
    // not keep the DHCP server or the event drain alive, and syncs nothing afterwards.
    let handle = netboot.handle();
    let stopping = std::time::Instant::now();
    netboot.stop().await;
    let took = stopping.elapsed();
    assert!(took < std::time::Duration::from_secs(3), "netboot stopped in {took:?}");
    assert_eq!(handle.sync_interfaces().await.expect("sync after stop"), 0);

    // Restart: a new controller on the same database loads the stored leases.
    state.db.close().await;
    let (restarted, _) = open(config(&database, subnet, &lab.dir)).await;
    let store =
        DbLeaseStore::new(restarted.db.clone(), Arc::new(Directory::new(restarted.db.clone())));
    let leases = store.load_leases().await.expect("load leases after restart");
    assert!(
        leases.iter().any(|l| l.addr == lab.slots[0].3 && l.key.mac.to_string() == new_mac),
        "{leases:?}"
    );
    assert!(leases.iter().any(|l| l.addr == lab.slots[1].3), "{leases:?}");
    restarted.db.close().await;
    drop(lab.links);
    let _ = std::fs::remove_dir_all(&lab.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netboot_serves_slots_and_records_the_boot_timeline() {
    require_tools();
    // Another DHCP and TFTP server on the machine: netboot runs in a namespace of its
    // own and must not care.
    let _held = [67, 69].map(hold_machine_port);
    let ctl = NetnsRuntime::new(&format!("{}ctl", unique_prefix())).expect("controller netns");
    let base: u8 = rand::random::<u8>() & 0x7f;
    for (i, db) in test_databases().await.into_iter().enumerate() {
        eprintln!("netboot wiring on {}", db.label);
        let _forward = match loopback_port(&db.url) {
            Some(port) => Some(forward_loopback(&ctl, port).await),
            None => None,
        };
        let run = ctl.spawn(case(db.url.clone(), base * 2 + i as u8, ctl.name().to_string()));
        if let Err(e) = run.await {
            std::panic::resume_unwind(e.try_into_panic().expect("case cancelled"));
        }
        db.drop().await;
    }
}

/// The port of a database URL naming the machine's loopback (PostgreSQL), if any.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once('@').map_or(authority, |(_, h)| h).split_once(':')?;
    matches!(host, "127.0.0.1" | "localhost").then(|| port.parse().ok())?
}

/// Stops forwarding when dropped.
struct Forward(tokio::task::JoinHandle<()>);

impl Drop for Forward {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards TCP `port` of the controller namespace's loopback to the machine's, so the
/// database the machine serves on `127.0.0.1:port` answers at the same address inside.
/// The listener is made in the namespace, each onward connection on the machine.
async fn forward_loopback(ctl: &NetnsRuntime, port: u16) -> Forward {
    let listener = ctl
        .spawn(async move { std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) })
        .await
        .expect("bind task")
        .expect("listener in the controller namespace");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    Forward(tokio::spawn(async move {
        while let Ok((mut inside, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outside) =
                    tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                }
            });
        }
    }))
}
