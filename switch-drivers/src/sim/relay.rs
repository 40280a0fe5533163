//! The front UDP socket of the virtual switch. Datagrams are relayed to the embedded
//! async-snmp agent (which binds its own loopback socket), with the wire-level fault
//! switches applied on the way in: go silent, drop a fraction, answer slowly.

use super::core::SimCore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Most distinct clients tracked at once; older relays are dropped past this.
const MAX_CLIENTS: usize = 256;

struct Upstream {
    socket: Arc<UdpSocket>,
    task: JoinHandle<()>,
}

/// Relays until `shutdown` resolves.
pub async fn run(
    core: Arc<SimCore>,
    front: Arc<UdpSocket>,
    agent: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut clients: HashMap<SocketAddr, Upstream> = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    tokio::pin!(shutdown);
    loop {
        let (len, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = front.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "virtual switch recv failed"); continue; }
            },
        };
        if core.faults.silent.load(Ordering::Relaxed) {
            continue;
        }
        let ppm = core.faults.drop_ppm.load(Ordering::Relaxed);
        if ppm > 0 && rand::random_range(0..1_000_000u64) < ppm {
            tracing::debug!(%peer, "virtual switch dropped a request (fault)");
            continue;
        }
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&peer) {
            for (_, up) in clients.drain() {
                up.task.abort();
                if let Ok(local) = up.socket.local_addr() {
                    core.read_counter().forget(local);
                }
            }
        }
        let up = match clients.get(&peer) {
            Some(up) => up.socket.clone(),
            None => {
                let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
                socket.connect(agent).await?;
                core.read_counter().relayed(socket.local_addr()?, peer);
                let task = tokio::spawn(pump_back(socket.clone(), front.clone(), peer));
                clients.insert(peer, Upstream { socket: socket.clone(), task });
                socket
            }
        };
        let datagram = buf[..len].to_vec();
        let delay = core.faults.delay_ms.load(Ordering::Relaxed);
        if delay == 0 {
            let _ = up.send(&datagram).await;
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = up.send(&datagram).await;
            });
        }
    }
    for (_, up) in clients {
        up.task.abort();
    }
    Ok(())
}

async fn pump_back(up: Arc<UdpSocket>, front: Arc<UdpSocket>, peer: SocketAddr) {
    let mut buf = vec![0u8; 65_535];
    while let Ok(len) = up.recv(&mut buf).await {
        if let Err(e) = front.send_to(&buf[..len], peer).await {
            tracing::debug!(%peer, error = %e, "virtual switch reply failed");
        }
    }
}
