//! Keeps this controller's NFS exports in step with the Pis it serves. A switch moved
//! here (`PATCH /v1/switches/{id}`) brings Pis whose roots were exported by another
//! controller: their roots are exported again from this controller's image store, if
//! they are there (a shared store, or a copy made by the operator). A Pi whose root is
//! not here is reported, and needs a reinstall. Exports for Pis that moved away are
//! withdrawn, so the old controller no longer serves a root it does not own.
//!
//! A Pi in rescue has two exports to its `/32`, its own root and its rescue root
//! (while the rescue root exists, with its marker); both are kept, and both are withdrawn
//! when the Pi moves away. A rescue export whose rescue root is gone is withdrawn too.
//!
//! Runs on a timer in every controller; each pass reads the inventory afresh, and
//! adding an export that exists, or removing one that is gone, changes nothing.

use std::collections::HashSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bramble_images::nfs::{Export, NfsExporter};
use bramble_images::provision::read_marker;

use crate::bootplan::BootPlanner;
use crate::db::{Db, DbError, get_str};
use crate::ids::PiId;

#[derive(Debug, thiserror::Error)]
pub enum ExportSyncError {
    #[error("cannot read the served Pis")]
    Db(#[from] DbError),
    #[error("the NFS exporter failed: {0}")]
    Exporter(String),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSyncReport {
    /// Pis whose roots were exported by this pass.
    pub added: Vec<PiId>,
    /// Exports withdrawn: their Pi is served by another controller now, or the rescue
    /// root they export is gone.
    pub withdrawn: Vec<Ipv4Addr>,
    /// Served Pis with an image whose root is not in this controller's store.
    pub missing_roots: Vec<PiId>,
}

pub struct ExportSync {
    db: Db,
    controller: String,
    exporter: Arc<dyn NfsExporter>,
    boot: Arc<BootPlanner>,
}

/// Deployed Pis in slots of switches served by `$1`, with their storage addresses.
const SERVED: &str = "SELECT p.id, s.controller_ip, s.pi_ip FROM pis p JOIN slots s ON s.id = p.slot_id \
    JOIN switches sw ON sw.id = s.switch_id WHERE sw.controller = $1 AND p.image IS NOT NULL";
/// Storage addresses of slots served by other controllers.
const ELSEWHERE: &str = "SELECT s.pi_ip FROM slots s JOIN switches sw ON sw.id = s.switch_id \
    WHERE sw.controller <> $1";

impl ExportSync {
    pub fn new(
        db: Db,
        controller: &str,
        exporter: Arc<dyn NfsExporter>,
        boot: Arc<BootPlanner>,
    ) -> ExportSync {
        ExportSync { db, controller: controller.to_string(), exporter, boot }
    }

    /// A pass now, then every `every`, until `shutdown`.
    pub async fn run(self, every: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported: HashSet<PiId> = HashSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            match self.sync_once().await {
                Ok(report) => {
                    for pi in &report.added {
                        tracing::info!(pi = %pi, controller = %self.controller, "root exported for a Pi this controller now serves");
                    }
                    for client in &report.withdrawn {
                        tracing::info!(client = %client, "export withdrawn: its Pi is served by another controller");
                    }
                    for pi in report.missing_roots.iter().filter(|p| !reported.contains(*p)) {
                        tracing::warn!(pi = %pi, controller = %self.controller, "a served Pi's root is not in this controller's image store: share the store or reinstall the Pi");
                    }
                    reported = report.missing_roots.into_iter().collect();
                }
                Err(e) => tracing::warn!(error = %bramble_report::chain(&e), "export sync failed"),
            }
        }
    }

    pub async fn sync_once(&self) -> Result<ExportSyncReport, ExportSyncError> {
        let mut report = ExportSyncReport::default();
        let served = self
            .db
            .q(SERVED)
            .bind(self.controller.clone())
            .fetch_all(self.db.pool())
            .await
            .map_err(DbError::from)?;
        let mut wanted: Vec<(PiId, Export)> = Vec::new();
        for row in &served {
            let pi = PiId(get_str(row, "id")?);
            let (Some(controller_ip), Some(pi_ip)) =
                (parse_ip(&get_str(row, "controller_ip")?), parse_ip(&get_str(row, "pi_ip")?))
            else {
                continue;
            };
            let Ok(plan) = self.boot.own(controller_ip, pi_ip, &pi) else { continue };
            // A Pi in rescue has its rescue root exported beside its own.
            if let Ok(rescue) = self.boot.rescue(controller_ip, pi_ip, &pi)
                && read_marker(&rescue.root).is_some()
            {
                wanted.push((pi.clone(), rescue.export));
            }
            if plan.root.is_dir() {
                wanted.push((pi, plan.export));
            } else {
                report.missing_roots.push(pi);
            }
        }
        let elsewhere: HashSet<Ipv4Addr> = self
            .db
            .q(ELSEWHERE)
            .bind(self.controller.clone())
            .fetch_all(self.db.pool())
            .await
            .map_err(DbError::from)?
            .iter()
            .filter_map(|r| get_str(r, "pi_ip").ok().and_then(|ip| parse_ip(&ip)))
            .collect();
        let exporter = self.exporter.clone();
        let (added, withdrawn) = tokio::task::spawn_blocking(move || {
            let current = exporter.list().map_err(|e| bramble_report::chain(&e))?;
            let mut added = Vec::new();
            for (pi, export) in wanted {
                if !current.iter().any(|c| c.client == export.client && c.path == export.path) {
                    exporter.add(&export).map_err(|e| bramble_report::chain(&e))?;
                    added.push(pi);
                }
            }
            let mut withdrawn = Vec::new();
            // Moved away, or a rescue root that is gone (an unrescue racing this pass).
            let stale = |c: &&Export| {
                elsewhere.contains(&c.client) || (c.is_rescue() && read_marker(&c.path).is_none())
            };
            for export in current.iter().filter(stale) {
                exporter.remove(export).map_err(|e| bramble_report::chain(&e))?;
                withdrawn.push(export.client);
            }
            Ok::<_, String>((added, withdrawn))
        })
        .await
        .map_err(|e| ExportSyncError::Exporter(e.to_string()))?
        .map_err(ExportSyncError::Exporter)?;
        report.added = added;
        report.withdrawn = withdrawn;
        Ok(report)
    }
}

fn parse_ip(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::db::fabric::NewSwitch;
    use crate::db::pis::NewPi;
    use crate::lifecycle::PiState;
    use crate::secret::{Secret, SnmpCredentials};

    /// An exporter that only remembers.
    #[derive(Default)]
    struct Remembered(Mutex<Vec<Export>>);

    impl NfsExporter for Remembered {
        fn add(&self, export: &Export) -> bramble_images::Result<()> {
            self.0.lock().unwrap().push(export.clone());
            Ok(())
        }
        fn remove(&self, export: &Export) -> bramble_images::Result<()> {
            self.0.lock().unwrap().retain(|e| (e.client, &e.path) != (export.client, &export.path));
            Ok(())
        }
        fn list(&self) -> bramble_images::Result<Vec<Export>> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn mount_path(&self, export: &Export) -> String {
            export.pseudo_path()
        }
    }

    /// A switch moved here: its Pis' roots that this controller has are exported, the
    /// others reported; moved away again: withdrawn.
    #[tokio::test]
    async fn a_moved_switchs_roots_follow_it() {
        for tdb in crate::testing::test_databases().await {
            let db = Db::connect(&tdb.url).await.unwrap();
            let roots = tempfile::tempdir().unwrap();
            let exporter = Arc::new(Remembered::default());
            let boot = Arc::new(BootPlanner::new(
                roots.path().to_path_buf(),
                Some(exporter.clone()),
                None,
            ));
            let sync = ExportSync::new(db.clone(), "here", exporter.clone(), boot);
            let sw = db
                .insert_switch(&NewSwitch {
                    name: "sw-x".into(),
                    address: "127.0.0.1:1161".into(),
                    driver: "standard".into(),
                    trunk_port: 24,
                    credentials: SnmpCredentials::V2c { community: Secret::new("public") },
                    controller: "there".into(),
                    l2_domain: "x".into(),
                })
                .await
                .unwrap();
            let pools = crate::testing::sqlite_db().config().pools;
            let shelf = db.enroll_shelf("x", &sw.id, 1, 2, &pools).await.unwrap();
            let mut pis = Vec::new();
            for slot in &shelf.slots {
                let new = NewPi {
                    serial: None,
                    mac: None,
                    model: "3b".into(),
                    slot: Some(slot.id.clone()),
                    owner: None,
                    state: PiState::Deployed,
                };
                let pi = db.insert_pi(&new, "test").await.unwrap();
                db.set_pi_root(&pi.id, Some("debian"), &[]).await.unwrap();
                pis.push(pi.id);
            }
            // Only the first Pi's root is in this controller's store.
            std::fs::create_dir_all(roots.path().join(pis[0].as_str())).unwrap();

            let report = sync.sync_once().await.unwrap();
            assert_eq!(report, ExportSyncReport::default(), "{}: not served here yet", tdb.label);
            db.set_switch_controller(&sw.id, "here").await.unwrap();
            let report = sync.sync_once().await.unwrap();
            assert_eq!(report.added, vec![pis[0].clone()], "{}", tdb.label);
            assert_eq!(report.missing_roots, vec![pis[1].clone()], "{}", tdb.label);
            assert_eq!(exporter.list().unwrap().len(), 1);
            assert_eq!(sync.sync_once().await.unwrap().added, vec![], "{}: idempotent", tdb.label);
            // In rescue: its rescue root is exported beside its own, to the same client.
            let etc = roots.path().join(format!("{}_rescue/etc/bramble", pis[0]));
            std::fs::create_dir_all(&etc).unwrap();
            let marker = serde_json::json!({"pi": format!("{}_rescue", pis[0]), "image": "r", "version": "1", "token": "t"});
            std::fs::write(etc.join("root.json"), marker.to_string()).unwrap();
            assert_eq!(
                sync.sync_once().await.unwrap().added,
                vec![pis[0].clone()],
                "{}",
                tdb.label
            );
            let listed = exporter.list().unwrap();
            assert_eq!(listed.len(), 2, "{}: {listed:?}", tdb.label);
            assert_eq!(listed[0].client, listed[1].client);
            assert_eq!(listed.iter().filter(|e| e.is_rescue()).count(), 1);
            // The rescue root gone (an unrescue racing the pass): its export is withdrawn.
            std::fs::remove_dir_all(roots.path().join(format!("{}_rescue", pis[0]))).unwrap();
            assert_eq!(sync.sync_once().await.unwrap().withdrawn.len(), 1, "{}", tdb.label);
            assert_eq!(exporter.list().unwrap().len(), 1);
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(etc.join("root.json"), marker.to_string()).unwrap();
            assert_eq!(
                sync.sync_once().await.unwrap().added,
                vec![pis[0].clone()],
                "{}",
                tdb.label
            );
            db.set_switch_controller(&sw.id, "there").await.unwrap();
            let report = sync.sync_once().await.unwrap();
            assert_eq!(report.withdrawn.len(), 2, "{}", tdb.label);
            assert!(exporter.list().unwrap().is_empty());
            db.close().await;
            tdb.drop().await;
        }
    }
}
