//! Controller configuration: one TOML file, read in two stages.
//!
//! [`RawConfig`] mirrors the file (unknown keys are errors); [`Config::from_raw`] checks
//! it and produces the typed [`Config`] the rest of the controller uses. Every value has
//! a default, so no file at all starts a controller on SQLite in a local state directory.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

use crate::alloc::AddressPools;
pub use crate::jobs::config::{
    ImagesConfig, JobsConfig, NfsBackend, RawImages, RawJobs, RawSwitches, SwitchesConfig,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub addressing: RawAddressing,
    #[serde(default)]
    pub jobs: RawJobs,
    #[serde(default)]
    pub images: RawImages,
    #[serde(default)]
    pub switches: RawSwitches,
    #[serde(default)]
    pub netboot: crate::netboot::config::RawNetboot,
    /// Job notifications to a control panel (`[webhooks]`); none without the section.
    pub webhooks: Option<crate::webhooks::RawWebhooks>,
    /// This controller among others on one inventory (`[cluster]`).
    #[serde(default)]
    pub cluster: crate::cluster::RawCluster,
    /// How long boot timelines are kept (`[events]`).
    #[serde(default)]
    pub events: crate::retention::RawEvents,
    /// How many snapshots of a Pi's root are kept, and for how long (`[snapshots]`).
    #[serde(default)]
    pub snapshots: crate::snapshots::RawSnapshots,
    /// The rescue system (`[rescue]`).
    #[serde(default)]
    pub rescue: crate::jobs::config::RawRescue,
    /// The power-cycle rate limit (`[power]`).
    #[serde(default)]
    pub power: crate::poe::limit::RawPower,
    /// The Pis' netconsole receiver and how much of it is kept (`[console]`).
    #[serde(default)]
    pub console: crate::console::config::RawConsole,
    /// The log filter (`[log]`); applies live on a reload.
    #[serde(default)]
    pub log: crate::logging::RawLog,
    /// HTTPS for the API (`[tls]`); plain HTTP without the section.
    pub tls: Option<crate::tls::RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddressing {
    pub storage_supernet: Option<String>,
    pub storage_vlan_first: Option<u16>,
    pub storage_vlan_last: Option<u16>,
    pub public_vlan: Option<u16>,
    pub public_prefix: Option<String>,
    pub public_gateway: Option<String>,
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// The controller's name (`--name`).
    pub name: Option<String>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub state_dir: PathBuf,
    pub pools: AddressPools,
    pub public_vlan: u16,
    pub public_gateway: Ipv6Addr,
    pub job_lease: Duration,
    pub job_poll: Duration,
    /// Job executors' timings (`[jobs]`).
    pub jobs: JobsConfig,
    /// The image store and NFS exports (`[images]`).
    pub images: ImagesConfig,
    /// SNMP timing and the reconciler (`[switches]`).
    pub switches: SwitchesConfig,
    /// Where job notifications go (`[webhooks]`), if anywhere.
    pub webhooks: Option<crate::webhooks::WebhookConfig>,
    /// The DHCP and TFTP servers (`[netboot]`); off unless enabled.
    pub netboot: crate::netboot::config::NetbootConfig,
    /// Name, heartbeat and lease period among the controllers (`[cluster]`).
    pub cluster: crate::cluster::ClusterConfig,
    /// How long boot timelines are kept (`[events]`).
    pub events: crate::retention::EventsConfig,
    /// Snapshot limits and pruning (`[snapshots]`).
    pub snapshots: crate::snapshots::SnapshotsConfig,
    /// The image rescue roots are made from (`[rescue]`).
    pub rescue: crate::jobs::config::RescueConfig,
    /// Power cycles per Pi and window (`[power]`).
    pub power: crate::poe::limit::PowerConfig,
    /// The log filter (`[log]`).
    pub log: crate::logging::LogConfig,
    /// The API's certificate, key and client CA (`[tls]`), if it serves HTTPS.
    pub tls: Option<crate::tls::TlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{key}` {message}")]
    Invalid { origin: String, key: &'static str, message: String },
}

impl Config {
    /// Loads `path` if given (else only defaults) and applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (raw, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?;
                (raw, p.display().to_string())
            }
            None => (RawConfig::default(), "built-in defaults".to_string()),
        };
        Config::from_raw(raw, &origin, overrides)
    }

    /// Checks a parsed file. `origin` names the file in errors.
    pub fn from_raw(
        raw: RawConfig,
        origin: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };

        let listen_text =
            overrides.listen.clone().or(raw.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text
            .parse()
            .map_err(|_| invalid("listen", format!("must be ADDRESS:PORT, got {listen_text:?}")))?;

        let state_dir =
            overrides.state_dir.clone().or(raw.state_dir).unwrap_or_else(default_state_dir);
        let database_url = overrides.database.clone().or(raw.database).unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", state_dir.join("bramble.db").display())
        });
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid("database", "must be a sqlite: or postgres:// URL".into()));
        }

        let a = raw.addressing;
        let supernet_text = a.storage_supernet.unwrap_or_else(|| "10.46.0.0/16".into());
        let storage_supernet: Ipv4Net = supernet_text.parse().map_err(|_| {
            invalid(
                "addressing.storage_supernet",
                format!("must be an IPv4 network, got {supernet_text:?}"),
            )
        })?;
        if storage_supernet.prefix_len() > 30 {
            return Err(invalid("addressing.storage_supernet", "must be /30 or larger".into()));
        }
        let first = a.storage_vlan_first.unwrap_or(200);
        let last = a.storage_vlan_last.unwrap_or(3999);
        if !(2..=4094).contains(&first) || !(2..=4094).contains(&last) || first > last {
            return Err(invalid(
                "addressing.storage_vlan_first",
                format!("VLAN range {first}-{last} must lie within 2-4094, first <= last"),
            ));
        }
        let public_vlan = a.public_vlan.unwrap_or(131);
        if (first..=last).contains(&public_vlan) || !(2..=4094).contains(&public_vlan) {
            return Err(invalid(
                "addressing.public_vlan",
                format!(
                    "{public_vlan} must be 2-4094 and outside the storage VLAN range {first}-{last}"
                ),
            ));
        }
        let prefix_text = a.public_prefix.unwrap_or_else(|| "2001:db8:0:84::/64".into());
        let public_prefix: Ipv6Net = prefix_text.parse().map_err(|_| {
            invalid(
                "addressing.public_prefix",
                format!("must be an IPv6 prefix, got {prefix_text:?}"),
            )
        })?;
        let gateway_default = Ipv6Addr::from(u128::from(public_prefix.network()) + 1).to_string();
        let gw_text = a.public_gateway.unwrap_or(gateway_default);
        let public_gateway: Ipv6Addr = gw_text.parse().map_err(|_| {
            invalid(
                "addressing.public_gateway",
                format!("must be an IPv6 address, got {gw_text:?}"),
            )
        })?;
        if !public_prefix.contains(&public_gateway) {
            return Err(invalid(
                "addressing.public_gateway",
                format!("{public_gateway} is not inside {public_prefix}"),
            ));
        }

        let images = ImagesConfig::from_raw(raw.images, &state_dir, origin)?;
        let mut netboot = crate::netboot::config::NetbootConfig::from_raw(
            raw.netboot,
            &state_dir,
            &images.store_dir,
            origin,
        )?;
        netboot.console = crate::console::ConsoleConfig::from_raw(raw.console, origin)?;
        let jobs = JobsConfig::from_raw(raw.jobs, origin)?;
        let switches = SwitchesConfig::from_raw(raw.switches, origin)?;
        let cluster = crate::cluster::ClusterConfig::from_raw(
            raw.cluster,
            overrides.name.clone(),
            listen,
            origin,
        )?;
        Ok(Config {
            listen,
            database_url,
            state_dir,
            pools: AddressPools {
                storage_supernet,
                storage_vlans: first..=last,
                public_prefix,
                public_host_offset: 0x1000_0000_0000_0002,
            },
            public_vlan,
            public_gateway,
            job_lease: jobs.lease,
            job_poll: jobs.poll,
            jobs,
            images,
            switches,
            webhooks: raw
                .webhooks
                .map(|w| crate::webhooks::WebhookConfig::from_raw(w, origin))
                .transpose()?,
            netboot,
            cluster,
            events: crate::retention::EventsConfig::from_raw(raw.events, origin)?,
            snapshots: crate::snapshots::SnapshotsConfig::from_raw(raw.snapshots, origin)?,
            rescue: crate::jobs::config::RescueConfig::from_raw(raw.rescue, origin)?,
            power: crate::poe::limit::PowerConfig::from_raw(raw.power, origin)?,
            log: crate::logging::LogConfig::from_raw(raw.log, origin)?,
            tls: raw.tls.map(|t| crate::tls::TlsConfig::from_raw(t, origin)).transpose()?,
        })
    }
}

/// `/var/lib/bramble` for root, `~/.local/state/bramble` otherwise.
fn default_state_dir() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".local/state/bramble"),
        _ => PathBuf::from("/var/lib/bramble"),
    }
}

#[cfg(test)]
mod packaged_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: "t.toml".into(), message: e.to_string() })?;
        Config::from_raw(raw, "t.toml", &Overrides::default())
    }

    #[test]
    fn an_empty_file_gives_working_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite://"));
        assert_eq!(c.public_vlan, 131);
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let cases = [
            ("listen = \"nowhere\"", "t.toml: `listen`"),
            ("[addressing]\npublic_vlan = 250", "`addressing.public_vlan`"),
            ("[addressing]\nstorage_supernet = \"10.0.0.0/31\"", "`addressing.storage_supernet`"),
            (
                "[addressing]\npublic_prefix = \"2001:db8::/64\"\npublic_gateway = \"2001:db9::1\"",
                "`addressing.public_gateway`",
            ),
            ("database = \"mysql://x\"", "`database`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn netboot_section_is_read_and_checked() {
        let c = parse("state_dir = \"/srv/b\"\n[addressing]\nstorage_vlan_first = 200\n[netboot]\nenabled = true\nstorage_trunk = \"enp1s0\"").unwrap();
        assert!(c.netboot.enabled);
        assert_eq!(c.netboot.firmware_dir, PathBuf::from("/srv/b/firmware"));
        let err = parse("[netboot]\nbogus = 1").unwrap_err().to_string();
        assert!(err.contains("t.toml") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("README has a toml block");
        let mut raw: RawConfig =
            toml::from_str(block).unwrap_or_else(|e| panic!("README config example: {e}"));
        // Its certificate files exist on the reader's server, not here.
        assert!(raw.tls.take().is_some(), "the README's example serves HTTPS");
        let c = Config::from_raw(raw, "README", &Overrides::default())
            .unwrap_or_else(|e| panic!("README config example: {e}"));
        assert!(c.netboot.enabled);
        assert_eq!(c.public_vlan, 131);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("listn = \"127.0.0.1:1\"").unwrap_err().to_string();
        assert!(err.contains("t.toml") && err.contains("listn"), "{err}");
    }

    #[test]
    fn overrides_beat_the_file() {
        let raw: RawConfig = toml::from_str("listen = \"127.0.0.1:1\"").unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:2".into()),
            state_dir: Some("/tmp/x".into()),
            database: None,
            name: None,
        };
        let c = Config::from_raw(raw, "f", &o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.database_url, "sqlite:///tmp/x/bramble.db?mode=rwc");
    }
}
