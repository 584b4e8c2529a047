//! The batched fleet observation behind each resync.

use crate::backends::Backends;
use crate::metrics as m;
use crate::snapshot::{CtEntry, Snapshot};
use edge_client::dns::DnsProvider;
use model::Phase;
use model::store::{AnyStore, PageRequest, ServerFilter, Store};
use proxmox_client::Proxmox;
use std::collections::HashMap;
use tracing::warn;

/// One `cluster/resources` call, one listing per DNS zone, one proxy listing. A failed part
/// stays empty, which only means reconciles observe per server.
pub async fn take_snapshot(b: &Backends) -> Snapshot {
    let mut snap = Snapshot {
        taken_at: Some(tokio::time::Instant::now()),
        ..Default::default()
    };
    match b.pve.cluster_resources().await {
        Ok(list) => {
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
    if let Some(t) = &b.technitium {
        match t.list_zone().await {
            Ok(z) => {
                snap.dns.insert(t.name(), z);
            }
            Err(e) => warn!(error = %e, "resync: technitium listing failed"),
        }
    }
    if let Some(c) = &b.cloudflare {
        match c.list_zone().await {
            Ok(z) => {
                snap.dns.insert(c.name(), z);
            }
            Err(e) => warn!(error = %e, "resync: cloudflare listing failed"),
        }
    }
    if let Some(v) = &b.velocity {
        match v.list().await {
            Ok(regs) => {
                snap.proxy = Some(
                    regs.into_iter()
                        .map(|r| (r.name.to_lowercase(), (r.address, r.port)))
                        .collect(),
                );
            }
            Err(e) => warn!(error = %e, "resync: proxy listing failed"),
        }
    }
    snap
}

/// `zlh_servers{phase}` from one pass over the store.
pub async fn record_phase_gauge(store: &AnyStore) {
    let mut counts: HashMap<Phase, u64> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
    let mut after = None;
    loop {
        let page = match store
            .list_servers(&ServerFilter::default(), PageRequest { after, limit: 500 })
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "phase gauge: cannot list servers");
                return;
            }
        };
        for s in &page.items {
            *counts.entry(s.phase().0).or_default() += 1;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    for (phase, n) in counts {
        metrics::gauge!(m::SERVERS, "phase" => phase.as_str()).set(n as f64);
    }
}
