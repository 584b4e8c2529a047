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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One node's active tasks, as listed at `taken_at`.
#[derive(Debug)]
struct Listing {
    taken_at: DateTime<Utc>,
    /// The node's task starts counted when it was asked for: one started since makes it stale.
    starts: u64,
    running: HashSet<String>,
}

/// One node: its latest listing, and how many tasks this process started there.
#[derive(Debug, Default)]
struct Node {
    starts: AtomicU64,
    listing: tokio::sync::Mutex<Option<Listing>>,
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
    nodes: Mutex<HashMap<String, Arc<Node>>>,
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
        let slot = self.node(node);
        let mut listing = slot.listing.lock().await;
        let starts = slot.starts.load(Ordering::Acquire);
        let fresh = listing.as_ref().is_some_and(|l| {
            l.starts == starts
                && now >= l.taken_at
                && (now - l.taken_at).to_std().unwrap_or_default() < self.max_age
        });
        if !fresh {
            match pve.node_tasks(node, &TaskFilter::active()).await {
                Ok(tasks) => {
                    *listing = Some(Listing {
                        taken_at: now,
                        starts,
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

    /// A task was just started on `node`: its listing is stale, so the next look lists again
    /// and sees the new task running without a status read of its own.
    pub fn task_started(&self, node: &str) {
        self.node(node).starts.fetch_add(1, Ordering::AcqRel);
    }

    fn node(&self, node: &str) -> Arc<Node> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.entry(node.to_string()).or_default().clone()
    }
}

/// What a kind of task took last time, per node, kind and template: a task of the same kind is
/// not looked at before about then (a clone of one template, a resize to one size and a start
/// take about as long each time). Only ever a reason to wait: a task presumed running is
/// looked at before anything is decided from it (`Observed::confirm`), and its deadline
/// still counts from its start.
#[derive(Debug, Default)]
pub struct TaskDurations {
    learned: Mutex<HashMap<LearnedKey, Duration>>,
}

/// (node, kind, template) of a [`TaskKey`], owned.
type LearnedKey = (String, model::TaskKind, Option<u32>);

/// Which tasks are alike: same node, same kind, same template.
#[derive(Debug, Clone, Copy)]
pub struct TaskKey<'a> {
    pub node: &'a str,
    pub kind: model::TaskKind,
    pub template: Option<u32>,
}

impl TaskDurations {
    /// How long the last task like `key` took, from its start to its end as seen here.
    pub fn expected(&self, key: TaskKey<'_>) -> Option<Duration> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned
            .get(&(key.node.to_string(), key.kind, key.template))
            .copied()
    }

    /// A task like `key` was seen ended, `took` after its start.
    pub fn learn(&self, key: TaskKey<'_>, took: Duration) {
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.insert((key.node.to_string(), key.kind, key.template), took);
    }
}
