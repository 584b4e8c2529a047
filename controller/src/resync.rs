//! The batched fleet observation behind each resync.

use crate::backends::Backends;
use crate::metrics as m;
use crate::reconciler::Reconciler;
use crate::snapshot::{CtEntry, Snapshot};
use edge_client::dns::DnsProvider;
use model::store::{PageRequest, ServerFilter, Store, StoreError};
use model::{Phase, ServerId};
use proxmox_client::Proxmox;
use std::collections::HashMap;
use tracing::warn;

/// One `cluster/resources` call, one listing per DNS zone, one proxy listing, all at once. A
/// failed part stays empty, which only means reconciles observe per server.
pub async fn take_snapshot(b: &Backends) -> Snapshot {
    let (containers, technitium, cloudflare, proxy) = tokio::join!(
        b.pve.cluster_resources(),
        async {
            match &b.technitium {
                Some(t) => Some((t.name(), t.list_zone().await)),
                None => None,
            }
        },
        async {
            match &b.cloudflare {
                Some(c) => Some((c.name(), c.list_zone().await)),
                None => None,
            }
        },
        async {
            match &b.velocity {
                Some(v) => Some(v.list().await),
                None => None,
            }
        },
    );
    let mut snap = Snapshot {
        taken_at: Some(tokio::time::Instant::now()),
        ..Default::default()
    };
    match containers {
        Ok(list) => {
            snap.guests = Some(list.iter().map(|r| r.vmid).collect());
            for r in list
                .into_iter()
                .filter(|r| r.kind == proxmox_client::GuestType::Lxc)
            {
                snap.containers.insert(
                    r.vmid,
                    CtEntry {
                        vmid: r.vmid,
                        running: r.status == "running",
                        node: r.node,
                        name: r.name,
                        tags: r.tags,
                        lock: r.lock,
                    },
                );
            }
        }
        Err(e) => warn!(error = %e, "resync: cluster/resources failed"),
    }
    for (name, listing) in [technitium, cloudflare].into_iter().flatten() {
        match listing {
            Ok(z) => {
                snap.dns.insert(name, z);
            }
            Err(e) => warn!(provider = name, error = %e, "resync: zone listing failed"),
        }
    }
    match proxy {
        Some(Ok(regs)) => {
            snap.proxy = Some(
                regs.into_iter()
                    .map(|r| (r.name.to_lowercase(), (r.address, r.port)))
                    .collect(),
            );
        }
        Some(Err(e)) => warn!(error = %e, "resync: proxy listing failed"),
        None => {}
    }
    snap
}

/// What a resync's pass over the store found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Every server in the store.
    pub ids: Vec<ServerId>,
    /// The servers to reconcile now.
    pub requeue: Vec<ServerId>,
    /// Settled servers that were not requeued (no reconcile, no backend call).
    pub settled: usize,
    pub phases: HashMap<Phase, u64>,
}

/// One pass over the store, a page at a time: count phases, and requeue every server the
/// snapshot does not show settled, plus the settled servers whose health probe (the game's
/// Server List Ping, or the Agent's status) falls in this resync: round `round` of every `every`, spread by server id so each
/// resync probes about 1/`every` of the fleet.
pub async fn sweep(
    rec: &Reconciler,
    snap: &Snapshot,
    round: u64,
    every: u64,
) -> Result<Sweep, StoreError> {
    let mut out = Sweep {
        phases: Phase::ALL.iter().map(|p| (*p, 0)).collect(),
        ..Sweep::default()
    };
    let mut after = None;
    loop {
        let page = rec
            .store
            .list_servers(&ServerFilter::default(), PageRequest { after, limit: 500 })
            .await?;
        for s in &page.items {
            *out.phases.entry(s.phase().0).or_default() += 1;
            out.ids.push(s.id);
            if probe_due(s.id, round, every) || !rec.is_settled(s, snap) {
                out.requeue.push(s.id);
            } else {
                out.settled += 1;
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Whether `id`'s health probe falls in resync `round` (of every `every`).
pub fn probe_due(id: ServerId, round: u64, every: u64) -> bool {
    let bits = id.0.as_u128();
    let spread = (bits as u64) ^ ((bits >> 64) as u64);
    every <= 1 || spread.wrapping_add(round).is_multiple_of(every)
}

/// `zlh_servers{phase}`.
pub fn record_phases(phases: &HashMap<Phase, u64>) {
    for (phase, n) in phases {
        metrics::gauge!(m::SERVERS, "phase" => phase.as_str()).set(*n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over `every` consecutive rounds each server is probed exactly once, and each round
    /// takes a fair share of the fleet.
    #[test]
    fn probes_are_spread_evenly_over_the_rounds() {
        let ids: Vec<ServerId> = (0..3000).map(|_| ServerId::new()).collect();
        for every in [1u64, 2, 5, 10] {
            let mut per_round = vec![0usize; every as usize];
            for id in &ids {
                let due: Vec<u64> = (7..7 + every)
                    .filter(|r| probe_due(*id, *r, every))
                    .collect();
                assert_eq!(due.len(), 1, "every={every}: probed once per cycle");
                per_round[(due[0] - 7) as usize] += 1;
            }
            let fair = ids.len() / every as usize;
            for n in per_round {
                assert!(
                    n > fair * 8 / 10 && n < fair * 12 / 10,
                    "every={every}: {n} vs {fair}"
                );
            }
        }
    }
}
