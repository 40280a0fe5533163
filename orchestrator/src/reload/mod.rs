//! Configuration reload: on SIGHUP `bramble serve` reads its config file again (same
//! path, same command-line overrides as at start), applies what can change live and
//! reports what needs a restart (docs/configuration.md).
//!
//! - [`plan`]: the pure rule, which key is live and which needs a restart.
//! - [`LiveConfig`]: the one home of the running configuration, read at use.
//! - [`Reloader`]: one reload (load, plan, apply, log, count) and the SIGHUP loop.
//!
//! A file that does not parse or validate changes nothing: the error is logged and
//! counted as `bramble_config_reloads_total{result="rejected"}`.

mod live;
pub mod plan;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use live::LiveConfig;
pub use plan::{ReloadPlan, plan};

use crate::config::{Config, ConfigError};
use crate::metrics::{Collector, Sample};

/// Reads the config file again, as at start.
pub type Load = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// What a reload that was not rejected did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys applied now.
    pub applied: Vec<&'static str>,
    /// Keys whose new value waits for a restart (all of them, not only this reload's).
    pub restart: Vec<&'static str>,
}

/// Reloads the configuration into a [`LiveConfig`].
pub struct Reloader {
    live: LiveConfig,
    load: Load,
    status: Arc<ReloadStatus>,
}

impl Reloader {
    /// Reloads into `live`, counting in `status` (a controller's `AppState` has both,
    /// and exports `status` on `/metrics`).
    pub fn new(live: LiveConfig, status: Arc<ReloadStatus>, load: Load) -> Reloader {
        Reloader { live, load, status }
    }

    /// One reload: the file is read and checked; if it is valid, its live keys apply
    /// and the others are reported. Logs one line either way.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let file = match (self.load)() {
            Ok(file) => file,
            Err(e) => {
                self.status.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %bramble_report::chain(&e),
                    "configuration reload rejected; the running configuration is unchanged");
                return Err(e);
            }
        };
        let running = self.live.get();
        let plan = plan(&running, &file);
        if plan.live.contains(&"log.filter") {
            let filter = crate::logging::reloaded_filter(
                crate::logging::env_filter().as_deref(),
                plan.config.log.filter.as_deref(),
            );
            if let Err(e) = crate::logging::set_filter(&filter) {
                tracing::warn!(error = %bramble_report::chain(&e), "log filter not changed");
            }
        }
        let done = Reloaded { applied: plan.live, restart: plan.restart };
        self.live.set(plan.config);
        self.status.applied.fetch_add(1, Ordering::Relaxed);
        *self.status.pending.lock().unwrap_or_else(|e| e.into_inner()) = done.restart.clone();
        let (applied, restart) = (done.applied.join(","), done.restart.join(","));
        if done.restart.is_empty() {
            tracing::info!(%applied, "configuration reloaded");
        } else {
            tracing::warn!(%applied, restart_needed = %restart,
                "configuration reloaded; some changes take effect only after a restart");
        }
        Ok(done)
    }

    /// Reloads at every SIGHUP until dropped. The signal is caught from this call on,
    /// so call it before the controller serves.
    pub fn on_hangup(self) -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        Ok(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = self.reload();
            }
        })
    }
}

/// Reload counters and the keys waiting for a restart, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    applied: AtomicU64,
    rejected: AtomicU64,
    pending: Mutex<Vec<&'static str>>,
}

impl ReloadStatus {
    /// Keys whose new value in the file waits for a restart.
    pub fn restart_pending(&self) -> Vec<&'static str> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Collector for ReloadStatus {
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            (
                "bramble_config_reloads_total",
                "counter",
                "Configuration reloads (SIGHUP): applied, or rejected (invalid file)",
            ),
            (
                "bramble_config_restart_pending",
                "gauge",
                "1 while the config file has changes that take effect only after a restart",
            ),
        ]
    }

    fn collect(&self) -> Vec<Sample> {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let pending = !self.restart_pending().is_empty();
        vec![
            Sample::new("bramble_config_reloads_total", count(&self.applied))
                .label("result", "applied"),
            Sample::new("bramble_config_reloads_total", count(&self.rejected))
                .label("result", "rejected"),
            Sample::new("bramble_config_restart_pending", if pending { 1.0 } else { 0.0 }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::metrics::Metrics;

    /// A reloader over a file in a temporary directory, as `bramble serve` makes it.
    fn reloader(path: &std::path::Path, metrics: &Metrics) -> (Reloader, LiveConfig) {
        let o = Overrides { state_dir: Some("/srv/b".into()), ..Overrides::default() };
        let live = LiveConfig::new(Config::load(Some(path), &o).unwrap());
        let status = Arc::new(ReloadStatus::default());
        metrics.add_collector(status.clone());
        let p = path.to_path_buf();
        let load = Box::new(move || Config::load(Some(&p), &o));
        (Reloader::new(live.clone(), status, load), live)
    }

    #[test]
    fn a_reload_applies_live_keys_keeps_the_rest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bramble.toml");
        std::fs::write(&path, "[power]\nmax_cycles = 6\n").unwrap();
        let metrics = Metrics::default();
        let (r, live) = reloader(&path, &metrics);

        std::fs::write(&path, "listen = \"0.0.0.0:1\"\n[power]\nmax_cycles = 2\n").unwrap();
        let done = r.reload().unwrap();
        assert_eq!((done.applied, done.restart), (vec!["power.max_cycles"], vec!["listen"]));
        assert_eq!(live.get().power.max_cycles, 2);
        assert_eq!(live.get().listen.to_string(), "127.0.0.1:8080");
        let text = metrics.render(&[]);
        assert!(text.contains("bramble_config_reloads_total{result=\"applied\"} 1\n"), "{text}");
        assert!(text.contains("bramble_config_restart_pending 1\n"), "{text}");

        std::fs::write(&path, "[power]\nmax_cycles = oops\n").unwrap();
        let err = r.reload().unwrap_err().to_string();
        assert!(err.contains("bramble.toml"), "{err}");
        assert_eq!(live.get().power.max_cycles, 2, "a rejected file changes nothing");
        std::fs::write(&path, "[power]\nmax_cycles = 2000\n").unwrap();
        let err = r.reload().unwrap_err().to_string();
        assert!(err.contains("power.max_cycles"), "{err}");
        let text = metrics.render(&[]);
        assert!(text.contains("bramble_config_reloads_total{result=\"rejected\"} 2\n"), "{text}");
        assert!(text.contains("bramble_config_restart_pending 1\n"), "still pending: {text}");

        std::fs::write(&path, "[power]\nmax_cycles = 2\n").unwrap();
        assert_eq!(r.reload().unwrap(), Reloaded { applied: vec![], restart: vec![] });
        assert!(metrics.render(&[]).contains("bramble_config_restart_pending 0\n"));
        assert!(r.status.restart_pending().is_empty());
    }
}
