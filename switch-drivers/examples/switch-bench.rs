//! Benchmark against the virtual switch (loopback UDP, SNMPv2c and v3 authPriv): configure
//! + verify a 96-port shelf and power-cycle all 96 ports, batched vs one SET per varbind.
//!
//! Run through bench/switch.sh (release build).

use bramble_switch::plan::BatchLimits;
use bramble_switch::sim::{SimOptions, SimSwitch, SimV3User};
use bramble_switch::{
    Credentials, PortNo, Secret, Session, SessionConfig, ShelfPlan, StandardDriver, SwitchDriver,
    V3Auth, V3Priv, VlanId,
};
use std::time::{Duration, Instant};

const PORTS: u16 = 96;

async fn sim() -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let mut opts = SimOptions::new(PORTS, "bench");
    opts.v3 = Some(SimV3User {
        user: "bench".into(),
        auth_pass: Secret::new("bench-auth-1"),
        priv_pass: Secret::new("bench-priv-1"),
    });
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sim = SimSwitch::new(opts)?;
    tokio::spawn(sim.serve(socket, async {
        let _ = rx.await;
    }));
    Ok((addr, tx))
}

async fn run(label: &str, v3: bool, limits: BatchLimits) -> anyhow::Result<()> {
    let (addr, _stop) = sim().await?;
    let creds = if v3 {
        Credentials::V3 {
            user: "bench".into(),
            auth: V3Auth::Sha1,
            auth_pass: Secret::new("bench-auth-1"),
            privacy: V3Priv::Aes128,
            priv_pass: Secret::new("bench-priv-1"),
        }
    } else {
        Credentials::V2c { community: Secret::new("bench") }
    };
    let mut cfg = SessionConfig::new(addr, creds);
    cfg.timeout = Duration::from_secs(2);
    let d = StandardDriver::new(Session::connect(cfg).await?).with_limits(limits);
    let shelf = ShelfPlan {
        public_vlan: VlanId(131),
        trunk: PortNo(PORTS + 1),
        pis: (1..=PORTS).map(|p| (PortNo(p), VlanId(1000 + p))).collect(),
    };
    let t = Instant::now();
    let r = d.configure_shelf(&shelf).await?;
    let shelf_time = t.elapsed();
    let ports: Vec<PortNo> = (1..=PORTS).map(PortNo).collect();
    let t = Instant::now();
    d.power_cycle(&ports, Duration::ZERO).await?;
    let cycle_time = t.elapsed();
    println!(
        "| {label} | {} | {} | {:.3} | {:.3} |",
        r.varbinds,
        r.messages,
        shelf_time.as_secs_f64(),
        cycle_time.as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!("| mode | shelf varbinds | shelf SET messages | shelf configure+verify (s) | power-cycle 96 ports (s) |");
        println!("|---|---|---|---|---|");
        let batched = BatchLimits::default();
        let single = BatchLimits { max_varbinds: 1, ..BatchLimits::default() };
        run("v2c batched", false, batched).await?;
        run("v2c one SET per varbind", false, single).await?;
        run("v3 authPriv batched", true, batched).await?;
        run("v3 authPriv one SET per varbind", true, single).await?;
        Ok(())
    })
}
