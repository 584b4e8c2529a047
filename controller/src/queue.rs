//! The work queue, keyed by server id (client-go's workqueue semantics):
//! - a key is queued at most once;
//! - a key is processed by at most one worker at a time; a key added while it is being
//!   processed is queued again when that worker calls `done`;
//! - `add_after` schedules a key for later (requeue timers, backoff); an earlier schedule wins.
//!
//! How long keys wait between ready and taken is recorded (`zlh_workqueue_wait_duration_seconds`),
//! and the oldest ready key's age can be read ([`WorkQueue::oldest_ready_age`]).

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    /// Keys in FIFO order with the time each became ready (so the front is the oldest).
    ready: VecDeque<(K, Instant)>,
    /// Keys in `ready` (dedup).
    queued: HashSet<K>,
    /// Keys a worker holds.
    running: HashSet<K>,
    /// Keys added while running: re-queued on `done`.
    dirty: HashSet<K>,
    /// Earliest scheduled time per key; the heap may hold stale entries.
    scheduled: HashMap<K, Instant>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64, K)>>,
    seq: u64,
    shut_down: bool,
    /// Keys that go to the front of the line the next time they become ready.
    urgent: HashSet<K>,
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    pub fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                running: HashSet::new(),
                dirty: HashSet::new(),
                scheduled: HashMap::new(),
                timers: BinaryHeap::new(),
                seq: 0,
                shut_down: false,
                urgent: HashSet::new(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` now.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shut_down {
            return;
        }
        s.scheduled.remove(&key);
        Self::push_ready(&mut s, key);
        drop(s);
        self.notify.notify_one();
    }

    fn push_ready(s: &mut State<K>, key: K) {
        Self::push_ready_at(s, key, Instant::now());
    }

    fn push_ready_at(s: &mut State<K>, key: K, since: Instant) {
        if s.running.contains(&key) {
            s.dirty.insert(key);
        } else if s.queued.insert(key.clone()) {
            if s.urgent.remove(&key) {
                s.ready.push_front((key, since));
            } else {
                s.ready.push_back((key, since));
            }
        }
    }

    /// `key` goes to the front of the line the next time it is ready (at once if it is
    /// already waiting for a worker): work others wait on (a clone holding a template, the
    /// next waiter for it) must not queue behind a resync's sweep of the fleet.
    pub fn prioritize(&self, key: K) {
        let mut s = self.lock();
        if let Some(pos) = s.ready.iter().position(|(k, _)| *k == key) {
            if let Some(entry) = s.ready.remove(pos) {
                s.ready.push_front(entry);
            }
        } else {
            s.urgent.insert(key);
        }
    }

    /// Queue `key` after `delay`, unless it is already due sooner.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut s = self.lock();
        if s.shut_down || s.queued.contains(&key) {
            return;
        }
        if s.scheduled.get(&key).is_some_and(|t| *t <= at) {
            return;
        }
        s.scheduled.insert(key.clone(), at);
        s.seq += 1;
        let seq = s.seq;
        s.timers.push(std::cmp::Reverse((at, seq, key)));
        drop(s);
        // Wake a waiter so it recomputes its sleep deadline.
        self.notify.notify_one();
    }

    /// Wait for the next key; `None` once shut down and drained of ready keys.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            let next_timer = {
                let mut s = self.lock();
                let now = Instant::now();
                while let Some(std::cmp::Reverse((at, _, key))) = s.timers.peek().cloned() {
                    if at > now {
                        break;
                    }
                    s.timers.pop();
                    if s.scheduled.get(&key) == Some(&at) {
                        s.scheduled.remove(&key);
                        // Ready since it was due, not since a worker noticed.
                        Self::push_ready_at(&mut s, key, at);
                    }
                }
                if s.shut_down {
                    return None;
                }
                if let Some((key, since)) = s.ready.pop_front() {
                    metrics::histogram!(crate::metrics::WORKQUEUE_WAIT)
                        .record(now.saturating_duration_since(since).as_secs_f64());
                    s.queued.remove(&key);
                    s.running.insert(key.clone());
                    // Pass the baton: another worker may have something to do too.
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                s.timers.peek().map(|r| r.0.0)
            };
            match next_timer {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The worker finished `key`; re-queue it if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.running.remove(key);
        if s.dirty.remove(key) && !s.shut_down {
            s.scheduled.remove(key);
            Self::push_ready(&mut s, key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Keys ready now plus keys scheduled for later.
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.ready.len() + s.scheduled.len()
    }

    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// How long the oldest ready key has waited for a worker (zero when none is ready). A
    /// scheduled key counts from its due time: while every worker is busy, nobody moves due
    /// keys to the ready list, and those are exactly the ones waiting.
    pub fn oldest_ready_age(&self) -> Duration {
        let s = self.lock();
        let now = Instant::now();
        // The front is not always the oldest: prioritized keys jump the line.
        let ready = s.ready.iter().map(|(_, since)| *since).min();
        let due = s.scheduled.values().filter(|at| **at <= now).min().copied();
        ready
            .into_iter()
            .chain(due)
            .min()
            .map(|since| now.saturating_duration_since(since))
            .unwrap_or_default()
    }

    /// Stop handing out keys; waiting `get` calls return `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_queued_once() {
        let q = WorkQueue::new();
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.depth(), 2);
        assert_eq!(q.get().await, Some(1));
        assert_eq!(q.get().await, Some(2));
    }

    /// A prioritized key jumps the line: at once when it is waiting, else when it is next
    /// ready (its timer fires, or it is added); others keep their order.
    #[tokio::test(start_paused = true)]
    async fn a_prioritized_key_goes_first() {
        let q = WorkQueue::new();
        for k in [1, 2, 3] {
            q.add(k);
        }
        q.prioritize(3);
        q.prioritize(9);
        q.add_after(9, Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(q.get().await, Some(9), "its timer fired: first in line");
        assert_eq!(q.get().await, Some(3), "waiting, prioritized: next");
        assert_eq!(q.get().await, Some(1), "the rest in order");
        assert_eq!(q.get().await, Some(2));
        q.add(4);
        q.add(3);
        q.done(&3);
        q.add(3);
        assert_eq!(q.get().await, Some(4), "a priority is used up once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_running_runs_again_after_done() {
        let q = WorkQueue::new();
        q.add(7);
        let k = q.get().await.unwrap();
        q.add(7);
        assert_eq!(q.depth(), 0, "not handed out twice while running");
        q.done(&k);
        assert_eq!(q.get().await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn earlier_schedule_wins_and_add_overrides_timer() {
        let q = WorkQueue::new();
        q.add_after(1, Duration::from_secs(10));
        q.add_after(1, Duration::from_secs(60));
        q.add_after(2, Duration::from_secs(5));
        let first = q.get().await;
        assert_eq!(first, Some(2));
        assert_eq!(q.get().await, Some(1));
        q.done(&1);
        q.done(&2);
        q.add_after(3, Duration::from_secs(100));
        q.add(3);
        assert_eq!(q.get().await, Some(3));
        assert_eq!(q.depth(), 0, "the cancelled timer does not linger");
    }

    /// The oldest ready key's age counts from when it became ready: a timer's key from its
    /// due time, and nothing once every ready key is taken.
    #[tokio::test(start_paused = true)]
    async fn the_oldest_ready_age_counts_from_ready() {
        let q = WorkQueue::new();
        assert_eq!(q.oldest_ready_age(), Duration::ZERO, "empty");
        q.add(1);
        tokio::time::advance(Duration::from_secs(3)).await;
        q.add(2);
        assert_eq!(q.oldest_ready_age(), Duration::from_secs(3), "key 1 waits");
        assert_eq!(q.get().await, Some(1));
        assert_eq!(q.oldest_ready_age(), Duration::ZERO, "key 2 was just added");
        assert_eq!(q.get().await, Some(2));
        q.add_after(3, Duration::from_secs(10));
        q.add(4);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(q.oldest_ready_age(), Duration::from_secs(15), "key 4");
        // Key 4 has waited 15 s; key 3 only 5 s since it was due, behind 4 in line.
        assert_eq!(q.get().await, Some(4));
        q.add(5);
        assert_eq!(
            q.oldest_ready_age(),
            Duration::from_secs(5),
            "key 3, from its due time"
        );
    }

    /// While every worker is busy nobody moves due keys to the ready list: they count from
    /// their due time all the same.
    #[tokio::test(start_paused = true)]
    async fn a_due_key_no_worker_took_counts_as_waiting() {
        let q = WorkQueue::new();
        q.add_after(1, Duration::from_secs(1));
        q.add_after(2, Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(q.oldest_ready_age(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_releases_waiters() {
        let q = std::sync::Arc::new(WorkQueue::<u32>::new());
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(h.await.unwrap(), None);
    }
}
