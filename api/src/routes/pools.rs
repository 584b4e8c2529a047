//! `/api/pools`: the warm pools (docs/pools.md), as declared (`[[templates]] pool`) and as
//! the store holds them. Read-only: a pool is desired state in the configuration.

use crate::auth::Operator;
use crate::openapi::AuthProblems;
use crate::problem::ApiResult;
use crate::state::Ctx;
use crate::wire::{PoolList, PoolStatus};
use axum::Json;
use axum::extract::State;
use model::store::Store;
use model::{MemberState, PoolMember};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Events shown per pool.
const POOL_EVENTS: u32 = 10;

/// Every warm pool: declared ones, and drained ones that still have members.
#[utoipa::path(
    get, path = "/api/pools", tag = "ops",
    responses((status = 200, description = "Warm pools", body = PoolList), AuthProblems),
    security(("bearer" = []))
)]
pub async fn list_pools(
    State(ctx): State<Arc<Ctx>>,
    _caller: Operator,
) -> ApiResult<Json<PoolList>> {
    let app = &ctx.app;
    let mut pools: BTreeMap<u32, (String, u32, Vec<PoolMember>)> = BTreeMap::new();
    for t in app.catalog.templates.iter().filter(|t| t.pool > 0) {
        pools.insert(t.vmid, (t.node.clone(), t.pool, Vec::new()));
    }
    for m in app.store.list_pool_members().await? {
        pools
            .entry(m.template)
            .or_insert_with(|| (m.node.clone(), 0, Vec::new()))
            .2
            .push(m);
    }
    let now = chrono::Utc::now();
    let mut items = Vec::with_capacity(pools.len());
    for (template, (node, desired, members)) in pools {
        let count = |s: MemberState| members.iter().filter(|m| m.state == s).count() as u32;
        let oldest_free_age_secs = members
            .iter()
            .filter(|m| m.state == MemberState::Free)
            .map(|m| (now - m.created_at).num_seconds().max(0) as u64)
            .max();
        let events = app
            .store
            .list_events(model::pool_event_id(template), POOL_EVENTS)
            .await?;
        items.push(PoolStatus {
            template,
            node,
            desired,
            free: count(MemberState::Free),
            cloning: count(MemberState::Cloning),
            retiring: count(MemberState::Retiring),
            oldest_free_age_secs,
            members,
            events,
        });
    }
    Ok(Json(PoolList { items }))
}
