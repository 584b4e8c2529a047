//! `/api/customers/{id}`: quota and standing.

use crate::auth::{Operator, Reader};
use crate::extract::{ApiJson, check_customer_id};
use crate::openapi::{AuthProblems, BodyProblems, IdProblems};
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::CustomerUpdate;
use axum::Json;
use axum::extract::{Path, State};
use model::Customer;
use model::store::Store;
use std::sync::Arc;

fn customer_id(id: &str) -> ApiResult<()> {
    check_customer_id("id", id).map_err(|_| {
        let shown: String = id.chars().take(64).collect();
        ApiError::BadRequest(format!("'{shown}' is not a valid customer id"))
    })
}

/// A customer's quota and standing (defaults if never set). Customer tokens see only their own.
#[utoipa::path(
    get, path = "/api/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = Customer), AuthProblems, IdProblems),
    security(("bearer" = []))
)]
pub async fn get_customer(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    Path(id): Path<String>,
) -> ApiResult<Json<Customer>> {
    customer_id(&id)?;
    if !p.sees(&id) {
        return Err(ApiError::NotFound(format!("customer {id} not found")));
    }
    Ok(Json(ctx.app.store.get_customer(&id).await?))
}

/// Set a customer's quota and/or standing (operators only). Omitted fields keep their value.
#[utoipa::path(
    put, path = "/api/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    request_body = CustomerUpdate,
    responses((status = 200, description = "The customer as updated", body = Customer), AuthProblems, IdProblems, BodyProblems),
    security(("bearer" = []))
)]
pub async fn put_customer(
    State(ctx): State<Arc<Ctx>>,
    Operator(op): Operator,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<CustomerUpdate>,
) -> ApiResult<Json<Customer>> {
    customer_id(&id)?;
    if let Some(q) = &update.quota
        && q.max_memory_mib > u64::from(u32::MAX)
    {
        return Err(ApiError::invalid_field(
            "quota.maxMemoryMib",
            "is unreasonably large",
        ));
    }
    let c = ctx
        .app
        .store
        .upsert_customer(&id, update.quota, update.standing)
        .await?;
    tracing::info!(customer = %id, standing = c.standing.as_str(), "customer updated");
    let detail = format!(
        "customer {id}: standing {}, quota {:?}",
        c.standing.as_str(),
        c.quota
    );
    crate::audit::record(&ctx, &op, crate::audit::Action::CustomerSet, None, &detail).await;
    Ok(Json(c))
}
