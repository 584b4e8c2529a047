//! Operational routes: health, readiness, metrics, the OpenAPI document, controller state and
//! orphans.

use crate::auth::OpsReader;
use crate::openapi::AuthProblems;
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::{ControllerStatus, Health, OrphanList};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use model::store::Store;
use std::sync::Arc;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers and can write (a small write, so a full or read-only disk
/// shows as unready).
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store is unreachable or cannot write", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Health>> {
    ctx.app.store.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 404, description = "Metrics are not enabled", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(ctx): State<Arc<Ctx>>) -> ApiResult<Response> {
    let Some(handle) = &ctx.app.metrics else {
        return Err(ApiError::NotFound(
            "metrics are not enabled in this process".into(),
        ));
    };
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// This OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI document", body = Object))
)]
pub async fn openapi_json(State(ctx): State<Arc<Ctx>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        ctx.openapi_json.clone(),
    )
        .into_response()
}

/// Controller replicas that are alive, with the leases they hold and their queue depth.
#[utoipa::path(
    get, path = "/api/controller", tag = "ops",
    responses((status = 200, description = "Alive replicas", body = ControllerStatus), AuthProblems),
    security(("bearer" = []))
)]
pub async fn controller_status(
    State(ctx): State<Arc<Ctx>>,
    _caller: OpsReader,
) -> ApiResult<Json<ControllerStatus>> {
    let replicas = ctx
        .app
        .store
        .list_replicas(ctx.app.config.replica_alive_within)
        .await?;
    Ok(Json(ControllerStatus {
        leases_held: replicas.iter().map(|r| r.leases_held).sum(),
        queue_depth: replicas.iter().map(|r| r.queue_depth).sum(),
        replicas,
    }))
}

/// Containers carrying our ownership marker that no server owns (reported, never destroyed).
#[utoipa::path(
    get, path = "/api/orphans", tag = "ops",
    responses((status = 200, description = "Orphaned containers", body = OrphanList), AuthProblems),
    security(("bearer" = []))
)]
pub async fn orphans(
    State(ctx): State<Arc<Ctx>>,
    _caller: OpsReader,
) -> ApiResult<Json<OrphanList>> {
    Ok(Json(OrphanList {
        items: ctx.app.store.list_orphans().await?,
    }))
}
