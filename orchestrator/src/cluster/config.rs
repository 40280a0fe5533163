//! `[cluster]`: this controller's name among the controllers sharing one inventory, the
//! address it advertises, and the heartbeat and lease periods of membership and
//! leadership.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This controller's name, unique in the cluster (default: the host name).
    pub name: Option<String>,
    /// The API URL other controllers and operators see (default `http://<listen>`).
    pub advertise: Option<String>,
    /// How often the controller records that it is alive.
    pub heartbeat_ms: Option<u64>,
    /// How long a controller counts as alive after its last heartbeat, and how long a
    /// singleton's lease lasts without renewal: the longest a dead holder delays a
    /// takeover.
    pub lease_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub advertise: String,
    pub heartbeat: Duration,
    pub lease: Duration,
}

/// The longest controller name: it appears in job rows, lease rows and events.
pub const MAX_NAME: usize = 63;

impl ClusterConfig {
    pub fn from_raw(
        raw: RawCluster,
        name_override: Option<String>,
        listen: SocketAddr,
        origin: &str,
    ) -> Result<ClusterConfig, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let name = name_override.or(raw.name).unwrap_or_else(host_name);
        if !valid_name(&name) {
            return Err(invalid(
                "cluster.name",
                format!(
                    "{name:?} must be 1-{MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
                ),
            ));
        }
        let advertise = raw.advertise.unwrap_or_else(|| format!("http://{listen}"));
        if !(advertise.starts_with("http://") || advertise.starts_with("https://")) {
            return Err(invalid(
                "cluster.advertise",
                format!("must be an http:// or https:// URL, got {advertise:?}"),
            ));
        }
        let heartbeat = raw.heartbeat_ms.unwrap_or(1000);
        let lease = raw.lease_ms.unwrap_or(10_000);
        if heartbeat == 0 {
            return Err(invalid("cluster.heartbeat_ms", "must be at least 1".into()));
        }
        // Three heartbeats per lease: one lost renewal never loses the lease.
        if lease < heartbeat.saturating_mul(3) {
            return Err(invalid(
                "cluster.lease_ms",
                format!("{lease} must be at least three heartbeats ({} ms)", heartbeat * 3),
            ));
        }
        Ok(ClusterConfig {
            name,
            advertise,
            heartbeat: Duration::from_millis(heartbeat),
            lease: Duration::from_millis(lease),
        })
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The machine's host name, the default controller name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| valid_name(h))
        .unwrap_or_else(|| "controller".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: RawCluster) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::from_raw(raw, None, "127.0.0.1:8080".parse().unwrap(), "t.toml")
    }

    #[test]
    fn defaults_name_the_host_and_advertise_the_listen_address() {
        let c = parse(RawCluster::default()).unwrap();
        assert_eq!(c.name, host_name());
        assert_eq!(c.advertise, "http://127.0.0.1:8080");
        assert_eq!((c.heartbeat, c.lease), (Duration::from_secs(1), Duration::from_secs(10)));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (RawCluster { name: Some("a b".into()), ..Default::default() }, "cluster.name"),
            (RawCluster { name: Some("-x".into()), ..Default::default() }, "cluster.name"),
            (
                RawCluster { advertise: Some("ftp://x".into()), ..Default::default() },
                "cluster.advertise",
            ),
            (
                RawCluster { heartbeat_ms: Some(1000), lease_ms: Some(2000), ..Default::default() },
                "cluster.lease_ms",
            ),
        ];
        for (raw, key) in cases {
            let err = parse(raw).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn the_command_line_name_wins() {
        let raw = RawCluster { name: Some("file".into()), ..Default::default() };
        let c =
            ClusterConfig::from_raw(raw, Some("cli".into()), "127.0.0.1:1".parse().unwrap(), "f")
                .unwrap();
        assert_eq!(c.name, "cli");
    }
}
