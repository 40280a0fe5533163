//! The console without a BMC under a flood: one simulated Pi's namespace sends console
//! datagrams to its slot's `.1` as fast as it can, while the other Pi sends one line and
//! then power-cycles (its boot ROM's DHCP exchange; these Pis are racked, not deployed,
//! so their boot stops at TFTP, after the exchange). The quiet Pi's line must be visible
//! through `GET /v1/pis/{id}/console` and its DHCP answered within fixed bounds, the
//! flood's excess dropped and counted in `/metrics`, and the noisy Pi's stored console
//! bounded by its boot's byte limit. Figures are printed (`--nocapture`).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bramble::lab::Lab;
use bramble_lab::pisim::Event;
use bramble_tests::shelf;
use serde_json::Value;

/// The quiet Pi's line, sent while the flood runs, is readable through the API within this.
const LINE_BOUND: Duration = Duration::from_millis(1500);
/// The quiet Pi's boot ROM has its DHCP answer (DISCOVER to bound) within this: less
/// than one ROM retry interval (1 s in these labs), so no DISCOVER went unanswered.
const DHCP_BOUND: Duration = Duration::from_millis(900);
const PORT: u16 = 6666;

/// The Pi's namespace, interface and storage address (made present on the interface:
/// the simulated ROM only configures it while it boots).
async fn pi_end(lab: &Lab, pi: &str, port: u16) -> (String, Ipv4Addr) {
    let sim = lab.cabling.sim(port).expect("a simulated Pi");
    let (netns, iface) = (sim.config().netns.clone(), sim.config().interface.clone());
    let v: Value =
        lab.call(reqwest::Method::GET, &format!("/v1/pis/{pi}"), None, &[200]).await.expect("pi");
    let ip: Ipv4Addr = v["storage_ip"].as_str().expect("storage_ip").parse().expect("ip");
    let out = std::process::Command::new("ip")
        .args(["-n", &netns, "addr", "replace", &format!("{ip}/30"), "dev", &iface])
        .output()
        .expect("ip addr");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (netns, ip)
}

/// A UDP socket bound to `ip:6665` in `netns`, connected to the slot's `.1`.
fn socket_in(netns: &str, ip: Ipv4Addr) -> UdpSocket {
    let (netns, ip) = (netns.to_string(), ip);
    std::thread::spawn(move || {
        bramble_lab::enter_netns(&netns).expect("enter the Pi's namespace");
        let s = UdpSocket::bind(SocketAddrV4::new(ip, 6665)).expect("bind");
        s.connect(SocketAddrV4::new(Ipv4Addr::from(u32::from(ip) - 1), PORT)).expect("connect");
        s
    })
    .join()
    .expect("socket thread")
}

async fn console_text(lab: &Lab, pi: &str) -> String {
    let v: Value = lab
        .call(reqwest::Method::GET, &format!("/v1/pis/{pi}/console?limit=10000"), None, &[200])
        .await
        .expect("console");
    v["lines"]
        .as_array()
        .map(|l| {
            l.iter().map(|l| l["text"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .join("\n")
}

async fn metric(lab: &Lab, name_and_labels: &str) -> f64 {
    let text = bramble::tls::client::http()
        .get(format!("{}/metrics", lab.api))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_pi_delays_neither_another_pis_console_nor_its_dhcp() {
    let _one = shelf::serial().await;
    let lab = shelf::racked(shelf::options(2, 14, 'f')).await;
    let pis = shelf::pi_ports(&lab).await;
    let ((noisy, noisy_port), (quiet, quiet_port)) = (pis[0].clone(), pis[1].clone());
    let (noisy_ns, noisy_ip) = pi_end(&lab, &noisy, noisy_port).await;
    let (quiet_ns, quiet_ip) = pi_end(&lab, &quiet, quiet_port).await;

    // The flood: 1000-byte lines from the noisy Pi's address, as fast as one thread sends.
    let flood = socket_in(&noisy_ns, noisy_ip);
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut line = vec![b'#'; 999];
            line.push(b'\n');
            while !stop.load(Ordering::Relaxed) {
                if flood.send(&line).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let flood_started = Instant::now();
    // Long enough for the noisy Pi's burst budget to be spent: from here on it is over.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The quiet Pi's line, through the API, while the flood goes on.
    let quiet_socket = socket_in(&quiet_ns, quiet_ip);
    let nonce = format!("quiet pi says hello {}", std::process::id());
    let t0 = Instant::now();
    quiet_socket.send(format!("{nonce}\n").as_bytes()).expect("send");
    let line_latency = loop {
        if console_text(&lab, &quiet).await.contains(&nonce) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the quiet Pi's line never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The quiet Pi's boot ROM, power-cycled while the flood goes on: DISCOVER to bound.
    let sim = lab.cabling.sim(quiet_port).expect("quiet sim");
    lab.cabling.power(quiet_port, false).await;
    lab.cabling.power(quiet_port, true).await;
    // These Pis have no root (racked, not deployed): the ROM stage is what counts.
    let waited = Instant::now();
    let timeline = loop {
        let timeline = sim.status().timeline;
        let on = timeline.iter().rposition(|e| e.event == Event::PowerOn).expect("power on");
        if timeline[on..].iter().any(|e| matches!(e.event, Event::DhcpBound { .. })) {
            break timeline[on..].to_vec();
        }
        assert!(waited.elapsed() < Duration::from_secs(30), "no DHCP answer: {:?}", sim.state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = |f: &dyn Fn(&Event) -> bool| {
        timeline.iter().find(|e| f(&e.event)).map(|e| e.elapsed).expect("event")
    };
    let discover = at(&|e| matches!(e, Event::DhcpDiscover { .. }));
    let bound = at(&|e| matches!(e, Event::DhcpBound { .. }));
    let dhcp = bound - discover;

    // The flood lasts at least 4 s, measured or not.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(flood_started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flooder");
    let flood_secs = flood_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped_rate = metric(&lab, "bramble_console_dropped_total{reason=\"rate\"}").await;
    let received = metric(&lab, "bramble_console_received_total{unit=\"datagrams\"}").await;
    let noisy_console: Value = lab
        .call(reqwest::Method::GET, &format!("/v1/pis/{noisy}/console?limit=1"), None, &[200])
        .await
        .expect("noisy console");
    let kept = noisy_console["boot"]["bytes"].as_i64().expect("bytes");
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "flood: {sent} datagrams of 1000 bytes in {flood_secs:.1} s from one Pi; controller received {received}, \
         dropped over budget {dropped_rate}; noisy Pi's boot keeps {kept} bytes; \
         quiet Pi's line visible through the API after {line_latency:?}; its DHCP (DISCOVER to bound) {dhcp:?}"
    );
    assert!(line_latency < LINE_BOUND, "quiet Pi's line took {line_latency:?}");
    assert!(dhcp < DHCP_BOUND, "quiet Pi's DHCP took {dhcp:?} during the flood");
    assert!(dropped_rate > 0.0, "the flood's excess is counted");
    assert!(kept <= 256 * 1024, "the noisy Pi's boot is bounded: {kept} bytes");
    assert!(
        !console_text(&lab, &quiet).await.contains("####"),
        "no flood line in the quiet Pi's console"
    );
    let state_dir = lab.opts.state_dir.clone();
    lab.down().await;
    let _ = std::fs::remove_dir_all(state_dir);
}
