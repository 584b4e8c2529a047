//! `/api/servers`: desired servers.

use crate::admission::{
    admit, check_disk_not_shrunk, check_offered, check_standing, resolve_customer, validate_spec,
};
use crate::audit::{self, Action};
use crate::auth::store_filter;
use crate::auth::{Operator, Principal, Reader, Writer};
use crate::extract::{ApiJson, ApiQuery, ServerPath, ServerRef, idempotency_key, if_match};
use crate::openapi::{
    AdmissionProblems, AuthProblems, BodyProblems, ConflictProblems, IdProblems, QueryProblems,
};
use crate::problem::{ApiError, ApiResult, kind};
use crate::redact;
use crate::state::Ctx;
use crate::wire::{
    Accepted, BulkReconcileQuery, BulkReconciled, CreateServerRequest, EventList, ListQuery,
    PatchServerRequest, ServerCard, ServerList, WatchStreamEvent,
};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::store::{PageRequest, ServerFilter, Store};
use model::{Operation, Role, Server, ServerId};
use serde::Deserialize;
use std::sync::Arc;

/// The status URL of an operation.
pub fn status_url(op: &Operation) -> String {
    format!("/api/operations/{}", op.id)
}

pub(crate) fn accepted(server: Server, op: &Operation) -> Response {
    let url = status_url(op);
    let mut res = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            server,
            operation_id: op.id,
            status_url: url.clone(),
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

pub(crate) fn with_etag(server: Server) -> Response {
    let etag = format!("\"{}\"", server.resource_version);
    let mut res = Json(server).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// The path parameter of every server route.
pub(crate) const SERVER_ID_DOC: &str = "Server id (UUID) or its VMID";

/// The server a path names (by id or VMID) if it exists and the caller may see it; 404 alike
/// otherwise (no enumeration).
pub(crate) async fn visible_server(ctx: &Ctx, p: &Principal, r: ServerRef) -> ApiResult<Server> {
    let found = match r {
        ServerRef::Id(id) => ctx.app.store.get_server(id).await?,
        ServerRef::Vmid(vmid) => {
            // The filter also matches observed VMIDs; the reservation is the identity (one
            // server per VMID), so only it counts.
            let filter = ServerFilter {
                vmid: Some(vmid),
                customer_id: p.scope.clone(),
                ..Default::default()
            };
            model::store::list_all(&ctx.app.store, &filter)
                .await?
                .into_iter()
                .find(|s| s.reserved_vmid == Some(vmid))
        }
    };
    found
        .filter(|s| p.sees(&s.customer_id))
        .ok_or_else(|| ApiError::NotFound(format!("server {r} not found")))
}

/// Create a server: record the desired state and answer 202 with the operation to poll.
///
/// `Idempotency-Key`: the same key with the same body returns the same server and operation;
/// with a different body, 409. Without a key, an identical request for the same customer still
/// in progress returns that operation, and a different one while one is in progress is 409.
#[utoipa::path(
    post, path = "/api/servers", tag = "servers",
    request_body = CreateServerRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1-255 visible ASCII characters")),
    responses(
        (status = 202, description = "Accepted (also an idempotent replay)", body = Accepted,
         headers(("Location" = String, description = "The status URL"))),
        AuthProblems, AdmissionProblems, BodyProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn create_server(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateServerRequest>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let customer = resolve_customer(&p, req.customer_id, "customerId")?;
    let c = admit(&ctx, customer, req.spec, key, "spec.").await?;
    if c.created {
        audit::record(&ctx, &p, Action::ServerCreate, Some(c.server.id), "create").await;
    }
    Ok(accepted(redact::server(&p, c.server), &c.operation))
}

/// List servers (keyset pagination by id), or with `watch=true` stream changes as SSE.
///
/// The watch stream sends `event: upsert` (data: the server) and `event: delete` (data:
/// `{id}`), each with `id: <sequence>`; `event: error` (data: a problem) ends it. The
/// `WatchStreamEvent` schema describes every kind. Reconnect with `Last-Event-ID` (or
/// `resourceVersion=`) to receive exactly what was missed. Without a resume point the stream
/// starts with the current list as `upsert` events without ids, then an `event: bookmark`
/// carrying the sequence to resume from.
#[utoipa::path(
    get, path = "/api/servers", tag = "servers",
    params(ListQuery, ("Last-Event-ID" = Option<String>, Header, description = "Watch: resume after this sequence")),
    responses(
        (status = 200, description = "A page of servers, or (watch) an event stream",
         content(
            (ServerList = "application/json"),
            (WatchStreamEvent = "text/event-stream"),
         )),
        AuthProblems, QueryProblems,
    ),
    security(("bearer" = []))
)]
pub async fn list_servers(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    if q.watch.unwrap_or(false) {
        return crate::watch::watch(ctx, p, &headers, &q).await;
    }
    if q.resource_version.is_some() {
        return Err(ApiError::BadRequest(
            "resourceVersion is only meaningful with watch=true".into(),
        ));
    }
    let cfg = &ctx.app.config;
    let limit = match q.limit {
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => n.min(cfg.page_size_max),
        None => cfg.page_size_default,
    };
    let Some(filter) = store_filter(&p, &q.filter()) else {
        return Ok(Json(ServerList {
            items: vec![],
            next: None,
            cards: vec![],
        })
        .into_response());
    };
    let page = ctx
        .app
        .store
        .list_servers(
            &filter,
            PageRequest {
                after: q.after,
                limit,
            },
        )
        .await?;
    let cards = cards(&ctx, &page.items).await?;
    Ok(Json(ServerList {
        items: redact::servers(&p, page.items),
        next: page.next,
        cards,
    })
    .into_response())
}

/// The cards of a page of servers: one store read for the page's live detail.
async fn cards(ctx: &Ctx, servers: &[Server]) -> ApiResult<Vec<ServerCard>> {
    let ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    let stats: std::collections::HashMap<ServerId, model::ServerStats> = ctx
        .app
        .store
        .list_stats(&ids)
        .await?
        .into_iter()
        .map(|s| (s.server_id, s))
        .collect();
    Ok(servers
        .iter()
        .map(|s| ServerCard::of(s, stats.get(&s.id)))
        .collect())
}

/// The server's latest live detail: usage from Proxmox, players from the Server List Ping,
/// the Agent's last answer, each with when it was seen (parts never seen are absent).
#[utoipa::path(
    get, path = "/api/servers/{id}/stats", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses((status = 200, description = "The latest sample", body = model::ServerStats), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn server_stats(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    ServerPath(r): ServerPath,
) -> ApiResult<Json<model::ServerStats>> {
    let id = visible_server(&ctx, &p, r).await?.id;
    let stats = ctx.app.store.list_stats(&[id]).await?.pop();
    Ok(Json(stats.unwrap_or(model::ServerStats {
        server_id: id,
        ..Default::default()
    })))
}

/// One server, with its status. `ETag` is its `resourceVersion`.
#[utoipa::path(
    get, path = "/api/servers/{id}", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses(
        (status = 200, description = "The server", body = Server, headers(("ETag" = String, description = "\"<resourceVersion>\""))),
        AuthProblems, IdProblems,
    ),
    security(("bearer" = []))
)]
pub async fn get_server(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    ServerPath(r): ServerPath,
) -> ApiResult<Response> {
    Ok(with_etag(redact::server(
        &p,
        visible_server(&ctx, &p, r).await?,
    )))
}

/// Replace a server's spec (generation + 1); 202 with the update operation.
/// `If-Match: "<resourceVersion>"` (or `resourceVersion` in the body) makes it conditional.
/// Restart counters (`spec.restarts`) never go down: a lower value keeps the recorded one.
#[utoipa::path(
    patch, path = "/api/servers/{id}", tag = "servers",
    params(
        ("id" = String, Path, description = SERVER_ID_DOC),
        ("If-Match" = Option<String>, Header, description = "\"<resourceVersion>\": refuse (409) if the server changed since"),
    ),
    request_body = PatchServerRequest,
    responses(
        (status = 202, description = "Update accepted", body = Accepted),
        AuthProblems, AdmissionProblems, IdProblems, BodyProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn patch_server(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ServerPath(r): ServerPath,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<PatchServerRequest>,
) -> ApiResult<Response> {
    let expected = match (if_match(&headers)?, req.resource_version) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::BadRequest(
                "If-Match and resourceVersion disagree".into(),
            ));
        }
        (a, b) => a.or(b),
    };
    let server = visible_server(&ctx, &p, r).await?;
    let id = server.id;
    if server.is_deleting() {
        return Err(ApiError::Conflict {
            kind: kind::CONFLICT,
            detail: format!("server {id} is being deleted"),
            operation: None,
        });
    }
    if let Some(rv) = expected
        && rv != server.resource_version
    {
        return Err(crate::problem::ApiError::from(
            model::store::StoreError::Stale,
        ));
    }
    if req.spec.kind != server.spec.kind {
        return Err(ApiError::invalid_field(
            "spec.kind",
            format!(
                "cannot change from {} to {}",
                server.spec.kind, req.spec.kind
            ),
        ));
    }
    // Restart counters never go back: a spec read before a restart must not cancel it.
    let (had, asked) = (server.spec.restarts, &mut req.spec.restarts);
    asked.game = asked.game.max(had.game);
    asked.container = asked.container.max(had.container);
    validate_spec(&req.spec, "spec.")?;
    check_disk_not_shrunk(&server.spec, &req.spec, "spec.")?;
    check_offered(&ctx.app.catalog, &req.spec, "spec.")?;
    check_standing(&ctx, &p, &server.customer_id).await?;
    // The quota (memory, cores, disk, for what grows) is checked in the write's transaction.
    let store = &ctx.app.store;
    let (server, op) = if p.role == Role::Operator {
        store.update_spec(id, req.spec, expected).await?
    } else {
        store
            .update_spec_within_quota(id, req.spec, expected)
            .await?
    };
    tracing::info!(server = %id, generation = server.generation, "spec updated");
    let detail = format!("spec change to generation {}", server.generation);
    audit::record(&ctx, &p, Action::ServerPatch, Some(id), &detail).await;
    Ok(accepted(redact::server(&p, server), &op))
}

/// Request deletion (idempotent); 202 with the delete operation.
#[utoipa::path(
    delete, path = "/api/servers/{id}", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses((status = 202, description = "Deletion accepted", body = Accepted), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn delete_server(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ServerPath(r): ServerPath,
) -> ApiResult<Response> {
    let id = visible_server(&ctx, &p, r).await?.id;
    let (server, op) = ctx.app.store.request_deletion(id).await?;
    tracing::info!(server = %id, "deletion requested");
    audit::record(&ctx, &p, Action::ServerDelete, Some(id), "deletion").await;
    Ok(accepted(redact::server(&p, server), &op))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconcileQuery {
    /// Also clear a terminal failure, so the controller tries again.
    pub retry: Option<bool>,
}

/// Ask the controller to reconcile now; with `retry=true`, also retry a failed server.
#[utoipa::path(
    post, path = "/api/servers/{id}/reconcile", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC), ReconcileQuery),
    responses((status = 202, description = "Reconcile requested", body = Server), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn reconcile_server(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ServerPath(r): ServerPath,
    ApiQuery(q): ApiQuery<ReconcileQuery>,
) -> ApiResult<Response> {
    let id = visible_server(&ctx, &p, r).await?.id;
    let retry = q.retry.unwrap_or(false);
    let server = ctx.app.store.request_reconcile(id, retry).await?;
    tracing::info!(server = %id, retry, "reconcile requested");
    let detail = if retry {
        "reconcile with retry"
    } else {
        "reconcile"
    };
    audit::record(&ctx, &p, Action::ServerReconcile, Some(id), detail).await;
    Ok((StatusCode::ACCEPTED, Json(redact::server(&p, server))).into_response())
}

/// A list filter as the audit log shows it: `customer=u1 phase=failed`, or `all`.
fn filter_text(f: &crate::wire::ListFilter) -> String {
    let parts: Vec<String> = [
        f.customer.as_ref().map(|c| format!("customer={c}")),
        f.phase.map(|p| format!("phase={p}")),
        f.kind.map(|k| format!("kind={k}")),
        f.hostname.as_ref().map(|h| format!("hostname={h}")),
        f.vmid.map(|v| format!("vmid={v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

/// Servers a bulk reconcile writes per transaction.
const BULK_BATCH: usize = 100;

/// Ask the controller to reconcile every server the filters match (as in the list, and
/// scoped the same way: a customer token reaches only its own); with `retry=true`, also retry
/// the failed ones. One call for a fleet, so `zctl reconcile --all` stays within the rate limit.
#[utoipa::path(
    post, path = "/api/servers:reconcile", tag = "servers",
    params(BulkReconcileQuery),
    responses((status = 202, description = "Reconcile requested for every match", body = BulkReconciled), AuthProblems, QueryProblems),
    security(("bearer" = []))
)]
pub async fn reconcile_servers(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ApiQuery(q): ApiQuery<BulkReconcileQuery>,
) -> ApiResult<Response> {
    let retry = q.retry.unwrap_or(false);
    let detail = if retry {
        "reconcile with retry"
    } else {
        "reconcile"
    };
    let mut ids = Vec::new();
    if let Some(filter) = store_filter(&p, &q.filter()) {
        let matched: Vec<ServerId> = model::store::list_all(&ctx.app.store, &filter)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let message = audit::message(&p, detail);
        let event = (audit::reason::RECONCILE_REQUESTED, message.as_str());
        // In batches, so each store call stays short; within one, the store commits server
        // by server (a transaction writes at most one change to the feed).
        for batch in matched.chunks(BULK_BATCH) {
            // Servers archived since the list was read are skipped: nothing to reconcile.
            let done = ctx
                .app
                .store
                .request_reconcile_many(batch, retry, event)
                .await?;
            ids.extend(done);
        }
    }
    tracing::info!(queued = ids.len(), retry, "reconcile requested in bulk");
    let summary = format!(
        "{detail} of {} server(s) matching {}",
        ids.len(),
        filter_text(&q.filter())
    );
    audit::record(&ctx, &p, Action::ServersReconcile, None, &summary).await;
    let body = BulkReconciled {
        queued: ids.len() as u64,
        ids,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn set_paused(ctx: &Ctx, p: &Principal, r: ServerRef, paused: bool) -> ApiResult<Response> {
    let id = visible_server(ctx, p, r).await?.id;
    let server = ctx.app.store.set_paused(id, paused).await?;
    tracing::info!(server = %id, paused, "pause changed");
    let (action, detail) = if paused {
        (Action::ServerPause, "pause")
    } else {
        (Action::ServerResume, "resume")
    };
    audit::record(ctx, p, action, Some(id), detail).await;
    Ok(Json(server).into_response())
}

/// Stop reconciling this server (operators only). Nothing is torn down.
#[utoipa::path(
    post, path = "/api/servers/{id}/pause", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses((status = 200, description = "The server", body = Server), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn pause_server(
    State(ctx): State<Arc<Ctx>>,
    Operator(p): Operator,
    ServerPath(r): ServerPath,
) -> ApiResult<Response> {
    set_paused(&ctx, &p, r, true).await
}

/// Reconcile this server again (operators only).
#[utoipa::path(
    post, path = "/api/servers/{id}/resume", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses((status = 200, description = "The server", body = Server), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn resume_server(
    State(ctx): State<Arc<Ctx>>,
    Operator(p): Operator,
    ServerPath(r): ServerPath,
) -> ApiResult<Response> {
    set_paused(&ctx, &p, r, false).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// At most this many (default and maximum 100).
    pub limit: Option<u32>,
}

/// The server's events, newest first (repeats folded with a count).
#[utoipa::path(
    get, path = "/api/servers/{id}/events", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC), EventsQuery),
    responses((status = 200, description = "Newest first", body = EventList), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn server_events(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    ServerPath(r): ServerPath,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventList>> {
    let id = visible_server(&ctx, &p, r).await?.id;
    let max = ctx.app.config.events_limit;
    let limit = q.limit.unwrap_or(max).clamp(1, max);
    let items = ctx.app.store.list_events(id, limit).await?;
    Ok(Json(EventList {
        items: redact::events(&p, items),
    }))
}
