//! The fleet invariants every end-to-end test checks at the end: what was declared exists
//! exactly once, correctly published; nothing of ours exists that was not declared; deleted
//! servers left nothing behind.

use crate::World;
use controller::ownership::{FLEET_TAG, marker_in, marker_tag};
use model::store::Store;
use model::{Kind, Phase, Power, ServerId};
use std::collections::{HashMap, HashSet};

/// Every violation, human-readable; empty when the fleet is as declared.
pub async fn check_invariants(w: &World) -> Vec<String> {
    let mut v = Vec::new();
    let servers = w.servers().await;
    let pve = w
        .sims
        .pve
        .as_ref()
        .expect("invariants need the Proxmox simulator");
    let cts = pve.containers();
    let by_vmid: HashMap<u32, _> = cts.iter().map(|c| (c.vmid, c)).collect();
    let live: HashSet<String> = servers.iter().map(|s| s.id.to_string()).collect();
    let zone = &w.cfg.edge.zone;

    for s in &servers {
        if s.phase().0 != Phase::Ready {
            continue;
        }
        let Some(vmid) = s.reserved_vmid else {
            v.push(format!("{}: Ready without a VMID", s.id));
            continue;
        };
        let Some(ct) = by_vmid.get(&vmid) else {
            v.push(format!("{}: Ready but no container at VMID {vmid}", s.id));
            continue;
        };
        if !ct.tags.iter().any(|t| *t == marker_tag(s.id))
            || !ct.tags.iter().any(|t| t == FLEET_TAG)
        {
            v.push(format!(
                "{}: container {vmid} lacks our marker tags: {:?}",
                s.id, ct.tags
            ));
        }
        let running = ct.status == proxmox_client::CtState::Running;
        if running != (s.spec.power == Power::Running) {
            v.push(format!(
                "{}: container {vmid} running={running}, spec {:?}",
                s.id, s.spec.power
            ));
        }
        let owners = cts
            .iter()
            .filter(|c| {
                marker_in(&c.tags, c.description.as_deref().unwrap_or("")).as_deref()
                    == Some(&s.id.to_string())
            })
            .count();
        if owners != 1 {
            v.push(format!(
                "{}: {owners} containers carry its marker (want exactly 1)",
                s.id
            ));
        }
        if s.spec.kind == Kind::Game && s.spec.power == Power::Running {
            let host = s.status.hostname.clone().unwrap_or_default();
            let fqdn = format!("{host}.{zone}");
            let edge = controller::observe::EdgeTarget {
                fqdn: &fqdn,
                hostname: &host,
                internal_ip: w.cfg.edge.internal_ip,
                public_ip: w.cfg.edge.public_ip,
                proxy_port: w.cfg.edge.proxy_port,
                game_port: w.cfg.agent.game_port,
            };
            if let Some(t) = &w.sims.technitium
                && !t.observed(&fqdn).matches(&edge.records(false))
            {
                v.push(format!(
                    "{}: Technitium records of {fqdn} wrong: {:?}",
                    s.id,
                    t.observed(&fqdn)
                ));
            }
            if let Some(c) = &w.sims.cloudflare
                && !c.observed(&fqdn).matches(&edge.records(true))
            {
                v.push(format!(
                    "{}: Cloudflare records of {fqdn} wrong: {:?}",
                    s.id,
                    c.observed(&fqdn)
                ));
            }
            if let Some(p) = &w.sims.velocity {
                let regs = p.registrations();
                let ok = regs.iter().any(|r| {
                    r.name.eq_ignore_ascii_case(&host)
                        && Some(r.address.as_str()) == s.status.ip.as_deref()
                        && r.port == Some(w.cfg.agent.game_port)
                });
                if !ok {
                    v.push(format!(
                        "{}: proxy registration of {host} missing or wrong",
                        s.id
                    ));
                }
            }
        }
    }

    // Nothing of ours that no server owns.
    for c in &cts {
        if let Some(m) = marker_in(&c.tags, c.description.as_deref().unwrap_or(""))
            && !live.contains(&m)
        {
            v.push(format!(
                "container {} carries marker {m} but no server owns it (leak)",
                c.vmid
            ));
        }
    }

    v.extend(check_pools(w, &servers, &cts).await);

    // Reservations: unique, only for live servers, and the one each server names.
    match w.store.list_reservations().await {
        Ok(res) => {
            let by_server: HashMap<String, u32> = res
                .iter()
                .map(|(vmid, id)| (id.to_string(), *vmid))
                .collect();
            for s in &servers {
                if let Some(vmid) = s.reserved_vmid
                    && by_server.get(&s.id.to_string()) != Some(&vmid)
                {
                    v.push(format!(
                        "{}: names VMID {vmid} but the reservation table says {:?}",
                        s.id,
                        by_server.get(&s.id.to_string())
                    ));
                }
            }
            let mut seen = HashSet::new();
            for (vmid, id) in res {
                if !seen.insert(vmid) {
                    v.push(format!("VMID {vmid} reserved twice"));
                }
                if !live.contains(&id.to_string()) {
                    v.push(format!(
                        "VMID {vmid} still reserved for deleted server {id}"
                    ));
                }
            }
        }
        Err(e) => v.push(format!("cannot list reservations: {e}")),
    }

    // Deleted servers left no DNS records or registrations behind: every record in the
    // simulators must belong to a live Ready-or-provisioning server's hostname.
    let live_hosts: HashSet<String> = servers
        .iter()
        .filter_map(|s| s.status.hostname.clone())
        .map(|h| h.to_lowercase())
        .collect();
    if let Some(p) = &w.sims.velocity {
        for r in p.registrations() {
            if !live_hosts.contains(&r.name.to_lowercase()) {
                v.push(format!(
                    "proxy registration {} belongs to no server",
                    r.name
                ));
            }
        }
    }
    if let Some(t) = &w.sims.technitium {
        for name in t.records().keys() {
            let host = name
                .trim_start_matches("_minecraft._tcp.")
                .trim_end_matches(&format!(".{zone}"))
                .to_lowercase();
            if name != zone && !live_hosts.contains(&host) {
                v.push(format!("Technitium record {name} belongs to no server"));
            }
        }
    }
    if let Some(c) = &w.sims.cloudflare {
        for r in c.records() {
            let host = r
                .name
                .trim_start_matches("_minecraft._tcp.")
                .trim_end_matches(&format!(".{zone}"))
                .to_lowercase();
            if !live_hosts.contains(&host) {
                v.push(format!("Cloudflare record {} belongs to no server", r.name));
            }
        }
    }
    v
}

/// The warm pools (docs/pools.md): every member is in exactly one pool and no server's; no
/// container is both a member and a server's; every container with a pool marker is a member
/// or a claim in progress (else it leaked); every free member is there, stopped, marked.
pub async fn check_pools(
    w: &World,
    servers: &[model::Server],
    cts: &[proxmox_client::sim::CtSnapshot],
) -> Vec<String> {
    use controller::ownership::{POOL_TAG, is_pool_member, pool_marker_in};
    let mut v = Vec::new();
    let members = match w.store.list_pool_members().await {
        Ok(m) => m,
        Err(e) => return vec![format!("cannot list pool members: {e}")],
    };
    let mut seen = HashSet::new();
    for m in &members {
        if !seen.insert(m.vmid) {
            v.push(format!("pool member {} listed twice", m.vmid));
        }
        if let Some(s) = servers
            .iter()
            .find(|s| s.reserved_vmid == Some(m.vmid) || s.status.vmid == Some(m.vmid))
        {
            v.push(format!(
                "VMID {} is a pool member of {} and server {}'s (claimed twice)",
                m.vmid, m.template, s.id
            ));
        }
    }
    let by_vmid: HashMap<u32, &model::PoolMember> = members.iter().map(|m| (m.vmid, m)).collect();
    for c in cts.iter().filter(|c| !c.template) {
        let desc = c.description.as_deref().unwrap_or("");
        let pool_marked = c.tags.iter().any(|t| t == POOL_TAG) || pool_marker_in(desc).is_some();
        let server_marked = marker_in(&c.tags, desc).is_some();
        if pool_marked && server_marked {
            v.push(format!(
                "container {} carries both a pool and a server marker: {:?} / {desc:?}",
                c.vmid, c.tags
            ));
        }
        if !pool_marked {
            continue;
        }
        let claimed = servers.iter().any(|s| {
            s.reserved_vmid == Some(c.vmid) && s.status.progress.pool_claim == Some(c.vmid)
        });
        if !by_vmid.contains_key(&c.vmid) && !claimed {
            v.push(format!(
                "container {} carries a pool marker but is no member and no claim (leak)",
                c.vmid
            ));
        }
    }
    for m in members
        .iter()
        .filter(|m| m.state == model::MemberState::Free)
    {
        let Some(c) = cts.iter().find(|c| c.vmid == m.vmid) else {
            v.push(format!(
                "free pool member {} has no container (lost)",
                m.vmid
            ));
            continue;
        };
        let desc = c.description.as_deref().unwrap_or("");
        if !is_pool_member(&c.tags, desc, Some(&c.hostname), m.vmid)
            || !c.tags.iter().any(|t| t == POOL_TAG)
        {
            v.push(format!(
                "free pool member {} is not marked: {:?}",
                m.vmid, c.tags
            ));
        }
        if c.status != proxmox_client::CtState::Stopped || c.lock.is_some() {
            v.push(format!(
                "free pool member {} is {:?} (lock {:?}), want stopped and unlocked",
                m.vmid, c.status, c.lock
            ));
        }
        if pool_marker_in(desc) != Some(m.template) {
            v.push(format!(
                "free pool member {} of template {} is marked for {:?}",
                m.vmid,
                m.template,
                pool_marker_in(desc)
            ));
        }
    }
    v
}

/// Every server in `deleted` is gone and left nothing behind: no live row, an archive row, no
/// container carrying its marker, no VMID reservation, no DNS record or proxy registration
/// under the hostname it had, and no container at its VMID that still looks like its own.
pub async fn check_deleted(w: &World, deleted: &[ServerId]) -> Vec<String> {
    let mut v = Vec::new();
    let pve = w
        .sims
        .pve
        .as_ref()
        .expect("invariants need the Proxmox simulator");
    let cts = pve.containers();
    let zone = &w.cfg.edge.zone;
    let reservations = w.store.list_reservations().await.unwrap_or_default();
    for id in deleted {
        match w.store.get_server(*id).await {
            Ok(Some(s)) => v.push(format!("{id}: deleted but still live ({:?})", s.phase().0)),
            Ok(None) => {}
            Err(e) => v.push(format!("{id}: cannot read: {e}")),
        }
        let archived = match w.store.get_archived(*id).await {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                v.push(format!("{id}: deleted but not archived"));
                None
            }
            Err(e) => {
                v.push(format!("{id}: cannot read the archive: {e}"));
                None
            }
        };
        let sid = id.to_string();
        for c in &cts {
            if marker_in(&c.tags, c.description.as_deref().unwrap_or("")).as_deref()
                == Some(sid.as_str())
            {
                v.push(format!(
                    "{id}: deleted but container {} carries its marker",
                    c.vmid
                ));
            }
        }
        if let Some((vmid, _)) = reservations.iter().find(|(_, s)| s == id) {
            v.push(format!(
                "{id}: deleted but VMID {vmid} still reserved for it"
            ));
        }
        let host = archived.as_ref().and_then(|a| {
            a.server.status.hostname.clone().or_else(|| {
                a.server.reserved_vmid.map(|vm| {
                    controller::ownership::hostname(a.server.spec.kind, a.server.spec.variant, vm)
                })
            })
        });
        let Some(host) = host else { continue };
        let fqdn = format!("{host}.{zone}").to_lowercase();
        // The hostname embeds the VMID, which a later server may have reused: only records
        // of a hostname no live server has are leftovers.
        let reused = w.servers().await.iter().any(|s| {
            s.status
                .hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
        });
        if reused {
            continue;
        }
        if let Some(t) = &w.sims.technitium
            && !t.observed(&fqdn).is_empty()
        {
            v.push(format!(
                "{id}: deleted but Technitium still has records of {fqdn}"
            ));
        }
        if let Some(c) = &w.sims.cloudflare
            && !c.observed(&fqdn).is_empty()
        {
            v.push(format!(
                "{id}: deleted but Cloudflare still has records of {fqdn}"
            ));
        }
        if let Some(p) = &w.sims.velocity
            && p.registrations()
                .iter()
                .any(|r| r.name.eq_ignore_ascii_case(&host))
        {
            v.push(format!(
                "{id}: deleted but the proxy still registers {host}"
            ));
        }
    }
    v
}

/// No server was cloned twice. Counted by the simulator per VMID (clone requests that reached
/// the clone logic); a VMID can be reused after a deletion released it, so each VMID may have
/// been cloned at most once per server that ever held it (live ones, plus `deleted`, read from
/// the archive), and every live server past the clone step has at least one. `extra` allows
/// that many more clones per VMID (for tests that inject failed clone tasks, which are cleaned
/// up and retried). With `extra = 0`, a crash or a transient error that led to a second clone
/// onto the same VMID is a violation.
pub async fn check_clones(w: &World, deleted: &[ServerId], extra: u64) -> Vec<String> {
    let pve = w
        .sims
        .pve
        .as_ref()
        .expect("invariants need the Proxmox simulator");
    let mut v = Vec::new();
    let mut holders: HashMap<u32, u64> = HashMap::new();
    for s in w.servers().await {
        if let Some(vm) = s.reserved_vmid.or(s.status.vmid) {
            *holders.entry(vm).or_default() += 1;
            if s.phase().0 == Phase::Ready && pve.clone_calls_for(vm) == 0 {
                v.push(format!(
                    "{}: Ready at VMID {vm} but it was never cloned",
                    s.id
                ));
            }
        }
    }
    for id in deleted {
        if let Ok(Some(a)) = w.store.get_archived(*id).await
            && let Some(vm) = a.server.reserved_vmid.or(a.server.status.vmid)
        {
            *holders.entry(vm).or_default() += 1;
        }
    }
    // A warm-pool member was cloned by its pool (claimed ones count as their server's).
    for m in w.store.list_pool_members().await.unwrap_or_default() {
        *holders.entry(m.vmid).or_default() += 1;
    }
    let [g0, g1] = w.cfg.vmids.game;
    let [d0, d1] = w.cfg.vmids.dev;
    for vm in (g0..=g1).chain(d0..=d1) {
        let n = pve.clone_calls_for(vm);
        let held = holders.get(&vm).copied().unwrap_or(0);
        if n > held * (1 + extra) {
            v.push(format!(
                "VMID {vm} was cloned {n} times but only {held} server(s) ever held it (a server cloned twice)"
            ));
        }
    }
    v
}
