//! The process's log output: `tracing` to stderr (plain text, or JSON with
//! `BRAMBLE_LOG_FORMAT=json`), through a filter that can be replaced while the process
//! runs, and the `[log]` section of the config file.
//!
//! Which filter applies (see docs/configuration.md):
//! - at start: `BRAMBLE_LOG` when set (a one-off `BRAMBLE_LOG=debug bramble serve`
//!   beats the file), else `[log] filter`, else [`DEFAULT_FILTER`];
//! - at a reload that changes `[log] filter`: the file's new filter; a reload that removes
//!   it goes back to `BRAMBLE_LOG`, else the default.
//!
//! ```toml
//! [log]
//! filter = "info,sqlx=warn,bramble::webhooks=debug"
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::ConfigError;

/// The filter without `BRAMBLE_LOG` or `[log] filter`.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";
/// The environment variable that sets the filter at start.
pub const ENV: &str = "BRAMBLE_LOG";

/// `[log]` as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `tracing` filter directives (`EnvFilter` syntax), e.g. `info,bramble::jobs=debug`.
    pub filter: Option<String>,
}

/// Validated `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// `None`: the file sets no filter.
    pub filter: Option<String>,
}

impl LogConfig {
    pub fn from_raw(raw: RawLog, origin: &str) -> Result<LogConfig, ConfigError> {
        if let Some(f) = &raw.filter {
            parse(f).map_err(|message| ConfigError::Invalid {
                origin: origin.to_string(),
                key: "log.filter",
                message,
            })?;
        }
        Ok(LogConfig { filter: raw.filter })
    }
}

fn parse(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("is not a valid filter ({e}), e.g. \"info,sqlx=warn\""))
}

/// The filter a process starts with (pure): `env`, then `file`, then the default.
pub fn starting_filter(env: Option<&str>, file: Option<&str>) -> String {
    env.filter(|e| parse(e).is_ok()).or(file).unwrap_or(DEFAULT_FILTER).to_string()
}

/// The filter after a reload changed `[log] filter` to `file` (pure): the file's, else
/// the one `env` gave at start, else the default.
pub fn reloaded_filter(env: Option<&str>, file: Option<&str>) -> String {
    file.or(env.filter(|e| parse(e).is_ok())).unwrap_or(DEFAULT_FILTER).to_string()
}

/// The value of [`ENV`], if set.
pub fn env_filter() -> Option<String> {
    std::env::var(ENV).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log filter {directives:?}: {message}")]
    Invalid { directives: String, message: String },
    #[error("the log filter cannot be changed: logging was not set up by `logging::init`")]
    NotInitialised,
    #[error("the log filter could not be replaced")]
    Reload(#[source] reload::Error),
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Sets up logging for the process, with the filter from [`ENV`] or the default. Colour
/// only on a terminal: a log file or pipe (`lab.log`, journald) gets plain text.
pub fn init() {
    let (filter, handle) = reload::Layer::new(
        parse(&starting_filter(env_filter().as_deref(), None))
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
    );
    let json = std::env::var("BRAMBLE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = (!json)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let json = json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr));
    if tracing_subscriber::registry().with(filter).with(text).with(json).try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the running filter.
pub fn set_filter(directives: &str) -> Result<(), LogError> {
    let filter = parse(directives)
        .map_err(|message| LogError::Invalid { directives: directives.to_string(), message })?;
    FILTER.get().ok_or(LogError::NotInitialised)?.reload(filter).map_err(LogError::Reload)
}

/// `bramble serve` at start: the file's filter applies unless [`ENV`] is set.
pub fn start(config: &LogConfig) -> Result<(), LogError> {
    let env = env_filter();
    if env.is_none() && config.filter.is_some() {
        set_filter(&starting_filter(None, config.filter.as_deref()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_at_start_and_the_file_at_a_reload() {
        assert_eq!(starting_filter(None, None), DEFAULT_FILTER);
        assert_eq!(starting_filter(None, Some("warn")), "warn");
        assert_eq!(starting_filter(Some("debug"), Some("warn")), "debug");
        assert_eq!(starting_filter(Some("x=loud"), Some("warn")), "warn", "an invalid env");
        assert_eq!(reloaded_filter(Some("debug"), Some("warn")), "warn");
        assert_eq!(reloaded_filter(Some("debug"), None), "debug");
        assert_eq!(reloaded_filter(None, None), DEFAULT_FILTER);
    }

    #[test]
    fn a_bad_filter_is_refused_naming_the_key() {
        let ok = LogConfig::from_raw(RawLog { filter: Some("info,bramble=debug".into()) }, "t");
        assert_eq!(ok.unwrap().filter.as_deref(), Some("info,bramble=debug"));
        let err = LogConfig::from_raw(RawLog { filter: Some("info,x=loud".into()) }, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml") && err.contains("`log.filter`"), "{err}");
        assert!(toml::from_str::<RawLog>("level = \"x\"").is_err(), "unknown key");
    }
}
