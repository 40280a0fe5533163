//! Standalone virtual PoE switch for manual testing with net-snmp:
//! `switch-sim --listen 127.0.0.1:16100 --ports 96 --community private
//!  [--v3-user NAME --auth-pass P --priv-pass P] [--state FILE] [--personality cisco]`.

use bramble_switch::Secret;
use bramble_switch::sim::{SimOptions, SimSwitch, SimV3User};
use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags = HashMap::new();
    for pair in args.chunks(2) {
        let [k, v] = pair else { anyhow::bail!("flag {} needs a value", pair[0]) };
        flags.insert(k.trim_start_matches('-').to_string(), v.clone());
    }
    let get = |k: &str| flags.get(k).cloned();
    let mut opts = SimOptions::new(
        get("ports").unwrap_or_else(|| "8".into()).parse()?,
        &get("community").unwrap_or_else(|| "private".into()),
    );
    opts.listen = get("listen").unwrap_or_else(|| "127.0.0.1:16100".into()).parse()?;
    opts.state_file = get("state").map(Into::into);
    opts.cisco = get("personality").as_deref() == Some("cisco");
    if let Some(user) = get("v3-user") {
        let auth_pass =
            Secret::new(get("auth-pass").ok_or_else(|| anyhow::anyhow!("--auth-pass required"))?);
        let priv_pass =
            Secret::new(get("priv-pass").ok_or_else(|| anyhow::anyhow!("--priv-pass required"))?);
        opts.v3 = Some(SimV3User { user, auth_pass, priv_pass });
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let socket = tokio::net::UdpSocket::bind(opts.listen).await?;
        eprintln!("listening on {}", socket.local_addr()?);
        let sim = SimSwitch::new(opts)?;
        sim.serve(socket, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}
