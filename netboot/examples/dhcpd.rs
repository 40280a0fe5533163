//! Runs Bramble's DHCP server on one flat network, for benchmarks and manual tests.
//!
//! EXAMPLE ONLY: leases go to [`AppendFileStore`], an append-only text file that is
//! fsync'ed once per committed batch. It is durable (no ACK before its batch is on disk)
//! but it is not the product's store: the orchestrator implements `LeaseStore` over its
//! SQLite/PostgreSQL inventory. Never use this file store in production.
//!
//! ```text
//! dhcpd --iface IF --server 10.101.128.1 --network 10.101.128.0/17 \
//!       --pool 10.101.130.0-10.101.255.254 --lease-file /tmp/leases.log [--lease-secs 3600]
//! ```

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bramble_netboot::dhcp::{
    ClientKey, Decline, DhcpServer, FlatNetwork, Lease, LeaseStore, MacAddr, ServerOptions,
    Sighting, StoreError,
};
use bramble_netboot::events::NullSink;

/// Example-only durable store: one line per lease (`commit iface mac addr expiry`),
/// appended and fsync'ed per batch; `release` lines cancel earlier commits on load.
struct AppendFileStore {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl AppendFileStore {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(AppendFileStore { path, file: Arc::new(Mutex::new(file)) })
    }

    async fn append(&self, operation: &'static str, text: String) -> Result<(), StoreError> {
        let file = self.file.clone();
        let io = move || -> std::io::Result<()> {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(text.as_bytes())?;
            f.sync_data()
        };
        tokio::task::spawn_blocking(io)
            .await
            .map_err(|e| StoreError::Backend { operation, source: Box::new(e) })?
            .map_err(|e| StoreError::Backend { operation, source: Box::new(e) })
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[async_trait::async_trait]
impl LeaseStore for AppendFileStore {
    async fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut leases = std::collections::HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let (Some(op), Some(iface), Some(mac), Some(addr)) =
                (f.first(), f.get(1), f.get(2), f.get(3))
            else {
                continue;
            };
            let (Ok(mac), Ok(addr)) = (mac.parse::<MacAddr>(), addr.parse::<Ipv4Addr>()) else {
                continue;
            };
            let key = ClientKey { interface: iface.to_string(), mac };
            match *op {
                "commit" => {
                    let expiry = f.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let expires_at = UNIX_EPOCH + Duration::from_secs(expiry);
                    leases.insert(
                        key.clone(),
                        Lease { key, addr, expires_at, serial: None, slot: None },
                    );
                }
                _ => {
                    leases.remove(&key);
                }
            }
        }
        Ok(leases.into_values().collect())
    }

    async fn commit_leases(&self, leases: &[Lease]) -> Result<(), StoreError> {
        let text: String = leases
            .iter()
            .map(|l| {
                format!(
                    "commit {} {} {} {}\n",
                    l.key.interface,
                    l.key.mac,
                    l.addr,
                    secs(l.expires_at)
                )
            })
            .collect();
        self.append("commit", text).await
    }

    async fn release_lease(&self, key: &ClientKey, addr: Ipv4Addr) -> Result<(), StoreError> {
        self.append("release", format!("release {} {} {addr}\n", key.interface, key.mac)).await
    }

    async fn record_decline(&self, d: &Decline) -> Result<(), StoreError> {
        self.append("decline", format!("decline {} {} {}\n", d.key.interface, d.key.mac, d.addr))
            .await
    }

    async fn record_sighting(&self, _sighting: &Sighting) -> Result<(), StoreError> {
        Ok(())
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn parse_args() -> Result<(FlatNetwork, PathBuf), String> {
    let args: Vec<String> = std::env::args().collect();
    let need = |n: &str| arg(&args, n).ok_or(format!("missing {n}"));
    let ip = |s: &str| s.parse::<Ipv4Addr>().map_err(|e| format!("{s}: {e}"));
    let network = need("--network")?;
    let (net, prefix) = network.split_once('/').ok_or("--network wants ADDR/PREFIX")?;
    let pool = need("--pool")?;
    let (first, last) = pool.split_once('-').ok_or("--pool wants FIRST-LAST")?;
    let server = ip(&need("--server")?)?;
    let lease_secs: u64 =
        arg(&args, "--lease-secs").map_or(Ok(3600), |s| s.parse().map_err(|e| format!("{e}")))?;
    let flat = FlatNetwork {
        ifname: need("--iface")?,
        server_addr: server,
        network: ip(net)?,
        prefix: prefix.parse().map_err(|e| format!("prefix: {e}"))?,
        pool: Some((ip(first)?, ip(last)?)),
        router: Some(server),
        dns: vec![],
        tftp_server: Some(server),
        reservations: vec![],
        discovery: false,
        lease_time: Duration::from_secs(lease_secs),
    };
    Ok((flat, PathBuf::from(need("--lease-file")?)))
}

// One thread: the receive loop, engine and committer hand work to each other constantly,
// and on a 2-core machine cross-thread wake-ups cost more than they parallelise.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (flat, lease_file) = parse_args()?;
    let store = Arc::new(AppendFileStore::open(lease_file)?);
    let server = DhcpServer::start(ServerOptions::default(), store, Arc::new(NullSink)).await?;
    server.add_flat(flat)?;
    eprintln!("dhcpd: serving {:?}", server.interfaces());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    let snap = server.counters().snapshot();
    eprintln!(
        "dhcpd: received {} offers {} acks {} naks {} batches {} leases {} dropped {}",
        snap.received,
        snap.offers,
        snap.acks,
        snap.naks,
        snap.store_batches,
        snap.store_leases,
        snap.dropped_total()
    );
    Ok(())
}
