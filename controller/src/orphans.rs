//! Orphans: containers carrying our marker that no server owns. Reported (metric, log, store
//! for `zctl orphans`), never destroyed automatically: a human decides.
//!
//! The marker is in the tags from a container's first config write on, so `cluster/resources`
//! shows it; a clone that failed before that write carries it only in its description. So
//! untagged containers in zlh's VMID ranges that no server reserved are read one by one, a
//! bounded number per resync (`orphan_config_reads`), the ones reported before first.

use crate::backends::Stack;
use crate::metrics as m;
use crate::ownership::{POOL_TAG, is_pool_member, marker_in, pool_marker_in};
use crate::reconcile::Context;
use crate::resync::Sweep;
use crate::snapshot::{CtEntry, Snapshot};
use model::ServerId;
use model::store::{Orphan, Store};
use proxmox_client::Proxmox;
use std::collections::HashSet;
use tracing::warn;

/// `sweep`: every server in the store, read after `snap` was taken (a container is created
/// only after its server is stored). `round`: the resync's number, which rotates the
/// description reads over the candidates.
pub async fn report<S: Stack>(ctx: &Context<S>, snap: &Snapshot, sweep: &Sweep, round: u64) {
    if snap.taken_at.is_none() || snap.containers.is_empty() {
        return;
    }
    let store = &ctx.store;
    let live: HashSet<ServerId> = sweep.ids.iter().copied().collect();
    let now = ctx.clock.now();
    let orphan = |c: &CtEntry, marker: String| {
        let id: ServerId = marker.parse().ok()?;
        (!live.contains(&id)).then(|| Orphan {
            vmid: c.vmid,
            node: c.node.clone(),
            marker,
            name: c.name.clone(),
            first_seen: now,
            last_seen: now,
        })
    };
    let mut found: Vec<Orphan> = snap
        .containers
        .values()
        .filter_map(|c| orphan(c, marker_in(&c.tags, "")?))
        .collect();
    for c in description_candidates(ctx, snap, sweep, round).await {
        match ctx.backends.pve.ct_config(&c.node, c.vmid).await {
            Ok(cfg) => {
                let description = cfg.description.unwrap_or_default();
                if let Some(o) = marker_in(&[], &description).and_then(|m| orphan(c, m)) {
                    found.push(o);
                }
            }
            // Unknown this time: looked at again at a later resync.
            Err(e) => warn!(vmid = c.vmid, error = %e, "orphan check: config unreadable"),
        }
    }
    found.extend(pool_orphans(ctx, snap, now).await);
    // A server archived since the listing was asked for: its container was destroyed after
    // the listing (a teardown completes before the archive), not left behind.
    let mut kept = Vec::with_capacity(found.len());
    for o in found {
        if archived_since_listing(ctx, snap, &o.marker).await {
            continue;
        }
        kept.push(o);
    }
    let found = kept;
    for o in &found {
        warn!(vmid = o.vmid, marker = %o.marker, "orphan container: carries our marker, no server owns it");
    }
    metrics::gauge!(m::ORPHANS).set(found.len() as f64);
    if let Err(e) = store.replace_orphans(&found).await {
        warn!(error = %e, "cannot record orphans");
    }
}

/// The marker an orphaned warm-pool member is reported with (it names no server).
pub const POOL_ORPHAN_MARKER: &str = "pool";

/// Containers tagged as warm-pool members that are neither a member in the store nor a
/// server's reservation (a claim in progress). The members are read before the reservations,
/// so a claim in between (which moves the VMID from one to the other in one transaction) is
/// seen in one of them; each candidate is read again (a member destroyed since the listing is
/// gone, not an orphan). A member whose pool marker names no pool is reported, never destroyed.
async fn pool_orphans<S: Stack>(
    ctx: &Context<S>,
    snap: &Snapshot,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Orphan> {
    let tagged: Vec<&CtEntry> = snap
        .containers
        .values()
        .filter(|c| c.tags.iter().any(|t| t == POOL_TAG))
        .collect();
    if tagged.is_empty() {
        return Vec::new();
    }
    let (Ok(members), Ok(reserved)) = (
        ctx.store.list_pool_members().await,
        ctx.store.list_reservations().await,
    ) else {
        return Vec::new();
    };
    let known: HashSet<u32> = members
        .iter()
        .map(|m| m.vmid)
        .chain(reserved.iter().map(|(v, _)| *v))
        .collect();
    let mut out = Vec::new();
    for c in tagged.into_iter().filter(|c| !known.contains(&c.vmid)) {
        let Ok(cfg) = ctx.backends.pve.ct_config(&c.node, c.vmid).await else {
            continue;
        };
        let description = cfg.description.unwrap_or_default();
        if is_pool_member(&cfg.tags, &description, cfg.hostname.as_deref(), c.vmid) {
            let template = pool_marker_in(&description).unwrap_or_default();
            warn!(
                vmid = c.vmid,
                template, "orphan pool member: no pool holds it"
            );
            out.push(Orphan {
                vmid: c.vmid,
                node: c.node.clone(),
                marker: POOL_ORPHAN_MARKER.to_string(),
                name: c.name.clone(),
                first_seen: now,
                last_seen: now,
            });
        }
    }
    out
}

/// Whether the server `marker` names was archived at or after the snapshot's listing was asked
/// for. Without the listing's time, any archive counts (a report one resync late, never a false
/// one); an unreadable archive does not.
async fn archived_since_listing<S: Stack>(ctx: &Context<S>, snap: &Snapshot, marker: &str) -> bool {
    let Ok(id) = marker.parse::<ServerId>() else {
        return false;
    };
    match ctx.store.get_archived(id).await {
        Ok(Some(a)) => snap.listed_from.is_none_or(|from| a.deleted_at >= from),
        Ok(None) => false,
        Err(e) => {
            warn!(server = %id, error = %e, "orphan check: archive unreadable");
            false
        }
    }
}

/// Untagged containers in zlh's VMID ranges that no server reserved, at most
/// `orphan_config_reads` of them: the ones already reported first (so a report does not
/// flicker), then the rest in turn, a different share each resync.
async fn description_candidates<'s, S: Stack>(
    ctx: &Context<S>,
    snap: &'s Snapshot,
    sweep: &Sweep,
    round: u64,
) -> Vec<&'s CtEntry> {
    let ranges = [
        ctx.cfg.vmids.range(model::Kind::Game),
        ctx.cfg.vmids.range(model::Kind::Dev),
    ];
    let ours = |vmid: u32| ranges.iter().any(|r| (r.min..=r.max).contains(&vmid));
    let mut candidates: Vec<&CtEntry> = snap
        .containers
        .values()
        .filter(|c| ours(c.vmid) && !sweep.reserved.contains(&c.vmid))
        .filter(|c| marker_in(&c.tags, "").is_none())
        // A warm-pool member (tagged from its first config write on) names no server.
        .filter(|c| !c.tags.iter().any(|t| t == POOL_TAG))
        .collect();
    candidates.sort_by_key(|c| c.vmid);
    let known: HashSet<u32> = match ctx.store.list_orphans().await {
        Ok(list) => list.into_iter().map(|o| o.vmid).collect(),
        Err(_) => HashSet::new(),
    };
    let budget = ctx.timing().orphan_config_reads;
    let (mut first, rest): (Vec<&CtEntry>, Vec<&CtEntry>) = candidates
        .into_iter()
        .partition(|c| known.contains(&c.vmid));
    if !rest.is_empty() {
        let start = (round as usize).wrapping_mul(budget) % rest.len();
        first.extend(rest.iter().cycle().skip(start).take(rest.len()));
    }
    first.truncate(budget);
    first
}
