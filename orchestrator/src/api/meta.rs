//! Health, metrics, the OpenAPI document, the audit log, images and API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Body, Caller, Params, event_cursor, list_order, page_limit, require_operator,
};
use super::{ApiError, AppState};
use crate::auth::{Role, generate_token};
use crate::db::events::{EventFilter, NewEvent};
use crate::db::{Order, Page};
use crate::ids::{CustomerId, TokenId};
use crate::metrics::Sample;
use crate::model::{Event, Image, Token};
use crate::validate;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health), (status = 503, body = super::Problem)))]
pub async fn healthz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.db.q("SELECT 1").execute(st.db.pool()).await.map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(Health { status: "ok".into() }))
}

#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pis = st
        .db
        .count_pis_by_state()
        .await?
        .into_iter()
        .map(|(s, n)| Sample::new("bramble_pis", n as f64).label("state", &s))
        .collect();
    let jobs = st
        .db
        .count_jobs_for_metrics()
        .await?
        .into_iter()
        .map(|j| {
            Sample::new("bramble_jobs", j.n as f64).label("state", &j.state).label("kind", &j.kind)
        })
        .collect();
    let config = st.config.get();
    let c = st.db.count_controllers(config.cluster.lease).await?;
    let controllers = [("alive", c.alive), ("silent", c.silent), ("stopped", c.stopped)]
        .into_iter()
        .map(|(s, n)| Sample::new("bramble_controllers", n as f64).label("state", s))
        .collect();
    let mut gauges = vec![
        ("bramble_pis", "Pis in the inventory by lifecycle state", pis),
        ("bramble_jobs", "Jobs queued, running or failed (ever), by kind", jobs),
        (
            "bramble_controllers",
            "Controllers of this inventory: alive, silent (stopped beating without a clean stop) or stopped",
            controllers,
        ),
    ];
    if config.webhooks.is_some() {
        let cursor =
            crate::webhooks::store::load_cursor(&st.db, crate::webhooks::store::CURSOR_NAME)
                .await?;
        let lag = st.db.event_lag_seconds(cursor).await?;
        gauges.push((
            "bramble_webhook_lag_seconds",
            "Age of the oldest event the webhook sender has not handled yet (0 when caught up)",
            vec![Sample::new("bramble_webhook_lag_seconds", lag)],
        ));
    }
    let text = st.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListAudit {
    /// Only events about this Pi.
    pi: Option<String>,
    /// Only events caused by or about this customer (operators only).
    customer: Option<String>,
    /// Only events whose kind starts with this.
    kind: Option<String>,
    limit: Option<usize>,
    #[param(value_type = Option<i64>)]
    cursor: super::pis::EventCursor,
    /// `desc` (newest first, the default) or `asc` (oldest first).
    #[param(value_type = Option<Order>)]
    order: Option<String>,
}

/// The audit log. Customers see the events of their own requests and Pis.
#[utoipa::path(get, path = "/v1/events", tag = "meta", params(ListAudit), responses((status = 200, body = Page<Event>)), security(("bearer" = [])))]
pub async fn events(
    State(st): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<ListAudit>,
) -> Result<Json<Page<Event>>, ApiError> {
    let (cursor, order) = (event_cursor(q.cursor)?, list_order(q.order)?);
    let pi = match &q.pi {
        Some(id) => Some(super::pis::visible_pi(&st, &who, id).await?.id),
        None => None,
    };
    let customer = match who.customer() {
        Some(c) => Some(c.clone()),
        None => q.customer.map(CustomerId),
    };
    let f = EventFilter { pi, customer, kind_prefix: q.kind };
    Ok(Json(st.db.list_events(&f, cursor, order, page_limit(q.limit)?).await?))
}

#[utoipa::path(get, path = "/v1/images", tag = "meta", responses((status = 200, body = Vec<Image>)), security(("bearer" = [])))]
pub async fn images(
    State(st): State<AppState>,
    Caller(_who): Caller,
) -> Result<Json<Vec<Image>>, ApiError> {
    Ok(Json(st.db.list_images().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    role: Role,
    /// Required for `customer` tokens, refused for `operator` tokens.
    customer: Option<String>,
    #[serde(default)]
    label: String,
}

/// A new token. `token` is shown once and cannot be read back.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    info: Token,
    token: String,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<Token>), (status = 403, body = super::Problem)), security(("bearer" = [])))]
pub async fn list_tokens(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Vec<Token>>, ApiError> {
    require_operator(&who)?;
    Ok(Json(st.db.list_tokens().await?))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = super::Problem), (status = 422, body = super::Problem)), security(("bearer" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&who)?;
    let customer = match (req.role, req.customer) {
        (Role::Customer, Some(c)) => {
            validate::finish(validate::check("customer", &c, validate::customer_id))?;
            Some(CustomerId(c))
        }
        (Role::Customer, None) => {
            return Err(ApiError::invalid("customer", "is required for customer tokens"));
        }
        (Role::Operator, Some(_)) => {
            return Err(ApiError::invalid(
                "customer",
                "operator tokens are not bound to a customer",
            ));
        }
        (Role::Operator, None) => None,
    };
    if req.label.len() > 200 {
        return Err(ApiError::invalid("label", "must be at most 200 characters"));
    }
    let secret = generate_token();
    let info = st.db.create_token(&secret, req.role, customer.as_ref(), &req.label).await?;
    let e = NewEvent::new(
        "token.created",
        who.token().as_str(),
        format!("{} token {} created", req.role.as_str(), info.id),
    )
    .customer(customer.as_ref());
    st.db.append_event(&e).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token: secret })))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)), security(("bearer" = [])))]
pub async fn revoke_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_operator(&who)?;
    if !st.db.revoke_token(&TokenId(id.clone())).await? {
        return Err(ApiError::not_found(format!("token {id}")));
    }
    st.db
        .append_event(&NewEvent::new(
            "token.revoked",
            who.token().as_str(),
            format!("token {id} revoked"),
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
