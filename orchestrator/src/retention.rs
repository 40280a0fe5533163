//! Events retention (`[events]`): a background task that prunes each Pi's boot timeline
//! (the `dhcp.*` and `tftp.*` events netboot writes, several per boot) once it is older
//! than `boot_retention_days`. The audit log (`job.*`, `pi.*`, `shelf.*`, every other
//! kind) is kept forever.
//!
//! The task runs on every controller; pruning is idempotent (see `db::retention`), so
//! several controllers doing it at once only repeat each other's work. Each DELETE takes
//! at most [`BATCH`] rows, so none holds a lock for long, not even SQLite's write lock.
//!
//! Pruning makes holes in the event ids below the live ones. The webhook notifier waits
//! `gap_grace` once at a hole it meets (`webhooks::policy::may_pass`), then moves on; a
//! notifier more than `boot_retention_days` behind would skip the pruned events.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::db::{Db, DbError};
use crate::time::now_millis;

/// Most events one DELETE removes.
pub const BATCH: i64 = 1_000;
/// How often the task prunes.
pub const EVERY: Duration = Duration::from_secs(3600);
/// `boot_retention_days` when the file does not say.
pub const DEFAULT_DAYS: u64 = 30;
/// The longest retention that can be set (a century), so the cutoff cannot overflow.
const MAX_DAYS: u64 = 36_500;
const DAY_MS: i64 = 86_400_000;

/// `[events]` as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Days a boot timeline is kept; 0 keeps it forever.
    pub boot_retention_days: Option<u64>,
}

/// Validated `[events]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// How long boot-timeline events are kept; `None`: forever (no pruning task).
    pub boot_retention_days: Option<u64>,
}

impl EventsConfig {
    pub fn from_raw(raw: RawEvents, origin: &str) -> Result<EventsConfig, ConfigError> {
        let days = raw.boot_retention_days.unwrap_or(DEFAULT_DAYS);
        if days > MAX_DAYS {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                key: "events.boot_retention_days",
                message: format!("must be at most {MAX_DAYS} (0 keeps events forever), got {days}"),
            });
        }
        Ok(EventsConfig { boot_retention_days: (days > 0).then_some(days) })
    }
}

/// The pruning task.
#[derive(Debug, Clone)]
pub struct Retention {
    db: Db,
    days: u64,
    every: Duration,
    /// In a controller: `[events]` as configured now (a reload may change the days).
    live: Option<crate::reload::LiveConfig>,
}

impl Retention {
    /// The task for `cfg`, or `None` when boot timelines are kept forever.
    pub fn new(db: Db, cfg: &EventsConfig) -> Option<Retention> {
        cfg.boot_retention_days.map(|days| Retention { db, days, every: EVERY, live: None })
    }

    /// Reads `boot_retention_days` from the running configuration at each pass (a
    /// reload keeps it a number of days while this task runs; see `reload::plan`).
    pub fn live(mut self, config: crate::reload::LiveConfig) -> Self {
        self.live = Some(config);
        self
    }

    fn days(&self) -> u64 {
        self.live.as_ref().and_then(|c| c.get().events.boot_retention_days).unwrap_or(self.days)
    }

    /// Prunes now and then [`EVERY`] after each pass ends, until `shutdown` resolves.
    /// A failed pass is logged and tried again at the next.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                result = self.prune(now_millis()) => self.report(result),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    fn report(&self, result: Result<u64, DbError>) {
        match result {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, days = self.days(), "boot timeline pruned"),
            Err(e) => {
                tracing::error!(error = %bramble_report::chain(&e), "boot timeline pruning failed")
            }
        }
    }

    /// Deletes every boot event older than the retention as of `now_ms`, [`BATCH`] at a
    /// time, and returns how many went.
    pub async fn prune(&self, now_ms: i64) -> Result<u64, DbError> {
        let cutoff = now_ms.saturating_sub(self.days() as i64 * DAY_MS);
        let mut total = 0;
        loop {
            let n = self.db.prune_boot_events(cutoff, BATCH).await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
            // Let other writers in between two batches.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides, RawConfig};
    use crate::db::Order;
    use crate::db::events::{EventFilter, NewEvent};
    use crate::testing::test_databases;

    fn events_config(text: &str) -> Result<EventsConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Config::from_raw(raw, "t.toml", &Overrides::default())
            .map(|c| c.events)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_events_section_is_read_and_checked() {
        assert_eq!(events_config("").unwrap().boot_retention_days, Some(DEFAULT_DAYS));
        let c = events_config("[events]\nboot_retention_days = 7").unwrap();
        assert_eq!(c.boot_retention_days, Some(7));
        let forever = events_config("[events]\nboot_retention_days = 0").unwrap();
        assert_eq!(forever.boot_retention_days, None);
        let err = events_config("[events]\nboot_retention_days = 100000").unwrap_err();
        assert!(err.contains("t.toml") && err.contains("events.boot_retention_days"), "{err}");
        let err = events_config("[events]\nkeep = 1").unwrap_err();
        assert!(err.contains("keep"), "{err}");
    }

    /// Appends `n` events of `kind`, then dates them all `days_ago`.
    async fn old_events(db: &Db, kind: &str, n: usize, days_ago: i64) {
        for _ in 0..n {
            db.append_event(&NewEvent::new(kind, "test", kind)).await.unwrap();
        }
        db.q("UPDATE events SET at = $1 WHERE kind = $2")
            .bind(now_millis() - days_ago * DAY_MS)
            .bind(kind.to_string())
            .execute(db.pool())
            .await
            .unwrap();
    }

    async fn kinds(db: &Db) -> Vec<String> {
        let page =
            db.list_events(&EventFilter::default(), None, Order::Asc, 500).await.unwrap().items;
        page.into_iter().map(|e| e.kind).collect()
    }

    /// Old boot events go, in several batches; recent ones and the whole audit log
    /// (however old) stay; a second pass, as another controller's would be, finds nothing.
    #[tokio::test]
    async fn old_boot_events_are_pruned_and_the_audit_log_is_kept() {
        for t in test_databases().await {
            let (backend, db) = (t.label, Db::connect(&t.url).await.unwrap());
            let over_a_batch = BATCH as usize + 5;
            old_events(&db, "dhcp.discover", over_a_batch, 40).await;
            old_events(&db, "tftp.complete", 3, 31).await;
            old_events(&db, "job.created", 2, 400).await;
            old_events(&db, "pi.registered", 1, 400).await;
            old_events(&db, "boot.rendered", 1, 400).await;
            old_events(&db, "dhcp.ack", 2, 29).await;
            let cfg = EventsConfig { boot_retention_days: Some(30) };
            let retention = Retention::new(db.clone(), &cfg).unwrap();
            let both = tokio::join!(retention.prune(now_millis()), retention.prune(now_millis()));
            let pruned = both.0.unwrap() + both.1.unwrap();
            assert_eq!(pruned, over_a_batch as u64 + 3, "{backend}");
            assert_eq!(
                kinds(&db).await,
                [
                    "job.created",
                    "job.created",
                    "pi.registered",
                    "boot.rendered",
                    "dhcp.ack",
                    "dhcp.ack"
                ],
                "{backend}"
            );
            assert_eq!(retention.prune(now_millis()).await.unwrap(), 0, "{backend}");
            db.close().await;
            t.drop().await;
        }
    }
}
