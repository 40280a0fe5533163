//! Which schema a database is at, read from sqlx's `_sqlx_migrations` table, against
//! the migrations this binary carries. [`judge`] is the pure rule: a database migrated
//! by a newer release (an applied migration this binary does not know) is refused
//! before anything is applied, and a database whose applied migration no longer
//! matches this binary's file of the same number (an old migration was edited) is
//! named as such. Backups, restores and every `Db::connect` use it.

use sqlx::Row;

use super::{Backend, DbError};

/// The table sqlx records applied migrations in.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One applied migration as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub checksum: Vec<u8>,
    /// False for a migration that failed half-way (sqlx refuses such a database).
    pub success: bool,
}

/// How a database's applied migrations compare with the ones this binary knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing applied yet: a new database.
    Empty,
    /// Every applied migration is one of ours, unchanged; `at` is the newest applied
    /// (older than `known` when migrations remain to apply).
    Compatible { at: i64, known: i64 },
    /// Migrated by a newer release: `at` is beyond the newest this binary knows.
    Newer { at: i64, known: i64 },
    /// Migration `version` was applied from other SQL than this binary's file of that
    /// number (or a number this binary lacks below its newest).
    Modified { version: i64 },
}

/// Compares `applied` (any order) with `known` (this binary's migrations: version and
/// checksum).
pub fn judge<K: AsRef<[u8]>>(applied: &[Applied], known: &[(i64, K)]) -> Verdict {
    let known_max = known.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let Some(at) = applied.iter().map(|a| a.version).max() else { return Verdict::Empty };
    if at > known_max {
        return Verdict::Newer { at, known: known_max };
    }
    let mut sorted: Vec<&Applied> = applied.iter().collect();
    sorted.sort_by_key(|a| a.version);
    for a in sorted {
        match known.iter().find(|(v, _)| *v == a.version) {
            Some((_, sum)) if sum.as_ref() == a.checksum.as_slice() => {}
            _ => return Verdict::Modified { version: a.version },
        }
    }
    Verdict::Compatible { at, known: known_max }
}

/// This binary's migrations for `backend`: version and checksum.
pub fn known(backend: Backend) -> Vec<(i64, &'static [u8])> {
    super::migrator(backend).iter().map(|m| (m.version, &*m.checksum)).collect()
}

/// The newest migration this binary knows for `backend`.
pub fn known_max(backend: Backend) -> i64 {
    super::migrator(backend).iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations applied to the database behind `conn` (none when the table does not
/// exist yet). Failed (dirty) ones are included: sqlx refuses those itself.
pub async fn applied(pool: &sqlx::AnyPool, backend: Backend) -> Result<Vec<Applied>, DbError> {
    let exists_sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let n: i64 = sqlx::query(exists_sql).fetch_one(pool).await?.try_get("n")?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, checksum, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) AS ok \
         FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Applied {
                version: r.try_get("version")?,
                checksum: r.try_get("checksum")?,
                success: r.try_get::<i64, _>("ok")? == 1,
            })
        })
        .collect()
}

/// The refusal of a database migrated by a newer release: what happened and what to do.
pub fn newer_error(at: i64, known: i64) -> DbError {
    DbError::SchemaNewer { at, known, release: env!("CARGO_PKG_VERSION") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(version: i64, checksum: &[u8]) -> Applied {
        Applied { version, checksum: checksum.to_vec(), success: true }
    }

    const KNOWN: &[(i64, &[u8])] = &[(1, b"one"), (2, b"two"), (13, b"thirteen")];

    #[test]
    fn a_new_database_is_empty() {
        assert_eq!(judge(&[], KNOWN), Verdict::Empty);
    }

    #[test]
    fn an_older_or_current_database_is_compatible() {
        assert_eq!(judge(&[a(1, b"one")], KNOWN), Verdict::Compatible { at: 1, known: 13 });
        let all = [a(13, b"thirteen"), a(1, b"one"), a(2, b"two")];
        assert_eq!(judge(&all, KNOWN), Verdict::Compatible { at: 13, known: 13 });
    }

    #[test]
    fn a_database_from_a_newer_release_is_newer_even_if_the_rest_matches() {
        let applied = [a(1, b"one"), a(2, b"two"), a(13, b"thirteen"), a(15, b"fifteen")];
        assert_eq!(judge(&applied, KNOWN), Verdict::Newer { at: 15, known: 13 });
    }

    #[test]
    fn an_edited_or_unknown_old_migration_is_modified() {
        assert_eq!(judge(&[a(1, b"one"), a(2, b"TWO")], KNOWN), Verdict::Modified { version: 2 });
        assert_eq!(judge(&[a(1, b"one"), a(7, b"x")], KNOWN), Verdict::Modified { version: 7 });
    }

    /// On both backends: the newest migration unapplied and a future one applied, as
    /// after a newer release's upgrade. Without the check sqlx would fail with its own
    /// "previously applied but is missing" instead of saying what to do.
    #[tokio::test]
    async fn a_database_from_a_newer_release_is_refused_before_anything_is_applied() {
        use crate::db::Db;
        for tdb in crate::testing::test_databases().await {
            let db = Db::connect(&tdb.url).await.unwrap();
            let newest = known_max(db.backend());
            db.q("DELETE FROM _sqlx_migrations WHERE version = $1")
                .bind(newest)
                .execute(db.pool())
                .await
                .unwrap();
            db.q("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES ($1, 'from a newer release', TRUE, $2, 1)")
                .bind(newest + 2)
                .bind(vec![0u8; 48])
                .execute(db.pool())
                .await
                .unwrap();
            db.close().await;
            let err = Db::connect(&tdb.url).await.unwrap_err();
            assert!(
                matches!(err, DbError::SchemaNewer { at, known, .. } if at == newest + 2 && known == newest),
                "{}: {err:?}",
                tdb.label
            );
            let db = Db::open_unmigrated(&tdb.url).await.unwrap();
            let applied = applied(db.pool(), db.backend()).await.unwrap();
            assert!(!applied.iter().any(|a| a.version == newest), "{}: applied", tdb.label);
            db.close().await;
            tdb.drop().await;
        }
    }

    #[test]
    fn the_refusal_says_what_happened_and_what_to_do() {
        let msg = newer_error(15, 13).to_string();
        assert!(msg.contains("migration 15"), "{msg}");
        assert!(msg.contains("up to 13"), "{msg}");
        assert!(msg.contains(env!("CARGO_PKG_VERSION")), "{msg}");
        assert!(msg.contains("restore a backup"), "{msg}");
    }
}
