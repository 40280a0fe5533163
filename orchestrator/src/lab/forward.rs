//! TCP services of the machine's loopback (an external PostgreSQL, a test's webhook
//! receiver) made reachable from inside the lab's controller namespace, at the same
//! address: a listener in the namespace relays each connection to a connection made in
//! the machine's namespace. Configuration naming `127.0.0.1:5432` then works unchanged
//! for a controller whose every socket lives in the lab's namespace.
//!
//! A socket belongs to the namespace of the thread that made it, so the listener is
//! bound on a runtime inside the namespace and the outgoing connections are made on
//! `outside`, a runtime whose threads are in the machine's namespace.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

/// How long a relayed connection may take to reach the service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a service could not be relayed into the namespace.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot listen on {addr} inside the lab's namespace")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("only loopback services can be relayed into the lab's namespace, not {addr}")]
    NotLoopback { addr: SocketAddr },
}

/// Binds `addr` in the calling task's namespace (call it on a runtime inside the lab's
/// namespace); [`relay`] then serves it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ForwardError> {
    if !addr.ip().is_loopback() {
        return Err(ForwardError::NotLoopback { addr });
    }
    TcpListener::bind(addr).await.map_err(|source| ForwardError::Bind { addr, source })
}

/// Relays every connection to `listener` to the same address, connected from
/// `outside`; runs until its runtime stops.
pub async fn relay(listener: TcpListener, outside: Handle) {
    let Ok(target) = listener.local_addr() else { return };
    loop {
        let accepted = listener.accept().await.and_then(|(s, peer)| Ok((s.into_std()?, peer)));
        let (inside, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%target, error = %e, "lab relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The rest runs on `outside`, whose worker threads are in the machine's
        // namespace: the outgoing socket is made there. (Not on its blocking pool: a
        // thread that pool starts at a call from in here would be in the namespace.)
        outside.spawn(async move {
            if let Err(e) = pipe(inside, target).await {
                tracing::debug!(%target, %peer, error = %e, "lab relay connection ended");
            }
        });
    }
}

/// Connects to `target` and copies both ways between it and `inside`.
async fn pipe(inside: std::net::TcpStream, target: SocketAddr) -> std::io::Result<()> {
    let mut inside = TcpStream::from_std(inside)?;
    let mut out = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    tokio::io::copy_bidirectional(&mut inside, &mut out).await.map(drop)
}

/// The address a `postgres://` URL connects to, if it is on this machine's loopback
/// (`localhost` is 127.0.0.1; no port is PostgreSQL's 5432). `None` for SQLite and for
/// a database elsewhere.
pub fn database_addr(url: &str) -> Option<SocketAddr> {
    let url = reqwest::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let ip = match url.host_str()? {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        host => host.trim_start_matches('[').trim_end_matches(']').parse().ok()?,
    };
    ip.is_loopback().then(|| SocketAddr::new(ip, url.port().unwrap_or(5432)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_postgres_is_relayed() {
        let addr = |s: &str| Some(s.parse::<SocketAddr>().expect("address"));
        for (url, want) in [
            ("postgres://b:b@127.0.0.1:55520/postgres", addr("127.0.0.1:55520")),
            ("postgresql://localhost/bramble", addr("127.0.0.1:5432")),
            ("postgres://b@[::1]:6000/x", addr("[::1]:6000")),
            ("postgres://db.internal:5432/x", None),
            ("postgres://10.0.0.5:5432/x", None),
            ("sqlite:///tmp/x/bramble.db?mode=rwc", None),
        ] {
            assert_eq!(database_addr(url), want, "{url}");
        }
    }
}
