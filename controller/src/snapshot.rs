//! The fleet snapshot: one batched observation per resync (one `cluster/resources` call, one
//! listing per DNS zone, one proxy listing), so steady-state load on the backends does not
//! grow with the fleet. Reconciles use it only to confirm that a server is fine; anything it
//! does not confirm is observed per server (a stale snapshot must never cause an action).

use edge_client::dns::ObservedRecords;
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct CtEntry {
    pub vmid: u32,
    pub node: String,
    pub running: bool,
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
