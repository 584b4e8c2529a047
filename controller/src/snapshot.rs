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

/// One node's container listing (`GET /nodes/{node}/lxc`), as taken for the servers in flux.
#[derive(Debug)]
pub struct NodeListing {
    /// The store clock when it was asked for: it shows the node as it was at this time or
    /// later.
    pub taken_at: DateTime<Utc>,
    pub containers: HashMap<u32, CtEntry>,
}

/// The latest container listing per node, shared by every server in flux there: while servers
/// wait (for an address, the Agent, the game) one listing per node per `max_age` answers
/// presence, lock, tags and power for all of them, instead of a config and a status read per
/// server per poll. It is the node's list, not `cluster/resources`: PVE quirk, `status` (and
/// `name`) in `cluster/resources` come from pvestatd's broadcast and lag the container by up
/// to 10 s (a just-created CT shows `unknown`), while the node's list reads each container's
/// state live; `lock` and `tags` come from the config in both.
///
/// A listing only ever makes a server wait: anything else is confirmed by a read of its own
/// before it is acted on (`Observed::confirm`).
#[derive(Debug)]
pub struct FleetListings {
    max_age: std::time::Duration,
    nodes: std::sync::Mutex<HashMap<String, Arc<NodeSlot>>>,
}

/// One node's latest listing; held while it is being replaced, so one call serves everyone.
type NodeSlot = tokio::sync::Mutex<Option<Arc<NodeListing>>>;

impl FleetListings {
    pub fn new(max_age: std::time::Duration) -> Self {
        FleetListings {
            max_age,
            nodes: Default::default(),
        }
    }

    /// A listing of `node` taken at or after `not_before` (when the server last changed, as
    /// far as its status knows) and younger than `max_age` at `now`, taking one if needed
    /// (the others asking meanwhile wait for its answer); `None` when Proxmox could not list
    /// (the server is then read on its own).
    pub async fn get<P: Proxmox>(
        &self,
        pve: &P,
        node: &str,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Arc<NodeListing>> {
        let slot = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.entry(node.to_string()).or_default().clone()
        };
        let mut latest = slot.lock().await;
        if let Some(l) = latest.as_ref()
            && l.taken_at >= not_before
            && now >= l.taken_at
            && (now - l.taken_at).to_std().unwrap_or_default() < self.max_age
        {
            return Some(l.clone());
        }
        match pve.node_cts(node).await {
            Ok(list) => {
                let l = Arc::new(NodeListing {
                    taken_at: now,
                    containers: CtEntry::index(list),
                });
                *latest = Some(l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "node listing failed; reading per server");
                *latest = None;
                None
            }
        }
    }
}
