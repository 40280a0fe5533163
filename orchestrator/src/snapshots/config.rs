//! `[snapshots]`: how many snapshots a Pi keeps and for how long.
//!
//! ```toml
//! [snapshots]
//! keep = 3            # roots kept by reinstalls and restores, per Pi (newest first)
//! max_manual = 3      # snapshots a customer may take on demand, per Pi
//! max_age_days = 30   # any snapshot older than this is pruned; 0 keeps them forever
//! sweep_seconds = 60  # how often the serving controller prunes and sweeps
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[snapshots]` as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSnapshots {
    pub keep: Option<u32>,
    pub max_manual: Option<u32>,
    pub max_age_days: Option<u64>,
    pub sweep_seconds: Option<f64>,
}

/// Validated `[snapshots]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotsConfig {
    /// Snapshots kept by reinstalls and restores, per Pi; 0 keeps none (a reinstall's
    /// old root is pruned at the next sweep).
    pub keep: u32,
    /// On-demand snapshots per Pi; 0 disables `POST /v1/pis/{id}/snapshots`.
    pub max_manual: u32,
    /// Age after which any snapshot is pruned; `None`: never.
    pub max_age_days: Option<u64>,
    pub sweep: Duration,
}

const MAX: u32 = 100;

impl SnapshotsConfig {
    pub fn from_raw(raw: RawSnapshots, origin: &str) -> Result<SnapshotsConfig, ConfigError> {
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let keep = raw.keep.unwrap_or(3);
        if keep > MAX {
            return Err(bad("snapshots.keep", format!("must be at most {MAX}, got {keep}")));
        }
        let max_manual = raw.max_manual.unwrap_or(3);
        if max_manual > MAX {
            let message = format!("must be at most {MAX}, got {max_manual}");
            return Err(bad("snapshots.max_manual", message));
        }
        let days = raw.max_age_days.unwrap_or(30);
        if days > 36_500 {
            let message = format!("must be at most 36500 (0 keeps them forever), got {days}");
            return Err(bad("snapshots.max_age_days", message));
        }
        let sweep = raw.sweep_seconds.unwrap_or(60.0);
        if !(0.05..=86_400.0).contains(&sweep) {
            let message = format!("must be between 0.05 and 86400, got {sweep}");
            return Err(bad("snapshots.sweep_seconds", message));
        }
        Ok(SnapshotsConfig {
            keep,
            max_manual,
            max_age_days: (days > 0).then_some(days),
            sweep: Duration::from_secs_f64(sweep),
        })
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig::from_raw(RawSnapshots::default(), "defaults").expect("valid defaults")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let d = SnapshotsConfig::default();
        assert_eq!((d.keep, d.max_manual, d.max_age_days), (3, 3, Some(30)));
        let raw = RawSnapshots { max_age_days: Some(0), ..Default::default() };
        assert_eq!(SnapshotsConfig::from_raw(raw, "t").expect("ok").max_age_days, None);
        let raw = RawSnapshots { keep: Some(1000), ..Default::default() };
        let err = SnapshotsConfig::from_raw(raw, "t").expect_err("too many").to_string();
        assert!(err.contains("snapshots.keep"), "{err}");
        let raw = RawSnapshots { sweep_seconds: Some(0.0), ..Default::default() };
        assert!(SnapshotsConfig::from_raw(raw, "t").is_err());
    }
}
