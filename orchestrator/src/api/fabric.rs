//! `/v1/switches` and `/v1/shelves`: the operator's view of the physical fabric.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{Body, Caller, require_operator};
use super::{ApiError, AppState};
use crate::db::events::NewEvent;
use crate::db::fabric::{EnrollError, NewSwitch};
use crate::db::jobs::{CreateOutcome, NewJob};
use crate::ids::SwitchId;
use crate::jobs::model::JobKind;
use crate::model::{Shelf, Switch};
use crate::secret::SnmpCredentials;
use crate::validate::{self, BadField};

/// A switch to register. `credentials` are stored and never returned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSwitch {
    name: String,
    /// `host:port` of its SNMP agent (port 161 in production).
    address: String,
    /// `auto` (pick by sysObjectID), `standard` or `cisco`.
    #[serde(default = "auto")]
    driver: String,
    trunk_port: u16,
    credentials: SnmpCredentials,
    /// The controller that serves the switch (default: the one answering this request).
    #[serde(default)]
    controller: Option<String>,
    /// Its layer-2 domain: switches behind one controller trunk share one, and storage
    /// VLAN ids are unique within it (default: the serving controller's name).
    #[serde(default)]
    l2_domain: Option<String>,
}

/// A change to a switch: which controller serves it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSwitch {
    /// The controller that serves the switch from now on. It brings the shelves'
    /// storage interfaces up and exports their roots; their queued jobs wait for it.
    controller: String,
}

fn auto() -> String {
    "auto".into()
}

#[utoipa::path(get, path = "/v1/switches", tag = "fabric", responses((status = 200, body = Vec<Switch>)), security(("bearer" = [])))]
pub async fn list_switches(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Vec<Switch>>, ApiError> {
    require_operator(&who)?;
    Ok(Json(st.db.list_switches().await?))
}

#[utoipa::path(post, path = "/v1/switches", tag = "fabric", request_body = CreateSwitch,
    responses((status = 201, body = Switch), (status = 422, body = super::Problem)), security(("bearer" = [])))]
pub async fn create_switch(
    State(st): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<CreateSwitch>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&who)?;
    let mut errs = validate::check("name", &req.name, validate::name);
    if req.address.parse::<std::net::SocketAddr>().is_err() && !req.address.contains(':') {
        errs.push(BadField {
            field: "address".into(),
            message: format!("must be host:port, got {:?}", req.address),
        });
    }
    if !["auto", "standard", "cisco"].contains(&req.driver.as_str()) {
        errs.push(BadField {
            field: "driver".into(),
            message: "must be auto, standard or cisco".into(),
        });
    }
    if req.trunk_port == 0 {
        errs.push(BadField {
            field: "trunk_port".into(),
            message: "must be a port number from 1".into(),
        });
    }
    if let SnmpCredentials::V3 { auth_pass, priv_pass, .. } = &req.credentials {
        // RFC 3414: USM passwords shorter than 8 characters are refused by agents.
        if auth_pass.expose().len() < 8 {
            errs.push(BadField {
                field: "credentials.auth_pass".into(),
                message: "must be at least 8 characters".into(),
            });
        }
        if priv_pass.expose().len() < 8 {
            errs.push(BadField {
                field: "credentials.priv_pass".into(),
                message: "must be at least 8 characters".into(),
            });
        }
    }
    let controller = req.controller.unwrap_or_else(|| st.config.get().cluster.name.clone());
    errs.extend(known_controller(&st, &controller).await?);
    let l2_domain = req.l2_domain.unwrap_or_else(|| controller.clone());
    if !crate::cluster::config::valid_name(&l2_domain) {
        errs.push(BadField {
            field: "l2_domain".into(),
            message: format!(
                "{l2_domain:?} must be 1-{} letters, digits, '-', '_' or '.'",
                crate::cluster::config::MAX_NAME
            ),
        });
    }
    validate::finish(errs)?;
    let new = NewSwitch {
        name: req.name,
        address: req.address,
        driver: req.driver,
        trunk_port: req.trunk_port,
        credentials: req.credentials,
        controller,
        l2_domain,
    };
    match st.db.insert_switch(&new).await {
        Ok(sw) => {
            st.db
                .append_event(&NewEvent::new(
                    "switch.registered",
                    who.token().as_str(),
                    format!("switch {} registered", sw.name),
                ))
                .await?;
            Ok((StatusCode::CREATED, Json(sw)))
        }
        Err(e) if e.is_unique_violation() => Err(ApiError::Conflict {
            code: "switch_exists",
            message: format!("a switch named {:?} exists already", new.name),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The `controller` field's error, if `name` is no controller that ever registered.
async fn known_controller(st: &AppState, name: &str) -> Result<Option<BadField>, ApiError> {
    let (known, _) = st.db.list_controllers().await?;
    if known.iter().any(|c| c.name == name) {
        return Ok(None);
    }
    let names: Vec<_> = known.iter().map(|c| c.name.as_str()).collect();
    Ok(Some(BadField {
        field: "controller".into(),
        message: format!(
            "no controller named {name:?} has registered; known: {}",
            names.join(", ")
        ),
    }))
}

#[utoipa::path(patch, path = "/v1/switches/{id}", tag = "fabric", request_body = UpdateSwitch,
    params(("id" = String, Path, description = "switch id or name")),
    responses((status = 200, body = Switch), (status = 404, body = super::Problem), (status = 422, body = super::Problem)),
    security(("bearer" = [])))]
pub async fn update_switch(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(req): Body<UpdateSwitch>,
) -> Result<Json<Switch>, ApiError> {
    require_operator(&who)?;
    let Some(before) = st.db.get_switch(&SwitchId(id.clone())).await? else {
        return Err(ApiError::not_found(format!("switch {id}")));
    };
    validate::finish(known_controller(&st, &req.controller).await?.into_iter().collect())?;
    let Some(sw) = st.db.set_switch_controller(&before.id, &req.controller).await? else {
        return Err(ApiError::not_found(format!("switch {id}")));
    };
    if before.controller.as_deref() != Some(req.controller.as_str()) {
        st.db
            .append_event(
                &NewEvent::new(
                    "switch.moved",
                    who.token().as_str(),
                    format!("switch {} moved to controller {}", sw.name, req.controller),
                )
                .data(serde_json::json!({ "from": before.controller, "to": req.controller })),
            )
            .await?;
    }
    Ok(Json(sw))
}

/// A shelf to enroll: ports `first_port..=last_port` of a registered switch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollShelf {
    name: String,
    /// Switch id or name.
    switch: String,
    first_port: u16,
    last_port: u16,
}

#[utoipa::path(get, path = "/v1/shelves", tag = "fabric", responses((status = 200, body = Vec<Shelf>)), security(("bearer" = [])))]
pub async fn list_shelves(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Vec<Shelf>>, ApiError> {
    require_operator(&who)?;
    Ok(Json(st.db.list_shelves().await?))
}

#[utoipa::path(get, path = "/v1/shelves/{name}", tag = "fabric", params(("name" = String, Path, description = "shelf id or name")),
    responses((status = 200, body = Shelf), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn get_shelf(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Result<Json<Shelf>, ApiError> {
    require_operator(&who)?;
    st.db
        .get_shelf(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("shelf {name}")))
}

#[utoipa::path(post, path = "/v1/shelves", tag = "fabric", request_body = EnrollShelf,
    responses((status = 201, body = Shelf), (status = 409, body = super::Problem), (status = 422, body = super::Problem)), security(("bearer" = [])))]
pub async fn enroll_shelf(
    State(st): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<EnrollShelf>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&who)?;
    let mut errs = validate::check("name", &req.name, validate::name);
    if req.first_port == 0 || req.first_port > req.last_port {
        errs.push(BadField {
            field: "first_port".into(),
            message: format!(
                "ports {}-{} must satisfy 1 <= first_port <= last_port",
                req.first_port, req.last_port
            ),
        });
    } else if req.last_port - req.first_port >= 192 {
        errs.push(BadField {
            field: "last_port".into(),
            message: "a shelf spans at most 192 ports".into(),
        });
    }
    validate::finish(errs)?;
    let shelf = st
        .db
        .enroll_shelf(
            &req.name,
            &SwitchId(req.switch.clone()),
            req.first_port,
            req.last_port,
            &st.config.get().pools,
        )
        .await
        .map_err(|e| match e {
            EnrollError::UnknownSwitch(s) => {
                ApiError::invalid("switch", format!("no switch {s:?}"))
            }
            EnrollError::TrunkInRange(_) => ApiError::invalid("last_port", e.to_string()),
            EnrollError::NameTaken(_) => {
                ApiError::Conflict { code: "shelf_exists", message: e.to_string() }
            }
            EnrollError::PortsInUse { .. } => {
                ApiError::Conflict { code: "ports_in_use", message: e.to_string() }
            }
            EnrollError::Exhausted(_) => {
                ApiError::Conflict { code: "addresses_exhausted", message: e.to_string() }
            }
            EnrollError::Db(d) if d.is_unique_violation() => ApiError::Conflict {
                code: "enroll_conflict",
                message: "another enrollment took these ports or addresses; retry".into(),
            },
            EnrollError::Db(d) => d.into(),
        })?;
    let msg =
        format!("shelf {} enrolled: ports {}-{}", shelf.name, shelf.first_port, shelf.last_port);
    st.db.append_event(&NewEvent::new("shelf.enrolled", who.token().as_str(), msg)).await?;
    Ok((StatusCode::CREATED, Json(shelf)))
}

#[utoipa::path(post, path = "/v1/shelves/{name}/rack", tag = "fabric",
    params(("name" = String, Path, description = "shelf id or name"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = crate::model::Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem)),
    security(("bearer" = [])))]
/// Racks an enrolled shelf: storage interfaces, switch configuration (verified), staggered
/// power-on, and every slot ready or flagged. Progress is the returned job's.
pub async fn rack_shelf(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&who)?;
    let shelf = st
        .db
        .get_shelf(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("shelf {name}")))?;
    let key = super::pis::idempotency_key(&headers)?;
    let new = NewJob {
        kind: JobKind::RackShelf,
        pi: None,
        shelf: Some(shelf.id.clone()),
        params: serde_json::json!({}),
        idempotency_key: key,
    };
    // A retry returns its job, which is the active one that would otherwise refuse it.
    let replayed = match &new.idempotency_key {
        Some(key) => st.db.replay(&who, key, std::slice::from_ref(&new)).await?,
        None => None,
    };
    if replayed.is_none()
        && let Some(running) = st.db.active_job_for_shelf(&shelf.id).await?
    {
        return Err(ApiError::Conflict {
            code: "shelf_busy",
            message: format!("shelf {} is being racked by job {running}", shelf.name),
        });
    }
    let outcome = match replayed {
        Some(outcome) => outcome,
        None => st.db.create_job(&new, &who).await?,
    };
    let job = match outcome {
        CreateOutcome::Created(job) | CreateOutcome::Replayed(job) => job,
        CreateOutcome::KeyReused { existing } => {
            return Err(ApiError::KeyReused { existing: existing.0 });
        }
        CreateOutcome::Busy { running } => {
            return Err(ApiError::Conflict {
                code: "shelf_busy",
                message: format!("job {running} is active"),
            });
        }
        // A rack job names no Pi.
        CreateOutcome::Maintenance => {
            return Err(ApiError::Conflict {
                code: "maintenance",
                message: "a Pi is in maintenance".into(),
            });
        }
    };
    let location = format!("/v1/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(st.present(job).await?),
    ))
}
