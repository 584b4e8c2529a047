//! Orphans: containers carrying our marker that no server owns. Reported (metric, log, store
//! for `zctl orphans`), never destroyed automatically: a human decides.

use crate::backends::Stack;
use crate::metrics as m;
use crate::ownership::marker_in;
use crate::reconcile::Context;
use crate::snapshot::Snapshot;
use model::ServerId;
use model::store::{Orphan, Store};
use std::collections::HashSet;
use tracing::warn;

/// `live`: every server in the store, read after `snap` was taken (a container is created
/// only after its server is stored).
pub async fn report<S: Stack>(ctx: &Context<S>, snap: &Snapshot, live: &[ServerId]) {
    if snap.taken_at.is_none() || snap.containers.is_empty() {
        return;
    }
    let store = &ctx.store;
    let live: HashSet<ServerId> = live.iter().copied().collect();
    let now = ctx.clock.now();
    let found: Vec<Orphan> = snap
        .containers
        .values()
        .filter_map(|c| {
            let marker = marker_in(&c.tags, "")?;
            let id: ServerId = marker.parse().ok()?;
            (!live.contains(&id)).then(|| Orphan {
                vmid: c.vmid,
                node: c.node.clone(),
                marker,
                name: c.name.clone(),
                first_seen: now,
                last_seen: now,
            })
        })
        .collect();
    for o in &found {
        warn!(vmid = o.vmid, marker = %o.marker, "orphan container: carries our marker, no server owns it");
    }
    metrics::gauge!(m::ORPHANS).set(found.len() as f64);
    if let Err(e) = store.replace_orphans(&found).await {
        warn!(error = %e, "cannot record orphans");
    }
}
