//! `/v1/pis`: listing and showing Pis, their timelines, and the actions customers take
//! on them (power on/off, reboot, reimage, rescue, unrescue), each answered `202` with a
//! queued job. What each action does in each lifecycle state is [`job_for`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Body, Caller, Params, event_cursor, id_cursor, list_order, page_limit, require_operator,
};
use super::{ApiError, AppState};
use crate::db::events::{EventFilter, NewEvent};
use crate::db::jobs::{CreateOutcome, NewJob};
use crate::db::pis::{NewPi, PiFilter};
use crate::db::{Order, Page};
use crate::ids::{CustomerId, PiId, SlotId};
use crate::jobs::model::JobKind;
use crate::lifecycle::{LifecycleEvent, PiState, transition};
use crate::model::{Event, Job, Pi};
use crate::validate::{self, BadField};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListPis {
    /// Only Pis on this shelf (by name).
    shelf: Option<String>,
    /// Only Pis in this lifecycle state.
    state: Option<PiState>,
    /// Only Pis of this customer (operators only; customers always see just theirs).
    owner: Option<String>,
    /// Items per page, 1-500 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The `cursor` parameter of an event list: an event id, documented as the integer it is
/// but taken as text so a garbled one is a 400 naming it.
pub(super) type EventCursor = Option<String>;

#[utoipa::path(get, path = "/v1/pis", tag = "pis", params(ListPis),
    responses((status = 200, body = Page<Pi>), (status = 401, body = super::Problem)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<ListPis>,
) -> Result<Json<Page<Pi>>, ApiError> {
    let filter = PiFilter {
        shelf: q.shelf,
        state: q.state,
        owner: q.owner.map(CustomerId),
        visible_to: who.customer().cloned(),
    };
    let cursor = id_cursor(q.cursor, PiId::PREFIX)?;
    let mut page = st.db.list_pis(&filter, cursor.as_deref(), page_limit(q.limit)?).await?;
    page.items = page.items.into_iter().map(|p| shown_to(p, &who)).collect();
    Ok(Json(page))
}

/// A Pi as `who` may read it: a customer sees the last boot's diagnosis only when it
/// was theirs, and without the operator's details.
fn shown_to(mut pi: Pi, who: &crate::auth::Principal) -> Pi {
    if let Some(customer) = who.customer() {
        pi.last_boot = pi.last_boot.and_then(|b| b.for_customer(customer));
    }
    pi
}

/// Loads a Pi the caller may see; another customer's Pi is "not found", never "forbidden".
pub(super) async fn visible_pi(
    st: &AppState,
    who: &crate::auth::Principal,
    id: &str,
) -> Result<Pi, ApiError> {
    match st.db.get_pi(&PiId(id.to_string())).await? {
        Some(pi) if who.may_see(pi.owner.as_ref()) => Ok(shown_to(pi, who)),
        _ => Err(ApiError::not_found(format!("Pi {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/pis/{id}", tag = "pis", params(("id" = String, Path)),
    responses((status = 200, body = Pi), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Pi>, ApiError> {
    let mut pi = visible_pi(&st, &who, &id).await?;
    super::hardware::detail(&st, &who, &mut pi).await?;
    Ok(Json(pi))
}

/// An operator registering a Pi by hand (DHCP discovery registers them too).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePi {
    /// 8 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{8}$")]
    serial: Option<String>,
    /// `aa:bb:cc:dd:ee:ff`.
    mac: Option<String>,
    /// `3b`, `3b+`, `4b`, `5` or `unknown`.
    #[serde(default = "unknown_model")]
    model: String,
    slot: Option<String>,
    owner: Option<String>,
}

fn unknown_model() -> String {
    "unknown".into()
}

#[utoipa::path(post, path = "/v1/pis", tag = "pis", request_body = CreatePi,
    responses((status = 201, body = Pi), (status = 422, body = super::Problem)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<CreatePi>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&who)?;
    let mut errs = Vec::new();
    let serial = validate::opt_parse(&mut errs, "serial", req.serial.as_deref(), validate::serial);
    validate::opt(&mut errs, "mac", req.mac.as_deref(), validate::mac);
    validate::opt(&mut errs, "owner", req.owner.as_deref(), validate::customer_id);
    if !validate::MODELS.contains(&req.model.as_str()) {
        errs.push(BadField {
            field: "model".into(),
            message: format!("must be one of {:?}", validate::MODELS),
        });
    }
    validate::finish(errs)?;
    let new = NewPi {
        serial,
        mac: req.mac.map(|m| m.to_ascii_lowercase()),
        model: req.model,
        slot: req.slot.map(SlotId),
        owner: req.owner.map(CustomerId),
        state: PiState::New,
    };
    match st.db.insert_pi(&new, who.token().as_str()).await {
        Ok(pi) => Ok((StatusCode::CREATED, Json(pi))),
        Err(e) if e.is_unique_violation() => Err(ApiError::Conflict {
            code: "pi_exists",
            message: "a Pi with this serial, MAC or slot exists already".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Changes an operator may make to a Pi.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePi {
    /// Assign to a customer, or `null` to release.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
    /// `ready` (commissioned or repaired), `maintenance` or `retired`.
    state: Option<PiState>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[utoipa::path(patch, path = "/v1/pis/{id}", tag = "pis", params(("id" = String, Path)), request_body = UpdatePi,
    responses((status = 200, body = Pi), (status = 404, body = super::Problem), (status = 409, body = super::Problem)), security(("bearer" = [])))]
pub async fn update(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(req): Body<UpdatePi>,
) -> Result<Json<Pi>, ApiError> {
    require_operator(&who)?;
    let pi = visible_pi(&st, &who, &id).await?;
    if req.owner.as_ref().is_some_and(|o| o.as_ref() != pi.owner.as_ref().map(|c| &c.0))
        && pi.state == PiState::Rescue
    {
        // The rescue system lets the owner's keys in: leave rescue before it changes hands.
        return Err(ApiError::Conflict {
            code: "invalid_state",
            message: format!("Pi {} is in rescue; unrescue it before changing its owner", pi.id),
        });
    }
    if let Some(owner) = &req.owner {
        if let Some(o) = owner {
            validate::finish(validate::check("owner", o, validate::customer_id))?;
        }
        // A running job (a restore above all) must not finish for the next owner.
        if let Some(running) = st.db.active_job_for(&pi.id).await?
            && pi.owner.as_ref().map(|o| &o.0) != owner.as_ref()
        {
            return Err(ApiError::PiBusy { running: running.0 });
        }
        st.db.set_pi_owner(&pi.id, owner.clone().map(CustomerId).as_ref()).await?;
    }
    if let Some(target) = req.state {
        let event = match target {
            PiState::Ready if pi.state == PiState::Maintenance => LifecycleEvent::Repaired,
            PiState::Ready if pi.state == PiState::New => LifecycleEvent::Commissioned,
            PiState::Ready => LifecycleEvent::Released,
            PiState::Maintenance => LifecycleEvent::MarkedBroken,
            PiState::Retired => LifecycleEvent::Retired,
            other => {
                return Err(ApiError::invalid(
                    "state",
                    format!("operators may set ready, maintenance or retired, not {other}"),
                ));
            }
        };
        let next = transition(pi.state, event)
            .map_err(|e| ApiError::Conflict { code: "invalid_state", message: e.to_string() })?;
        if !st.db.set_pi_state(&pi.id, pi.state, next, None).await? {
            let message = format!("the Pi is no longer {}; read it again", pi.state);
            return Err(ApiError::Conflict { code: "invalid_state", message });
        }
        if next == PiState::Retired {
            // A retired Pi keeps no snapshots; the sweeper removes their directories.
            st.db.delete_pi_snapshots(&pi.id).await?;
        }
        st.db
            .append_event(
                &NewEvent::new("pi.state", who.token().as_str(), format!("{} -> {next}", pi.state))
                    .pi(&pi.id),
            )
            .await?;
    }
    Ok(Json(visible_pi(&st, &who, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListEvents {
    /// Only events whose kind starts with this (`dhcp.`, `tftp.`, `job.`).
    kind: Option<String>,
    limit: Option<usize>,
    #[param(value_type = Option<i64>)]
    cursor: EventCursor,
    /// `desc` (newest first, the default) or `asc` (oldest first).
    #[param(value_type = Option<Order>)]
    order: Option<String>,
}

#[utoipa::path(get, path = "/v1/pis/{id}/events", tag = "pis", params(("id" = String, Path), ListEvents),
    responses((status = 200, body = Page<Event>), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn events(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Params(q): Params<ListEvents>,
) -> Result<Json<Page<Event>>, ApiError> {
    let pi = visible_pi(&st, &who, &id).await?;
    let (cursor, order) = (event_cursor(q.cursor)?, list_order(q.order)?);
    // A customer sees the Pi's events from while it was theirs, not a former owner's.
    let f = EventFilter { pi: Some(pi.id), customer: who.customer().cloned(), kind_prefix: q.kind };
    Ok(Json(st.db.list_events(&f, cursor, order, page_limit(q.limit)?).await?))
}

/// What a reinstall should put on the Pi.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReimageRequest {
    /// An image name from `GET /v1/images`.
    image: String,
    /// OpenSSH public keys for root's authorized_keys; at least one (no passwords).
    ssh_keys: Vec<String>,
}

macro_rules! power_action {
    ($name:ident, $kind:expr, $path:literal) => {
        #[utoipa::path(post, path = $path, tag = "pis", params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
            responses((status = 202, body = Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 429, description = "Past `[power] max_cycles` power cycles of this Pi in `cycle_window_seconds` (actions that power the Pi on; not power-off); no job was created", body = super::Problem, headers(("Retry-After" = u64, description = "Seconds until the Pi may be power-cycled again")))),
            security(("bearer" = [])))]
        pub async fn $name(State(st): State<AppState>, Caller(who): Caller, Path(id): Path<String>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
            start_job(&st, &who, &id, $kind, serde_json::json!({}), &headers).await
        }
    };
}

power_action!(power_on, JobKind::PowerOn, "/v1/pis/{id}/power-on");
power_action!(power_off, JobKind::PowerOff, "/v1/pis/{id}/power-off");
// On a Pi in rescue, a reboot is an unrescue: it returns to its own root (`job_for`).
power_action!(reboot, JobKind::Reboot, "/v1/pis/{id}/reboot");
power_action!(unrescue, JobKind::Unrescue, "/v1/pis/{id}/unrescue");

/// What a rescue should let in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescueRequest {
    /// OpenSSH public keys for the rescue system's root; default: the keys of the Pi's
    /// latest reinstall for its current owner.
    #[serde(default)]
    ssh_keys: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/v1/pis/{id}/rescue", tag = "pis", request_body = RescueRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 422, body = super::Problem), (status = 429, description = "Past `[power] max_cycles` power cycles of this Pi in `cycle_window_seconds` (actions that power the Pi on; not power-off); no job was created", body = super::Problem, headers(("Retry-After" = u64, description = "Seconds until the Pi may be power-cycled again")))),
    security(("bearer" = [])))]
pub async fn rescue(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Body<RescueRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let pi = visible_pi(&st, &who, &id).await?;
    let Body(req) = body?;
    rescue_boots(&st, &pi).await?;
    let keys = match req.ssh_keys {
        Some(keys) => keys,
        None => {
            let current = match &pi.owner {
                Some(owner) => st.db.current_ssh_keys(&pi.id, owner).await?,
                None => None,
            };
            current.ok_or_else(|| {
                ApiError::invalid(
                    "ssh_keys",
                    "this Pi has no keys from a reinstall for its owner; give ssh_keys",
                )
            })?
        }
    };
    let mut errs = Vec::new();
    check_ssh_keys(&mut errs, &keys);
    validate::finish(errs)?;
    start_job(&st, &who, &id, JobKind::Rescue, serde_json::json!({ "ssh_keys": keys }), &headers)
        .await
}

/// Refuses a rescue of a Pi the configured rescue image cannot boot (422 naming it).
async fn rescue_boots(st: &AppState, pi: &crate::model::Pi) -> Result<(), ApiError> {
    let config = st.config.get();
    let name = &config.rescue.image;
    let images = st.db.list_images().await?;
    let Some(image) = images.iter().find(|i| &i.name == name) else { return Ok(()) };
    validate::image_boots_model(name, &image.models, &pi.model)
        .map_err(|message| ApiError::invalid("rescue.image", message))
}

/// At least one key, each a valid OpenSSH public key line: reinstall and rescue alike.
fn check_ssh_keys(errs: &mut Vec<BadField>, keys: &[String]) {
    if keys.is_empty() {
        errs.push(BadField {
            field: "ssh_keys".into(),
            message: "at least one SSH public key is required".into(),
        });
    }
    for (i, key) in keys.iter().enumerate() {
        errs.extend(validate::check(&format!("ssh_keys[{i}]"), key, validate::ssh_public_key));
    }
}

/// The job an action on a Pi in `state` starts, or the 409 message refusing it.
///
/// - rescue: from `deployed` or `failed` (a failed boot is what rescue is for);
/// - unrescue: from `rescue`, or `failed` (a rescue or unrescue that failed midway);
/// - reboot: in `rescue` it is an unrescue (back to the Pi's own root);
/// - reimage: not in `rescue` (leave rescue first), else as the lifecycle allows;
/// - power-on / power-off: in `rescue` too (a power-on boots the rescue system again).
pub fn job_for(state: PiState, asked: JobKind) -> Result<JobKind, String> {
    let refuse = |hint: &str| Err(format!("the Pi is {state}; {asked} is not possible now{hint}"));
    let allowed = |ok: bool, hint: &str| if ok { Ok(asked) } else { refuse(hint) };
    // Every kind is named, so a new kind must be placed here.
    match asked {
        JobKind::Reboot if state == PiState::Rescue => Ok(JobKind::Unrescue),
        JobKind::PowerOn | JobKind::PowerOff | JobKind::Reboot => {
            allowed(state.accepts_power_actions(), "")
        }
        JobKind::Reimage | JobKind::Restore if state == PiState::Rescue => {
            refuse(": leave rescue first (POST /v1/pis/{id}/unrescue)")
        }
        JobKind::Reimage | JobKind::Restore => {
            allowed(transition(state, LifecycleEvent::DeployStarted).is_ok(), "")
        }
        JobKind::Snapshot => allowed(state.accepts_power_actions(), ""),
        JobKind::Rescue if state == PiState::Rescue => refuse(": it is in rescue already"),
        JobKind::Rescue => allowed(transition(state, LifecycleEvent::RescueStarted).is_ok(), ""),
        JobKind::Unrescue => {
            allowed(transition(state, LifecycleEvent::RescueEnded).is_ok(), ": it is not in rescue")
        }
        JobKind::RackShelf => refuse(""),
    }
}

#[utoipa::path(post, path = "/v1/pis/{id}/reimage", tag = "pis", request_body = ReimageRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Job), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 422, body = super::Problem), (status = 429, description = "Past `[power] max_cycles` power cycles of this Pi in `cycle_window_seconds` (actions that power the Pi on; not power-off); no job was created", body = super::Problem, headers(("Retry-After" = u64, description = "Seconds until the Pi may be power-cycled again")))),
    security(("bearer" = [])))]
pub async fn reimage(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Body<ReimageRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    // Check the Pi before the body so another customer's Pi is a 404 whatever was sent.
    let pi = visible_pi(&st, &who, &id).await?;
    let Body(req) = body?;
    let mut errs = Vec::new();
    match st.db.list_images().await?.iter().find(|i| i.name == req.image) {
        None => errs.push(BadField {
            field: "image".into(),
            message: format!("unknown image {:?}; see GET /v1/images", req.image),
        }),
        Some(image) => errs.extend(validate::check_with("image", || {
            validate::image_boots_model(&image.name, &image.models, &pi.model)
        })),
    }
    check_ssh_keys(&mut errs, &req.ssh_keys);
    validate::finish(errs)?;
    start_job(
        &st,
        &who,
        &id,
        JobKind::Reimage,
        serde_json::json!({ "image": req.image, "ssh_keys": req.ssh_keys }),
        &headers,
    )
    .await
}

pub(super) async fn start_job(
    st: &AppState,
    who: &crate::auth::Principal,
    id: &str,
    kind: JobKind,
    params: serde_json::Value,
    headers: &HeaderMap,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let pi = visible_pi(st, who, id).await?;
    let key = idempotency_key(headers)?;
    if let Some(key) = &key {
        // A retry returns its job even when that job has since changed the Pi's state
        // or used up its power cycles.
        let candidates: Vec<NewJob> = replay_kinds(kind)
            .into_iter()
            .map(|kind| NewJob {
                kind,
                pi: Some(pi.id.clone()),
                shelf: None,
                params: params.clone(),
                idempotency_key: Some(key.clone()),
            })
            .collect();
        if let Some(outcome) = st.db.replay(who, key, &candidates).await? {
            return answer(st, &pi, kind, outcome).await;
        }
    }
    let kind = job_for(pi.state, kind).map_err(|message| ApiError::Conflict {
        code: "invalid_state",
        message: format!("Pi {}: {}", pi.id, message.replace("{id}", pi.id.as_str())),
    })?;
    if pi.slot.is_none() {
        return Err(ApiError::Conflict {
            code: "not_in_slot",
            message: format!("Pi {} is not in a slot", pi.id),
        });
    }
    check_power_cycles(st, &pi.id, kind).await?;
    let new = NewJob { kind, pi: Some(pi.id.clone()), shelf: None, params, idempotency_key: key };
    let outcome = st.db.create_job(&new, who).await?;
    answer(st, &pi, kind, outcome).await
}

/// The kinds a request for `asked` may have been turned into, in any state.
fn replay_kinds(asked: JobKind) -> Vec<JobKind> {
    let mut kinds: Vec<JobKind> =
        PiState::ALL.into_iter().filter_map(|s| job_for(s, asked).ok()).collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    kinds
}

/// The API's answer to a job creation's outcome: 202 with the job (new or replayed), or
/// the problem that kept it from being created.
async fn answer(
    st: &AppState,
    pi: &Pi,
    kind: JobKind,
    outcome: CreateOutcome,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let job = match outcome {
        CreateOutcome::Created(job) => {
            st.metrics
                .counter("bramble_jobs_created_total", "Jobs created through the API")
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            job
        }
        CreateOutcome::Replayed(job) => job,
        CreateOutcome::KeyReused { existing } => {
            return Err(ApiError::KeyReused { existing: existing.0 });
        }
        CreateOutcome::Busy { running } => return Err(ApiError::PiBusy { running: running.0 }),
        CreateOutcome::Maintenance => {
            return Err(ApiError::Conflict {
                code: "maintenance",
                message: format!("Pi {} is in maintenance; {kind} is not possible now", pi.id),
            });
        }
    };
    let location = format!("/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(st.present(job).await?)))
}

/// `[power]`'s rate limit: a job that power-cycles the Pi is refused (429, no job
/// created) while the Pi already had `max_cycles` such jobs within the window.
async fn check_power_cycles(
    st: &AppState,
    pi: &crate::ids::PiId,
    kind: JobKind,
) -> Result<(), ApiError> {
    let config = st.config.get();
    let cfg = &config.power;
    if !crate::poe::limit::cycles(kind) || cfg.max_cycles == 0 {
        return Ok(());
    }
    let now = crate::time::now_millis();
    let window_ms = i64::try_from(cfg.window.as_millis()).unwrap_or(i64::MAX);
    let recent = st.db.power_cycle_times(pi, now.saturating_sub(window_ms), cfg.max_cycles).await?;
    match crate::poe::limit::retry_after(cfg, &recent, now) {
        None => Ok(()),
        Some(wait) => Err(ApiError::TooManyPowerCycles {
            message: format!(
                "Pi {pi} was power-cycled {} times in the last {} s (the limit); {kind} is \
                 possible again in {} s",
                recent.len(),
                cfg.window.as_secs(),
                wait.as_secs()
            ),
            retry_after_seconds: wait.as_secs(),
        }),
    }
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        v.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?;
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::invalid("Idempotency-Key", "must be 1-255 characters"));
    }
    Ok(Some(key.to_string()))
}
