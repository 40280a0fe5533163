//! `/v1/jobs`: following and cancelling jobs, and which job kinds this controller runs.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Caller, Params, id_cursor, list_order, page_limit};
use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::db::jobs::JobFilter;
use crate::db::{Order, Page};
use crate::ids::{JobId, PiId};
use crate::jobs::model::{JobKind, JobState};
use crate::model::Job;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListJobs {
    /// Only jobs on this Pi.
    pi: Option<String>,
    state: Option<JobState>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// `desc` (newest first, the default) or `asc` (oldest first).
    #[param(value_type = Option<Order>)]
    order: Option<String>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListJobs),
    responses((status = 200, body = Page<Job>)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<ListJobs>,
) -> Result<Json<Page<Job>>, ApiError> {
    let f = JobFilter { pi: q.pi.map(PiId), state: q.state, visible_to: who.customer().cloned() };
    let cursor = id_cursor(q.cursor, JobId::PREFIX)?;
    let order = list_order(q.order)?;
    let page = st.db.list_jobs(&f, cursor.as_deref(), order, page_limit(q.limit)?).await?;
    let items = st.present_all(page.items).await?;
    Ok(Json(Page {
        items: items.into_iter().map(|j| for_caller(j, &who)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A job as `who` may read it: a customer gets `customer_message` and not the
/// operator's details (`last_error`, `operator_message`), which name switches, ports and
/// addresses.
fn for_caller(mut job: Job, who: &Principal) -> Job {
    if who.customer().is_some() {
        job.last_error = None;
        job.operator_message = None;
    }
    job
}

/// A job the caller may see: every job for operators; for a customer, the jobs done for
/// them (the rule of `Principal::may_see`, applied in the query). Anything else is a 404.
async fn visible_job(st: &AppState, who: &Principal, id: &str) -> Result<Job, ApiError> {
    match st.db.get_job_for(&JobId(id.to_string()), who.customer()).await? {
        Some(j) => Ok(for_caller(st.present(j).await?, who)),
        None => Err(ApiError::not_found(format!("job {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(visible_job(&st, &who, &id).await?))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem)), security(("bearer" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = visible_job(&st, &who, &id).await?;
    if !st.db.cancel_job(&job.id, &who).await? {
        return Err(ApiError::Conflict {
            code: "not_cancellable",
            message: format!("job {} is {}; only queued jobs can be cancelled", job.id, job.state),
        });
    }
    Ok(Json(visible_job(&st, &who, &id).await?))
}

/// A kind of job and whether this controller can run it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobKindInfo {
    kind: JobKind,
    steps: Vec<String>,
    /// False while the capability it needs is not built into this controller: such jobs
    /// are accepted and stay queued.
    executable: bool,
}

#[utoipa::path(get, path = "/v1/job-kinds", tag = "jobs", responses((status = 200, body = Vec<JobKindInfo>)), security(("bearer" = [])))]
pub async fn kinds(State(st): State<AppState>, Caller(_who): Caller) -> Json<Vec<JobKindInfo>> {
    Json(
        JobKind::ALL
            .into_iter()
            .map(|k| JobKindInfo {
                kind: k,
                steps: k.steps().iter().map(|s| s.to_string()).collect(),
                executable: st.executable.contains(&k),
            })
            .collect(),
    )
}
