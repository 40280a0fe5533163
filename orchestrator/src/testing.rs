//! Test support shared by this crate's tests and the end-to-end crate: fresh databases
//! on every backend, and a controller with an operator token.
//!
//! PostgreSQL comes from `BRAMBLE_TEST_POSTGRES`, an admin URL such as
//! `postgres://bramble:bramble@127.0.0.1/postgres` (the README's test command sets it
//! up). Each test gets its own database, created here and dropped by [`TestDb::drop`].
//! Without the variable the PostgreSQL half fails loudly, unless it is set to `skip`.

use std::path::PathBuf;

use crate::api::AppState;
use crate::auth::{Role, generate_token};
use crate::config::{Config, Overrides, RawConfig};
use crate::server::Controller;

/// A database that exists for one test.
pub struct TestDb {
    pub label: &'static str,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin: String, name: String },
}

/// One fresh SQLite database and, unless skipped, one fresh PostgreSQL database.
pub async fn test_databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite_db()];
    match std::env::var("BRAMBLE_TEST_POSTGRES") {
        Ok(v) if v == "skip" => {
            eprintln!("BRAMBLE_TEST_POSTGRES=skip: PostgreSQL half of this test SKIPPED")
        }
        Ok(admin) => dbs.push(postgres_db(&admin).await),
        Err(_) => panic!(
            "BRAMBLE_TEST_POSTGRES is not set: run the README's test command, or set it to a PostgreSQL admin URL (or `skip`)"
        ),
    }
    dbs
}

pub fn sqlite_db() -> TestDb {
    let dir = std::env::temp_dir().join(format!("bramble-test-{}", crate::ids::JobId::generate()));
    let url = format!("sqlite://{}?mode=rwc", dir.join("bramble.db").display());
    TestDb { label: "sqlite", url, cleanup: Cleanup::File(dir) }
}

async fn postgres_db(admin: &str) -> TestDb {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("bramble_test_{}", rand::random::<u64>());
    let mut conn = sqlx::AnyConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to BRAMBLE_TEST_POSTGRES: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a database path");
    TestDb {
        label: "postgres",
        url: format!("{base}/{name}"),
        cleanup: Cleanup::Postgres { admin: admin.to_string(), name },
    }
}

impl TestDb {
    /// Removes the database. Call at the end of the test (a panicking test leaves it;
    /// the test command drops leftovers).
    pub async fn drop(self) {
        match self.cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin, name } => {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            }
        }
    }

    /// A configuration using this database, with short job leases for tests.
    pub fn config(&self) -> Config {
        let raw: RawConfig = toml::from_str(
            "[jobs]\nlease_seconds = 2\npoll_interval_ms = 50\n[switches]\nreconcile_seconds = 0\n",
        )
        .expect("test config");
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            database: Some(self.url.clone()),
            state_dir: Some(std::env::temp_dir()),
            name: None,
        };
        Config::from_raw(raw, "test", &o).expect("valid test config")
    }
}

/// A controller on `db` and an operator token for it.
pub async fn controller(db: &TestDb) -> (Controller, String) {
    controller_with(db, db.config()).await
}

/// A controller with `config` (from [`TestDb::config`], adjusted) and an operator token.
pub async fn controller_with(_db: &TestDb, config: Config) -> (Controller, String) {
    let c = Controller::open(config).await.expect("open controller");
    let token = generate_token();
    c.state
        .db
        .create_token(&token, Role::Operator, None, "test operator")
        .await
        .expect("operator token");
    (c, token)
}

/// Just the API state of a fresh controller on `db`.
pub async fn app_state(db: &TestDb) -> (AppState, String) {
    let (c, t) = controller(db).await;
    (c.state, t)
}
