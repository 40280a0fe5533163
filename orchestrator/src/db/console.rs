//! Console lines per Pi and per boot (see `crate::console` for what a boot is): one
//! write transaction per batch from the receiver, bounded per boot and per Pi, and the
//! reads behind `GET /v1/pis/{id}/console`.

use serde::Serialize;

use super::sql::Sql;
use super::{Db, DbError, get_i64};
use crate::ids::{CustomerId, PiId};
use crate::time::now_millis;

/// How much of a Pi's console is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleLimits {
    /// Boots kept per Pi; older ones are deleted when a new one starts.
    pub keep_boots: i64,
    /// Bytes of lines kept per boot; later lines are counted in `dropped`.
    pub boot_bytes: i64,
}

/// One boot of a Pi's console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ConsoleBoot {
    /// Per-Pi boot number, from 1.
    pub boot: i64,
    /// When its first line was received (ms since the epoch).
    pub started_at: i64,
    /// Bytes of lines kept.
    pub bytes: i64,
    /// Lines kept.
    pub lines: i64,
    /// Lines not kept because the boot was full.
    pub dropped: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) id: i64,
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// Increasing within a boot (and across the inventory): the follow cursor.
    pub id: i64,
    /// When the controller received it (ms since the epoch).
    pub at: i64,
    pub bytes: Vec<u8>,
}

/// Received lines for one Pi, in order: (received at ms, bytes).
pub type PiLines = (PiId, Vec<(i64, Vec<u8>)>);

/// What a batch did, for counters and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stored: u64,
    pub dropped: u64,
    pub boots_started: u64,
    pub boots_pruned: u64,
}

fn boot_from_row(r: &sqlx::any::AnyRow) -> Result<ConsoleBoot, DbError> {
    Ok(ConsoleBoot {
        id: get_i64(r, "id")?,
        boot: get_i64(r, "boot")?,
        started_at: get_i64(r, "started_at")?,
        bytes: get_i64(r, "bytes")?,
        lines: get_i64(r, "lines")?,
        dropped: get_i64(r, "dropped")?,
    })
}

/// A Pi's newest TFTP reads after event `after` (the kernel read a new boot starts
/// from is among them), on the partial index `events_tftp_read_pi`.
pub(crate) fn kernel_reads_sql(pi: &PiId, after: i64) -> Sql {
    Sql::new("SELECT id, data FROM events")
        .and("pi_id = ?", pi.0.clone())
        .push(" AND kind = 'tftp.read'", Vec::new())
        .and("id > ?", after)
        .push(" ORDER BY id DESC LIMIT 50", Vec::new())
}

impl Db {
    /// Appends each Pi's lines to its current boot, starting a new boot first when its
    /// timeline shows a kernel read after the one the current boot started from, and
    /// pruning boots beyond `limits.keep_boots`. One transaction for the whole batch.
    pub async fn append_console(
        &self,
        batch: &[PiLines],
        limits: ConsoleLimits,
    ) -> Result<AppendOutcome, DbError> {
        let mut out = AppendOutcome::default();
        let mut tx = self.begin_write().await?;
        for (pi, lines) in batch {
            let current = self
                .q("SELECT id, boot, kernel_event, bytes FROM console_boots WHERE pi_id = $1 \
                    ORDER BY boot DESC LIMIT 1")
                .bind(pi.0.clone())
                .fetch_optional(&mut *tx)
                .await?;
            let current = current
                .map(|r| {
                    Ok::<_, DbError>((
                        get_i64(&r, "id")?,
                        get_i64(&r, "boot")?,
                        get_i64(&r, "kernel_event")?,
                        get_i64(&r, "bytes")?,
                    ))
                })
                .transpose()?;
            let after = current.map_or(0, |c| c.2);
            // The newest kernel read after the current boot's (its TFTP reads, newest first).
            let reads = self.query(&kernel_reads_sql(pi, after)).fetch_all(&mut *tx).await?;
            let mut kernel = None;
            for r in &reads {
                let data: String = super::get_str(r, "data")?;
                if super::orchestration::is_kernel_read(&data) {
                    kernel = Some(get_i64(r, "id")?);
                    break;
                }
            }
            let (boot_id, mut bytes) = match (current, kernel) {
                (Some((id, _, _, bytes)), None) => (id, bytes),
                (current, kernel) => {
                    let number = current.map_or(1, |c| c.1 + 1);
                    let row = self
                        .q("INSERT INTO console_boots (pi_id, boot, customer, started_at, \
                            kernel_event) VALUES ($1, $2, (SELECT owner FROM pis WHERE id = $1), \
                            $3, $4) RETURNING id")
                        .bind(pi.0.clone())
                        .bind(number)
                        .bind(now_millis())
                        .bind(kernel.unwrap_or(after))
                        .fetch_one(&mut *tx)
                        .await?;
                    out.boots_started += 1;
                    out.boots_pruned +=
                        self.prune_console(&mut tx, pi, number - limits.keep_boots).await?;
                    (get_i64(&row, "id")?, 0)
                }
            };
            let (mut stored, mut dropped, start_bytes) = (0i64, 0i64, bytes);
            for (at, line) in lines {
                let len = line.len() as i64;
                if bytes + len > limits.boot_bytes {
                    dropped += 1;
                    continue;
                }
                self.q("INSERT INTO console_lines (boot_id, at, line) VALUES ($1, $2, $3)")
                    .bind(boot_id)
                    .bind(*at)
                    .bind(line.clone())
                    .execute(&mut *tx)
                    .await?;
                bytes += len;
                stored += 1;
            }
            self.q("UPDATE console_boots SET bytes = bytes + $1, lines = lines + $2, \
                    dropped = dropped + $3 WHERE id = $4")
                .bind(bytes - start_bytes)
                .bind(stored)
                .bind(dropped)
                .bind(boot_id)
                .execute(&mut *tx)
                .await?;
            out.stored += stored as u64;
            out.dropped += dropped as u64;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Deletes the Pi's boots numbered `up_to` and below, lines first; returns how many.
    async fn prune_console(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        pi: &PiId,
        up_to: i64,
    ) -> Result<u64, DbError> {
        if up_to < 1 {
            return Ok(0);
        }
        self.q("DELETE FROM console_lines WHERE boot_id IN \
                (SELECT id FROM console_boots WHERE pi_id = $1 AND boot <= $2)")
            .bind(pi.0.clone())
            .bind(up_to)
            .execute(&mut **tx)
            .await?;
        let done = self
            .q("DELETE FROM console_boots WHERE pi_id = $1 AND boot <= $2")
            .bind(pi.0.clone())
            .bind(up_to)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// The Pi's kept boots, oldest first; a customer (`Some`) sees only those recorded
    /// for them.
    pub async fn console_boots(
        &self,
        pi: &PiId,
        customer: Option<&CustomerId>,
    ) -> Result<Vec<ConsoleBoot>, DbError> {
        let rows = match customer {
            None => {
                self.q("SELECT id, boot, started_at, bytes, lines, dropped FROM console_boots \
                        WHERE pi_id = $1 ORDER BY boot")
                    .bind(pi.0.clone())
                    .fetch_all(self.pool())
                    .await?
            }
            Some(c) => {
                self.q("SELECT id, boot, started_at, bytes, lines, dropped FROM console_boots \
                        WHERE pi_id = $1 AND customer = $2 ORDER BY boot")
                    .bind(pi.0.clone())
                    .bind(c.0.clone())
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(boot_from_row).collect()
    }

    /// Up to `limit` lines of a boot after line id `after`, in order.
    pub async fn console_lines(
        &self,
        boot: &ConsoleBoot,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredLine>, DbError> {
        let rows = self
            .q("SELECT id, at, line FROM console_lines WHERE boot_id = $1 AND id > $2 \
                ORDER BY id LIMIT $3")
            .bind(boot.id)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                Ok(StoredLine {
                    id: get_i64(r, "id")?,
                    at: get_i64(r, "at")?,
                    bytes: r.try_get::<Vec<u8>, _>("line").map_err(DbError::from)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::events::NewEvent;
    use crate::db::pis::NewPi;
    use crate::lifecycle::PiState;

    async fn pi(db: &Db, owner: &str) -> PiId {
        let new = NewPi {
            serial: None,
            mac: None,
            model: "pi4".into(),
            slot: None,
            owner: Some(CustomerId(owner.into())),
            state: PiState::Deployed,
        };
        db.insert_pi(&new, "test").await.expect("insert pi").id
    }

    async fn kernel_read(db: &Db, pi: &PiId) {
        let data =
            serde_json::json!({"stage": {"stage": "tftp_read", "file": "vmlinuz-6.1.0-50-arm64"}});
        let mut e = NewEvent::new("tftp.read", "tftp", "TFTP read of vmlinuz").pi(pi);
        e.data = data;
        db.append_event(&e).await.expect("event");
        // A firmware file read is no kernel: it starts no boot.
        let mut e = NewEvent::new("tftp.read", "tftp", "TFTP read of start4.elf").pi(pi);
        e.data = serde_json::json!({"stage": {"stage": "tftp_read", "file": "start4.elf"}});
        db.append_event(&e).await.expect("event");
    }

    fn lines(texts: &[&[u8]]) -> Vec<(i64, Vec<u8>)> {
        texts.iter().map(|t| (now_millis(), t.to_vec())).collect()
    }

    async fn texts(db: &Db, pi: &PiId, boot: i64) -> Vec<Vec<u8>> {
        let boots = db.console_boots(pi, None).await.expect("boots");
        let b = boots.iter().find(|b| b.boot == boot).expect("boot kept");
        db.console_lines(b, 0, 1000).await.expect("lines").into_iter().map(|l| l.bytes).collect()
    }

    #[tokio::test]
    async fn boots_start_at_kernel_reads_are_bounded_and_pruned_on_both_backends() {
        for tdb in crate::testing::test_databases().await {
            let db = Db::connect(&tdb.url).await.expect("connect");
            let limits = ConsoleLimits { keep_boots: 3, boot_bytes: 20 };
            let (a, b) = (pi(&db, "cust-a").await, pi(&db, "cust-b").await);

            // Lines before any kernel read start boot 1; more lines with no new read
            // stay in it. Bytes are kept as they are (escape, invalid UTF-8, NUL).
            let raw: &[u8] = b"\x1b[1m\xff\x00";
            let out = db
                .append_console(&[(a.clone(), lines(&[b"early", raw]))], limits)
                .await
                .expect("append");
            assert_eq!((out.stored, out.boots_started), (2, 1));
            db.append_console(&[(a.clone(), lines(&[b"more"]))], limits).await.expect("append");
            assert_eq!(
                texts(&db, &a, 1).await,
                vec![b"early".to_vec(), raw.to_vec(), b"more".to_vec()]
            );

            // A kernel read starts boot 2 at the next line; Pi b's lines in the same
            // batch go to its own boot 1.
            kernel_read(&db, &a).await;
            let batch =
                vec![(a.clone(), lines(&[b"Linux version"])), (b.clone(), lines(&[b"b's own"]))];
            let out = db.append_console(&batch, limits).await.expect("append");
            assert_eq!((out.stored, out.boots_started), (2, 2));
            assert_eq!(texts(&db, &a, 2).await, vec![b"Linux version".to_vec()]);
            assert_eq!(texts(&db, &b, 1).await, vec![b"b's own".to_vec()]);

            // The boot's byte limit: 13 bytes kept, 8 more would pass 20: dropped, counted.
            let out = db
                .append_console(&[(a.clone(), lines(&[b"12345678", b"1234567"]))], limits)
                .await
                .expect("append");
            assert_eq!((out.stored, out.dropped), (1, 1));
            let boots = db.console_boots(&a, None).await.expect("boots");
            let two = boots.iter().find(|x| x.boot == 2).expect("boot 2");
            assert_eq!((two.bytes, two.lines, two.dropped), (20, 2, 1));

            // Three more boots: only the newest three (keep_boots) stay, lines and all.
            for n in 3..=5 {
                kernel_read(&db, &a).await;
                db.append_console(&[(a.clone(), lines(&[format!("boot {n}").as_bytes()]))], limits)
                    .await
                    .expect("append");
            }
            let kept: Vec<i64> =
                db.console_boots(&a, None).await.expect("boots").iter().map(|b| b.boot).collect();
            assert_eq!(kept, vec![3, 4, 5]);
            let orphans = db
                .q("SELECT COUNT(*) AS n FROM console_lines WHERE boot_id NOT IN (SELECT id FROM console_boots)")
                .fetch_one(db.pool())
                .await
                .expect("count");
            assert_eq!(get_i64(&orphans, "n").expect("n"), 0, "pruned boots' lines are gone");

            // A customer sees only boots recorded for them: a new owner sees none of these.
            let (ca, cb) = (CustomerId("cust-a".into()), CustomerId("cust-b".into()));
            assert_eq!(db.console_boots(&a, Some(&ca)).await.expect("boots").len(), 3);
            assert!(db.console_boots(&a, Some(&cb)).await.expect("boots").is_empty());
            db.close().await;
            tdb.drop().await;
        }
    }
}
