//! Shared test helpers: a virtual switch on a loopback port, driver sessions, and
//! running net-snmp's command-line tools.

#![allow(dead_code)]

use bramble_switch::plan::BatchLimits;
use bramble_switch::sim::{SimHandle, SimOptions, SimSwitch, SimV3User};
use bramble_switch::{Credentials, Secret, Session, SessionConfig, StandardDriver, V3Auth, V3Priv};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub const COMMUNITY: &str = "sw-private";
pub const V3_USER: &str = "bramble";
pub const AUTH_PASS: &str = "sw-auth-pass-1";
pub const PRIV_PASS: &str = "sw-priv-pass-1";

/// A running virtual switch; stops on drop.
pub struct Sim {
    pub addr: SocketAddr,
    pub handle: SimHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    pub async fn start(ports: u16, state_file: Option<std::path::PathBuf>) -> Sim {
        let mut opts = SimOptions::new(ports, COMMUNITY);
        opts.v3 = Some(SimV3User {
            user: V3_USER.into(),
            auth_pass: Secret::new(AUTH_PASS),
            priv_pass: Secret::new(PRIV_PASS),
        });
        opts.state_file = state_file;
        Sim::start_with(opts).await
    }

    /// Starts a virtual switch with explicit options on a free loopback port.
    pub async fn start_with(opts: SimOptions) -> Sim {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = socket.local_addr().expect("local addr");
        let sim = SimSwitch::new(opts).expect("sim options");
        let handle = sim.handle();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            sim.serve(socket, async {
                let _ = rx.await;
            })
            .await
            .expect("sim serve");
        });
        Sim { addr, handle, stop: Some(stop), task: Some(task) }
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn v2c(addr: SocketAddr) -> SessionConfig {
    let mut cfg = SessionConfig::new(addr, Credentials::V2c { community: Secret::new(COMMUNITY) });
    cfg.timeout = Duration::from_millis(500);
    cfg.retries = 1;
    cfg
}

pub fn v3(addr: SocketAddr) -> SessionConfig {
    let creds = Credentials::V3 {
        user: V3_USER.into(),
        auth: V3Auth::Sha1,
        auth_pass: Secret::new(AUTH_PASS),
        privacy: V3Priv::Aes128,
        priv_pass: Secret::new(PRIV_PASS),
    };
    let mut cfg = SessionConfig::new(addr, creds);
    cfg.timeout = Duration::from_millis(500);
    cfg.retries = 1;
    cfg
}

pub async fn driver(cfg: SessionConfig) -> StandardDriver {
    StandardDriver::new(Session::connect(cfg).await.expect("connect"))
}

pub fn one_per_varbind() -> BatchLimits {
    BatchLimits { max_varbinds: 1, max_bytes: 1100 }
}

/// Runs a net-snmp tool; panics with a clear message if it is not installed.
pub fn net_snmp(tool: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} not runnable ({e}); install Debian package `snmp`"))
}

pub fn v2c_args(addr: SocketAddr) -> Vec<String> {
    ["-v2c", "-c", COMMUNITY, "-On", "-t", "2", "-r", "1"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("udp:{addr}")])
        .collect()
}

pub fn v3_args(addr: SocketAddr) -> Vec<String> {
    [
        "-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA", "-A", AUTH_PASS, "-x", "AES", "-X",
        PRIV_PASS, "-On", "-t", "2", "-r", "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("udp:{addr}")])
    .collect()
}

/// Runs `tool` with `base` args + `extra`, returns (success, stdout, stderr).
pub async fn run(tool: &str, base: &[String], extra: &[&str]) -> (bool, String, String) {
    let mut args: Vec<String> = base.to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let tool = tool.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        net_snmp(&tool, &refs)
    })
    .await
    .expect("join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A virtual switch in its Cisco personality (v2c only).
pub async fn start_cisco(ports: u16) -> Sim {
    let mut opts = SimOptions::new(ports, COMMUNITY);
    opts.cisco = true;
    Sim::start_with(opts).await
}
