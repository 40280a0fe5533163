//! The controller configuration sections the job executors read: `[jobs]` (leases,
//! parallelism, reboot and racking timings), `[images]` (the image store and the NFS
//! server exporting roots) and `[switches]` (SNMP timing). Raw TOML shapes refuse
//! unknown keys; `from_raw` checks values and names the key in errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::fabric::SnmpTiming;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobs {
    pub lease_seconds: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    /// Jobs one controller runs at once.
    pub max_parallel: Option<usize>,
    /// Reboot: time the port stays unpowered after the switch reports it off.
    pub settle_ms: Option<u64>,
    /// Reboot and reimage: how long a Pi has to DHCP and read its kernel after power-on.
    pub boot_timeout_seconds: Option<u64>,
    /// How long the switch has to report a port's new power state.
    pub power_confirm_seconds: Option<u64>,
    /// Racking: ports powered on together, and the pause between groups.
    pub rack_group_size: Option<usize>,
    pub rack_group_pause_ms: Option<u64>,
    /// Racking: how long the shelf's Pis have to appear in DHCP.
    pub rack_await_seconds: Option<u64>,
    /// Boots of images that run sshd: how long, after the kernel read, the Pi has to
    /// answer on TCP port 22 of its storage address (default 180).
    pub ssh_timeout_seconds: Option<u64>,
}

/// `[rescue]`: the rescue system.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRescue {
    /// The image rescue roots are made from (default `rescue-bookworm-arm64`); it must be
    /// built and registered on the controllers (`bramble image build`).
    pub image: Option<String>,
}

/// The rescue system's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueConfig {
    pub image: String,
}

/// The built-in rescue image's recipe.
pub const DEFAULT_RESCUE_IMAGE: &str = "rescue-bookworm-arm64";

impl RescueConfig {
    pub fn from_raw(raw: RawRescue, origin: &str) -> Result<RescueConfig, ConfigError> {
        let image = raw.image.unwrap_or_else(|| DEFAULT_RESCUE_IMAGE.into());
        if image.trim().is_empty() {
            return Err(invalid(origin, "rescue.image", "must name an image".into()));
        }
        Ok(RescueConfig { image })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImages {
    /// The image store (bases and per-Pi roots); default `<state_dir>/images`.
    pub store_dir: Option<PathBuf>,
    /// NFS server for per-Pi roots: `ganesha`, `kernel` or `none` (roots are not exported
    /// by this controller).
    pub nfs: Option<String>,
    /// ganesha: directory of generated export blocks (default `<state_dir>/ganesha`).
    pub ganesha_dir: Option<PathBuf>,
    /// ganesha: pid file to SIGHUP on changes; without it changes go over D-Bus.
    pub ganesha_pid_file: Option<PathBuf>,
    /// ganesha with a pid file: its log (`ganesha.nfsd -L`), watched so that each reload
    /// is known to have finished; without it reloads are spaced by a fixed delay.
    pub ganesha_log_file: Option<PathBuf>,
    /// kernel: the exports file kept in step with `exportfs`.
    pub exports_file: Option<PathBuf>,
    /// `bramble image build` fetches every recipe's main archive from here instead of
    /// the recipe's own mirror: a local mirror, or an apt proxy's mirror URL.
    pub mirror: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwitches {
    pub snmp_timeout_ms: Option<u64>,
    pub snmp_retries: Option<u32>,
    /// How often the reconciler reads every switch back (0 turns it off).
    pub reconcile_seconds: Option<u64>,
}

/// Timings of the job executors.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    pub lease: Duration,
    pub poll: Duration,
    pub max_parallel: usize,
    pub settle: Duration,
    pub boot_timeout: Duration,
    pub power_confirm: Duration,
    pub rack_group_size: usize,
    pub rack_group_pause: Duration,
    pub rack_await: Duration,
    pub ssh_timeout: Duration,
}

/// How roots get exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsBackend {
    None,
    Ganesha { dir: PathBuf, pid_file: Option<PathBuf>, log_file: Option<PathBuf> },
    Kernel { exports_file: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImagesConfig {
    pub store_dir: PathBuf,
    pub nfs: NfsBackend,
    /// Replaces recipes' main archive in image builds (`[images] mirror`).
    pub mirror: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwitchesConfig {
    pub snmp: SnmpTiming,
    /// `None`: no reconciler.
    pub reconcile_every: Option<Duration>,
}

fn invalid(origin: &str, key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { origin: origin.to_string(), key, message }
}

impl JobsConfig {
    pub fn from_raw(raw: RawJobs, origin: &str) -> Result<JobsConfig, ConfigError> {
        let lease = raw.lease_seconds.unwrap_or(30);
        if lease == 0 {
            return Err(invalid(origin, "jobs.lease_seconds", "must be at least 1".into()));
        }
        let max_parallel = raw.max_parallel.unwrap_or(16);
        if !(1..=1024).contains(&max_parallel) {
            return Err(invalid(
                origin,
                "jobs.max_parallel",
                format!("{max_parallel} must be 1-1024"),
            ));
        }
        let group = raw.rack_group_size.unwrap_or(8);
        if group == 0 {
            return Err(invalid(origin, "jobs.rack_group_size", "must be at least 1".into()));
        }
        let boot_timeout = raw.boot_timeout_seconds.unwrap_or(180);
        if boot_timeout == 0 {
            return Err(invalid(origin, "jobs.boot_timeout_seconds", "must be at least 1".into()));
        }
        Ok(JobsConfig {
            lease: Duration::from_secs(lease),
            poll: Duration::from_millis(raw.poll_interval_ms.unwrap_or(500).max(10)),
            max_parallel,
            settle: Duration::from_millis(raw.settle_ms.unwrap_or(5_000)),
            boot_timeout: Duration::from_secs(boot_timeout),
            power_confirm: Duration::from_secs(raw.power_confirm_seconds.unwrap_or(15).max(1)),
            rack_group_size: group,
            rack_group_pause: Duration::from_millis(raw.rack_group_pause_ms.unwrap_or(10_000)),
            rack_await: Duration::from_secs(raw.rack_await_seconds.unwrap_or(300).max(1)),
            ssh_timeout: Duration::from_secs(raw.ssh_timeout_seconds.unwrap_or(180).max(1)),
        })
    }
}

impl ImagesConfig {
    pub fn from_raw(
        raw: RawImages,
        state_dir: &Path,
        origin: &str,
    ) -> Result<ImagesConfig, ConfigError> {
        let nfs = match raw.nfs.as_deref().unwrap_or("none") {
            "none" => NfsBackend::None,
            "ganesha" => NfsBackend::Ganesha {
                dir: raw.ganesha_dir.unwrap_or_else(|| state_dir.join("ganesha")),
                pid_file: raw.ganesha_pid_file,
                log_file: raw.ganesha_log_file,
            },
            "kernel" => NfsBackend::Kernel {
                exports_file: raw
                    .exports_file
                    .unwrap_or_else(|| PathBuf::from("/etc/exports.d/bramble.exports")),
            },
            other => {
                return Err(invalid(
                    origin,
                    "images.nfs",
                    format!("must be ganesha, kernel or none, got {other:?}"),
                ));
            }
        };
        if let Some(url) = &raw.mirror {
            bramble_images::recipe::check_mirror(url)
                .map_err(|message| invalid(origin, "images.mirror", message))?;
        }
        Ok(ImagesConfig {
            store_dir: raw.store_dir.unwrap_or_else(|| state_dir.join("images")),
            nfs,
            mirror: raw.mirror,
        })
    }
}

impl SwitchesConfig {
    pub fn from_raw(raw: RawSwitches, origin: &str) -> Result<SwitchesConfig, ConfigError> {
        let timeout = raw.snmp_timeout_ms.unwrap_or(1_000);
        if timeout == 0 {
            return Err(invalid(origin, "switches.snmp_timeout_ms", "must be at least 1".into()));
        }
        let every = raw.reconcile_seconds.unwrap_or(60);
        Ok(SwitchesConfig {
            snmp: SnmpTiming {
                timeout: Duration::from_millis(timeout),
                retries: raw.snmp_retries.unwrap_or(2),
            },
            reconcile_every: (every > 0).then(|| Duration::from_secs(every)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_mirror_must_be_an_http_url() {
        let raw = |m: &str| RawImages { mirror: Some(m.into()), ..RawImages::default() };
        let ok = ImagesConfig::from_raw(
            raw("http://apt.local:3142/deb.debian.org/debian"),
            Path::new("/s"),
            "t",
        )
        .expect("valid");
        assert_eq!(ok.mirror.as_deref(), Some("http://apt.local:3142/deb.debian.org/debian"));
        let err = ImagesConfig::from_raw(raw("ftp://x/debian"), Path::new("/s"), "b.toml")
            .expect_err("ftp")
            .to_string();
        assert!(err.contains("images.mirror") && err.contains("http"), "{err}");
    }

    #[test]
    fn rescue_defaults_to_its_recipe_and_ssh_waits_three_minutes() {
        let r = RescueConfig::from_raw(RawRescue::default(), "t").unwrap();
        assert_eq!(r.image, "rescue-bookworm-arm64");
        let err = RescueConfig::from_raw(RawRescue { image: Some(" ".into()) }, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rescue.image"), "{err}");
        assert!(toml::from_str::<RawRescue>("image = \"x\"\nsize = 3").is_err(), "unknown key");
        let j = JobsConfig::from_raw(RawJobs::default(), "t").unwrap();
        assert_eq!(j.ssh_timeout, Duration::from_secs(180));
    }

    #[test]
    fn defaults_are_sane_and_errors_name_the_key() {
        let j = JobsConfig::from_raw(RawJobs::default(), "t").unwrap();
        assert_eq!(j.max_parallel, 16);
        assert!(j.boot_timeout > j.settle);
        let err =
            JobsConfig::from_raw(RawJobs { max_parallel: Some(0), ..RawJobs::default() }, "t.toml")
                .unwrap_err()
                .to_string();
        assert!(err.contains("jobs.max_parallel"), "{err}");
        let err = ImagesConfig::from_raw(
            RawImages { nfs: Some("smb".into()), ..RawImages::default() },
            Path::new("/s"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("images.nfs"), "{err}");
        let i = ImagesConfig::from_raw(RawImages::default(), Path::new("/s"), "t").unwrap();
        assert_eq!(i.store_dir, PathBuf::from("/s/images"));
        assert_eq!(
            SwitchesConfig::from_raw(
                RawSwitches { reconcile_seconds: Some(0), ..RawSwitches::default() },
                "t"
            )
            .unwrap()
            .reconcile_every,
            None
        );
    }
}
