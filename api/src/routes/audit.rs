//! `GET /api/audit`: who asked for which change (operators only), newest first.

use crate::auth::Operator;
use crate::extract::ApiQuery;
use crate::openapi::{AuthProblems, QueryProblems};
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::{AuditList, AuditQuery};
use axum::Json;
use axum::extract::State;
use model::AuditFilter;
use model::store::Store;
use std::sync::Arc;

/// The audit log, newest first, filtered by server, actor and action; page with `before`.
#[utoipa::path(
    get, path = "/api/audit", tag = "ops",
    params(AuditQuery),
    responses((status = 200, description = "A page of entries, newest first", body = AuditList), AuthProblems, QueryProblems),
    security(("bearer" = []))
)]
pub async fn list_audit(
    State(ctx): State<Arc<Ctx>>,
    Operator(_op): Operator,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let cfg = &ctx.app.config;
    let limit = match q.limit {
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => n.min(cfg.page_size_max),
        None => cfg.page_size_default,
    };
    let filter = AuditFilter {
        server_id: q.server,
        actor: q.actor,
        action: q.action,
        before: q.before,
    };
    let items = ctx.app.store.list_audit(&filter, limit).await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditList { items, next }))
}
