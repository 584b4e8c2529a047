//! The task listing: one `GET /nodes/{node}/tasks?source=active` per node per poll answers
//! "still running?" for every task zlh waits on there, so the cost of waiting does not grow
//! with the number of waiting servers (docs/proxmox-api.md, the task listing).
//!
//! A listing only ever says "wait": a UPID it shows running is waited for; one it does not show
//! (ended, or not listed yet) is read directly with `task_status`, whose answer is what the
//! reconcile acts on. A stale listing therefore never causes a mutation.

use chrono::{DateTime, Utc};
use proxmox_client::{Proxmox, TaskFilter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One node's active tasks, as listed at `taken_at`.
#[derive(Debug)]
struct Listing {
    taken_at: DateTime<Utc>,
    running: HashSet<String>,
}

/// What the listing says about one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// In the node's active tasks: still running.
    Running,
    /// Not among them (ended, or not listed yet), or no listing could be had: read the task's
    /// own status.
    ReadStatus,
}

/// The latest listing per node, shared by every reconcile of this process. A listing younger
/// than `max_age` is reused; an older one is replaced by one call, made by the first reconcile
/// that needs it while the others for that node wait for its answer.
#[derive(Debug)]
pub struct TaskListings {
    max_age: Duration,
    nodes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Listing>>>>>,
}

impl TaskListings {
    pub fn new(max_age: Duration) -> Self {
        TaskListings {
            max_age,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `upid` on `node` is among its active tasks, from a listing no older than
    /// `max_age` at `now` (taking one if needed).
    pub async fn lookup<P: Proxmox>(
        &self,
        pve: &P,
        node: &str,
        upid: &str,
        now: DateTime<Utc>,
    ) -> Listed {
        let slot = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.entry(node.to_string()).or_default().clone()
        };
        let mut listing = slot.lock().await;
        let fresh = listing.as_ref().is_some_and(|l| {
            now >= l.taken_at && (now - l.taken_at).to_std().unwrap_or_default() < self.max_age
        });
        if !fresh {
            match pve.node_tasks(node, &TaskFilter::active()).await {
                Ok(tasks) => {
                    *listing = Some(Listing {
                        taken_at: now,
                        running: tasks
                            .into_iter()
                            .filter(|t| t.running())
                            .map(|t| t.upid)
                            .collect(),
                    });
                }
                // No listing: each task is read on its own, as without one.
                Err(e) => {
                    tracing::debug!(node, error = %e, "task listing failed; reading task status");
                    *listing = None;
                    return Listed::ReadStatus;
                }
            }
        }
        match listing.as_ref() {
            Some(l) if l.running.contains(upid) => Listed::Running,
            _ => Listed::ReadStatus,
        }
    }

    /// Forget `node`'s listing (a task was just started there: the next look lists again, so
    /// the new task is seen running without its own status read).
    pub fn invalidate(&self, node: &str) {
        let slot = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.get(node).cloned()
        };
        if let Some(slot) = slot
            && let Ok(mut l) = slot.try_lock()
        {
            *l = None;
        }
    }
}
