//! The standard driver against an agent nobody here wrote: net-snmp `snmpd` with a
//! `pass_persist` script (tests/fixtures) holding the PoE and Q-BRIDGE objects.

mod common;

use bramble_switch::model::DetectionStatus;
use bramble_switch::{PortNo, SwitchDriver, VlanId};
use common::{COMMUNITY, driver, v2c};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// snmpd running in the foreground with its own config; killed on drop.
struct Snmpd {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

async fn start_snmpd(ports: u16) -> Snmpd {
    let snmpd = ["/usr/sbin/snmpd", "/usr/bin/snmpd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let snmpd = snmpd.expect("snmpd not installed: install Debian package `snmpd`");
    let dir = tempfile::Builder::new().prefix("sw-snmpd").tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bridge_poe_pass_persist.py");
    let port = free_port();
    let conf = dir.path().join("snmpd.conf");
    let text = format!(
        "agentAddress udp:127.0.0.1:{port}\nrwcommunity {COMMUNITY} 127.0.0.1\n\
         pass_persist .1.3.6.1.2.1.17 /usr/bin/python3 {script} {ports}\n\
         pass_persist .1.3.6.1.2.1.105 /usr/bin/python3 {script} {ports}\n"
    );
    std::fs::write(&conf, text).expect("write conf");
    let child = Command::new(snmpd)
        .args(["-f", "-Lo", "-C", "-c"])
        .arg(&conf)
        .env("SNMP_PERSISTENT_DIR", dir.path())
        .env("MIBS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn snmpd");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let d = Snmpd { child, addr, _dir: dir };
    for _ in 0..50 {
        let out = common::net_snmp(
            "snmpget",
            &[
                "-v2c",
                "-c",
                COMMUNITY,
                "-t",
                "0.2",
                "-r",
                "0",
                &format!("udp:{addr}"),
                "1.3.6.1.2.1.17.1.4.1.2.1",
            ],
        );
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("101") {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("snmpd with the pass_persist script did not come up on {addr}");
}

#[tokio::test]
async fn standard_driver_powers_and_moves_a_port_on_net_snmp_snmpd() {
    let agent = start_snmpd(8).await;
    let d = driver(v2c(agent.addr)).await;
    d.set_port_power(PortNo(2), false).await.expect("power off on snmpd");
    let p = d.port_power(PortNo(2)).await.expect("read power");
    assert_eq!((p.admin_enabled, p.detection), (false, DetectionStatus::Disabled));
    d.set_port_power(PortNo(2), true).await.expect("power on");
    assert_eq!(
        d.port_power(PortNo(2)).await.expect("read").detection,
        DetectionStatus::DeliveringPower
    );

    d.create_vlan(VlanId(131), "public").await.expect("vlan 131");
    d.create_vlan(VlanId(10), "storage-a").await.expect("vlan 10");
    d.create_vlan(VlanId(20), "storage-b").await.expect("vlan 20");
    d.configure_pi_port(PortNo(3), VlanId(10), VlanId(131)).await.expect("port 3 into VLAN 10");
    let report =
        d.configure_pi_port(PortNo(3), VlanId(20), VlanId(131)).await.expect("move to VLAN 20");
    assert!(report.verified);
    let snap = d.snapshot().await.expect("snapshot");
    assert_eq!(snap.pvid[&3], 20);
    assert!(snap.vlans[&20].untagged.contains(&3) && !snap.vlans[&10].egress.contains(&3));
    assert!(snap.vlans[&131].egress.contains(&3) && !snap.vlans[&1].egress.contains(&3));
}
