//! Backup and restore of a SQLite inventory (`bramble db backup|restore`; see
//! docs/backups.md). PostgreSQL inventories are backed up with its own tools.
//!
//! A backup is `VACUUM INTO` a temporary file beside the destination: one read
//! transaction, so it is a consistent copy while a controller serves and writes, and it
//! needs no lock a controller holds. The copy is checked (SQLite's integrity check, the
//! same schema as the source) before it is renamed to its name.
//!
//! A restore holds the controller lock ([`SqliteLock`]) and refuses while any
//! controller of the inventory still looks alive, checks a copy of the backup beside the
//! database (integrity, a schema this binary knows), keeps the current database as
//! `<db>.before-restore-<UTC time>`, renames the copy over the database (atomic) and
//! removes the old database's `-wal`/`-shm`, which must never meet the new file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use super::schema::{self, Verdict};
use super::{Backend, Db, DbError};
use crate::cluster::{ClusterError, SqliteLock};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the inventory is on PostgreSQL: back it up with `pg_dump -Fc` and restore it with \
         `pg_restore` (or `psql` for a plain dump), as docs/backups.md describes"
    )]
    Postgres,
    #[error("there is no SQLite inventory at {0}")]
    NoDatabase(PathBuf),
    #[error("there is no backup file {0}")]
    NoBackup(PathBuf),
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("{path} is not a Bramble inventory (no migrations were ever applied to it)")]
    NotAnInventory { path: PathBuf },
    #[error("{path} fails SQLite's integrity check: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the copy is at schema migration {copy} but the inventory was at {source_at}")]
    SchemaDiffers { copy: i64, source_at: i64 },
    #[error("the backup {path} cannot be restored by this bramble")]
    Newer {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error(
        "the backup {path} has migration {version} applied from other SQL than this bramble's \
         (made by a build with an edited migration); it cannot be restored by this bramble"
    )]
    Modified { path: PathBuf, version: i64 },
    #[error("a controller is serving {0}: stop it (`systemctl stop bramble`) before restoring")]
    Serving(PathBuf, #[source] ClusterError),
    #[error(
        "controller {name:?} of this inventory beat {seconds}s ago and has not stopped: stop it \
         before restoring (a killed controller counts as alive for one lease, {lease_seconds}s)"
    )]
    Alive { name: String, seconds: i64, lease_seconds: u64 },
    #[error("the inventory {0} is still busy after a checkpoint; is another process using it?")]
    Busy(PathBuf),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(ClusterError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Db(DbError::Query(e))
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// What a checked database file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The newest applied migration.
    pub schema: i64,
    pub pis: i64,
    pub jobs: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} bytes, schema migration {}, {} Pis, {} jobs",
            self.path.display(),
            self.size_bytes,
            self.schema,
            self.pis,
            self.jobs
        )
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub database: Summary,
    /// Where the database it replaced was kept (none when there was none).
    pub kept: Option<PathBuf>,
    /// The replaced database's `-wal`/`-shm` files that were removed.
    pub removed: Vec<PathBuf>,
}

/// The SQLite file of the configured database URL, or why there is none to back up.
pub fn sqlite_file(database_url: &str) -> Result<PathBuf, BackupError> {
    if !database_url.starts_with("sqlite:") {
        return Err(BackupError::Postgres);
    }
    super::sqlite_path(database_url).ok_or_else(|| BackupError::NoDatabase(":memory:".into()))
}

/// A `sqlite://` URL for `path` (sqlx percent-decodes the path, so `%`, `?` and `#` in
/// a file name are encoded).
fn url(path: &Path, mode: &str) -> String {
    let mut encoded = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode={mode}")
}

/// A one-connection pool on `path` with no connection settings (no WAL switch: the
/// file stays as it is).
async fn open_plain(path: &Path) -> Result<sqlx::AnyPool, BackupError> {
    sqlx::any::install_default_drivers();
    let url = url(path, "rw");
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .map_err(|source| DbError::Open { url, source }.into())
}

/// Copies the inventory at `db` into `dest` while it may be serving. Refuses an existing
/// `dest` unless `force`.
pub async fn backup(db: &Path, dest: &Path, force: bool) -> Result<Summary, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if dest.exists() && !force {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let tmp = beside(dest, &format!(".tmp-{}", std::process::id()));
    remove_if_present(&tmp)?;
    let source = open_plain(db).await?;
    let copied = async {
        let source_at = newest(&schema::applied(&source, Backend::Sqlite).await?)
            .ok_or_else(|| BackupError::NotAnInventory { path: db.to_path_buf() })?;
        sqlx::query("VACUUM INTO ?1").bind(tmp.display().to_string()).execute(&source).await?;
        Ok::<_, BackupError>(source_at)
    }
    .await;
    source.close().await;
    let source_at = removing_on_error(copied, &tmp)?;
    let checked = async {
        // It holds switch credentials and token hashes: for its owner only.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict", &tmp))?;
        sync_file(&tmp)?;
        let summary = inspect(&tmp).await?;
        if summary.schema != source_at {
            return Err(BackupError::SchemaDiffers { copy: summary.schema, source_at });
        }
        Ok(summary)
    }
    .await;
    let summary = removing_on_error(checked, &tmp)?;
    std::fs::rename(&tmp, dest).map_err(io("rename the backup to", dest))?;
    sync_dir(dest)?;
    tracing::info!(database = %db.display(), backup = %dest.display(), schema = summary.schema, "backed up the inventory");
    Ok(Summary { path: dest.to_path_buf(), ..summary })
}

/// Checks a database file: SQLite's integrity check, its applied migrations and its
/// counts. Opens it without changing its journal mode.
pub async fn inspect(path: &Path) -> Result<Summary, BackupError> {
    let size_bytes = std::fs::metadata(path).map_err(io("read", path))?.len();
    let pool = open_plain(path).await?;
    let result = async {
        let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&pool).await?;
        let lines: Vec<String> =
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
        if lines != ["ok"] {
            return Err(BackupError::Corrupt {
                path: path.to_path_buf(),
                detail: lines.join("; "),
            });
        }
        let schema = newest(&schema::applied(&pool, Backend::Sqlite).await?)
            .ok_or_else(|| BackupError::NotAnInventory { path: path.to_path_buf() })?;
        let count = |table: &'static str| {
            let pool = pool.clone();
            async move {
                let sql = format!("SELECT COUNT(*) AS n FROM {table}");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await?;
                row.try_get::<i64, _>("n")
            }
        };
        let (pis, jobs) = (count("pis").await?, count("jobs").await?);
        Ok(Summary { path: path.to_path_buf(), size_bytes, schema, pis, jobs })
    }
    .await;
    pool.close().await;
    result
}

/// Restores `backup` into the inventory at `db`, which no controller may be serving
/// (`lease`: how long a controller's last heartbeat keeps it alive).
pub async fn restore(db: &Path, backup: &Path, lease: Duration) -> Result<Restored, BackupError> {
    if !backup.is_file() {
        return Err(BackupError::NoBackup(backup.to_path_buf()));
    }
    let _lock = match SqliteLock::acquire(&url(db, "rw")) {
        Ok(lock) => lock,
        Err(e @ ClusterError::SqliteInUse { .. }) => {
            return Err(BackupError::Serving(db.to_path_buf(), e));
        }
        Err(e) => return Err(BackupError::Lock(e)),
    };
    if db.is_file() {
        quiesce(db, lease).await?;
    }
    let tmp = beside(db, &format!(".restore-{}", std::process::id()));
    std::fs::copy(backup, &tmp).map_err(io("copy the backup to", &tmp))?;
    let checked = async {
        if db.is_file() {
            same_owner_and_mode(&tmp, db)?;
        }
        sync_file(&tmp)?;
        let summary = inspect(&tmp).await?;
        let pool = open_plain(&tmp).await?;
        let applied = schema::applied(&pool, Backend::Sqlite).await;
        pool.close().await;
        match schema::judge(&applied?, &schema::known(Backend::Sqlite)) {
            Verdict::Compatible { .. } => Ok(summary),
            Verdict::Empty => Err(BackupError::NotAnInventory { path: backup.to_path_buf() }),
            Verdict::Newer { at, known } => Err(BackupError::Newer {
                path: backup.to_path_buf(),
                source: schema::newer_error(at, known),
            }),
            Verdict::Modified { version } => {
                Err(BackupError::Modified { path: backup.to_path_buf(), version })
            }
        }
    }
    .await;
    let summary = removing_on_error(checked, &tmp)?;
    let kept = if db.is_file() {
        let stamp: String = crate::time::rfc3339(crate::time::now_millis())
            .chars()
            .filter(|c| *c != ':' && *c != '-')
            .collect();
        let kept = beside(db, &format!(".before-restore-{stamp}"));
        std::fs::hard_link(db, &kept).map_err(io("keep the current database as", &kept))?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(&tmp, db).map_err(io("rename the restored copy to", db))?;
    sync_dir(db)?;
    let mut removed = Vec::new();
    for suffix in ["-wal", "-shm"] {
        let stale = beside(db, suffix);
        if remove_if_present(&stale)? {
            removed.push(stale);
        }
    }
    tracing::info!(database = %db.display(), backup = %backup.display(), schema = summary.schema, "restored the inventory");
    Ok(Restored { database: Summary { path: db.to_path_buf(), ..summary }, kept, removed })
}

/// Refuses while a controller of the inventory at `db` is alive, then checkpoints its
/// WAL into the file, so the file kept before a restore holds every commit.
async fn quiesce(db: &Path, lease: Duration) -> Result<(), BackupError> {
    let current = Db::open_unmigrated(&url(db, "rw")).await?;
    let result = async {
        let has_controllers = sqlx::query(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'controllers'",
        )
        .fetch_one(current.pool())
        .await?
        .try_get::<i64, _>("n")?
            > 0;
        if has_controllers {
            let (controllers, now) = current.list_controllers().await?;
            if let Some(c) = controllers.iter().find(|c| c.alive(now, lease)) {
                return Err(BackupError::Alive {
                    name: c.name.clone(),
                    seconds: (now - c.heartbeat_at) / 1000,
                    lease_seconds: lease.as_secs(),
                });
            }
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(current.pool()).await?;
        if row.try_get::<i64, _>(0)? != 0 {
            return Err(BackupError::Busy(db.to_path_buf()));
        }
        Ok(())
    }
    .await;
    current.close().await;
    result
}

/// `result`, with the temporary file `tmp` removed if it is an error.
fn removing_on_error<T>(result: Result<T, BackupError>, tmp: &Path) -> Result<T, BackupError> {
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn newest(applied: &[schema::Applied]) -> Option<i64> {
    applied.iter().map(|a| a.version).max()
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Gives `path` the owner and mode of `like` (a restore run as root leaves the database
/// to the service's user, as it was).
fn same_owner_and_mode(path: &Path, like: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::MetadataExt;
    let want = std::fs::metadata(like).map_err(io("read", like))?;
    let have = std::fs::metadata(path).map_err(io("read", path))?;
    if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
        std::os::unix::fs::chown(path, Some(want.uid()), Some(want.gid()))
            .map_err(io("give the restored copy the database's owner:", path))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(want.mode() & 0o7777))
        .map_err(io("give the restored copy the database's mode:", path))
}

fn remove_if_present(path: &Path) -> Result<bool, BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("remove", path)(e)),
    }
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).map_err(io("open", path))?;
    f.flush().and_then(|_| f.sync_all()).map_err(io("sync", path))
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), BackupError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    async fn inventory(dir: &Path) -> (PathBuf, Db) {
        let path = dir.join("bramble.db");
        let db = Db::connect(&url(&path, "rwc")).await.unwrap();
        (path, db)
    }

    async fn token_labels(path: &Path) -> Vec<String> {
        let pool = open_plain(path).await.unwrap();
        let rows = sqlx::query("SELECT label FROM tokens ORDER BY label").fetch_all(&pool).await;
        pool.close().await;
        rows.unwrap().iter().map(|r| r.try_get::<String, _>("label").unwrap()).collect()
    }

    /// A backup taken while another connection keeps committing is a checked,
    /// consistent copy; an existing file is refused without `force`.
    #[tokio::test]
    async fn a_backup_of_a_busy_inventory_is_a_checked_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = inventory(dir.path()).await;
        db.create_token("s0", Role::Operator, None, "before").await.unwrap();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    db.create_token(&format!("w{i}"), Role::Operator, None, &format!("w{i:03}"))
                        .await
                        .unwrap();
                }
            })
        };
        let dest = dir.path().join("backup.db");
        let saved = backup(&path, &dest, false).await.unwrap();
        assert_eq!(saved.path, dest);
        assert_eq!(saved.schema, schema::known_max(Backend::Sqlite));
        assert_eq!(saved.size_bytes, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        writer.await.unwrap();
        // Consistent: a prefix of the writer's tokens, in order, none torn.
        let labels = token_labels(&dest).await;
        assert_eq!(labels[0], "before");
        for (i, l) in labels[1..].iter().enumerate() {
            assert_eq!(l, &format!("w{i:03}"));
        }
        let err = backup(&path, &dest, false).await.unwrap_err();
        assert!(matches!(err, BackupError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        backup(&path, &dest, true).await.unwrap();
        assert_eq!(token_labels(&dest).await.len(), 201);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        db.close().await;
    }

    #[tokio::test]
    async fn a_restore_waits_for_no_controller_and_keeps_the_database_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = inventory(dir.path()).await;
        db.create_token("s1", Role::Operator, None, "in-backup").await.unwrap();
        let saved = dir.path().join("saved.db");
        backup(&path, &saved, false).await.unwrap();
        db.create_token("s2", Role::Operator, None, "after-backup").await.unwrap();
        let lease = Duration::from_secs(10);

        // A serving controller holds the lock.
        let lock = SqliteLock::acquire(&url(&path, "rw")).unwrap();
        let err = restore(&path, &saved, lease).await.unwrap_err();
        assert!(matches!(err, BackupError::Serving(..)), "{err}");
        drop(lock);
        // A controller that still beats (killed moments ago, or on another host).
        assert!(db.register_controller("c1", "i1", "http://x", lease, true).await.unwrap());
        let err = restore(&path, &saved, lease).await.unwrap_err();
        assert!(matches!(err, BackupError::Alive { .. }), "{err}");
        assert!(err.to_string().contains("\"c1\""), "{err}");
        db.controller_stopped("c1", "i1").await.unwrap();
        assert_eq!(token_labels(&path).await, ["after-backup", "in-backup"]);

        // The pool's idle connections keep the WAL and its index beside the file, as a
        // controller's did: the restore must remove them.
        assert!(beside(&path, "-wal").exists() && beside(&path, "-shm").exists());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let done = restore(&path, &saved, lease).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(done.removed, [beside(&path, "-wal"), beside(&path, "-shm")]);
        db.close().await;
        assert_eq!(done.database.path, path);
        assert_eq!(token_labels(&path).await, ["in-backup"]);
        let kept = done.kept.expect("the replaced database is kept");
        let kept_name = kept.file_name().unwrap().to_string_lossy().into_owned();
        assert!(kept_name.starts_with("bramble.db.before-restore-"), "{kept_name}");
        assert_eq!(token_labels(&kept).await, ["after-backup", "in-backup"]);
        // The restored inventory opens and migrates as usual.
        Db::connect(&url(&path, "rw")).await.unwrap().close().await;
    }

    #[tokio::test]
    async fn a_restore_refuses_a_backup_it_cannot_serve() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = inventory(dir.path()).await;
        db.create_token("s1", Role::Operator, None, "current").await.unwrap();
        db.close().await;
        let newer = dir.path().join("newer.db");
        backup(&path, &newer, false).await.unwrap();
        let pool = open_plain(&newer).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'from the future', TRUE, X'00', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let err = restore(&path, &newer, Duration::from_secs(1)).await.unwrap_err();
        let msg = bramble_report::chain(&err);
        assert!(msg.contains("at migration 99"), "{msg}");
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        assert!(restore(&path, &garbage, Duration::from_secs(1)).await.is_err());
        // Nothing was touched.
        assert_eq!(token_labels(&path).await, ["current"]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("before-restore") || n.contains(".restore-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_postgres_inventory_is_pointed_at_pg_dump() {
        let err = sqlite_file("postgres://u:p@h/db").unwrap_err();
        assert!(err.to_string().contains("pg_dump"), "{err}");
        assert_eq!(sqlite_file("sqlite:///v/b.db?mode=rwc").unwrap(), Path::new("/v/b.db"));
    }
}
