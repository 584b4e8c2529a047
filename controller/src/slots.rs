//! Per-template clone slots. Proxmox locks a template (`CT is locked (disk)`) for the whole
//! clone, so clones from one template are serialized here instead of being discovered as lock
//! errors. A slot is held by a server from its clone call until its clone task finishes
//! (across reconciles, since workers never block); waiters are woken in FIFO order.
//!
//! Holders and waiters must keep asking (every reconcile of theirs does): with several
//! replicas a server's next reconcile may run elsewhere, so whoever stops asking is dropped
//! after a while instead of blocking the template here forever.

use model::ServerId;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct Slot {
    /// The holder and when it last asked.
    holder: Option<(ServerId, Instant)>,
    waiters: VecDeque<(ServerId, Instant)>,
}

pub struct TemplateSlots {
    slots: Mutex<HashMap<u32, Slot>>,
    /// A holder that has not asked for this long is presumed gone (holders ask on every poll
    /// of their clone task).
    holder_ttl: Duration,
    /// Same for waiters, which are woken on release and otherwise ask only now and then.
    waiter_ttl: Duration,
}

impl TemplateSlots {
    pub fn new(holder_ttl: Duration, waiter_ttl: Duration) -> Self {
        TemplateSlots {
            slots: Mutex::new(HashMap::new()),
            holder_ttl,
            waiter_ttl,
        }
    }

    /// Take the slot for `template` if it is free (or already ours); otherwise join the queue.
    pub fn try_acquire(&self, template: u32, id: ServerId) -> bool {
        let now = Instant::now();
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(template).or_default();
        let waiter_ttl = self.waiter_ttl;
        slot.waiters
            .retain(|(w, asked)| *w == id || now.duration_since(*asked) <= waiter_ttl);
        let free = match slot.holder {
            None => true,
            Some((h, _)) if h == id => {
                slot.holder = Some((id, now));
                return true;
            }
            Some((_, asked)) => now.duration_since(asked) > self.holder_ttl,
        };
        // FIFO: a free slot goes to the head of the queue, not to whoever asks first.
        let first_in_line = slot.waiters.front().is_none_or(|(w, _)| *w == id);
        if free && first_in_line {
            slot.waiters.retain(|(w, _)| *w != id);
            slot.holder = Some((id, now));
            true
        } else {
            match slot.waiters.iter_mut().find(|(w, _)| *w == id) {
                Some(entry) => entry.1 = now,
                None => slot.waiters.push_back((id, now)),
            }
            false
        }
    }

    /// `id` still holds `template` (its clone runs): renew its hold, so a long clone whose
    /// task is looked at only when due is not taken for gone. Nothing if it does not hold it.
    pub fn renew(&self, template: u32, id: ServerId) {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get_mut(&template)
            && let Some((h, asked)) = slot.holder.as_mut()
            && *h == id
        {
            *asked = Instant::now();
        }
    }

    /// Give up whatever slot `id` holds or waits for; returns the waiters to wake: the next in
    /// line when the holder leaves, and also when the head of a queue without a holder leaves
    /// (a paused or deleted server must not hold back the servers behind it).
    pub fn release(&self, id: ServerId) -> Vec<ServerId> {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake = Vec::new();
        for slot in map.values_mut() {
            let was_head = slot.waiters.front().is_some_and(|(w, _)| *w == id);
            slot.waiters.retain(|(w, _)| *w != id);
            let held_by_id = slot.holder.is_some_and(|(h, _)| h == id);
            if held_by_id {
                slot.holder = None;
            }
            if (held_by_id || (was_head && slot.holder.is_none()))
                && let Some((next, _)) = slot.waiters.front()
            {
                wake.push(*next);
            }
        }
        wake
    }

    /// Is `id` queued in this process behind another holder of some template?
    pub fn waits(&self, id: ServerId) -> bool {
        let map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .any(|s| s.waiters.iter().any(|(w, _)| *w == id))
    }

    /// How many wait for `template`'s slot (the warm pool refills only when none do).
    pub fn queued(&self, template: u32) -> usize {
        let map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&template).map_or(0, |s| s.waiters.len())
    }

    /// Is any slot held by `id`?
    pub fn holds(&self, id: ServerId) -> bool {
        let map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        map.values().any(|s| s.holder.is_some_and(|(h, _)| h == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter that leaves the head of the queue (paused, deleted) wakes the one behind it
    /// when nobody holds the template; behind a holder, leaving changes nothing for the others.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_leaving_the_head_of_the_queue_wakes_the_next() {
        let s = TemplateSlots::new(Duration::from_secs(60), Duration::from_secs(60));
        let (a, b, c) = (ServerId::new(), ServerId::new(), ServerId::new());
        assert!(s.try_acquire(900, a));
        assert!(!s.try_acquire(900, b));
        assert!(!s.try_acquire(900, c));
        assert_eq!(
            s.release(b),
            Vec::<ServerId>::new(),
            "a holds it: nobody to wake"
        );
        assert!(!s.waits(b), "b is out of the queue");
        assert!(!s.try_acquire(900, b), "b asking again queues behind c");
        assert_eq!(s.release(a), vec![c], "the holder leaves: c is next");
        assert_eq!(
            s.release(c),
            vec![b],
            "c leaves before taking it: b is woken"
        );
        assert!(s.try_acquire(900, b), "and takes it");
    }

    #[tokio::test(start_paused = true)]
    async fn one_clone_per_template_in_fifo_order() {
        let s = TemplateSlots::new(Duration::from_secs(60), Duration::from_secs(60));
        let (a, b, c) = (ServerId::new(), ServerId::new(), ServerId::new());
        assert!(s.try_acquire(900, a), "a free template is taken");
        assert!(
            s.try_acquire(900, a),
            "the holder keeps it across reconciles"
        );
        assert!(
            !s.try_acquire(900, b),
            "a second clone of the same template waits"
        );
        assert!(!s.try_acquire(900, c));
        assert!(s.try_acquire(901, c), "other templates are independent");
        assert_eq!(s.release(a), vec![b], "the first waiter is woken");
        assert!(!s.try_acquire(900, c), "c does not jump the queue...");
        assert!(s.try_acquire(900, b), "...b, first in line, gets it");
    }

    /// A holder renewing (its clone task looked at) is not taken for gone; renewing what one
    /// does not hold takes nothing.
    #[tokio::test(start_paused = true)]
    async fn a_renewing_holder_keeps_its_slot() {
        let s = TemplateSlots::new(Duration::from_secs(10), Duration::from_secs(60));
        let (a, b) = (ServerId::new(), ServerId::new());
        assert!(s.try_acquire(900, a));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            s.renew(900, a);
            s.renew(900, b);
            assert!(!s.try_acquire(900, b), "a renews: b waits");
        }
        assert!(s.holds(a) && !s.holds(b));
        tokio::time::advance(Duration::from_secs(11)).await;
        s.renew(900, b);
        assert!(
            s.try_acquire(900, b),
            "a stopped renewing: b, first in line, takes it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn holders_and_waiters_that_stop_asking_are_forgotten() {
        let s = TemplateSlots::new(Duration::from_secs(10), Duration::from_secs(10));
        let (a, b, c) = (ServerId::new(), ServerId::new(), ServerId::new());
        assert!(s.try_acquire(900, a));
        assert!(
            !s.try_acquire(900, b),
            "b waits, then moves to another replica"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            s.try_acquire(900, c),
            "neither a's stale hold nor b's stale place blocks c"
        );
    }
}
