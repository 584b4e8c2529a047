//! Per-template clone slots. Proxmox locks a template (`CT is locked (disk)`) for the whole
//! clone, so clones from one template are serialized here instead of being discovered as lock
//! errors. A slot is held by a server from its clone call until its clone task finishes
//! (across reconciles, since workers never block); waiters are woken in FIFO order.

use model::ServerId;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct Slot {
    holder: Option<(ServerId, Instant)>,
    waiters: VecDeque<ServerId>,
}

pub struct TemplateSlots {
    slots: Mutex<HashMap<u32, Slot>>,
    /// A holder that has not released after this is presumed lost (its server was deleted or
    /// its state rebuilt) and the slot is taken over.
    stale_after: Duration,
}

impl TemplateSlots {
    pub fn new(stale_after: Duration) -> Self {
        TemplateSlots {
            slots: Mutex::new(HashMap::new()),
            stale_after,
        }
    }

    /// Take the slot for `template` if it is free (or already ours); otherwise join the queue.
    pub fn try_acquire(&self, template: u32, id: ServerId) -> bool {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(template).or_default();
        let free = match slot.holder {
            None => true,
            Some((h, _)) if h == id => return true,
            Some((_, since)) => since.elapsed() > self.stale_after,
        };
        // FIFO: a free slot goes to the head of the queue, not to whoever asks first.
        let first_in_line = slot.waiters.front().is_none_or(|w| *w == id);
        if free && first_in_line {
            slot.waiters.retain(|w| *w != id);
            slot.holder = Some((id, Instant::now()));
            true
        } else {
            if !slot.waiters.contains(&id) {
                slot.waiters.push_back(id);
            }
            false
        }
    }

    /// Give up whatever slot `id` holds or waits for; returns the waiter to wake, if any.
    pub fn release(&self, id: ServerId) -> Vec<ServerId> {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake = Vec::new();
        for slot in map.values_mut() {
            slot.waiters.retain(|w| *w != id);
            if slot.holder.is_some_and(|(h, _)| h == id) {
                slot.holder = None;
                if let Some(next) = slot.waiters.front() {
                    wake.push(*next);
                }
            }
        }
        wake
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

    #[tokio::test]
    async fn one_clone_per_template_in_fifo_order() {
        let s = TemplateSlots::new(Duration::from_secs(60));
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
        assert!(!s.try_acquire(900, c), "c does not jump the queue... ");
        assert!(s.try_acquire(900, b), "...b, first in line, gets it");
    }
}
