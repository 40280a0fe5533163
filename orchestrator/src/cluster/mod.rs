//! Many controllers, one inventory. Each controller registers under its name with a
//! heartbeat ([`Membership`]), serves the switches assigned to it, and runs the
//! cluster's singletons (webhook delivery, each switch's reconciler) only while it holds
//! their lease ([`Singleton`]).
//!
//! **Leases are rows, not advisory locks.** A lease row works the same on SQLite and
//! PostgreSQL, is visible to operators (`leases` table), and bounds a partitioned
//! holder: a holder that cannot renew stops acting by its own clock a third of a lease
//! before the row expires, where a session advisory lock would stay held for as long as
//! a half-dead TCP connection lingers. See ARCHITECTURE.md, "The cluster".

pub mod config;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use config::{ClusterConfig, RawCluster};

use crate::db::{Db, DbError};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "another controller is serving the SQLite inventory {path} (it holds {lock}); \
         SQLite serves one controller: use PostgreSQL for several"
    )]
    SqliteInUse { path: PathBuf, lock: PathBuf },
    #[error("cannot lock the SQLite inventory through {lock}")]
    SqliteLock {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "controller name {name:?} is in use by a running controller (it kept beating for {waited:?}); \
         give this one another `[cluster] name` or `--name`"
    )]
    NameInUse { name: String, waited: Duration },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Keeps a second controller off a SQLite inventory: an exclusive lock on
/// `<database>.controller.lock`, released by the kernel when the process dies.
#[derive(Debug)]
pub struct SqliteLock {
    _file: std::fs::File,
}

impl SqliteLock {
    /// Locks the SQLite file of `url`; `None` for an in-memory database.
    pub fn acquire(url: &str) -> Result<Option<SqliteLock>, ClusterError> {
        let Some(path) = crate::db::sqlite_path(url) else { return Ok(None) };
        let lock = lock_path(&path);
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| ClusterError::SqliteLock { lock: lock.clone(), source })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| ClusterError::SqliteLock { lock: lock.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SqliteLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(ClusterError::SqliteInUse { path, lock }),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(ClusterError::SqliteLock { lock, source })
            }
        }
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".controller.lock");
    db.with_file_name(name)
}

/// This controller's registration. Dropping it does not deregister: call
/// [`Membership::stop`] on a clean stop.
#[derive(Debug, Clone)]
pub struct Membership {
    db: Db,
    cfg: ClusterConfig,
    instance: String,
}

impl Membership {
    /// Registers under the configured name. A previous run of this controller that was
    /// killed still looks alive until its heartbeat is a lease old, so a live-looking
    /// holder of the name is waited for, for up to one lease and a heartbeat, before the
    /// start is refused. `exclusive`: the caller holds the SQLite lock, so no other
    /// instance can be running and the name is taken at once.
    pub async fn join(
        db: &Db,
        cfg: &ClusterConfig,
        exclusive: bool,
    ) -> Result<Membership, ClusterError> {
        let instance = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let start = Instant::now();
        let patience = cfg.lease + cfg.heartbeat;
        let mut told = false;
        loop {
            if db
                .register_controller(&cfg.name, &instance, &cfg.advertise, cfg.lease, exclusive)
                .await?
            {
                tracing::info!(controller = %cfg.name, address = %cfg.advertise, "joined the cluster");
                return Ok(Membership { db: db.clone(), cfg: cfg.clone(), instance });
            }
            if start.elapsed() >= patience {
                return Err(ClusterError::NameInUse {
                    name: cfg.name.clone(),
                    waited: start.elapsed(),
                });
            }
            if !told {
                told = true;
                tracing::warn!(controller = %cfg.name, "the name is held by a controller that still beats; waiting up to one lease for it to go");
            }
            tokio::time::sleep(cfg.heartbeat).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Beats every heartbeat until `shutdown`. Returns early, with `Lost`, if another
    /// instance took the name (this one was presumed dead): the controller must stop.
    pub async fn beat(&self, shutdown: impl Future<Output = ()>) -> BeatEnd {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return BeatEnd::Shutdown,
                _ = tick.tick() => {}
            }
            match self.db.controller_heartbeat(&self.cfg.name, &self.instance).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(controller = %self.cfg.name, "another instance took this controller's name: stopping");
                    return BeatEnd::Lost;
                }
                Err(e) => {
                    tracing::warn!(controller = %self.cfg.name, error = %bramble_report::chain(&e), "heartbeat failed")
                }
            }
        }
    }

    /// Records a clean stop: the controller is no longer alive and its name is free.
    pub async fn stop(&self) {
        if let Err(e) = self.db.controller_stopped(&self.cfg.name, &self.instance).await {
            tracing::warn!(controller = %self.cfg.name, error = %bramble_report::chain(&e), "cannot record the stop");
        }
    }
}

/// How [`Membership::beat`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatEnd {
    Shutdown,
    Lost,
}

/// A singleton: a task that runs on exactly one controller at a time, while that
/// controller holds the lease of the same name.
#[derive(Debug, Clone)]
pub struct Singleton {
    db: Db,
    name: String,
    holder: String,
    lease: Duration,
    held: Arc<watch::Sender<bool>>,
}

/// The states of one controller's claim on a singleton, as [`Singleton::run`] moves
/// through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Asking for the lease every renewal period.
    Seeking,
    /// Holding it: the task runs; renewed every third of a lease.
    Holding { renewed: Instant },
}

impl Singleton {
    pub fn new(db: Db, name: &str, holder: &str, lease: Duration) -> Singleton {
        Singleton {
            db,
            name: name.to_string(),
            holder: holder.to_string(),
            lease,
            held: Arc::new(watch::channel(false).0),
        }
    }

    /// Whether this controller holds the lease now (as far as it knows).
    pub fn held(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    /// Runs `task` whenever this controller holds the lease, until `shutdown`. The
    /// task's own stop future resolves when the lease is lost (or at shutdown); a lease
    /// counts as lost a third of a lease before it expires in the database unless it was
    /// renewed, so the next holder never starts while this one may still act.
    pub async fn run<F, Fut>(self, task: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let renew_every = self.lease / 3;
        let mut claim = Claim::Seeking;
        loop {
            match claim {
                Claim::Seeking => {
                    let asked = Instant::now();
                    if self.try_acquire().await {
                        tracing::info!(lease = %self.name, holder = %self.holder, "lease taken");
                        claim = Claim::Holding { renewed: asked };
                        continue;
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(renew_every) => {}
                    }
                }
                Claim::Holding { renewed } => {
                    self.held.send_replace(true);
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let lost = self.keep(renewed, renew_every);
                    let work = task(stop_rx);
                    tokio::pin!(work, lost);
                    let mut shutting_down = false;
                    tokio::select! {
                        _ = &mut shutdown => shutting_down = true,
                        _ = &mut lost => {}
                        _ = &mut work => {}
                    }
                    self.held.send_replace(false);
                    let _ = stop_tx.send(true);
                    // The task stops on its own signal; it is given a quarter of the
                    // remaining margin, well before the row expires, then dropped.
                    let _ = tokio::time::timeout(renew_every / 4, &mut work).await;
                    if shutting_down {
                        if let Err(e) = self.db.release_lease(&self.name, &self.holder).await {
                            tracing::warn!(lease = %self.name, error = %bramble_report::chain(&e), "cannot release the lease");
                        }
                        tracing::info!(lease = %self.name, "lease released");
                        return;
                    }
                    tracing::warn!(lease = %self.name, holder = %self.holder, "lease lost");
                    claim = Claim::Seeking;
                }
            }
        }
    }

    /// Renews the lease every `renew_every`; returns when it is (or may be) lost.
    async fn keep(&self, mut renewed: Instant, renew_every: Duration) {
        // Acting stops a third of a lease before the row's expiry (see `run`).
        let margin = self.lease - renew_every;
        loop {
            let deadline = renewed + margin;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep(renew_every.min(deadline.saturating_duration_since(Instant::now()))) => {}
            }
            let asked = Instant::now();
            match self.db.acquire_lease(&self.name, &self.holder, self.lease).await {
                Ok(Some(_)) => renewed = asked,
                // Someone else holds it: lost now.
                Ok(None) => return,
                // The database did not answer: keep trying until the deadline.
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %bramble_report::chain(&e), "lease renewal failed")
                }
            }
        }
    }

    async fn try_acquire(&self) -> bool {
        match self.db.acquire_lease(&self.name, &self.holder, self.lease).await {
            Ok(term) => term.is_some(),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %bramble_report::chain(&e), "lease request failed");
                false
            }
        }
    }
}

/// Resolves when `rx` turns true (a singleton task's stop signal).
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_controller_on_one_sqlite_file_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("state/b.db").display());
        let first = SqliteLock::acquire(&url).unwrap().expect("a file database is locked");
        let err = SqliteLock::acquire(&url).unwrap_err();
        assert!(matches!(err, ClusterError::SqliteInUse { .. }), "{err:?}");
        assert!(err.to_string().contains("use PostgreSQL for several"), "{err}");
        drop(first);
        assert!(SqliteLock::acquire(&url).unwrap().is_some(), "the lock goes with its holder");
        assert!(SqliteLock::acquire("sqlite::memory:").unwrap().is_none());
    }

    /// Two controllers contend for one singleton: exactly one runs it at any time, and
    /// the other takes over within a lease once the holder stops renewing.
    #[tokio::test]
    async fn a_singleton_runs_on_one_controller_and_moves_when_its_holder_dies() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for tdb in crate::testing::test_databases().await {
            let db = Db::connect(&tdb.url).await.unwrap();
            let lease = Duration::from_millis(600);
            let running = Arc::new(AtomicUsize::new(0));
            let overlap = Arc::new(AtomicUsize::new(0));
            let ran_on = Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
            let start = |name: &'static str| {
                let (stop_tx, stop_rx) = watch::channel(false);
                let s = Singleton::new(db.clone(), "t", name, lease);
                let (running, overlap, ran_on) = (running.clone(), overlap.clone(), ran_on.clone());
                let task = move |stop: watch::Receiver<bool>| {
                    let (running, overlap, ran_on) =
                        (running.clone(), overlap.clone(), ran_on.clone());
                    async move {
                        if running.fetch_add(1, Ordering::SeqCst) > 0 {
                            overlap.fetch_add(1, Ordering::SeqCst);
                        }
                        ran_on.lock().unwrap().push(name);
                        stopped(stop).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                };
                let handle = tokio::spawn(s.run(task, stopped(stop_rx)));
                (stop_tx, handle)
            };
            let (_stop_a, a) = start("a");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (stop_b, b) = start("b");
            tokio::time::sleep(lease * 2).await;
            assert_eq!(
                *ran_on.lock().unwrap(),
                vec!["a"],
                "{}: only the first holder runs",
                tdb.label
            );
            // "a" dies without releasing: "b" takes over once the lease expires.
            a.abort();
            let died = Instant::now();
            let _ = a.await;
            running.store(0, Ordering::SeqCst);
            while ran_on.lock().unwrap().len() < 2 {
                assert!(died.elapsed() < lease * 3, "{}: no takeover", tdb.label);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                died.elapsed() >= lease / 3,
                "{}: taken over before the lease could expire",
                tdb.label
            );
            assert_eq!(*ran_on.lock().unwrap(), vec!["a", "b"]);
            assert_eq!(overlap.load(Ordering::SeqCst), 0, "{}: two holders ran at once", tdb.label);
            // A clean stop releases the lease at once.
            let _ = stop_b.send(true);
            b.await.unwrap();
            assert!(db.acquire_lease("t", "c", lease).await.unwrap().is_some(), "released");
            db.close().await;
            tdb.drop().await;
        }
    }
}
