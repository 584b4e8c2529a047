//! The batched fleet observation behind each resync.

use crate::backends::{Backends, Stack};
use crate::metrics as m;
use crate::mirror::Mirror;
use crate::observe::GameProbe;
use crate::reason::{self as r, Reason};
use crate::reconcile::Context;
use crate::snapshot::{CtEntry, Snapshot};
use edge_client::Proxy;
use edge_client::dns::DnsProvider;
use futures::StreamExt;
use model::store::StoreError;
use model::{ConditionStatus, ConditionType, Phase, Server, ServerId, TaskKind};
use proxmox_client::Proxmox;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tracing::warn;

/// Health probes a resync runs at once: enough that a fifth of 10,000 games is pinged in well
/// under a second on a LAN, few enough not to look like a flood to a node's conntrack.
const PROBE_CONCURRENCY: usize = 64;

/// One `cluster/resources` call, one listing per DNS zone, one proxy listing, all at once. A
/// failed part stays empty, which only means reconciles observe per server.
pub async fn take_snapshot<S: Stack>(b: &Backends<S>) -> Snapshot {
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
            snap.containers = CtEntry::index(list);
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
    /// Every VMID reserved by a server in the store.
    pub reserved: HashSet<u32>,
    /// The servers to reconcile now.
    pub requeue: Vec<ServerId>,
    /// Settled servers that were not requeued (no reconcile, no backend call).
    pub settled: usize,
    /// Settled games whose health probe is due: pinged by the resync itself ([`probe`]).
    pub probes: Vec<(ServerId, GameProbe)>,
    pub phases: HashMap<Phase, u64>,
    /// Degraded servers by backend family ([`degraded_backend`]).
    pub degraded: HashMap<&'static str, u64>,
    /// Servers waiting on a Proxmox task, by kind.
    pub tasks: HashMap<TaskKind, u64>,
    /// Each server's usage from the snapshot (live detail, written by [`record_stats`]).
    pub usage: Vec<(ServerId, model::ResourceUsage)>,
}

/// One pass over the fleet (the mirror brought up to date first): count phases, and requeue
/// every server the snapshot does not show settled. Settled servers whose health probe falls
/// in this resync (round `round` of every `every`, spread by server id so each resync probes
/// about 1/`every` of the fleet) are listed for [`probe`] if they are games (a Server List
/// Ping), and requeued otherwise (a dev container's Agent is asked by a reconcile).
pub async fn sweep<S: Stack>(
    ctx: &Context<S>,
    mirror: &mut Mirror,
    snap: &Snapshot,
    round: u64,
    every: u64,
) -> Result<Sweep, StoreError> {
    let servers = mirror.refresh(&ctx.store).await?;
    let mut out = Sweep {
        phases: Phase::ALL.iter().map(|p| (*p, 0)).collect(),
        ids: Vec::with_capacity(servers.len()),
        ..Sweep::default()
    };
    for s in &servers {
        *out.phases.entry(s.phase().0).or_default() += 1;
        if let Some(backend) = degraded_backend(s) {
            *out.degraded.entry(backend).or_default() += 1;
        }
        if let Some(t) = &s.status.in_flight_task {
            *out.tasks.entry(t.action).or_default() += 1;
        }
        out.ids.push(s.id);
        out.reserved.extend(s.reserved_vmid);
        if let Some(ct) = s
            .status
            .vmid
            .or(s.reserved_vmid)
            .and_then(|v| snap.containers.get(&v))
        {
            out.usage.push((s.id, resource_usage(&ct.usage)));
        }
        if !ctx.is_settled(s, snap) {
            out.requeue.push(s.id);
        } else if !probe_due(s.id, round, every) {
            out.settled += 1;
        } else if let Some(p) = ctx.game_probe(s) {
            out.probes.push((s.id, p));
        } else {
            // Only the Agent can tell: a reconcile asks it.
            out.requeue.push(s.id);
        }
    }
    record_fleet(&out);
    Ok(out)
}

/// PVE's metrics as live detail.
fn resource_usage(u: &proxmox_client::Usage) -> model::ResourceUsage {
    model::ResourceUsage {
        cpu: u.cpu,
        mem_bytes: u.mem,
        maxmem_bytes: u.maxmem,
        disk_bytes: u.disk,
        maxdisk_bytes: u.maxdisk,
        netin_bytes: u.netin,
        netout_bytes: u.netout,
        uptime_seconds: u.uptime,
    }
}

/// What [`probe`] found.
#[derive(Debug, Default)]
pub struct Probed {
    /// The games that did not answer in time: reconciled.
    pub unanswered: Vec<ServerId>,
    /// The players each game that answered reports.
    pub players: Vec<(ServerId, model::Players)>,
}

/// Write this resync's live detail (usage from the snapshot, players from the probes) in
/// one batched store write (model/src/store/mod.rs, `write_stats`): never a status write,
/// so watchers see no change per sample. A failure is only logged: the next resync writes.
pub async fn record_stats(
    store: &impl model::store::Store,
    now: chrono::DateTime<chrono::Utc>,
    usage: Vec<(ServerId, model::ResourceUsage)>,
    players: Vec<(ServerId, model::Players)>,
) {
    let mut by_id: HashMap<ServerId, model::ServerStats> = HashMap::with_capacity(usage.len());
    for (id, u) in usage {
        let e = by_id.entry(id).or_default();
        e.resources = Some(u);
        e.resources_seen_at = Some(now);
    }
    for (id, p) in players {
        let e = by_id.entry(id).or_default();
        e.players = Some(p);
        e.players_seen_at = Some(now);
    }
    let samples: Vec<model::ServerStats> = by_id
        .into_iter()
        .map(|(id, mut s)| {
            s.server_id = id;
            s
        })
        .collect();
    if let Err(e) = store.write_stats(&samples).await {
        warn!(error = %e, "resync: cannot record live detail");
    }
}

/// Ping each settled game in `probes` (`PROBE_CONCURRENCY` at a time, each within `timeout`,
/// all within `budget`) and return the ones that did not answer in time: a reconcile then
/// asks their Agent why. A game that answers needs nothing else: this is the same check a
/// steady reconcile makes first, without a store read or a queue round trip per server.
pub async fn probe(
    probes: Vec<(ServerId, GameProbe)>,
    timeout: Duration,
    budget: Duration,
) -> Probed {
    let ids: Vec<ServerId> = probes.iter().map(|(id, _)| *id).collect();
    let mut answered = HashMap::with_capacity(probes.len());
    // Owned futures: a stream borrowing `probes` would make the resync future not `Send`.
    let mut pings = futures::stream::iter(probes)
        .map(|(id, p)| async move { (id, p.players(timeout).await) })
        .buffer_unordered(PROBE_CONCURRENCY);
    // Past the budget, whatever has not answered is left to a reconcile.
    let _ = tokio::time::timeout(budget, async {
        while let Some((id, players)) = pings.next().await {
            if let Some(p) = players {
                answered.insert(id, p);
            }
        }
    })
    .await;
    metrics::counter!(m::HEALTH_PROBES, "result" => m::PROBE_ANSWERED)
        .increment(answered.len() as u64);
    let unanswered: Vec<ServerId> = ids
        .into_iter()
        .filter(|id| !answered.contains_key(id))
        .collect();
    metrics::counter!(m::HEALTH_PROBES, "result" => m::PROBE_UNANSWERED)
        .increment(unanswered.len() as u64);
    Probed {
        unanswered,
        players: answered.into_iter().collect(),
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

/// The `backend` labels of `zlh_servers_degraded`, one per `Degraded` reason (DNS covers
/// Technitium and Cloudflare, as the reason does), and `other` for a reason zlh did not write.
pub const DEGRADED_BACKENDS: [(&str, Reason); 4] = [
    ("proxmox", r::PROXMOX_UNAVAILABLE),
    ("agent", r::AGENT_UNAVAILABLE),
    ("dns", r::DNS_UNAVAILABLE),
    ("proxy", r::PROXY_UNAVAILABLE),
];
const DEGRADED_OTHER: &str = "other";

/// The backend family a Degraded server waits for (from its `Degraded` reason).
pub fn degraded_backend(s: &Server) -> Option<&'static str> {
    let c = s.status.condition(ConditionType::Degraded)?;
    if c.status != ConditionStatus::True {
        return None;
    }
    Some(
        DEGRADED_BACKENDS
            .iter()
            .find(|(_, reason)| reason.as_str() == c.reason)
            .map_or(DEGRADED_OTHER, |(label, _)| *label),
    )
}

/// `zlh_servers_degraded{backend}` and `zlh_proxmox_tasks_in_flight{kind}`, every label
/// written (0 included), so a series drops to 0 instead of keeping its last count.
fn record_fleet(sweep: &Sweep) {
    let labels = DEGRADED_BACKENDS.iter().map(|(l, _)| *l);
    for backend in labels.chain([DEGRADED_OTHER]) {
        let n = sweep.degraded.get(backend).copied().unwrap_or(0);
        metrics::gauge!(m::SERVERS_DEGRADED, "backend" => backend).set(n as f64);
    }
    for kind in TaskKind::ALL {
        let n = sweep.tasks.get(&kind).copied().unwrap_or(0);
        metrics::gauge!(m::PROXMOX_TASKS_IN_FLIGHT, "kind" => kind.as_str()).set(n as f64);
    }
}

/// Zero every gauge a sweep sets (phases, Degraded by backend, tasks, orphans, the mirror's
/// lag): a replica that does not hold the resync reports none of the fleet, so that an
/// aggregate across replicas counts it once.
pub fn clear_fleet_gauges() {
    let empty = Sweep {
        phases: Phase::ALL.iter().map(|p| (*p, 0)).collect(),
        ..Sweep::default()
    };
    record_phases(&empty.phases);
    record_fleet(&empty);
    metrics::gauge!(m::ORPHANS).set(0.0);
    metrics::gauge!(m::MIRROR_FEED_LAG).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A game that does not answer, whether it refuses or holds the connection past the
    /// budget, is handed back to be reconciled; the budget bounds the wait (paused clock:
    /// virtual time, so this is a bound, not a timing).
    #[tokio::test(start_paused = true)]
    async fn unanswered_probes_are_handed_back_within_the_budget() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let probes: Vec<(ServerId, GameProbe)> = [silent_addr, closed]
            .into_iter()
            .map(|addr| {
                let fqdn = "mc.zlh.test".to_string();
                (ServerId::new(), GameProbe { addr, fqdn })
            })
            .collect();
        let ids: Vec<ServerId> = probes.iter().map(|p| p.0).collect();
        let t = tokio::time::Instant::now();
        let probed = probe(probes, Duration::from_secs(30), Duration::from_millis(300)).await;
        assert!(probed.players.is_empty(), "no answer, no players");
        let mut back = probed.unanswered;
        back.sort();
        let mut want = ids;
        want.sort();
        assert_eq!(back, want, "both are reconciled");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the budget, not the probe timeout, bounds the wait"
        );
    }

    /// A Degraded server counts under the backend its reason names (DNS for both providers);
    /// a server not Degraded counts nowhere.
    #[test]
    fn degraded_servers_count_under_their_backend() {
        let at = chrono::Utc::now();
        let cases: &[(ConditionStatus, &str, Option<&str>)] = &[
            (ConditionStatus::True, "ProxmoxUnavailable", Some("proxmox")),
            (ConditionStatus::True, "AgentUnavailable", Some("agent")),
            (ConditionStatus::True, "DnsUnavailable", Some("dns")),
            (ConditionStatus::True, "ProxyUnavailable", Some("proxy")),
            (ConditionStatus::True, "SomethingNew", Some("other")),
            (ConditionStatus::False, "Healthy", None),
        ];
        for (status, reason, want) in cases {
            let mut s = Server {
                id: ServerId::new(),
                customer_id: "u1".into(),
                spec: model::ServerSpec::minecraft(model::Variant::Paper, "1.21.7"),
                generation: 1,
                resource_version: 1,
                reserved_vmid: None,
                deletion_requested_at: None,
                paused: false,
                retry_requested_at: None,
                created_at: at,
                updated_at: at,
                status: Default::default(),
            };
            s.status
                .set_condition(ConditionType::Degraded, *status, reason, "", 1, at);
            assert_eq!(degraded_backend(&s), *want, "{reason}");
        }
    }

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
