//! The cluster in the database: controllers with their heartbeats, and the lease rows
//! that elect one holder for each singleton.
//!
//! Lease and liveness arithmetic uses the database's clock ([`Db::clock_millis`]), so
//! controllers whose clocks drift apart still agree on who holds what.

use std::time::Duration;

use super::{Backend, Db, DbError, get_i64, get_opt_i64, get_str};
use crate::time::now_millis;

/// A controller as the inventory records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ControllerRow {
    pub name: String,
    /// The API URL the controller advertises.
    pub address: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Set when it stopped cleanly; a killed controller just stops beating.
    pub stopped_at: Option<i64>,
}

impl ControllerRow {
    /// Alive: not stopped, and beat within `lease` of `now` (database clock).
    pub fn alive(&self, now: i64, lease: Duration) -> bool {
        self.stopped_at.is_none() && self.heartbeat_at >= now - lease.as_millis() as i64
    }
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub expires_at: i64,
    pub term: i64,
}

/// PostgreSQL's clock in Unix milliseconds.
const PG_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

const REGISTER: &str = "INSERT INTO controllers (name, instance, address, version, started_at, heartbeat_at, stopped_at) \
    VALUES ($1, $2, $3, $4, $5, $5, NULL) \
    ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, address = excluded.address, \
    version = excluded.version, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL \
    WHERE controllers.instance = excluded.instance OR controllers.stopped_at IS NOT NULL OR controllers.heartbeat_at < $6 \
    RETURNING name";

/// Takes or renews a lease: granted when nobody holds it, when its holder is `$2`, or
/// when it expired. The term grows only when the holder changes or the lease lapsed.
const ACQUIRE: &str = "INSERT INTO leases (name, holder, expires_at, term, acquired_at) VALUES ($1, $2, $3, 1, $4) \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
    term = CASE WHEN leases.holder = excluded.holder AND leases.expires_at >= $4 THEN leases.term ELSE leases.term + 1 END, \
    acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at >= $4 THEN leases.acquired_at ELSE excluded.acquired_at END \
    WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
    RETURNING term";

impl Db {
    /// Now by the database's clock (PostgreSQL's; SQLite is in this process).
    pub async fn clock_millis(&self) -> Result<i64, DbError> {
        match self.backend() {
            Backend::Sqlite => Ok(now_millis()),
            Backend::Postgres => {
                let row = self
                    .q(const_format::concatcp!("SELECT ", PG_NOW, " AS now"))
                    .fetch_one(self.pool())
                    .await?;
                get_i64(&row, "now")
            }
        }
    }

    /// Registers controller `name` as run by `instance`. Refused (false) while another
    /// instance of the same name is alive: beat within `lease` and not stopped. With
    /// `takeover` (the caller knows no other instance runs: it holds the SQLite lock) the
    /// name is taken regardless.
    pub async fn register_controller(
        &self,
        name: &str,
        instance: &str,
        address: &str,
        lease: Duration,
        takeover: bool,
    ) -> Result<bool, DbError> {
        let now = self.clock_millis().await?;
        let stale_before = if takeover { i64::MAX } else { now - lease.as_millis() as i64 };
        let row = self
            .q(REGISTER)
            .bind(name.to_string())
            .bind(instance.to_string())
            .bind(address.to_string())
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(now)
            .bind(stale_before)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Records a heartbeat of `instance`; false if the name now belongs to another
    /// instance (this one was taken for dead) or was stopped.
    pub async fn controller_heartbeat(&self, name: &str, instance: &str) -> Result<bool, DbError> {
        let now = self.clock_millis().await?;
        let r = self
            .q("UPDATE controllers SET heartbeat_at = $1 WHERE name = $2 AND instance = $3 AND stopped_at IS NULL")
            .bind(now)
            .bind(name.to_string())
            .bind(instance.to_string())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks a clean stop, so the name is free at once and the controller is not alive.
    pub async fn controller_stopped(&self, name: &str, instance: &str) -> Result<(), DbError> {
        let now = self.clock_millis().await?;
        self.q("UPDATE controllers SET stopped_at = $1 WHERE name = $2 AND instance = $3")
            .bind(now)
            .bind(name.to_string())
            .bind(instance.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every controller, and now by the database's clock (read with them in one round
    /// trip on PostgreSQL), to judge which are alive.
    pub async fn list_controllers(&self) -> Result<(Vec<ControllerRow>, i64), DbError> {
        const COLUMNS: &str = "SELECT name, address, version, started_at, heartbeat_at, stopped_at";
        let rows = match self.backend() {
            Backend::Sqlite => {
                self.q(const_format::concatcp!(COLUMNS, " FROM controllers ORDER BY name"))
            }
            Backend::Postgres => self.q(const_format::concatcp!(
                COLUMNS,
                ", ",
                PG_NOW,
                " AS now FROM controllers ORDER BY name"
            )),
        }
        .fetch_all(self.pool())
        .await?;
        let now = match (self.backend(), rows.first()) {
            (Backend::Postgres, Some(first)) => get_i64(first, "now")?,
            _ => self.clock_millis().await?,
        };
        let controllers = rows
            .iter()
            .map(|r| {
                Ok(ControllerRow {
                    name: get_str(r, "name")?,
                    address: get_str(r, "address")?,
                    version: get_str(r, "version")?,
                    started_at: get_i64(r, "started_at")?,
                    heartbeat_at: get_i64(r, "heartbeat_at")?,
                    stopped_at: get_opt_i64(r, "stopped_at")?,
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok((controllers, now))
    }

    /// Takes or renews lease `name` for `holder` until `ttl` from now (database clock);
    /// returns the term when granted, `None` when someone else holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, DbError> {
        let now = self.clock_millis().await?;
        let row = self
            .q(ACQUIRE)
            .bind(name.to_string())
            .bind(holder.to_string())
            .bind(now + ttl.as_millis() as i64)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| get_i64(&r, "term")).transpose()
    }

    /// Gives a lease up at once (a clean stop), if `holder` still holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), DbError> {
        self.q("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
            .bind(name.to_string())
            .bind(holder.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether `holder` holds lease `name` now (tests check leases through it).
    #[cfg(test)]
    pub async fn holds_lease(&self, name: &str, holder: &str) -> Result<bool, DbError> {
        let now = self.clock_millis().await?;
        let row = self
            .q("SELECT 1 AS held FROM leases WHERE name = $1 AND holder = $2 AND expires_at >= $3")
            .bind(name.to_string())
            .bind(holder.to_string())
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Every lease not yet expired at `now` (database clock), by name.
    pub async fn live_leases(&self, now: i64) -> Result<Vec<LeaseRow>, DbError> {
        let rows = self
            .q("SELECT name, holder, expires_at, term FROM leases WHERE expires_at >= $1 ORDER BY name")
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(lease_from_row).collect()
    }

    /// Switches nobody serves yet (registered before clusters existed) become
    /// `controller`'s; returns how many.
    pub async fn adopt_unserved_switches(&self, controller: &str) -> Result<u64, DbError> {
        let r = self
            .q("UPDATE switches SET controller = $1 WHERE controller IS NULL")
            .bind(controller.to_string())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

fn lease_from_row(r: &sqlx::any::AnyRow) -> Result<LeaseRow, DbError> {
    Ok(LeaseRow {
        name: get_str(r, "name")?,
        holder: get_str(r, "holder")?,
        expires_at: get_i64(r, "expires_at")?,
        term: get_i64(r, "term")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_databases;

    const LEASE: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_expires() {
        for tdb in test_databases().await {
            let db = Db::connect(&tdb.url).await.unwrap();
            assert_eq!(db.acquire_lease("w", "a", LEASE).await.unwrap(), Some(1), "{}", tdb.label);
            assert_eq!(db.acquire_lease("w", "b", LEASE).await.unwrap(), None, "{}", tdb.label);
            // Renewing keeps the term.
            assert_eq!(db.acquire_lease("w", "a", LEASE).await.unwrap(), Some(1));
            assert!(db.holds_lease("w", "a").await.unwrap());
            assert!(!db.holds_lease("w", "b").await.unwrap());
            tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
            assert!(!db.holds_lease("w", "a").await.unwrap(), "{}: expired", tdb.label);
            assert_eq!(db.acquire_lease("w", "b", LEASE).await.unwrap(), Some(2), "{}", tdb.label);
            // A released lease is free at once.
            db.release_lease("w", "b").await.unwrap();
            assert_eq!(db.acquire_lease("w", "a", LEASE).await.unwrap(), Some(3), "{}", tdb.label);
            db.close().await;
            tdb.drop().await;
        }
    }

    #[tokio::test]
    async fn a_live_controller_keeps_its_name() {
        for tdb in test_databases().await {
            let db = Db::connect(&tdb.url).await.unwrap();
            assert!(db.register_controller("c1", "i1", "http://a", LEASE, false).await.unwrap());
            assert!(
                !db.register_controller("c1", "i2", "http://b", LEASE, false).await.unwrap(),
                "{}: a second live instance took the name",
                tdb.label
            );
            assert!(db.controller_heartbeat("c1", "i1").await.unwrap());
            tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
            let (rows, now) = db.list_controllers().await.unwrap();
            assert!(!rows[0].alive(now, LEASE));
            // Dead now: a new instance may take the name, and the old one learns it.
            assert!(db.register_controller("c1", "i2", "http://b", LEASE, false).await.unwrap());
            assert!(!db.controller_heartbeat("c1", "i1").await.unwrap(), "{}", tdb.label);
            // A clean stop frees the name at once.
            db.controller_stopped("c1", "i2").await.unwrap();
            assert!(db.register_controller("c1", "i3", "http://c", LEASE, false).await.unwrap());
            // The holder of the SQLite lock takes the name even from a live-looking row.
            assert!(db.register_controller("c1", "i4", "http://c", LEASE, true).await.unwrap());
            let (rows, _) = db.list_controllers().await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].address, "http://c");
            db.close().await;
            tdb.drop().await;
        }
    }
}
