//! The Portal's existing contract, unchanged: `POST /api/instances` and
//! `GET /api/instances/operations/{operationId}` (see `docs/portal-contract.md`).
//!
//! Status mapping from the server's derived phase:
//! - `queued` → `provisioning_queued`, phase `queued`;
//! - `provisioning` and `degraded` (a transient backend problem being retried) →
//!   `provisioning_running`, phase = the current step (`clone-container`, ...);
//! - `failed` → `provisioning_failed`, phase = the failed step, `error` = its message;
//! - `ready` → `ready`, phase `complete`;
//! - deleting or deleted → `provisioning_failed`, phase `teardown`, with an error saying so.
//!
//! The previous system's power buttons, `POST /api/servers/{id}/game/{signal}` and
//! `/host/{signal}`, are the native power route (`routes::power`) with target `game` and
//! `container`: the same checks (roles, ownership, standing), `{"ok":true}` on success (202
//! or 200 alike), and problems carrying the old `error` field.

use crate::admission::{admit, resolve_customer};
use crate::auth::Reader;
use crate::auth::Writer;
use crate::extract::{ApiJson, ServerPath, idempotency_key, if_match, parse_id, request_id};
use crate::openapi::{
    AdmissionProblems, AuthProblems, BodyProblems, ConflictProblems, IdProblems, PowerPathProblems,
};
use crate::problem::{ApiError, ApiResult};
use crate::routes::operations::visible_operation;
use crate::routes::power::{PowerOutcome, power};
use crate::routes::servers::SERVER_ID_DOC;
use crate::state::Ctx;
use crate::wire::{
    InstanceAccepted, InstanceOperation, InstanceRequest, LegacyOk, PowerSignal, PowerTarget,
    portal_status as ps,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::{
    FieldError, Kind, Operation, OperationId, Phase, Power, Resources, Restarts, Server,
    ServerSpec, Step, Variant,
};
use std::sync::Arc;

/// The Portal body as a `ServerSpec` (default resources; memory from `memoryMiB`).
pub fn spec_of(req: &InstanceRequest) -> ApiResult<ServerSpec> {
    let kind: Kind = req.ctype.parse().map_err(|_| {
        ApiError::invalid_field(
            "ctype",
            format!("'{}' is not game or dev", short(&req.ctype)),
        )
    })?;
    let variant = match &req.variant {
        None => None,
        Some(v) => Some(v.parse::<Variant>().map_err(|_| {
            let all: Vec<&str> = Variant::ALL.iter().map(|v| v.as_str()).collect();
            ApiError::invalid_field(
                "variant",
                format!(
                    "unknown variant '{}' (expected one of {})",
                    short(v),
                    all.join(", ")
                ),
            )
        })?),
    };
    let mut resources = Resources::default();
    if let Some(m) = req.memory_mib {
        resources.memory_mib = m;
    }
    Ok(ServerSpec {
        kind,
        game: req.game.clone(),
        variant,
        version: req.version.clone(),
        world: (kind == Kind::Game).then(|| "world".to_string()),
        runtime: req.runtime.clone(),
        resources,
        power: Power::Running,
        process: None,
        restarts: Restarts::default(),
    })
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Field names of the Portal body (`memoryMiB`), not of `ServerSpec` (`resources.memoryMib`).
fn portal_fields(e: ApiError) -> ApiError {
    match e {
        ApiError::Invalid { detail, errors } => ApiError::Invalid {
            detail: detail.replace("resources.memoryMib", "memoryMiB"),
            errors: errors
                .into_iter()
                .map(|f| FieldError {
                    field: match f.field.as_str() {
                        "resources.memoryMib" => "memoryMiB".into(),
                        _ => f.field,
                    },
                    message: f.message,
                })
                .collect(),
        },
        other => other,
    }
}

/// The Portal's view of an operation.
pub fn instance_status(
    op: &Operation,
    server: Option<&Server>,
    archived: bool,
) -> InstanceOperation {
    let mut out = InstanceOperation {
        operation_id: op.id,
        status: ps::FAILED.into(),
        phase: Step::Teardown.as_str().into(),
        server_id: op.server_id,
        error: Some("the server was deleted".into()),
        vmid: None,
        hostname: None,
        fqdn: None,
    };
    let Some(server) = server else { return out };
    out.vmid = server.status.vmid.or(server.reserved_vmid);
    out.hostname = server.status.hostname.clone();
    out.fqdn = server.status.fqdn.clone();
    if archived {
        return out;
    }
    let (phase, step) = server.phase();
    let (status, phase, error) = match phase {
        Phase::Queued => (ps::QUEUED, ps::PHASE_QUEUED.to_string(), None),
        Phase::Provisioning | Phase::Degraded => (
            ps::RUNNING,
            step.unwrap_or(Step::PublishEdge).as_str().to_string(),
            None,
        ),
        Phase::Failed => {
            let f = server.status.failure.as_ref();
            (
                ps::FAILED,
                f.map(|f| f.step.clone())
                    .unwrap_or_else(|| "unknown".into()),
                Some(
                    f.map(|f| f.message.clone())
                        .unwrap_or_else(|| "failed".into()),
                ),
            )
        }
        Phase::Ready => (ps::READY, ps::PHASE_COMPLETE.to_string(), None),
        Phase::Deleting => (
            ps::FAILED,
            Step::Teardown.as_str().to_string(),
            Some("the server is being deleted".into()),
        ),
    };
    out.status = status.into();
    out.phase = phase;
    out.error = error;
    out
}

fn status_url(id: OperationId) -> String {
    format!("/api/instances/operations/{id}")
}

/// The Portal's create: same idempotency rules as `POST /api/servers`.
#[utoipa::path(
    post, path = "/api/instances", tag = "portal",
    request_body = InstanceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Fresh per click")),
    responses(
        (status = 202, description = "Accepted (also a replay)", body = InstanceAccepted, headers(("Location" = String, description = "The status URL"))),
        AuthProblems, AdmissionProblems, BodyProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn create_instance(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    headers: HeaderMap,
    ApiJson(req): ApiJson<InstanceRequest>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let customer = resolve_customer(&p, req.customer_id.clone(), "customerId")?;
    let spec = spec_of(&req)?;
    let created = admit(&ctx, customer, spec, key, "")
        .await
        .map_err(portal_fields)?;
    if created.created {
        let id = created.server.id;
        crate::audit::record(
            &ctx,
            &p,
            crate::audit::Action::ServerCreate,
            Some(id),
            "create",
        )
        .await;
    }
    let shown = crate::redact::server(&p, created.server.clone());
    let st = instance_status(&created.operation, Some(&shown), false);
    let url = status_url(created.operation.id);
    let mut res = (
        StatusCode::ACCEPTED,
        Json(InstanceAccepted {
            operation_id: created.operation.id,
            request_id: request_id(&headers),
            status_url: url.clone(),
            status: st.status,
            phase: st.phase,
            server_id: created.server.id,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// What the Portal polls.
#[utoipa::path(
    get, path = "/api/instances/operations/{operationId}", tag = "portal",
    params(("operationId" = String, Path, format = Uuid, description = "Operation id")),
    responses((status = 200, description = "Progress as the Portal renders it", body = InstanceOperation), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn get_instance_operation(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceOperation>> {
    let id = parse_id::<OperationId>("operation", &id)?;
    let (op, server, archived) = visible_operation(&ctx, &p, id).await?;
    let server = server.map(|s| crate::redact::server(&p, s));
    Ok(Json(instance_status(&op, server.as_ref(), archived)))
}

/// A power button of the previous system. Every failure, the token's included, answers as
/// those routes did: a problem with `error` = its detail.
async fn legacy_power(
    ctx: &Ctx,
    guard: Result<Writer, ApiError>,
    server: Result<ServerPath, ApiError>,
    signal: &str,
    target: PowerTarget,
    headers: &HeaderMap,
) -> Response {
    let run = async {
        let Writer(p) = guard?;
        let ServerPath(r) = server?;
        let signal: PowerSignal = signal
            .parse()
            .map_err(|e: String| ApiError::invalid_field("signal", e))?;
        let expected = if_match(headers)?;
        power(ctx, &p, r, signal, Some(target), expected).await
    };
    match run.await {
        Ok(outcome) => {
            let status = match outcome {
                PowerOutcome::Changed(..) => StatusCode::ACCEPTED,
                PowerOutcome::Unchanged(_) => StatusCode::OK,
            };
            (status, Json(LegacyOk { ok: true })).into_response()
        }
        Err(e) => e.into_legacy_response(),
    }
}

/// The previous system's game power: `start`, `stop` or `restart` the game process (the
/// spec's `process` and `restarts.game`, as `POST /api/servers/{id}/power` with target `game`).
#[utoipa::path(
    post, path = "/api/servers/{id}/game/{signal}", tag = "portal",
    params(
        ("id" = String, Path, description = SERVER_ID_DOC),
        ("signal" = PowerSignal, Path, description = "start, stop or restart"),
    ),
    responses(
        (status = 202, description = "The spec changed", body = LegacyOk),
        (status = 200, description = "Already so: nothing written", body = LegacyOk),
        AuthProblems, AdmissionProblems, IdProblems, PowerPathProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn game_power(
    State(ctx): State<Arc<Ctx>>,
    guard: Result<Writer, ApiError>,
    server: Result<ServerPath, ApiError>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    legacy_power(&ctx, guard, server, &path.1, PowerTarget::Game, &headers).await
}

/// The previous system's host power: `start`, `stop` or `restart` the container (the spec's
/// `power` and `restarts.container`, as `POST /api/servers/{id}/power` with target `container`).
#[utoipa::path(
    post, path = "/api/servers/{id}/host/{signal}", tag = "portal",
    params(
        ("id" = String, Path, description = SERVER_ID_DOC),
        ("signal" = PowerSignal, Path, description = "start, stop or restart"),
    ),
    responses(
        (status = 202, description = "The spec changed", body = LegacyOk),
        (status = 200, description = "Already so: nothing written", body = LegacyOk),
        AuthProblems, AdmissionProblems, IdProblems, PowerPathProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn host_power(
    State(ctx): State<Arc<Ctx>>,
    guard: Result<Writer, ApiError>,
    server: Result<ServerPath, ApiError>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    legacy_power(
        &ctx,
        guard,
        server,
        &path.1,
        PowerTarget::Container,
        &headers,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::spec::GAME_MINECRAFT;

    fn req(v: serde_json::Value) -> InstanceRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn portal_bodies_map_to_specs() {
        let g = spec_of(&req(serde_json::json!({"customerId": "u000", "ctype": "game", "game": "minecraft", "variant": "vanilla", "version": "1.21.7", "memoryMiB": 4096}))).unwrap();
        assert_eq!(g.kind, Kind::Game);
        assert_eq!(g.game.as_deref(), Some(GAME_MINECRAFT));
        assert_eq!(g.variant, Some(Variant::Vanilla));
        assert_eq!(g.resources.memory_mib, 4096);
        assert!(g.validate().is_ok());
        let d = spec_of(&req(serde_json::json!({"customerId": "u000", "ctype": "dev", "runtime": "node", "version": "22", "memoryMiB": 2048}))).unwrap();
        assert_eq!(d, ServerSpec::dev("node", "22"));
    }

    #[test]
    fn bad_portal_bodies_name_the_field() {
        let cases = [
            (
                "ctype must be game or dev",
                serde_json::json!({"ctype": "vm", "version": "1"}),
                "ctype",
            ),
            (
                "variants are a closed set",
                serde_json::json!({"ctype": "game", "variant": "spigot", "version": "1.21.7"}),
                "variant",
            ),
        ];
        for (reason, body, field) in cases {
            match spec_of(&req(body)) {
                Err(ApiError::Invalid { errors, .. }) => {
                    assert_eq!(errors[0].field, field, "{reason}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }
}
