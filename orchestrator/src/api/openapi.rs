//! The OpenAPI document, generated from the handlers' annotations. A checked-in copy
//! lives at `docs/openapi.json`; a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{cluster, console, error, fabric, hardware, jobs, meta, pis, shelf_status, snapshots};

#[derive(OpenApi)]
#[openapi(
    info(title = "Bramble", description = "Bare-metal Raspberry Pi cloud controller API", version = "1"),
    paths(
        meta::healthz, meta::metrics, meta::events, meta::images, meta::list_tokens, meta::create_token, meta::revoke_token,
        pis::list, pis::get, pis::create, pis::update, pis::events, pis::power_on, pis::power_off, pis::reboot, pis::reimage, pis::rescue, pis::unrescue,
        hardware::maintenance, hardware::accept, hardware::dismiss,
        snapshots::list, snapshots::create, snapshots::delete, snapshots::restore,
        console::get,
        jobs::list, jobs::get, jobs::cancel, jobs::kinds,
        fabric::list_switches, fabric::create_switch, fabric::update_switch, fabric::list_shelves, fabric::get_shelf, fabric::enroll_shelf, fabric::rack_shelf,
        shelf_status::get_shelf_status,
        cluster::list,
    ),
    components(schemas(error::Problem, error::FieldError, crate::secret::SnmpCredentials)),
    modifiers(&BearerAuth),
    tags((name = "pis"), (name = "snapshots"), (name = "jobs"), (name = "fabric"), (name = "tokens"), (name = "cluster"), (name = "meta"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
