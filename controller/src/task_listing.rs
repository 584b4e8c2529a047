//! The task listing: one `GET /nodes/{node}/tasks?source=all&since=..` per node per poll
//! answers, for every task zlh waits on there, whether it still runs and, once it ended, how
//! (docs/proxmox-api.md, the task listing). The cost of waiting does not grow with the number
//! of waiting servers, and an ended task costs no read of its own.
//!
//! A listing never causes a mutation on stale grounds: a task it shows running is only waited
//! for, and one it shows ended has ended for good (an exit status never changes). One it does
//! not show (not listed yet, or no listing could be had) is read directly with `task_status`.

use chrono::{DateTime, Utc};
use proxmox_client::{Proxmox, TaskExit, TaskFilter, Upid};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One node's tasks since `since`, as listed at `taken_at`: `None` while running, else the
/// exit status.
#[derive(Debug)]
struct Listing {
    taken_at: DateTime<Utc>,
    since: i64,
    tasks: HashMap<String, Option<TaskExit>>,
}

/// One node: the tasks waited on there (UPID to its start, in PVE's clock), and its latest
/// listing.
#[derive(Debug, Default)]
struct Node {
    waited: Mutex<HashMap<String, i64>>,
    listing: tokio::sync::Mutex<Option<Listing>>,
}

/// What the listing says about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Running.
    Running,
    /// Ended, with this exit status.
    Ended(TaskExit),
    /// Not listed (not yet, or no listing could be had): read the task's own status.
    ReadStatus,
}

/// The latest listing per node, shared by every reconcile of this process. A listing younger
/// than the asker's `max_age` that reaches back to a task's start is reused; otherwise one
/// call replaces it, made by the first reconcile that needs it while the others for that node
/// wait for its answer.
#[derive(Debug, Default)]
pub struct TaskListings {
    nodes: Mutex<HashMap<String, Arc<Node>>>,
}

impl TaskListings {
    /// What a listing no older than `max_age` at `now` says about `upid` (taking one if
    /// needed).
    pub async fn lookup<P: Proxmox>(
        &self,
        pve: &P,
        upid: &Upid,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Listed {
        let slot = self.node(&upid.node);
        let key = upid.to_string();
        lock(&slot.waited).insert(key.clone(), upid.starttime);
        let mut listing = slot.listing.lock().await;
        let fresh = listing.as_ref().is_some_and(|l| {
            l.since <= upid.starttime
                && now >= l.taken_at
                && (now - l.taken_at).to_std().unwrap_or_default() < max_age
        });
        if !fresh {
            // From the oldest task waited on, so one listing answers for all of them.
            let since = lock(&slot.waited)
                .values()
                .copied()
                .min()
                .unwrap_or(upid.starttime);
            match pve.node_tasks(&upid.node, &TaskFilter::since(since)).await {
                Ok(tasks) => {
                    let l = Listing {
                        taken_at: now,
                        since,
                        tasks: tasks
                            .into_iter()
                            .map(|t| {
                                let exit = (!t.running())
                                    .then(|| TaskExit::parse(t.status.as_deref().unwrap_or("")));
                                (t.upid, exit)
                            })
                            .collect(),
                    };
                    // Only what still runs is waited on: an ended task is answered from here
                    // until its waiter has looked (or is gone, as a deleted server's is).
                    lock(&slot.waited).retain(|u, _| matches!(l.tasks.get(u), Some(None)));
                    *listing = Some(l);
                }
                // No listing: each task is read on its own, as without one.
                Err(e) => {
                    let node = upid.node.as_str();
                    tracing::debug!(node, error = %e, "task listing failed; reading task status");
                    *listing = None;
                    return Listed::ReadStatus;
                }
            }
        }
        match listing.as_ref().and_then(|l| l.tasks.get(&key)) {
            Some(None) => Listed::Running,
            Some(Some(exit)) => Listed::Ended(exit.clone()),
            None => Listed::ReadStatus,
        }
    }

    fn node(&self, node: &str) -> Arc<Node> {
        lock(&self.nodes)
            .entry(node.to_string())
            .or_default()
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a kind of task takes, per node, kind and template: a task of the same kind is not
/// looked at before then (a clone of one template, a resize to one size and a start take
/// about as long each time). Only ever a reason to wait: a task presumed running is looked at
/// before anything is decided from it (`Observed::confirm`), and its deadline still counts
/// from its start.
///
/// An end is only seen at a look, so what a task took is measured up to that look: a
/// little more than it took. Taken as is, the expectation would creep up by the look's delay
/// with every task. So an end seen within `slack` of the expectation keeps the smaller of
/// the two, and only a task still running well past it (seen at a later look) raises it.
/// A clone's expectation is also lowered by `slack` each time its end was seen at the first
/// look: the template's next clone waits for that end, so it is probed for (at the cost of
/// a second look now and then) instead of kept as first overestimated.
#[derive(Debug)]
pub struct TaskDurations {
    slack: Duration,
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
    /// `slack`: less than the interval of looks at a task past its expected end, so one seen
    /// at such a later look raises the expectation.
    pub fn new(slack: Duration) -> Self {
        TaskDurations {
            slack,
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// How long a task like `key` is expected to take, from its start to its end as seen
    /// here.
    pub fn expected(&self, key: TaskKey<'_>) -> Option<Duration> {
        lock(&self.learned)
            .get(&(key.node.to_string(), key.kind, key.template))
            .copied()
    }

    /// A task like `key` was seen ended, `took` after its start.
    pub fn learn(&self, key: TaskKey<'_>, took: Duration) {
        let mut learned = lock(&self.learned);
        let expected = learned
            .entry((key.node.to_string(), key.kind, key.template))
            .or_insert(took);
        *expected = if took <= *expected + self.slack {
            let seen = took.min(*expected);
            if key.kind == model::TaskKind::Clone {
                seen.saturating_sub(self.slack)
            } else {
                seen
            }
        } else {
            took
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::TaskKind;

    /// What is expected after a task seen ended `took` after its start, with `before`
    /// expected (slack 100 ms).
    #[test]
    fn learning_a_duration() {
        let ms = Duration::from_millis;
        let cases: &[(Option<u64>, u64, TaskKind, u64, &str)] = &[
            (
                None,
                2_000,
                TaskKind::Start,
                2_000,
                "the first end seen is the expectation",
            ),
            (
                Some(2_000),
                2_050,
                TaskKind::Start,
                2_000,
                "seen at the first look: no creep by the look's delay",
            ),
            (
                Some(2_000),
                1_500,
                TaskKind::Start,
                1_500,
                "ended earlier: expected earlier",
            ),
            (
                Some(2_000),
                2_300,
                TaskKind::Start,
                2_300,
                "still running past the expectation: raised",
            ),
            (
                Some(2_000),
                2_050,
                TaskKind::Clone,
                1_900,
                "a clone's end is probed for: a little earlier each time",
            ),
            (
                Some(2_000),
                2_300,
                TaskKind::Clone,
                2_300,
                "a clone still running past it: raised",
            ),
        ];
        for &(before, took, kind, after, why) in cases {
            let d = TaskDurations::new(ms(100));
            let key = TaskKey {
                node: "pve",
                kind,
                template: Some(9000),
            };
            if let Some(b) = before {
                // Seeded directly: `learn` would already probe a clone's first end.
                lock(&d.learned).insert(("pve".into(), kind, Some(9000)), ms(b));
            }
            d.learn(key, ms(took));
            assert_eq!(d.expected(key), Some(ms(after)), "{why}");
        }
    }
}
