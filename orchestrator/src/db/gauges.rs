//! Inventory-wide gauges for `/metrics`: what an operator alerts on (jobs waiting or
//! failed, controllers that stopped beating, notifications falling behind). Each is read
//! from the shared inventory, so every controller of a cluster reports the same values.

use std::time::Duration;

use super::sql::Sql;
use super::{Db, DbError, get_i64, get_opt_i64, get_str};

/// Jobs per state and kind. Only the states worth alerting on are counted (`queued`,
/// `running`, `failed`), so the query stays on the `jobs_state` index.
pub(crate) fn jobs_sql() -> Sql {
    Sql::new("SELECT state, kind, COUNT(*) AS n FROM jobs")
        .push(" WHERE state IN ('queued', 'running', 'failed') GROUP BY state, kind", Vec::new())
}

/// When the oldest event after `cursor` (the webhook sender's) was recorded.
pub(crate) fn oldest_after_sql(cursor: i64) -> Sql {
    Sql::new("SELECT at FROM events").and("id > ?", cursor).push(" ORDER BY id LIMIT 1", Vec::new())
}

/// One job count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub state: String,
    pub kind: String,
    pub n: i64,
}

/// Controllers by liveness, judged by the database's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerCounts {
    pub alive: i64,
    /// Not stopped cleanly and not beating: killed, crashed or cut off.
    pub silent: i64,
    pub stopped: i64,
}

impl Db {
    pub async fn count_jobs_for_metrics(&self) -> Result<Vec<JobCount>, DbError> {
        let rows = self.query(&jobs_sql()).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(JobCount {
                    state: get_str(r, "state")?,
                    kind: get_str(r, "kind")?,
                    n: get_i64(r, "n")?,
                })
            })
            .collect()
    }

    pub async fn count_controllers(&self, lease: Duration) -> Result<ControllerCounts, DbError> {
        let (rows, now) = self.list_controllers().await?;
        let mut c = ControllerCounts::default();
        for row in &rows {
            match (row.stopped_at, row.alive(now, lease)) {
                (Some(_), _) => c.stopped += 1,
                (None, true) => c.alive += 1,
                (None, false) => c.silent += 1,
            }
        }
        Ok(c)
    }

    /// Seconds since the oldest event after `cursor` was recorded (0 when none is
    /// waiting), by the database's clock.
    pub async fn event_lag_seconds(&self, cursor: i64) -> Result<f64, DbError> {
        let row = self.query(&oldest_after_sql(cursor)).fetch_optional(self.pool()).await?;
        let at = match row {
            Some(r) => get_opt_i64(&r, "at")?,
            None => None,
        };
        Ok(match at {
            Some(at) => (self.clock_millis().await? - at).max(0) as f64 / 1000.0,
            None => 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_databases;

    async fn check(db: Db) {
        let at = crate::time::now_millis();
        for (id, state, kind) in [
            ("j1", "queued", "reboot"),
            ("j2", "queued", "reboot"),
            ("j3", "failed", "reinstall"),
            ("j4", "succeeded", "reboot"),
        ] {
            db.q("INSERT INTO jobs (id, kind, params, state, request_hash, requested_by, created_at, updated_at) \
                VALUES ($1, $2, '{}', $3, 'h', 'tok', $4, $4)")
                .bind(id)
                .bind(kind)
                .bind(state)
                .bind(at)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let mut jobs = db.count_jobs_for_metrics().await.unwrap();
        jobs.sort_by(|a, b| (&a.state, &a.kind).cmp(&(&b.state, &b.kind)));
        let jobs: Vec<_> = jobs.iter().map(|j| (j.state.as_str(), j.kind.as_str(), j.n)).collect();
        assert_eq!(jobs, [("failed", "reinstall", 1), ("queued", "reboot", 2)]);

        let lease = Duration::from_secs(30);
        for (name, beat, stopped) in
            [("a", at, None), ("b", at - 60_000, None), ("c", at, Some(at))]
        {
            db.q("INSERT INTO controllers (name, instance, address, version, started_at, heartbeat_at, stopped_at) \
                VALUES ($1, 'i', 'http://x', '0', $2, $2, $3)")
                .bind(name)
                .bind(beat)
                .bind(stopped)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let c = db.count_controllers(lease).await.unwrap();
        assert_eq!(c, ControllerCounts { alive: 1, silent: 1, stopped: 1 });

        assert_eq!(db.event_lag_seconds(i64::MAX).await.unwrap(), 0.0);
        db.q(
            "INSERT INTO events (at, actor, kind, message, data) VALUES ($1, 'a', 'x', 'm', '{}')",
        )
        .bind(at - 90_000)
        .execute(db.pool())
        .await
        .unwrap();
        let lag = db.event_lag_seconds(0).await.unwrap();
        assert!((89.0..200.0).contains(&lag), "lag {lag}");
    }

    #[tokio::test]
    async fn alerting_gauges_read_the_shared_inventory() {
        for tdb in test_databases().await {
            check(Db::connect(&tdb.url).await.unwrap()).await;
            tdb.drop().await;
        }
    }
}
