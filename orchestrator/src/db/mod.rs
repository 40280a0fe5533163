//! The inventory database: SQLite (embedded, the default) or PostgreSQL, through one
//! sqlx `Any` pool and versioned migrations per backend.
//!
//! Queries are written once with PostgreSQL's `$N` placeholders; [`Db::q`] rewrites
//! them to SQLite's `?N`. Backend-specific SQL (job claiming) branches on [`Backend`].
//! List and status queries are built by `sql::Sql` from the filters in use, so each
//! statement names only predicates an index can serve.

use std::borrow::Cow;

use bramble_netboot::hw::PiSerial;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

pub mod backup;
pub mod cluster;
pub mod console;
pub mod events;
pub mod fabric;
pub mod gauges;
pub mod hardware;
pub mod images;
pub mod jobs;
pub mod orchestration;
pub mod pis;
pub mod power;
pub mod retention;
pub mod schema;
pub mod snapshots;
pub(crate) mod sql;
pub mod status;
pub mod tokens;

#[cfg(test)]
mod explain_tests;

pub type Query<'a> = sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create state directory {path}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer release; nothing was applied.
    #[error(
        "the inventory's schema is at migration {at} but this bramble {release} knows migrations \
         up to {known}: it was upgraded by a newer release; run that release or restore a backup \
         made before the upgrade (docs/backups.md)"
    )]
    SchemaNewer { at: i64, known: i64, release: &'static str },
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored value in {column} is invalid: {value:?}")]
    Corrupt { column: &'static str, value: String },
    /// A job change the job state machine refuses (a bug: callers only ask for
    /// changes from the state their UPDATE checks).
    #[error("job {job}: refused by the job state machine")]
    JobTransition {
        job: String,
        #[source]
        source: crate::jobs::model::JobTransitionError,
    },
    /// A compare-and-set found another state than the one it was computed from: a
    /// concurrent writer got there first. Nothing was written.
    #[error("{table} {id} is no longer `{expected}`")]
    StateChanged { table: &'static str, id: String, expected: String },
}

impl DbError {
    /// Whether the error is a unique-constraint violation (a lost race or a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Query(e) => e
                .as_database_error()
                .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation)),
            _ => false,
        }
    }
}

/// A handle to the inventory; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations this binary knows for `backend` (`bramble doctor` compares them with
/// the applied ones without running them).
pub fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

impl Db {
    /// Opens (creating a SQLite file and its directory if needed) and migrates. A
    /// database migrated by a newer release is refused before anything is applied.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let db = Db::open_unmigrated(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Opens without migrating (creating a SQLite file and its directory if needed):
    /// for reading a database's state (`bramble db backup`, `restore`) without changing
    /// its schema.
    pub async fn open_unmigrated(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        if backend == Backend::Sqlite {
            create_sqlite_dir(url)?;
        }
        let open = |source| DbError::Open { url: redact_url(url), source };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => prepare_sqlite_connection(conn).await,
                        Backend::Postgres => Ok(()),
                    }
                })
            })
            .connect(url)
            .await
            .map_err(open)?;
        Ok(Db { pool, backend })
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let applied = schema::applied(&self.pool, self.backend).await?;
        if let schema::Verdict::Newer { at, known } =
            schema::judge(&applied, &schema::known(self.backend))
        {
            return Err(schema::newer_error(at, known));
        }
        migrator(self.backend).run(&self.pool).await.map_err(DbError::Migrate)
    }

    /// The migrations applied to this database, compared with this binary's.
    pub async fn schema(&self) -> Result<schema::Verdict, DbError> {
        let applied = schema::applied(&self.pool, self.backend).await?;
        Ok(schema::judge(&applied, &schema::known(self.backend)))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that read first and then writes after
    /// another connection committed fails at once with "database is locked" (the busy
    /// timeout does not apply to that upgrade), which under load turned API writes into
    /// 500s. Waiting for the lock at `BEGIN` goes through the busy timeout instead.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A query from SQL written with `$N` placeholders.
    pub fn q(&self, sql: &'static str) -> Query<'static> {
        sqlx::query(AssertSqlSafe(self.sql(sql)))
    }

    /// The SQL text for this backend.
    pub fn sql(&self, sql: &'static str) -> Cow<'static, str> {
        match self.backend {
            Backend::Postgres => Cow::Borrowed(sql),
            Backend::Sqlite => Cow::Owned(sql.replace('$', "?")),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What every SQLite connection is set to when the pool opens it. WAL lets readers run
/// beside the writer; synchronous=FULL makes every commit durable before it returns,
/// which acknowledged API writes and the DHCP ACK path rely on. FULL is SQLite's usual
/// compile-time default, but a build may differ, so it is set, never assumed.
const SQLITE_PRAGMAS: &[&str] = &["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"];

/// Sets [`SQLITE_PRAGMAS`] on a fresh SQLite connection (the pool does this for each).
pub async fn prepare_sqlite_connection(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in SQLITE_PRAGMAS {
        sqlx::query(*pragma).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The file of a `sqlite:` URL; `None` for an in-memory database or another backend.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//").split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

fn create_sqlite_dir(url: &str) -> Result<(), DbError> {
    let Some(path) = sqlite_path(url) else { return Ok(()) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| DbError::StateDir { path: dir.display().to_string(), source })?;
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

// Row accessors that turn type surprises into errors naming the column.

pub(crate) fn get_str(row: &AnyRow, col: &'static str) -> Result<String, DbError> {
    Ok(row.try_get::<String, _>(col)?)
}

pub(crate) fn get_opt_str(row: &AnyRow, col: &'static str) -> Result<Option<String>, DbError> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

/// A Pi serial column (`col` in the row, `column` in errors), which holds only the
/// canonical 8 lowercase hex digits.
pub(crate) fn get_opt_serial(
    row: &AnyRow,
    col: &'static str,
    column: &'static str,
) -> Result<Option<PiSerial>, DbError> {
    get_opt_str(row, col)?
        .map(|text| {
            PiSerial::parse_canonical(&text).map_err(|_| DbError::Corrupt { column, value: text })
        })
        .transpose()
}

pub(crate) fn get_i64(row: &AnyRow, col: &'static str) -> Result<i64, DbError> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub(crate) fn get_opt_i64(row: &AnyRow, col: &'static str) -> Result<Option<i64>, DbError> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

pub(crate) fn get_u16(row: &AnyRow, col: &'static str) -> Result<u16, DbError> {
    let v = get_i64(row, col)?;
    u16::try_from(v).map_err(|_| DbError::Corrupt { column: col, value: v.to_string() })
}

pub(crate) fn get_json(row: &AnyRow, col: &'static str) -> Result<serde_json::Value, DbError> {
    let s = get_str(row, col)?;
    serde_json::from_str(&s).map_err(|_| DbError::Corrupt { column: col, value: s })
}

/// Which way a list runs through its keys. IDs and event ids grow with creation, so
/// ascending is oldest first; a cursor continues the list in the same direction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// A page of a list: items and the cursor for the next page, if any.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in the list's order.
    pub fn from_rows(mut items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(conn: &mut sqlx::AnyConnection) -> i64 {
        let row = sqlx::query("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    }

    /// FULL (2) is SQLite's usual compile-time default, so reading 2 back proves nothing by
    /// itself: a connection set to OFF first stands in for a build whose default differs.
    #[tokio::test]
    async fn every_sqlite_connection_commits_with_synchronous_full() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
        let db = Db::connect(&url).await.unwrap();
        let mut other_default = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA synchronous=OFF").execute(&mut other_default).await.unwrap();
        prepare_sqlite_connection(&mut other_default).await.unwrap();
        assert_eq!(synchronous(&mut other_default).await, 2, "a fresh connection is not FULL");
        // Several pooled connections at once, so each is a different one.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.pool().acquire().await.unwrap());
        }
        for conn in &mut held {
            assert_eq!(synchronous(&mut *conn).await, 2, "a pooled connection is not FULL");
            let mode = sqlx::query("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
            assert_eq!(mode.try_get::<String, _>(0).unwrap(), "wal");
        }
        drop(held);
        db.close().await;
    }

    /// A transaction that reads, then writes after another connection committed: with a
    /// deferred `BEGIN` SQLite refuses the write at once ("database is locked"); a
    /// `begin_write` transaction holds the write lock from the start and the other
    /// writer waits for it instead.
    #[tokio::test]
    async fn a_write_transaction_that_reads_first_is_not_refused_by_a_concurrent_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let db = Db::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a', 0)").execute(db.pool()).await.unwrap();
        let mut tx = db.begin_write().await.unwrap();
        sqlx::query("SELECT n FROM t WHERE k = 'a'").fetch_one(&mut *tx).await.unwrap();
        let other = {
            let pool = db.pool().clone();
            tokio::spawn(async move {
                sqlx::query("INSERT INTO t VALUES ('b', 1)").execute(&pool).await.map(|_| ())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        sqlx::query("UPDATE t SET n = 5 WHERE k = 'a'").execute(&mut *tx).await.expect("write");
        tx.commit().await.unwrap();
        other.await.unwrap().expect("the other writer waited and committed");
        db.close().await;
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://bob:secret@db/x"), "postgres://bob:***@db/x");
        assert_eq!(redact_url("sqlite:///var/lib/b.db"), "sqlite:///var/lib/b.db");
    }
}
