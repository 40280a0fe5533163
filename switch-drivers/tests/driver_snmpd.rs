//! The standard driver against an agent nobody here wrote: net-snmp `snmpd` with a
//! `pass_persist` script (tests/fixtures) holding the PoE and Q-BRIDGE objects, over
//! v2c and over SNMPv3 with each kind of USM user a switch may have, and net-snmp's
//! refusals of wrong v3 credentials.

mod common;

use bramble_switch::model::DetectionStatus;
use bramble_switch::{
    Credentials, PortNo, Secret, Session, SessionConfig, SwitchDriver, SwitchError, V3Auth, V3Priv,
    VlanId,
};
use common::{COMMUNITY, driver, v2c};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Starts snmpd with the pass_persist objects for `ports` PoE ports; `extra` is more
/// snmpd.conf (v3 users).
async fn start_snmpd(ports: u16, extra: &str) -> Snmpd {
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
         pass_persist .1.3.6.1.2.1.105 /usr/bin/python3 {script} {ports}\n{extra}"
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
    let agent = start_snmpd(8, "").await;
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

/// SNMPv3 users of snmpd: (user, auth, auth password, privacy, privacy password).
const V3_USERS: [(&str, V3Auth, &str, V3Priv, &str); 3] = [
    ("sha1user", V3Auth::Sha1, "sha1-auth-pass", V3Priv::Aes128, "sha1-priv-pass"),
    ("md5user", V3Auth::Md5, "md5-auth-pass", V3Priv::Aes192, "md5-priv-pass"),
    ("sha512user", V3Auth::Sha512, "sha512-auth-pass", V3Priv::Aes256, "sha512-priv-pass"),
];

fn v3_conf() -> String {
    V3_USERS
        .iter()
        .map(|(user, auth, ap, privacy, pp)| {
            format!("createUser {user} {auth} \"{ap}\" {privacy} \"{pp}\"\nrwuser {user} priv\n")
        })
        .collect()
}

fn v3_cfg(
    addr: SocketAddr,
    (user, auth, ap, privacy, pp): (&str, V3Auth, &str, V3Priv, &str),
) -> SessionConfig {
    let creds = Credentials::V3 {
        user: user.into(),
        auth,
        auth_pass: Secret::new(ap),
        privacy,
        priv_pass: Secret::new(pp),
    };
    let mut cfg = SessionConfig::new(addr, creds);
    cfg.timeout = Duration::from_secs(2);
    cfg.retries = 1;
    cfg
}

/// Each user works through the driver with its own protocols (the names handed to
/// snmpd's `createUser` are the driver's own, net-snmp's): powering a port off and
/// reading it back is a SET and GETs under that user's keys.
#[tokio::test]
async fn v3_users_with_sha1_md5_and_sha512_and_each_aes_drive_net_snmp_snmpd() {
    let agent = start_snmpd(4, &v3_conf()).await;
    for (i, user) in V3_USERS.into_iter().enumerate() {
        let d = driver(v3_cfg(agent.addr, user)).await;
        let port = PortNo(i as u16 + 1);
        d.set_port_power(port, false).await.unwrap_or_else(|e| panic!("{}: {e}", user.0));
        let p = d.port_power(port).await.unwrap_or_else(|e| panic!("{}: {e}", user.0));
        assert_eq!(p.detection, DetectionStatus::Disabled, "{}", user.0);
    }
}

/// snmpd refuses a wrong authentication password, a wrong authentication protocol
/// (SHA-256 against a SHA-1 user: the driver's old fixed choice) and an unknown user
/// with a Report; each is `SwitchError::Auth` saying so, well before one 2-second
/// timeout, and no error shows a password.
#[tokio::test]
async fn wrong_v3_credentials_are_refused_quickly_by_net_snmp_snmpd() {
    let agent = start_snmpd(2, &v3_conf()).await;
    let sha1 = V3_USERS[0];
    let cases = [
        (
            "wrong password",
            (sha1.0, sha1.1, "not-the-SECRET", sha1.3, sha1.4),
            "usmStatsWrongDigests",
        ),
        (
            "wrong protocol",
            (sha1.0, V3Auth::Sha256, sha1.2, sha1.3, sha1.4),
            "usmStatsWrongDigests",
        ),
        ("unknown user", ("nobody", sha1.1, sha1.2, sha1.3, sha1.4), "usmStatsUnknownUserNames"),
    ];
    for (case, user, report) in cases {
        let start = Instant::now();
        let result = match Session::connect(v3_cfg(agent.addr, user)).await {
            Ok(s) => s
                .get(&[async_snmp::Oid::from_slice(bramble_switch::oids::SYS_DESCR)])
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        let elapsed = start.elapsed();
        let err = result.expect_err(case);
        assert!(matches!(err, SwitchError::Auth { .. }), "{case}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("refused the credentials") && text.contains(report),
            "{case}: {text}"
        );
        assert!(!text.contains("SECRET") && !format!("{err:?}").contains("SECRET"), "{text}");
        assert!(elapsed < Duration::from_millis(1500), "{case}: took {elapsed:?}");
    }
}
