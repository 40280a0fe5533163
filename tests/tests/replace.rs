//! A deployed Pi is untrusted, and a dead Pi is replaced, on a virtual shelf: crafted
//! DHCP packets sent from a deployed Pi 3B+'s own slot namespace (a Pi 3B DISCOVER with
//! its MAC, a DISCOVER claiming the neighbour's MAC, a hand-built packet claiming the
//! neighbour's serial) change neither Pi and flag the slot; then, in maintenance, a new
//! board (new serial and MAC) swapped into the slot is taken as the Pi's hardware, keeps
//! owner, addresses, root and keys, boots and mounts the customer's root, and
//! `pi.replaced` reaches the webhook receiver.

use std::time::{Duration, Instant};

use bramble::lab::{LAB_IMAGES, Lab};
use bramble_lab::pisim::dhcp::{PI3_XID, client_guid, discover};
use bramble_lab::pisim::{PiModel, PiState, Serial, broadcast_dhcp};
use bramble_tests::shelf;
use bramble_tests::webhooks::Receiver;
use reqwest::Method;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

async fn pi(lab: &Lab, id: &str) -> Value {
    lab.call(Method::GET, &format!("/v1/pis/{id}"), None, &[200]).await.expect("pi")
}

/// What no sighting may change.
fn identity(p: &Value) -> Value {
    json!([
        p["mac"],
        p["serial"],
        p["model"],
        p["slot"],
        p["owner"],
        p["state"],
        p["storage_ip"],
        p["ssh_host_keys"]
    ])
}

/// Polls the Pi until `done` holds for it.
async fn until(lab: &Lab, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let p = pi(lab, id).await;
        if done(&p) {
            return p;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{what}: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A DHCP DISCOVER built byte by byte: BOOTP header, magic cookie, message type,
/// the Pi ROM's vendor class and a client GUID (option 97).
fn raw_discover(mac: [u8; 6], guid: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p[28..34].copy_from_slice(&mac);
    p.extend([99, 130, 83, 99]);
    p.extend([53, 1, 1]);
    let class = b"PXEClient:Arch:00000:UNDI:002001";
    p.extend([60, class.len() as u8]);
    p.extend(class);
    p.extend([97, guid.len() as u8]);
    p.extend(guid);
    p.push(255);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployed_pi_is_untrusted_and_a_swapped_board_keeps_its_identity() {
    let _turn = shelf::serial().await;
    let started = Instant::now();
    let receiver = Receiver::start().await.expect("webhook receiver");
    let mut o = shelf::options(2, 41, 'w');
    o.forward = vec![receiver.addr];
    o.extra_toml = format!(
        "[webhooks]\nurl = \"{}\"\nsecret = \"replace-test-secret-0123456789\"\nfirst_backoff_ms = 200\n",
        receiver.url()
    );
    let lab = shelf::racked(o).await;
    shelf::deploy_all(&lab, LAB_IMAGES[0].0).await;
    let ports = shelf::pi_ports(&lab).await;
    let id_at = |port: u16| ports.iter().find(|(_, p)| *p == port).expect("port").0.clone();
    // Port 2 holds a Pi 3B+, port 1 a Pi 4 (`lab::wiring::model_for`).
    let (plus, four) = (id_at(2), id_at(1));
    shelf::assign(&lab, &plus, "alice").await;
    let (plus0, four0) = (pi(&lab, &plus).await, pi(&lab, &four).await);
    assert_eq!(plus0["model"], "3b+", "{plus0}");
    let sim = lab.cabling.sim(2).expect("sim in port 2");
    let (netns, iface) = (sim.config().netns.clone(), sim.config().interface.clone());
    let own_mac = sim.config().mac();
    let four_sim = lab.cabling.sim(1).expect("sim in port 1");
    let send = |bytes: Vec<u8>| {
        let (netns, iface) = (netns.clone(), iface.clone());
        async move { broadcast_dhcp(&netns, &iface, bytes).await.expect("send from the slot") }
    };

    // 1. The bug of issue 16: one crafted Pi 3B DISCOVER from the 3B+'s slot.
    send(discover(PiModel::Pi3B, sim.config().serial, own_mac, PI3_XID)).await;
    let p = until(&lab, &plus, "flagged", |p| p["hardware_sighting"]["model"] == "3b").await;
    assert_eq!(identity(&p), identity(&plus0), "the crafted 3B DISCOVER changed the Pi");
    assert_eq!(p["model"], "3b+");

    // 2. The neighbour's MAC, then (hand-built) the neighbour's serial, from this slot.
    let four_mac = four_sim.config().mac();
    send(discover(PiModel::Pi3BPlus, Serial(0x0bad_0001), four_mac, PI3_XID)).await;
    until(&lab, &plus, "mac claim flagged", |p| p["hardware_sighting"]["reason"] == "mac_taken")
        .await;
    // A Pi 4 EEPROM's option 97 (`RPi4`, serial) carrying the neighbour's serial, under
    // a MAC nobody holds.
    let raw_mac = bramble_lab::pisim::Mac([0xdc, 0xa6, 0x32, 0x0b, 0xad, 0x02]);
    let guid = client_guid(PiModel::Pi4, four_sim.config().serial, raw_mac);
    send(raw_discover(raw_mac.0, &guid)).await;
    let p = until(&lab, &plus, "serial claim flagged", |p| {
        p["hardware_sighting"]["reason"] == "serial_taken"
    })
    .await;
    assert_eq!(p["hardware_sighting"]["other_pi"], json!(four));
    assert_eq!(identity(&p), identity(&plus0), "a claim changed the Pi it came from");
    let four1 = pi(&lab, &four).await;
    assert_eq!(identity(&four1), identity(&four0), "a claim changed the Pi it named");
    assert!(four1.get("hardware_sighting").is_none(), "{four1}");
    // The shelf shows the flag.
    let status =
        lab.call(Method::GET, "/v1/shelves/e2e/status", None, &[200]).await.expect("status");
    let slot = status["slots"].as_array().unwrap().iter().find(|s| s["port"] == 2).unwrap();
    assert!(slot["flag"].as_str().unwrap_or("").contains("hardware sighting"), "{slot}");
    eprintln!("crafted packets checked after {:?}", started.elapsed());

    // 3. Maintenance on, the dead board swapped for a new one, power cycled.
    let sid = p["hardware_sighting"]["id"].as_str().unwrap();
    lab.call(
        Method::POST,
        &format!("/v1/pis/{plus}/hardware/dismiss"),
        Some(json!({"sighting": sid})),
        &[200],
    )
    .await
    .expect("dismiss");
    lab.call(
        Method::POST,
        &format!("/v1/pis/{plus}/maintenance"),
        Some(json!({"on": true})),
        &[200],
    )
    .await
    .expect("maintenance on");
    let new_serial = Serial(0x5eed_7702);
    lab.cabling.swap(2, PiModel::Pi3BPlus, new_serial).await;
    let job = lab
        .call(Method::POST, &format!("/v1/pis/{plus}/reboot"), Some(json!({})), &[202])
        .await
        .expect("operator reboot in maintenance");
    let done = lab.wait_job(job["id"].as_str().unwrap(), LIMIT).await.expect("reboot");
    assert_eq!(done.state, bramble::jobs::model::JobState::Succeeded, "{done:?}");
    let new_sim = lab.cabling.sim(2).expect("new board");
    assert_eq!(new_sim.config().serial, new_serial);
    // It boots: DHCP, TFTP, and the customer's root over NFS (hostname and key checked).
    let state = new_sim.wait_for(LIMIT, |s| *s == PiState::Booted).await;
    assert_eq!(state, PiState::Booted, "new board: {:?}", new_sim.status());
    let p = pi(&lab, &plus).await;
    assert_eq!(p["serial"], json!(format!("{:08x}", new_serial.0)), "{p}");
    assert_eq!(p["mac"], json!(new_sim.config().mac().to_string()));
    for k in ["owner", "state", "storage_ip", "public_ipv6", "slot", "ssh_host_keys", "image"] {
        assert_eq!(p[k], plus0[k], "{k} changed by the replacement");
    }
    let h = &p["hardware_history"][0];
    assert_eq!(
        (h["old_serial"].clone(), h["how"].clone()),
        (plus0["serial"].clone(), json!("maintenance")),
        "{p}"
    );
    assert_eq!(identity(&pi(&lab, &four).await), identity(&four0));
    lab.call(
        Method::POST,
        &format!("/v1/pis/{plus}/maintenance"),
        Some(json!({"on": false})),
        &[200],
    )
    .await
    .expect("maintenance off");

    // 4. `pi.replaced` reaches the webhook.
    let start = Instant::now();
    while !receiver.deliveries().iter().any(|d| d.kind.as_deref() == Some("pi.replaced")) {
        assert!(start.elapsed() < Duration::from_secs(20), "no pi.replaced delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("replacement test took {:?}", started.elapsed());
    lab.down().await;
}
