//! `/v1/pis/{id}/snapshots` and `/v1/pis/{id}/restore`: a Pi's root snapshots, listed,
//! taken on demand, deleted and restored. Taking and restoring are jobs (`snapshot`,
//! `restore`); handlers only read and write rows. A customer sees the snapshots of their
//! own Pis taken while the Pi was theirs (a change of owner deletes all of a Pi's rows),
//! and anything else is a 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{Body, Caller};
use super::pis::{start_job, visible_pi};
use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::db::Page;
use crate::db::events::NewEvent;
use crate::jobs::model::JobKind;
use crate::model::Pi;
use crate::snapshots::{Reason, Snapshot};

/// A snapshot the caller may see, or 404.
async fn visible_snapshot(
    st: &AppState,
    who: &Principal,
    pi: &Pi,
    id: &str,
) -> Result<Snapshot, ApiError> {
    match st.db.get_snapshot(&pi.id, id).await? {
        Some(s)
            if who.is_operator()
                || (who.customer().is_some() && s.owner.as_ref() == who.customer()) =>
        {
            Ok(s)
        }
        _ => Err(ApiError::not_found(format!("snapshot {id} of Pi {}", pi.id))),
    }
}

#[utoipa::path(get, path = "/v1/pis/{id}/snapshots", tag = "snapshots", params(("id" = String, Path)),
    responses((status = 200, body = Page<Snapshot>), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Page<Snapshot>>, ApiError> {
    let pi = visible_pi(&st, &who, &id).await?;
    let items = st.db.list_snapshots(&pi.id, who.customer()).await?;
    Ok(Json(Page { items, next_cursor: None }))
}

#[utoipa::path(post, path = "/v1/pis/{id}/snapshots", tag = "snapshots",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = crate::model::Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let pi = visible_pi(&st, &who, &id).await?;
    if pi.image.is_none() {
        return Err(ApiError::Conflict {
            code: "no_root",
            message: format!(
                "Pi {} has no system installed to snapshot; reinstall it first",
                pi.id
            ),
        });
    }
    let max = st.config.get().snapshots.max_manual;
    let manual = st
        .db
        .list_snapshots(&pi.id, None)
        .await?
        .iter()
        .filter(|s| s.reason == Reason::Manual)
        .count();
    if manual >= max as usize {
        return Err(ApiError::Conflict {
            code: "snapshot_limit",
            message: format!(
                "Pi {} has {manual} snapshots taken on demand, the most allowed ({max}); delete one first",
                pi.id
            ),
        });
    }
    start_job(&st, &who, &id, JobKind::Snapshot, serde_json::json!({}), &headers).await
}

#[utoipa::path(delete, path = "/v1/pis/{id}/snapshots/{snapshot}", tag = "snapshots",
    params(("id" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem), (status = 409, body = super::Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((id, snapshot)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let pi = visible_pi(&st, &who, &id).await?;
    let snap = visible_snapshot(&st, &who, &pi, &snapshot).await?;
    if let Some(running) = st.db.active_job_for(&pi.id).await? {
        return Err(ApiError::PiBusy { running: running.0 });
    }
    if st.db.delete_snapshot(&pi.id, &snap.id).await? {
        let e = NewEvent::new(
            "snapshot.deleted",
            who.token().as_str(),
            format!("snapshot {} deleted", snap.id),
        )
        .pi(&pi.id)
        .customer(snap.owner.as_ref());
        st.db.append_event(&e).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Which snapshot to swap in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot id from `GET /v1/pis/{id}/snapshots`.
    snapshot: String,
}

#[utoipa::path(post, path = "/v1/pis/{id}/restore", tag = "snapshots", request_body = RestoreRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = crate::model::Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 422, body = super::Problem), (status = 429, description = "Past `[power] max_cycles` power cycles of this Pi in `cycle_window_seconds` (actions that power the Pi on; not power-off); no job was created", body = super::Problem, headers(("Retry-After" = u64, description = "Seconds until the Pi may be power-cycled again")))),
    security(("bearer" = [])))]
pub async fn restore(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Body<RestoreRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    // The Pi first, so another customer's Pi is a 404 whatever was sent.
    let pi = visible_pi(&st, &who, &id).await?;
    let Body(req) = body?;
    if req.snapshot.is_empty() {
        return Err(ApiError::invalid("snapshot", "a snapshot id is required"));
    }
    let snap = visible_snapshot(&st, &who, &pi, &req.snapshot).await?;
    start_job(
        &st,
        &who,
        &id,
        JobKind::Restore,
        serde_json::json!({ "snapshot": snap.id }),
        &headers,
    )
    .await
}
