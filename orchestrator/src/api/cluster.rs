//! `/v1/controllers`: the controllers sharing this inventory, for operators.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{Caller, require_operator};
use super::{ApiError, AppState};
use crate::db::cluster::ControllerRow;

/// A controller with its liveness and what it serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControllerView {
    #[serde(flatten)]
    pub controller: ControllerRow,
    /// Beat within one lease period and not stopped.
    pub alive: bool,
    /// Names of the switches (with their shelves) it serves.
    pub switches: Vec<String>,
    /// Cluster singletons whose lease it holds now (`webhooks`, `reconcile:<switch>`).
    pub leases: Vec<String>,
    /// Only on the controller that answers: keys of its config file changed since it
    /// started that take effect only after a restart (empty: none). See
    /// docs/configuration.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_pending: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ControllerList {
    pub items: Vec<ControllerView>,
}

#[utoipa::path(get, path = "/v1/controllers", tag = "cluster",
    responses((status = 200, body = ControllerList), (status = 403, body = super::Problem)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<ControllerList>, ApiError> {
    require_operator(&who)?;
    let (controllers, now) = st.db.list_controllers().await?;
    let config = st.config.get();
    let (lease, me) = (config.cluster.lease, config.cluster.name.as_str());
    let pending: Vec<String> =
        st.reload.restart_pending().into_iter().map(str::to_string).collect();
    let switches = st.db.list_switches().await?;
    let leases = st.db.live_leases(now).await?;
    let items = controllers
        .into_iter()
        .map(|c| ControllerView {
            alive: c.alive(now, lease),
            switches: switches
                .iter()
                .filter(|s| s.controller.as_deref() == Some(c.name.as_str()))
                .map(|s| s.name.clone())
                .collect(),
            leases: leases.iter().filter(|l| l.holder == c.name).map(|l| l.name.clone()).collect(),
            restart_pending: (c.name == me).then(|| pending.clone()),
            controller: c,
        })
        .collect();
    Ok(Json(ControllerList { items }))
}
