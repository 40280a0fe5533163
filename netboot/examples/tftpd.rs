//! Serves one directory to every client with Bramble's TFTP server, for benchmarks and
//! manual tests: `tftpd ADDR:PORT DIR` (every client is treated as one slot whose boot
//! directory and firmware directory are both DIR; cmdline.txt/config.txt are generated).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bramble_netboot::bootfiles::BootParams;
use bramble_netboot::events::NullSink;
use bramble_netboot::tftp::{BootResolver, MacAddr, SlotBoot, TftpConfig, TftpServer};

struct EveryoneIsOneSlot(SlotBoot);

#[async_trait]
impl BootResolver for EveryoneIsOneSlot {
    async fn resolve(&self, _client: IpAddr) -> Option<SlotBoot> {
        Some(self.0.clone())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        return Err("usage: tftpd ADDR:PORT DIR".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let dir = PathBuf::from(dir);
    let slot = SlotBoot {
        serial: None,
        mac: MacAddr([0; 6]),
        boot_dir: dir.clone(),
        params: BootParams::example(),
    };
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let server = TftpServer::new(
        TftpConfig::new(dir),
        Arc::new(EveryoneIsOneSlot(slot)),
        Arc::new(NullSink),
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Arc::clone(&server).serve(socket, shutdown).await?;
    eprintln!("{:?}", server.metrics().snapshot());
    Ok(())
}
