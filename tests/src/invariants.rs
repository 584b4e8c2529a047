//! The fleet invariants every end-to-end test checks at the end: what was declared exists
//! exactly once, correctly published; nothing of ours exists that was not declared; deleted
//! servers left nothing behind.

use crate::World;
use controller::decide::{FLEET_TAG, marker_in, marker_tag};
use model::store::Store;
use model::{Kind, Phase, Power};
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

    // Reservations: unique, and only for live servers.
    match w.store.list_reservations().await {
        Ok(res) => {
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
