//! `/api/tokens`: API tokens (operators only). A token's secret is answered once, at
//! creation; revocation and expiry hold at once on every API replica (each request reads the
//! token's row, `crate::auth`).

use crate::audit::{self, Action};
use crate::auth::Operator;
use crate::extract::{ApiJson, parse_id};
use crate::openapi::{AuthProblems, BodyProblems, IdProblems};
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::Role;
use model::customer::{check_token_name, new_token_secret, token_hash};
use model::store::{Store, StoreError};
use std::sync::Arc;

/// Every token (revoked and expired ones too), oldest first; never a secret.
#[utoipa::path(
    get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, description = "Every token", body = TokenList), AuthProblems),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(ctx): State<Arc<Ctx>>,
    Operator(_op): Operator,
) -> ApiResult<Json<TokenList>> {
    let now = chrono::Utc::now();
    let items = ctx.app.store.list_tokens().await?;
    Ok(Json(TokenList {
        items: items.iter().map(|t| TokenInfo::of(t, now)).collect(),
    }))
}

/// Create a token; the answer carries its secret, which is never shown again.
#[utoipa::path(
    post, path = "/api/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    responses((status = 201, description = "Created: the secret, once", body = CreatedToken), AuthProblems, BodyProblems),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(ctx): State<Arc<Ctx>>,
    Operator(op): Operator,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<Response> {
    check_token_name(&req.name).map_err(|m| ApiError::invalid_field("name", m))?;
    if (req.role == Role::Customer) != req.customer_id.is_some() {
        return Err(ApiError::invalid_field(
            "customerId",
            "required with role customer, and only then",
        ));
    }
    if let Some(c) = &req.customer_id {
        crate::extract::check_customer_id("customerId", c)?;
    }
    let now = chrono::Utc::now();
    let expires_at = match &req.expires_in {
        None => None,
        Some(text) => Some(expiry(now, text)?),
    };
    let secret = new_token_secret();
    let t = ctx
        .app
        .store
        .create_token_expiring(
            &req.name,
            &token_hash(&secret),
            req.role,
            req.customer_id.as_deref(),
            expires_at,
        )
        .await?;
    tracing::info!(token = %t.name, role = %t.role, "token created");
    let detail = format!("token {} ({}, id {})", t.name, t.role, t.id);
    audit::record(&ctx, &op, Action::TokenCreate, None, &detail).await;
    let body = CreatedToken {
        token: TokenInfo::of(&t, now),
        secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `now` + a duration like `30d` (422 naming `expiresIn` otherwise).
fn expiry(
    now: chrono::DateTime<chrono::Utc>,
    text: &str,
) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    let bad = |m: &str| ApiError::invalid_field("expiresIn", m.to_string());
    let d = humantime::parse_duration(text).map_err(|_| bad("a duration such as 30d or 12h"))?;
    if d.is_zero() {
        return Err(bad("must be longer than zero"));
    }
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| bad("too far in the future"))
}

/// Revoke a token (idempotent); from this request on it is 401 everywhere.
#[utoipa::path(
    delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, format = Uuid, description = "Token id")),
    responses((status = 200, description = "The token, revoked", body = TokenInfo), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(ctx): State<Arc<Ctx>>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let id: uuid::Uuid = parse_id("token", &id)?;
    let t = match ctx.app.store.revoke_token(id).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => {
            return Err(ApiError::NotFound(format!("token {id} not found")));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(token = %t.name, "token revoked");
    let detail = format!("token {} ({}, id {})", t.name, t.role, t.id);
    audit::record(&ctx, &op, Action::TokenRevoke, None, &detail).await;
    Ok(Json(TokenInfo::of(&t, chrono::Utc::now())))
}
