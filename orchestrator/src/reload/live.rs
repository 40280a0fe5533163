//! [`LiveConfig`]: the one home of the configuration a running controller uses now.
//!
//! The controller starts with the file's configuration; a reload (SIGHUP, see
//! [`super::Reloader`]) replaces it with the file's new one, except for the keys that
//! need a restart, which keep their running values (see [`super::plan`]). Readers of
//! keys that may change live (job timings, the webhook endpoint, `[power]` limits, ...)
//! call [`LiveConfig::get`] when they use a value, never keep a copy.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;

/// The running configuration, shared by every part of a controller. Cloning shares it.
#[derive(Clone)]
pub struct LiveConfig(Arc<watch::Sender<Arc<Config>>>);

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(Arc::new(watch::Sender::new(Arc::new(config))))
    }

    /// The configuration as it is now. Cheap (one reference count); read it at use and
    /// drop it, so that the next use sees a reload.
    pub fn get(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }

    /// Replaces the running configuration (the reloader's job).
    pub fn set(&self, config: Config) {
        self.0.send_replace(Arc::new(config));
    }
}

impl From<Config> for LiveConfig {
    fn from(config: Config) -> LiveConfig {
        LiveConfig::new(config)
    }
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveConfig").field(&self.get()).finish()
    }
}
