//! `/api/operations/{id}`: an accepted request and how its server is doing.

use crate::auth::{Principal, Reader};
use crate::extract::parse_id;
use crate::openapi::{AuthProblems, IdProblems};
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::{OperationState, OperationStatus, ServerSummary};
use axum::Json;
use axum::extract::{Path, State};
use model::store::Store;
use model::{Operation, OperationId, Server};
use std::sync::Arc;

/// An operation with its server, live or archived, if the caller may see it (404 alike
/// otherwise).
pub(crate) async fn visible_operation(
    ctx: &Ctx,
    p: &Principal,
    id: OperationId,
) -> ApiResult<(Operation, Option<Server>, bool)> {
    let not_found = || ApiError::NotFound(format!("operation {id} not found"));
    let op = ctx
        .app
        .store
        .get_operation(id)
        .await?
        .ok_or_else(not_found)?;
    let (server, archived) = match ctx.app.store.get_server(op.server_id).await? {
        Some(s) => (Some(s), false),
        None => match ctx.app.store.get_archived(op.server_id).await? {
            Some(a) => (Some(a.server), true),
            None => (None, false),
        },
    };
    let visible = match &server {
        Some(s) => p.sees(&s.customer_id),
        // Nothing left to prove ownership with: only unscoped tokens may see it.
        None => p.scope.is_none(),
    };
    if !visible {
        return Err(not_found());
    }
    Ok((op, server, archived))
}

/// An operation, its state, and a summary of its server (phase, step, readiness, failure).
#[utoipa::path(
    get, path = "/api/operations/{id}", tag = "operations",
    params(("id" = String, Path, format = Uuid, description = "Operation id")),
    responses((status = 200, description = "The operation and its server", body = OperationStatus), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn get_operation(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    Path(id): Path<String>,
) -> ApiResult<Json<OperationStatus>> {
    let id = parse_id::<OperationId>("operation", &id)?;
    let (operation, server, archived) = visible_operation(&ctx, &p, id).await?;
    let server = server.map(|s| crate::redact::server(&p, s));
    Ok(Json(OperationStatus {
        state: OperationState::of(&operation, server.as_ref(), archived),
        server: server.as_ref().map(|s| ServerSummary::of(s, archived)),
        operation,
    }))
}
