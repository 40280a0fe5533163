//! Pruning the boot timeline: `dhcp.*` and `tftp.*` events older than a cutoff, in
//! bounded batches. The audit log (every other kind) is never deleted here.
//!
//! Deleting is idempotent: a row another controller already pruned is simply not found,
//! so several controllers pruning the same database at once is harmless (on PostgreSQL
//! the second DELETE waits for the first's row locks, then finds those rows gone). No
//! leadership is needed for it.

use super::events::BOOT_TIMELINE;
use super::sql::{Sql, Value};
use super::{Backend, Db, DbError};

/// One batch: the oldest `batch` boot events written before `cutoff` (Unix ms), found
/// through the partial index `events_boot_at`, whose predicate is [`BOOT_TIMELINE`].
/// On PostgreSQL the ids go through an array so each is one probe of the primary key:
/// with `IN (subquery)` the planner may hash-join the batch against a scan of all events.
pub(crate) fn prune_batch_sql(backend: Backend, cutoff: i64, batch: i64) -> Sql {
    let values = vec![Value::Int(cutoff), Value::Int(batch)];
    match backend {
        Backend::Postgres => Sql::new(const_format::concatcp!(
            "DELETE FROM events WHERE id = ANY(ARRAY(SELECT id FROM events WHERE ",
            BOOT_TIMELINE
        ))
        .push(" AND at < ? ORDER BY at LIMIT ?))", values),
        Backend::Sqlite => Sql::new(const_format::concatcp!(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ",
            BOOT_TIMELINE
        ))
        .push(" AND at < ? ORDER BY at LIMIT ?)", values),
    }
}

impl Db {
    /// Deletes at most `batch` boot-timeline events written before `cutoff` (Unix ms),
    /// in one short statement, and says how many went. Callers repeat it while it returns
    /// a full batch, so no transaction holds its locks for long.
    pub async fn prune_boot_events(&self, cutoff: i64, batch: i64) -> Result<u64, DbError> {
        let done = self
            .query(&prune_batch_sql(self.backend(), cutoff, batch))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
