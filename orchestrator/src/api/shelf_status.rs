//! `GET /v1/shelves/{name}/status`: one shelf's ports, Pis, boot stages and active jobs
//! for the operator's shelf view (`bramble shelf show`, the `/ui` page).

use axum::Json;
use axum::extract::{Path, State};

use super::extract::{Caller, require_operator};
use super::{ApiError, AppState};
use crate::db::status::ShelfStatus;

#[utoipa::path(get, path = "/v1/shelves/{name}/status", tag = "fabric",
    params(("name" = String, Path, description = "shelf id or name")),
    responses(
        (status = 200, body = ShelfStatus, description = "every slot in port order with its flag, Pi, latest boot event and active job"),
        (status = 403, body = super::Problem, description = "not an operator token"),
        (status = 404, body = super::Problem),
    ),
    security(("bearer" = [])))]
pub async fn get_shelf_status(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Result<Json<ShelfStatus>, ApiError> {
    require_operator(&who)?;
    st.db
        .shelf_status(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("shelf {name}")))
}
