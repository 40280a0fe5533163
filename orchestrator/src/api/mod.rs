//! The HTTP API under `/v1`: JSON in and out, bearer-token auth, problem+json errors.
//!
//! [`app`] builds the whole router from an [`AppState`]; tests drive it with tower's
//! `oneshot` or over a bound port. **Invariant:** handlers never do hardware I/O; they
//! read and write the inventory and queue jobs for the runner.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, patch, post};

use crate::db::Db;
use crate::jobs::model::JobKind;
use crate::metrics::Metrics;
use crate::reload::LiveConfig;

mod cluster;
pub mod console;
pub mod error;
mod extract;
mod fabric;
mod hardware;
mod jobs;
mod meta;
pub mod openapi;
mod pis;
mod shelf_status;
mod snapshots;
mod ui;

pub use error::{ApiError, FieldError, Problem};
pub use extract::Caller;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The running configuration, read at use (a reload may change it).
    pub config: LiveConfig,
    pub metrics: Arc<Metrics>,
    /// Configuration reloads: counters and the keys waiting for a restart.
    pub reload: Arc<crate::reload::ReloadStatus>,
    /// Job kinds some runner in this controller can execute; others stay queued.
    pub executable: Arc<HashSet<JobKind>>,
}

impl AppState {
    pub fn new(db: Db, config: impl Into<LiveConfig>, executable: HashSet<JobKind>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let reload = Arc::new(crate::reload::ReloadStatus::default());
        metrics.add_collector(reload.clone());
        AppState { db, config: config.into(), metrics, reload, executable: Arc::new(executable) }
    }

    /// A job with its `executable` flag filled in from this controller's runners, and
    /// `waiting_for` when its controller is down.
    pub(crate) async fn present(
        &self,
        job: crate::model::Job,
    ) -> Result<crate::model::Job, crate::db::DbError> {
        let mut one = self.present_all(vec![job]).await?;
        Ok(one.pop().expect("one job in, one out"))
    }

    /// [`present`](Self::present) for a page of jobs (one look at the controllers).
    pub(crate) async fn present_all(
        &self,
        mut jobs: Vec<crate::model::Job>,
    ) -> Result<Vec<crate::model::Job>, crate::db::DbError> {
        // Only an active job of another controller may be waiting: this one is alive,
        // so the common case (a job just submitted here) costs no query.
        let config = self.config.get();
        let me = config.cluster.name.as_str();
        let pending = |j: &crate::model::Job| {
            j.state.is_active() && j.controller.as_deref().is_some_and(|c| c != me)
        };
        let controllers =
            if jobs.iter().any(pending) { Some(self.db.list_controllers().await?) } else { None };
        for job in &mut jobs {
            job.executable = self.executable.contains(&job.kind);
            if let (Some((rows, now)), Some(name)) = (&controllers, &job.controller)
                && pending(job)
            {
                job.waiting_for = match rows.iter().find(|c| &c.name == name) {
                    None => Some(format!("controller {name}, never seen")),
                    Some(c) if !c.alive(*now, config.cluster.lease) => Some(format!(
                        "controller {name}, last seen {}",
                        crate::time::rfc3339(c.heartbeat_at)
                    )),
                    Some(_) => None,
                };
            }
        }
        Ok(jobs)
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/v1/openapi.json", get(meta::openapi_json))
        .route("/v1/pis", get(pis::list).post(pis::create))
        .route("/v1/pis/{id}", get(pis::get).patch(pis::update))
        .route("/v1/pis/{id}/events", get(pis::events))
        .route("/v1/pis/{id}/console", get(console::get))
        .route("/v1/pis/{id}/power-on", post(pis::power_on))
        .route("/v1/pis/{id}/power-off", post(pis::power_off))
        .route("/v1/pis/{id}/reboot", post(pis::reboot))
        .route("/v1/pis/{id}/reimage", post(pis::reimage))
        .route("/v1/pis/{id}/snapshots", get(snapshots::list).post(snapshots::create))
        .route("/v1/pis/{id}/snapshots/{snapshot}", delete(snapshots::delete))
        .route("/v1/pis/{id}/restore", post(snapshots::restore))
        .route("/v1/pis/{id}/rescue", post(pis::rescue))
        .route("/v1/pis/{id}/unrescue", post(pis::unrescue))
        .route("/v1/pis/{id}/maintenance", post(hardware::maintenance))
        .route("/v1/pis/{id}/hardware/accept", post(hardware::accept))
        .route("/v1/pis/{id}/hardware/dismiss", post(hardware::dismiss))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/job-kinds", get(jobs::kinds))
        .route("/v1/events", get(meta::events))
        .route("/v1/images", get(meta::images))
        .route("/v1/switches", get(fabric::list_switches).post(fabric::create_switch))
        .route("/v1/switches/{id}", patch(fabric::update_switch))
        .route("/v1/controllers", get(cluster::list))
        .route("/v1/shelves", get(fabric::list_shelves).post(fabric::enroll_shelf))
        .route("/v1/shelves/{name}", get(fabric::get_shelf))
        .route("/v1/shelves/{name}/rack", post(fabric::rack_shelf))
        .route("/v1/shelves/{name}/status", get(shelf_status::get_shelf_status))
        .route("/v1/tokens", get(meta::list_tokens).post(meta::create_token))
        .route("/v1/tokens/{id}", delete(meta::revoke_token))
        .route("/ui", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .fallback(meta::not_found)
        .with_state(state)
}
