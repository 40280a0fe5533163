//! `[power]`: how many power cycles a Pi may have in a sliding window, so a script (or
//! a customer) cannot wear out a board, a PoE port or the budget by power-cycling in a
//! loop. Counted from the jobs in the inventory, so it holds across controllers.
//!
//! ```toml
//! [power]
//! max_cycles = 6              # power cycles per Pi in the window; 0: no limit
//! cycle_window_seconds = 600
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::jobs::model::JobKind;

/// `[power]` as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    pub max_cycles: Option<u32>,
    pub cycle_window_seconds: Option<u64>,
}

/// Validated `[power]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfig {
    /// Power cycles per Pi in [`PowerConfig::window`]; 0 means no limit.
    pub max_cycles: u32,
    pub window: Duration,
}

impl PowerConfig {
    pub fn from_raw(raw: RawPower, origin: &str) -> Result<PowerConfig, ConfigError> {
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let max_cycles = raw.max_cycles.unwrap_or(6);
        if max_cycles > 1_000 {
            return Err(bad("power.max_cycles", format!("must be at most 1000, got {max_cycles}")));
        }
        let window = raw.cycle_window_seconds.unwrap_or(600);
        if !(1..=86_400).contains(&window) {
            let message = format!("must be between 1 and 86400, got {window}");
            return Err(bad("power.cycle_window_seconds", message));
        }
        Ok(PowerConfig { max_cycles, window: Duration::from_secs(window) })
    }
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig::from_raw(RawPower::default(), "defaults").expect("valid defaults")
    }
}

/// Whether a job of `kind` power-cycles its Pi: it ends by powering it on (after
/// powering it off, or after a power-off job did).
pub fn cycles(kind: JobKind) -> bool {
    match kind {
        JobKind::PowerOn
        | JobKind::Reboot
        | JobKind::Reimage
        | JobKind::Restore
        | JobKind::Rescue
        | JobKind::Unrescue => true,
        JobKind::PowerOff | JobKind::Snapshot | JobKind::RackShelf => false,
    }
}

/// Whether one more cycle is allowed now: `None` if so, else how long until the oldest
/// counted cycle leaves the window (at least one second). `recent` holds the creation
/// times (ms) of the Pi's cycling jobs inside the window, newest first.
pub fn retry_after(cfg: &PowerConfig, recent: &[i64], now_ms: i64) -> Option<Duration> {
    let max = usize::try_from(cfg.max_cycles).unwrap_or(usize::MAX);
    if max == 0 || recent.len() < max {
        return None;
    }
    // When the max-th newest leaves the window, max - 1 remain: one may start.
    let window_ms = i64::try_from(cfg.window.as_millis()).unwrap_or(i64::MAX);
    let frees_at = recent[max - 1].saturating_add(window_ms);
    let wait_ms = u64::try_from(frees_at.saturating_sub(now_ms)).unwrap_or(0);
    Some(Duration::from_secs(wait_ms.div_ceil(1000).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_cycles: u32) -> PowerConfig {
        PowerConfig { max_cycles, window: Duration::from_secs(600) }
    }

    #[test]
    fn the_limit_frees_when_the_oldest_counted_cycle_leaves_the_window() {
        let now = 1_000_000_000;
        let recent: Vec<i64> = (0..6).map(|i| now - 10_000 - i * 60_000).collect();
        assert_eq!(retry_after(&cfg(7), &recent, now), None);
        // The sixth newest was 310 s ago: free in 290 s.
        assert_eq!(retry_after(&cfg(6), &recent, now), Some(Duration::from_secs(290)));
        // With a limit of 2, the second newest (70 s ago) decides: 530 s.
        assert_eq!(retry_after(&cfg(2), &recent, now), Some(Duration::from_secs(530)));
        assert_eq!(retry_after(&cfg(0), &recent, now), None, "0: no limit");
        assert_eq!(retry_after(&cfg(1), &[now - 600_000], now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn defaults_and_bad_values() {
        assert_eq!(PowerConfig::default(), cfg(6));
        let raw = RawPower { max_cycles: None, cycle_window_seconds: Some(0) };
        let err = PowerConfig::from_raw(raw, "t").unwrap_err().to_string();
        assert!(err.contains("power.cycle_window_seconds"), "{err}");
    }
}
