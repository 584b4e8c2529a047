//! The Portal's remaining routes from the previous API, served unchanged beside the native
//! ones and scoped to the caller like them (`docs/portal.md`):
//! - `DELETE /api/containers/{vmid}`: `DELETE /api/servers/{id}` (the old one needed no
//!   authentication; this one does);
//! - `GET /api/health`: the `/healthz` answer;
//! - `GET /api/instances`: the caller's instance rows.

use crate::auth::{Reader, Writer};
use crate::extract::{ApiQuery, ServerRef, check_customer_id};
use crate::openapi::{AuthProblems, IdProblems, QueryProblems};
use crate::problem::{ApiError, ApiResult};
use crate::routes::servers::{accepted, visible_server};
use crate::state::Ctx;
use crate::wire::{Accepted, Health};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use model::store::{ServerFilter, Store};
use model::{Kind, Phase, Server};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Delete a server by its VMID: the same deletion as `DELETE /api/servers/{id}` (202, the
/// teardown runs); another customer's VMID is 404, as if it did not exist.
#[utoipa::path(
    delete, path = "/api/containers/{vmid}", tag = "portal",
    params(("vmid" = u32, Path, description = "The server's VMID")),
    responses((status = 202, description = "Deletion accepted", body = Accepted), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn delete_container(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    Path(vmid): Path<String>,
) -> ApiResult<Response> {
    let r = match ServerRef::parse(&vmid)? {
        r @ ServerRef::Vmid(_) => r,
        ServerRef::Id(_) => {
            return Err(ApiError::BadRequest(
                "this route takes a VMID; use DELETE /api/servers/{id} for an id".into(),
            ));
        }
    };
    let id = visible_server(&ctx, &p, r).await?.id;
    let (server, op) = ctx.app.store.request_deletion(id).await?;
    tracing::info!(server = %id, "deletion requested (by VMID)");
    crate::audit::record(
        &ctx,
        &p,
        crate::audit::Action::ServerDelete,
        Some(id),
        "deletion",
    )
    .await;
    Ok(accepted(crate::redact::server(&p, server), &op))
}

/// The previous API's health check: the `/healthz` answer.
#[utoipa::path(get, path = "/api/health", tag = "portal", responses((status = 200, description = "Alive", body = Health)))]
pub async fn api_health() -> Json<Health> {
    crate::routes::ops::healthz().await
}

/// Query of `GET /api/instances`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstancesQuery {
    /// Only this customer's (a customer's own token or JWT always sees only its own).
    pub customer_id: Option<String>,
}

/// One row of `GET /api/instances`: what the Portal's server cards read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRow {
    #[schema(value_type = String, format = Uuid)]
    pub server_id: model::ServerId,
    pub customer_id: String,
    pub vmid: Option<u32>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    /// `game` or `dev`.
    pub ctype: Kind,
    pub game: Option<String>,
    pub variant: Option<String>,
    pub version: String,
    pub runtime: Option<String>,
    pub ip: Option<String>,
    /// zlh's derived phase (`queued`, `provisioning`, `ready`, `degraded`, `failed`,
    /// `deleting`).
    pub status: Phase,
    /// The step a server that is not Ready is at (`clone-container`, ...).
    pub step: Option<String>,
}

/// The `{items}` of `GET /api/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceList {
    pub items: Vec<InstanceRow>,
}

fn row(s: Server) -> InstanceRow {
    let (phase, step) = s.phase();
    InstanceRow {
        server_id: s.id,
        customer_id: s.customer_id,
        vmid: s.status.vmid.or(s.reserved_vmid),
        hostname: s.status.hostname,
        fqdn: s.status.fqdn,
        ctype: s.spec.kind,
        game: s.spec.game,
        variant: s.spec.variant.map(|v| v.as_str().to_string()),
        version: s.spec.version,
        runtime: s.spec.runtime,
        ip: s.status.ip,
        status: phase,
        step: step.map(|s| s.as_str().to_string()),
    }
}

/// The caller's instances (every customer's for an unscoped token, or `customerId`'s),
/// never another customer's for a customer.
#[utoipa::path(
    get, path = "/api/instances", tag = "portal",
    params(InstancesQuery),
    responses((status = 200, description = "The caller's instances", body = InstanceList), AuthProblems, QueryProblems),
    security(("bearer" = []))
)]
pub async fn list_instances(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    ApiQuery(q): ApiQuery<InstancesQuery>,
) -> ApiResult<Json<InstanceList>> {
    if let Some(c) = &q.customer_id {
        check_customer_id("customerId", c)?;
    }
    let customer_id = match (&p.scope, q.customer_id) {
        (Some(own), Some(asked)) if *own != asked => {
            return Ok(Json(InstanceList { items: vec![] }));
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let filter = ServerFilter {
        customer_id,
        ..Default::default()
    };
    let servers = model::store::list_all(&ctx.app.store, &filter).await?;
    let items = crate::redact::servers(&p, servers)
        .into_iter()
        .filter(|s| p.sees(&s.customer_id))
        .map(row)
        .collect();
    Ok(Json(InstanceList { items }))
}
