//! Snapshot rows: what the API lists and restores. The directories are the serving
//! controller's (`snapshots::Sweeper` deletes those whose row is gone); a row is written
//! by the job step that made the directory, after it exists.

use sqlx::any::AnyRow;

use super::sql::Sql;
use super::{Db, DbError, Query, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::ids::{CustomerId, JobId, PiId};
use crate::jobs::model::JobKind;
use crate::snapshots::{Reason, Snapshot, snapshot_of_job};

const SELECT: &str = "SELECT id, pi_id, owner, job_id, reason, image, version, size_bytes, created_at \
    FROM snapshots";

impl Db {
    /// Records a snapshot for the Pi's owner `snap.owner`, only if the Pi still has that
    /// owner (a snapshot of a previous owner's root is never recorded for the next
    /// one: its directory is then swept). Idempotent by id. Says whether the row exists.
    pub async fn record_snapshot(&self, snap: &Snapshot) -> Result<bool, DbError> {
        self.insert_snapshot(snap).execute(self.pool()).await?;
        Ok(self.get_snapshot(&snap.pi, &snap.id).await?.is_some())
    }

    /// The INSERT of [`Db::record_snapshot`]: nothing unless the Pi's owner is still
    /// `snap.owner`, nothing if the id exists.
    fn insert_snapshot(&self, snap: &Snapshot) -> Query<'static> {
        self.q("INSERT INTO snapshots (id, pi_id, owner, job_id, reason, image, version, size_bytes, created_at) \
                SELECT $1, id, owner, $2, $3, $4, $5, $6, $7 FROM pis \
                WHERE id = $8 AND COALESCE(owner, '') = $9 ON CONFLICT (id) DO NOTHING")
            .bind(snap.id.clone())
            .bind(snap.job.0.clone())
            .bind(snap.reason.as_str())
            .bind(snap.image.clone())
            .bind(snap.version.clone())
            .bind(snap.size_bytes)
            .bind(snap.created_at)
            .bind(snap.pi.0.clone())
            .bind(snap.owner.as_ref().map(|o| o.0.clone()).unwrap_or_default())
    }

    /// The restore's bookkeeping in one transaction: the restored snapshot's row goes
    /// (it is the live root now), the replaced root's row comes (if it was kept), and the
    /// job's result records that both happened.
    pub async fn record_restore(
        &self,
        pi: &PiId,
        restored: &str,
        kept: Option<&Snapshot>,
        job: &JobId,
        result: &serde_json::Value,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        self.q("DELETE FROM snapshots WHERE pi_id = $1 AND id = $2")
            .bind(pi.0.clone())
            .bind(restored.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(snap) = kept {
            self.insert_snapshot(snap).execute(&mut *tx).await?;
        }
        self.q("UPDATE jobs SET result = $1 WHERE id = $2")
            .bind(result.to_string())
            .bind(job.0.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_snapshot(&self, pi: &PiId, id: &str) -> Result<Option<Snapshot>, DbError> {
        let sql = const_format::concatcp!(SELECT, " WHERE pi_id = $1 AND id = $2");
        let row =
            self.q(sql).bind(pi.0.clone()).bind(id.to_string()).fetch_optional(self.pool()).await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// A Pi's snapshots, newest first (ids follow their jobs' creation); with
    /// `visible_to`, only that customer's.
    pub async fn list_snapshots(
        &self,
        pi: &PiId,
        visible_to: Option<&CustomerId>,
    ) -> Result<Vec<Snapshot>, DbError> {
        let rows = self.query(&list_snapshots_sql(pi, visible_to)).fetch_all(self.pool()).await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    /// Every snapshot row (the pruning pass; a few per Pi).
    pub async fn all_snapshots(&self) -> Result<Vec<Snapshot>, DbError> {
        let sql = const_format::concatcp!(SELECT, " ORDER BY pi_id, id DESC");
        let rows = self.q(sql).fetch_all(self.pool()).await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    /// Deletes one row; its directory follows with the next sweep. Says if it existed.
    pub async fn delete_snapshot(&self, pi: &PiId, id: &str) -> Result<bool, DbError> {
        let r = self
            .q("DELETE FROM snapshots WHERE pi_id = $1 AND id = $2")
            .bind(pi.0.clone())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes every row of a Pi (retired, released or changing owner).
    pub async fn delete_pi_snapshots(&self, pi: &PiId) -> Result<u64, DbError> {
        self.delete_pi_snapshots_with(self.pool(), pi).await
    }

    /// [`Db::delete_pi_snapshots`] inside a transaction.
    pub async fn delete_pi_snapshots_with<'c, E>(&self, exec: E, pi: &PiId) -> Result<u64, DbError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let r = self
            .q("DELETE FROM snapshots WHERE pi_id = $1")
            .bind(pi.0.clone())
            .execute(exec)
            .await?;
        Ok(r.rows_affected())
    }

    /// Whether an active job of the Pi makes snapshot `id` (its id derives from the job)
    /// or restores it: its directory must stay even without a row.
    pub async fn snapshot_in_use(&self, pi: &PiId, id: &str) -> Result<bool, DbError> {
        let rows = self
            .q("SELECT id, kind, params FROM jobs WHERE pi_id = $1 AND state IN ('queued', 'running')")
            .bind(pi.0.clone())
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            let job = JobId(get_str(row, "id")?);
            if snapshot_of_job(&job) == id {
                return Ok(true);
            }
            let params: serde_json::Value =
                serde_json::from_str(&get_str(row, "params")?).unwrap_or_default();
            let restoring = JobKind::parse(&get_str(row, "kind")?) == Some(JobKind::Restore)
                && params["snapshot"] == serde_json::json!(id);
            if restoring {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A Pi's snapshots (`GET /v1/pis/{id}/snapshots`), on index `snapshots_pi_id`
/// (pi_id, id).
pub(crate) fn list_snapshots_sql(pi: &PiId, visible_to: Option<&CustomerId>) -> Sql {
    Sql::new(SELECT)
        .and("pi_id = ?", pi.0.clone())
        .and_opt("owner = ?", visible_to.map(|c| c.0.clone()))
        .push(" ORDER BY id DESC", Vec::new())
}

fn snapshot_from_row(row: &AnyRow) -> Result<Snapshot, DbError> {
    let reason = get_str(row, "reason")?;
    Ok(Snapshot {
        id: get_str(row, "id")?,
        pi: PiId(get_str(row, "pi_id")?),
        owner: get_opt_str(row, "owner")?.map(CustomerId),
        job: JobId(get_str(row, "job_id")?),
        reason: Reason::parse(&reason)
            .ok_or(DbError::Corrupt { column: "snapshots.reason", value: reason })?,
        image: get_opt_str(row, "image")?,
        version: get_opt_str(row, "version")?,
        size_bytes: get_opt_i64(row, "size_bytes")?,
        created_at: get_i64(row, "created_at")?,
    })
}

impl Db {
    /// The snapshots active restore jobs are moving in (never pruned).
    pub async fn snapshots_being_restored(&self) -> Result<Vec<String>, DbError> {
        let rows = self
            .q("SELECT params FROM jobs WHERE state IN ('queued', 'running') AND kind = $1")
            .bind(JobKind::Restore.as_str())
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let params: serde_json::Value =
                serde_json::from_str(&get_str(row, "params")?).unwrap_or_default();
            if let Some(id) = params["snapshot"].as_str() {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::db::jobs::{CreateOutcome, NewJob};
    use crate::db::pis::NewPi;
    use crate::ids::TokenId;
    use crate::lifecycle::PiState;
    use crate::snapshots::Reason;
    use crate::testing::test_databases;

    fn snap(pi: &PiId, owner: Option<&str>, job: &JobId, reason: Reason) -> Snapshot {
        let created_at = match reason {
            Reason::Reinstall => 1_000,
            Reason::Manual => 2_000,
            Reason::Restore => 3_000,
        };
        Snapshot {
            id: snapshot_of_job(job),
            pi: pi.clone(),
            owner: owner.map(|o| CustomerId(o.into())),
            job: job.clone(),
            reason,
            image: Some("deb".into()),
            version: Some("1".into()),
            size_bytes: Some(42),
            created_at,
        }
    }

    /// Rows are recorded only for the Pi's current owner and idempotently; a customer
    /// lists only theirs; a change of owner deletes every row in its transaction (the same
    /// owner again deletes nothing); a restore swaps the rows and writes the job's result
    /// at once; an active job keeps the snapshot it makes or restores in use.
    #[tokio::test]
    async fn snapshot_rows_follow_the_owner_and_the_jobs() {
        for t in test_databases().await {
            let (backend, db) = (t.label, Db::connect(&t.url).await.unwrap());
            let ann = CustomerId("cust-ann".into());
            let new = NewPi {
                serial: None,
                mac: None,
                model: "pi4".into(),
                slot: None,
                owner: Some(ann.clone()),
                state: PiState::Ready,
            };
            let pi = db.insert_pi(&new, "test").await.unwrap().id;
            // Ids in creation order, as generated ones are across milliseconds.
            let job = |n: u32| JobId(format!("job-{:012x}{:06x}", 1_000 + n, n));
            let (j1, j2, j3) = (job(1), job(2), job(3));
            assert!(
                db.record_snapshot(&snap(&pi, Some("cust-ann"), &j1, Reason::Reinstall))
                    .await
                    .unwrap()
            );
            assert!(
                db.record_snapshot(&snap(&pi, Some("cust-ann"), &j1, Reason::Reinstall))
                    .await
                    .unwrap(),
                "{backend}: idempotent"
            );
            assert!(
                !db.record_snapshot(&snap(&pi, Some("cust-ben"), &j2, Reason::Manual))
                    .await
                    .unwrap(),
                "{backend}: not the owner"
            );
            assert!(
                db.record_snapshot(&snap(&pi, Some("cust-ann"), &j2, Reason::Manual))
                    .await
                    .unwrap()
            );
            let ids = |v: Vec<Snapshot>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
            let both = vec![snapshot_of_job(&j2), snapshot_of_job(&j1)];
            assert_eq!(ids(db.list_snapshots(&pi, Some(&ann)).await.unwrap()), both, "{backend}");
            assert_eq!(ids(db.list_snapshots(&pi, None).await.unwrap()), both, "{backend}");
            let ben = CustomerId("cust-ben".into());
            assert!(db.list_snapshots(&pi, Some(&ben)).await.unwrap().is_empty(), "{backend}");
            let row = db.get_snapshot(&pi, &snapshot_of_job(&j1)).await.unwrap().unwrap();
            assert_eq!(
                (row.reason, row.size_bytes, row.owner.as_ref()),
                (Reason::Reinstall, Some(42), Some(&ann))
            );

            // A restore of j1's snapshot by job j3: j1's row goes, j3's comes, result set.
            let result = serde_json::json!({ "restored": { "snapshot": row.id } });
            let kept = snap(&pi, Some("cust-ann"), &j3, Reason::Restore);
            db.record_restore(&pi, &row.id, Some(&kept), &j3, &result).await.unwrap();
            let now = vec![snapshot_of_job(&j3), snapshot_of_job(&j2)];
            assert_eq!(ids(db.list_snapshots(&pi, None).await.unwrap()), now, "{backend}");

            // An active restore job keeps its source in use; a job's own snapshot too.
            let op = Principal::Operator { token: TokenId("tok-test".into()) };
            let job = NewJob {
                kind: JobKind::Restore,
                pi: Some(pi.clone()),
                shelf: None,
                params: serde_json::json!({ "snapshot": snapshot_of_job(&j2) }),
                idempotency_key: None,
            };
            let CreateOutcome::Created(job) = db.create_job(&job, &op).await.unwrap() else {
                panic!("{backend}: job not created")
            };
            assert!(db.snapshot_in_use(&pi, &snapshot_of_job(&j2)).await.unwrap(), "{backend}");
            assert!(db.snapshot_in_use(&pi, &snapshot_of_job(&job.id)).await.unwrap(), "{backend}");
            assert!(!db.snapshot_in_use(&pi, &snapshot_of_job(&j3)).await.unwrap(), "{backend}");
            assert_eq!(db.snapshots_being_restored().await.unwrap(), [snapshot_of_job(&j2)]);
            db.cancel_job(&job.id, &op).await.unwrap();
            assert!(!db.snapshot_in_use(&pi, &snapshot_of_job(&j2)).await.unwrap(), "{backend}");

            // The same owner again keeps them; a new owner finds none.
            db.set_pi_owner(&pi, Some(&ann)).await.unwrap();
            assert_eq!(db.list_snapshots(&pi, None).await.unwrap().len(), 2, "{backend}");
            db.set_pi_owner(&pi, Some(&ben)).await.unwrap();
            assert!(db.list_snapshots(&pi, None).await.unwrap().is_empty(), "{backend}");
            assert!(
                db.record_snapshot(&snap(&pi, Some("cust-ben"), &j1, Reason::Manual))
                    .await
                    .unwrap()
            );
            db.set_pi_owner(&pi, None).await.unwrap();
            assert!(db.all_snapshots().await.unwrap().is_empty(), "{backend}: released");
            assert!(db.record_snapshot(&snap(&pi, None, &j2, Reason::Manual)).await.unwrap());
            assert!(db.delete_snapshot(&pi, &snapshot_of_job(&j2)).await.unwrap());
            assert!(!db.delete_snapshot(&pi, &snapshot_of_job(&j2)).await.unwrap());
            db.close().await;
        }
    }
}
