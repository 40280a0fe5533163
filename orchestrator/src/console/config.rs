//! `[console]`: where the controller receives the Pis' netconsole and how much it keeps.

use serde::Deserialize;

use crate::config::ConfigError;

/// `[console]` as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Receive consoles when netboot runs (default true).
    pub enabled: Option<bool>,
    /// UDP port on each storage interface (default 6666); the generated `cmdline.txt`
    /// tells each Pi's netconsole to send there.
    pub port: Option<u16>,
    /// Boots kept per Pi (default 5).
    pub keep_boots: Option<u32>,
    /// Bytes of lines kept per boot (default 262144).
    pub boot_bytes: Option<u64>,
    /// Sustained bytes a second one Pi may send (default 16384); more is dropped.
    pub rate_bytes: Option<u64>,
    /// Bytes one Pi may send at once (default 262144: a whole kernel boot).
    pub burst_bytes: Option<u64>,
}

/// Validated `[console]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub enabled: bool,
    pub port: u16,
    pub keep_boots: u32,
    pub boot_bytes: u64,
    pub rate_bytes: u64,
    pub burst_bytes: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            port: bramble_netboot::console::receiver::DEFAULT_PORT,
            keep_boots: 5,
            boot_bytes: 256 << 10,
            rate_bytes: 16 << 10,
            burst_bytes: 256 << 10,
        }
    }
}

impl ConsoleConfig {
    pub fn from_raw(raw: RawConsole, origin: &str) -> Result<ConsoleConfig, ConfigError> {
        let d = ConsoleConfig::default();
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let c = ConsoleConfig {
            enabled: raw.enabled.unwrap_or(d.enabled),
            port: raw.port.unwrap_or(d.port),
            keep_boots: raw.keep_boots.unwrap_or(d.keep_boots),
            boot_bytes: raw.boot_bytes.unwrap_or(d.boot_bytes),
            rate_bytes: raw.rate_bytes.unwrap_or(d.rate_bytes),
            burst_bytes: raw.burst_bytes.unwrap_or(d.burst_bytes),
        };
        if c.port == 0 {
            return Err(invalid("console.port", "must be a UDP port, 1 to 65535".into()));
        }
        if !(1..=1000).contains(&c.keep_boots) {
            return Err(invalid(
                "console.keep_boots",
                format!("must be 1 to 1000, got {}", c.keep_boots),
            ));
        }
        if !(1024..=64 << 20).contains(&c.boot_bytes) {
            return Err(invalid(
                "console.boot_bytes",
                format!("must be 1024 to 67108864, got {}", c.boot_bytes),
            ));
        }
        if c.rate_bytes == 0 || c.burst_bytes < 2048 {
            return Err(invalid(
                "console.rate_bytes",
                "rate_bytes must be positive and burst_bytes at least 2048".into(),
            ));
        }
        Ok(c)
    }

    /// The receiver's options for this section.
    pub fn receiver_options(&self) -> bramble_netboot::console::ConsoleOptions {
        bramble_netboot::console::ConsoleOptions {
            port: self.port,
            rate_bytes: self.rate_bytes,
            burst_bytes: self.burst_bytes,
            queue_bytes: (self.burst_bytes as usize).max(64 << 10),
            ..Default::default()
        }
    }

    /// The port `cmdline.txt` names, when consoles are received.
    pub fn netconsole_port(&self) -> Option<u16> {
        self.enabled.then_some(self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values_name_their_key() {
        let c = ConsoleConfig::from_raw(RawConsole::default(), "f").expect("defaults");
        assert_eq!((c.port, c.keep_boots, c.boot_bytes), (6666, 5, 262_144));
        let bad = RawConsole { keep_boots: Some(0), ..Default::default() };
        let e = ConsoleConfig::from_raw(bad, "f").expect_err("0 boots");
        assert!(e.to_string().contains("console.keep_boots"), "{e}");
        let off = RawConsole { enabled: Some(false), ..Default::default() };
        assert_eq!(ConsoleConfig::from_raw(off, "f").expect("off").netconsole_port(), None);
    }
}
