//! The fleet snapshot: one batched observation per resync (one `cluster/resources` call, one
//! listing per DNS zone, one proxy listing), so steady-state load on the backends does not
//! grow with the fleet. Reconciles use it only to confirm that a server is fine; anything it
//! does not confirm is observed per server (a stale snapshot must never cause an action).

use chrono::{DateTime, Utc};
use edge_client::dns::ObservedRecords;
use proxmox_client::Proxmox;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct CtEntry {
    pub vmid: u32,
    pub node: String,
    pub running: bool,
    /// PVE said `running` or `stopped`; `unknown` (a just-created CT, before its first RRD
    /// broadcast) tells nothing about power.
    pub status_known: bool,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub lock: Option<String>,
    /// Its metrics, kept as live detail by the resync.
    pub usage: proxmox_client::Usage,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub taken_at: Option<Instant>,
    /// The store clock when the listing was asked for: a server archived at or after it may
    /// still show its container (destroyed after the listing), so it is no orphan.
    pub listed_from: Option<chrono::DateTime<chrono::Utc>>,
    pub containers: HashMap<u32, CtEntry>,
    /// Every VMID Proxmox listed, LXC and QEMU alike (a VM's VMID is as taken as a CT's);
    /// `None` when the listing failed.
    pub guests: Option<HashSet<u32>>,
    /// Per provider name: host fqdn → records.
    pub dns: HashMap<&'static str, HashMap<String, ObservedRecords>>,
    /// Proxy registrations by (lower-cased) name: (address, port).
    pub proxy: Option<HashMap<String, (String, Option<u16>)>>,
}

impl Snapshot {
    pub fn is_fresh(&self, max_age: std::time::Duration) -> bool {
        self.taken_at.is_some_and(|t| t.elapsed() <= max_age)
    }

    /// The VMIDs a reservation must skip, if this snapshot is fresh and listed them. A VMID
    /// taken since is caught by the clone's `already exists` (the VMID-conflict path), so a
    /// slightly old list costs at most one failed clone, never a collision.
    pub fn taken_vmids(&self, max_age: std::time::Duration) -> Option<Vec<u32>> {
        let guests = self.guests.as_ref().filter(|_| self.is_fresh(max_age))?;
        Some(guests.iter().copied().collect())
    }
}

impl CtEntry {
    /// The LXC entries of a `cluster/resources` answer, by VMID.
    pub fn index(list: Vec<proxmox_client::ClusterResource>) -> HashMap<u32, CtEntry> {
        list.into_iter()
            .filter(|r| r.kind == proxmox_client::GuestType::Lxc)
            .map(|r| {
                let entry = CtEntry {
                    vmid: r.vmid,
                    running: r.status == "running",
                    status_known: r.status == "running" || r.status == "stopped",
                    node: r.node,
                    name: r.name,
                    tags: r.tags,
                    lock: r.lock,
                    usage: r.usage,
                };
                (r.vmid, entry)
            })
            .collect()
    }
}

/// One `cluster/resources` listing, as taken for the servers in flux.
#[derive(Debug)]
pub struct FleetListing {
    /// The store clock when it was asked for: it shows the cluster as it was at this time or
    /// later.
    pub taken_at: DateTime<Utc>,
    pub containers: HashMap<u32, CtEntry>,
}

/// The latest fleet listing taken for servers in flux, shared by all of them: while servers
/// wait (for an address, the Agent, the game) one listing per `max_age` answers lock, tags and
/// presence for all of them, instead of a config and a status read per server per poll.
/// A listing only ever makes a server wait: anything else is confirmed by a read of its own
/// before it is acted on (`reconcile`, `Observed::confirm`).
#[derive(Debug)]
pub struct FleetListings {
    max_age: std::time::Duration,
    latest: tokio::sync::Mutex<Option<Arc<FleetListing>>>,
}

impl FleetListings {
    pub fn new(max_age: std::time::Duration) -> Self {
        FleetListings {
            max_age,
            latest: tokio::sync::Mutex::new(None),
        }
    }

    /// A listing taken at or after `not_before` (when the server last changed, as far as its
    /// status knows) and younger than `max_age` at `now`, taking one if needed; `None` when
    /// Proxmox could not list (the server is then read on its own).
    pub async fn get<P: Proxmox>(
        &self,
        pve: &P,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Arc<FleetListing>> {
        let mut latest = self.latest.lock().await;
        if let Some(l) = latest.as_ref()
            && l.taken_at >= not_before
            && now >= l.taken_at
            && (now - l.taken_at).to_std().unwrap_or_default() < self.max_age
        {
            return Some(l.clone());
        }
        match pve.cluster_resources().await {
            Ok(list) => {
                let l = Arc::new(FleetListing {
                    taken_at: now,
                    containers: CtEntry::index(list),
                });
                *latest = Some(l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::debug!(error = %e, "fleet listing failed; reading per server");
                *latest = None;
                None
            }
        }
    }
}
