//! The `[netboot]` section of the controller's configuration: the raw TOML shape
//! ([`RawNetboot`], unknown keys refused) and the checked [`NetbootConfig`].
//!
//! Storage interfaces are not listed here: they follow from the slots in the inventory
//! (`<storage_trunk>.<vlan>`). Flat networks are listed, one `[[netboot.flat]]` each.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bramble_netboot::dhcp::FlatNetwork;
use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetboot {
    pub enabled: Option<bool>,
    /// UDP port the DHCP server listens on, on every served interface (67).
    pub dhcp_port: Option<u16>,
    /// The trunk whose `<trunk>.<vid>` sub-interfaces are the storage networks.
    pub storage_trunk: Option<String>,
    /// Delay before answering a Pi boot ROM (the 3B ROM misses fast replies).
    pub reply_delay_ms: Option<u64>,
    /// TFTP listening addresses (`["0.0.0.0:69"]`).
    pub tftp_listen: Option<Vec<String>>,
    pub firmware_dir: Option<PathBuf>,
    /// Where per-Pi roots live (`<roots_dir>/<pi id>`), as the image store lays them out.
    pub roots_dir: Option<PathBuf>,
    /// How often the slot/Pi cache and the served interfaces are refreshed.
    pub refresh_seconds: Option<u64>,
    #[serde(default)]
    pub flat: Vec<RawFlat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlat {
    pub interface: String,
    /// The subnet, e.g. `192.168.50.0/24`.
    pub subnet: String,
    /// This controller's address on the subnet.
    pub server: String,
    pub pool_start: Option<String>,
    pub pool_end: Option<String>,
    pub router: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    /// Record unknown Pis as `new` Pis (default true).
    pub discovery: Option<bool>,
    pub lease_seconds: Option<u64>,
}

/// The checked `[netboot]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NetbootConfig {
    /// Off by default: a controller without netboot rights (no port 67/69) still runs.
    pub enabled: bool,
    pub dhcp_port: u16,
    pub storage_trunk: String,
    pub reply_delay: Duration,
    pub tftp_listen: Vec<SocketAddr>,
    pub firmware_dir: PathBuf,
    pub roots_dir: PathBuf,
    pub refresh: Duration,
    pub flat: Vec<FlatNetwork>,
    /// The console receiver on the same storage interfaces (`[console]`, set by
    /// `Config` from its own section).
    pub console: crate::console::ConsoleConfig,
}

impl NetbootConfig {
    /// Checks the raw section; `origin` names the file in errors. Per-Pi roots default to
    /// the image store's `roots/`, where reimaging writes them.
    pub fn from_raw(
        raw: RawNetboot,
        state_dir: &Path,
        image_store: &Path,
        origin: &str,
    ) -> Result<NetbootConfig, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let storage_trunk = raw.storage_trunk.unwrap_or_else(|| "eth0".into());
        // `<trunk>.<vid>` must fit the 15-byte interface name limit with a 4-digit VLAN.
        if storage_trunk.is_empty()
            || storage_trunk.len() > 10
            || storage_trunk.contains(['/', ' ', '.', '\0'])
        {
            return Err(invalid(
                "netboot.storage_trunk",
                format!(
                    "{storage_trunk:?} must be an interface name of at most 10 bytes without '.'"
                ),
            ));
        }
        let tftp_text = raw.tftp_listen.unwrap_or_else(|| vec!["0.0.0.0:69".into()]);
        let tftp_listen = tftp_text
            .iter()
            .map(|t| {
                t.parse().map_err(|_| {
                    invalid("netboot.tftp_listen", format!("must be ADDRESS:PORT, got {t:?}"))
                })
            })
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let refresh = raw.refresh_seconds.unwrap_or(30);
        if refresh == 0 {
            return Err(invalid("netboot.refresh_seconds", "must be at least 1".into()));
        }
        let reply_delay = raw.reply_delay_ms.unwrap_or(0);
        if reply_delay > 4000 {
            return Err(invalid(
                "netboot.reply_delay_ms",
                format!("{reply_delay} is longer than the Pi ROM's 5 s retry interval allows"),
            ));
        }
        let flat =
            raw.flat.into_iter().map(|f| flat_network(f, origin)).collect::<Result<Vec<_>, _>>()?;
        Ok(NetbootConfig {
            enabled: raw.enabled.unwrap_or(false),
            dhcp_port: raw.dhcp_port.unwrap_or(67),
            storage_trunk,
            reply_delay: Duration::from_millis(reply_delay),
            tftp_listen,
            firmware_dir: raw.firmware_dir.unwrap_or_else(|| state_dir.join("firmware")),
            roots_dir: raw.roots_dir.unwrap_or_else(|| image_store.join("roots")),
            refresh: Duration::from_secs(refresh),
            flat,
            console: crate::console::ConsoleConfig::default(),
        })
    }
}

fn flat_network(raw: RawFlat, origin: &str) -> Result<FlatNetwork, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        key: "netboot.flat",
        message,
    };
    let ip = |what: &str, text: &str| -> Result<Ipv4Addr, ConfigError> {
        text.parse().map_err(|_| {
            invalid(format!("{}: {what} must be an IPv4 address, got {text:?}", raw.interface))
        })
    };
    let subnet: Ipv4Net = raw.subnet.parse().map_err(|_| {
        invalid(format!("{}: subnet must be an IPv4 network, got {:?}", raw.interface, raw.subnet))
    })?;
    let pool = match (&raw.pool_start, &raw.pool_end) {
        (Some(a), Some(b)) => Some((ip("pool_start", a)?, ip("pool_end", b)?)),
        (None, None) => None,
        _ => {
            return Err(invalid(format!(
                "{}: give both pool_start and pool_end, or neither",
                raw.interface
            )));
        }
    };
    let net = FlatNetwork {
        ifname: raw.interface.clone(),
        server_addr: ip("server", &raw.server)?,
        network: subnet.network(),
        prefix: subnet.prefix_len(),
        pool,
        router: raw.router.as_deref().map(|r| ip("router", r)).transpose()?,
        dns: raw.dns.iter().map(|d| ip("dns", d)).collect::<Result<_, _>>()?,
        tftp_server: None,
        reservations: Vec::new(),
        discovery: raw.discovery.unwrap_or(true),
        lease_time: Duration::from_secs(raw.lease_seconds.unwrap_or(3600).max(60)),
    };
    let server = net.server_addr;
    let net = FlatNetwork { tftp_server: Some(server), ..net };
    net.validate().map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetbootConfig, ConfigError> {
        let raw: RawNetboot = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: "t.toml".into(), message: e.to_string() })?;
        NetbootConfig::from_raw(
            raw,
            Path::new("/var/lib/bramble"),
            Path::new("/var/lib/bramble/images"),
            "t.toml",
        )
    }

    #[test]
    fn defaults_are_off_and_under_the_state_dir() {
        let c = parse("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.dhcp_port, 67);
        assert_eq!(c.storage_trunk, "eth0");
        assert_eq!(c.tftp_listen, vec!["0.0.0.0:69".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.firmware_dir, PathBuf::from("/var/lib/bramble/firmware"));
        assert_eq!(c.roots_dir, PathBuf::from("/var/lib/bramble/images/roots"));
    }

    #[test]
    fn flat_networks_are_validated() {
        let ok = "[[flat]]\ninterface = \"lan0\"\nsubnet = \"192.168.50.0/24\"\nserver = \"192.168.50.1\"\npool_start = \"192.168.50.100\"\npool_end = \"192.168.50.199\"\n";
        let c = parse(ok).unwrap();
        assert_eq!(c.flat[0].prefix, 24);
        assert_eq!(c.flat[0].tftp_server, Some(Ipv4Addr::new(192, 168, 50, 1)));
        assert!(c.flat[0].discovery);
        let cases = [
            (ok.replace("192.168.50.199", "192.168.51.9"), "netboot.flat"),
            (ok.replace("pool_end = \"192.168.50.199\"\n", ""), "pool_start and pool_end"),
            ("storage_trunk = \"eth0.5\"".to_string(), "netboot.storage_trunk"),
            ("tftp_listen = [\"nowhere\"]".to_string(), "netboot.tftp_listen"),
            ("reply_delay_ms = 9000".to_string(), "netboot.reply_delay_ms"),
            ("enabeld = true".to_string(), "enabeld"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
