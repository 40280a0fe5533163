//! A Pi's hardware, for operators: `POST /v1/pis/{id}/maintenance` (before swapping a
//! board: no job runs, and a different board seen in the slot becomes the Pi's), `POST
//! /v1/pis/{id}/hardware/accept` and `/dismiss` (a flagged sighting), and what `GET
//! /v1/pis/{id}` adds ([`detail`]): the replacement history and the pending sighting.
//! See docs/replacing-a-pi.md.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{Body, Caller, require_operator};
use super::pis::visible_pi;
use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::db::hardware::{By, How, MaintenanceChange, Written, seen_of};
use crate::model::Pi;
use crate::netboot::sightings::merged;

/// What `GET /v1/pis/{id}` shows beyond the Pi's row: its replacement history (a
/// customer's own time only) and, to operators, the sighting waiting for them.
pub(super) async fn detail(st: &AppState, who: &Principal, pi: &mut Pi) -> Result<(), ApiError> {
    pi.hardware_history = Some(st.db.hardware_history(&pi.id, who.customer()).await?);
    if who.is_operator() {
        pi.hardware_sighting = st.db.pending_sighting(&pi.id).await?;
    }
    Ok(())
}

/// Turn maintenance on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// `true` before a swap; `false` once the new board is checked.
    on: bool,
}

#[utoipa::path(post, path = "/v1/pis/{id}/maintenance", tag = "pis", params(("id" = String, Path)),
    request_body = MaintenanceRequest,
    responses((status = 200, body = Pi), (status = 403, body = super::Problem), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)), security(("bearer" = [])))]
pub async fn maintenance(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Result<Body<MaintenanceRequest>, ApiError>,
) -> Result<Json<Pi>, ApiError> {
    let pi = operated(&st, &who, &id).await?;
    let Body(req) = body?;
    match st.db.set_maintenance(&pi.id, req.on, who.token().as_str()).await? {
        MaintenanceChange::Changed | MaintenanceChange::Unchanged => {}
        MaintenanceChange::Busy { running } => return Err(ApiError::PiBusy { running: running.0 }),
        MaintenanceChange::Retired => {
            return Err(ApiError::Conflict {
                code: "invalid_state",
                message: format!("Pi {} is retired", pi.id),
            });
        }
        MaintenanceChange::NotFound => return Err(ApiError::not_found(format!("Pi {id}"))),
    }
    shown(&st, &who, &id).await
}

/// Names the pending sighting acted on (its `id` in `GET /v1/pis/{id}`
/// `hardware_sighting`), so what is accepted is what the operator read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SightingRequest {
    sighting: String,
}

#[utoipa::path(post, path = "/v1/pis/{id}/hardware/accept", tag = "pis", params(("id" = String, Path)),
    request_body = SightingRequest,
    responses((status = 200, body = Pi), (status = 403, body = super::Problem), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)), security(("bearer" = [])))]
pub async fn accept(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Result<Body<SightingRequest>, ApiError>,
) -> Result<Json<Pi>, ApiError> {
    let pi = operated(&st, &who, &id).await?;
    let Body(req) = body?;
    let pending = current(&st, &pi, &req.sighting).await?;
    let seen = seen_of(&pending);
    // Never another Pi's MAC or serial, whoever asks.
    let holders = [
        (pending.mac.clone(), By::Mac, "MAC"),
        (pending.serial.map(|s| s.to_string()), By::Serial, "serial"),
    ];
    for (value, by, what) in holders {
        let Some(value) = value else { continue };
        if let Some(other) = st.db.sighting_pi(by, &value).await?
            && other.id != pi.id
        {
            return Err(ApiError::Conflict {
                code: "identity_taken",
                message: format!(
                    "the {what} {value} belongs to Pi {}; retire it or dismiss this sighting",
                    other.id
                ),
            });
        }
    }
    let Some(known) = st.db.sighting_pi(By::Id, pi.id.as_str()).await? else {
        return Err(ApiError::not_found(format!("Pi {id}")));
    };
    let new = merged(&known.identity, &seen);
    match st
        .db
        .replace_hardware(&pi.id, &known.identity, &new, How::Operator, who.token().as_str())
        .await?
    {
        Written::Done => shown(&st, &who, &id).await,
        Written::Stale => Err(ApiError::Conflict {
            code: "invalid_state",
            message: format!("Pi {} changed meanwhile; read it again", pi.id),
        }),
        Written::Taken => Err(ApiError::Conflict {
            code: "identity_taken",
            message: "another Pi took this MAC or serial meanwhile".into(),
        }),
    }
}

#[utoipa::path(post, path = "/v1/pis/{id}/hardware/dismiss", tag = "pis", params(("id" = String, Path)),
    request_body = SightingRequest,
    responses((status = 200, body = Pi), (status = 403, body = super::Problem), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)), security(("bearer" = [])))]
pub async fn dismiss(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Result<Body<SightingRequest>, ApiError>,
) -> Result<Json<Pi>, ApiError> {
    let pi = operated(&st, &who, &id).await?;
    let Body(req) = body?;
    current(&st, &pi, &req.sighting).await?;
    if !st.db.dismiss_sighting(&pi.id, &req.sighting, who.token().as_str()).await? {
        return Err(stale_sighting(&pi));
    }
    shown(&st, &who, &id).await
}

/// The Pi's pending sighting if it is `id`, else a 409 saying what is pending now.
async fn current(
    st: &AppState,
    pi: &Pi,
    id: &str,
) -> Result<crate::hardware::HardwareSighting, ApiError> {
    match st.db.pending_sighting(&pi.id).await? {
        Some(s) if s.id == id => Ok(s),
        Some(_) => Err(stale_sighting(pi)),
        None => Err(ApiError::Conflict {
            code: "no_sighting",
            message: format!("Pi {} has no sighting waiting", pi.id),
        }),
    }
}

fn stale_sighting(pi: &Pi) -> ApiError {
    ApiError::Conflict {
        code: "sighting_changed",
        message: format!(
            "Pi {}'s pending sighting changed; read it again (GET /v1/pis/{})",
            pi.id, pi.id
        ),
    }
}

/// The Pi, for an operator; another customer's is "not found", one's own "forbidden".
async fn operated(st: &AppState, who: &Principal, id: &str) -> Result<Pi, ApiError> {
    let pi = visible_pi(st, who, id).await?;
    require_operator(who)?;
    Ok(pi)
}

async fn shown(st: &AppState, who: &Principal, id: &str) -> Result<Json<Pi>, ApiError> {
    let mut pi = visible_pi(st, who, id).await?;
    detail(st, who, &mut pi).await?;
    Ok(Json(pi))
}
