//! The per-template clone slot. Proxmox locks a template for a whole clone, so clones from
//! one template run one after another: first in this process (FIFO, so waiters are woken in
//! order), then fleet-wide in the store, so replicas do not race for a template either.

use super::Context;
use crate::backends::Stack;
use model::ServerId;
use model::store::Store;

fn slot_name(template: u32) -> String {
    format!("clone-template-{template}")
}

impl<S: Stack> Context<S> {
    /// Take the clone slot of template `tpl`. Re-acquiring renews the fleet-wide hold while
    /// the clone runs.
    pub(crate) async fn acquire_slot(&self, tpl: u32, id: ServerId) -> bool {
        let got = self.slots.try_acquire(tpl, id) && self.hold_template(tpl, id).await;
        tracing::debug!(server = %id, tpl, got, "template slot asked for");
        if !got {
            metrics::counter!(crate::metrics::TEMPLATE_SLOT_WAITS).increment(1);
        }
        got
    }

    /// Take or renew the fleet-wide hold on template `tpl`. The holder is the server, not the
    /// replica, so whichever replica reconciles it next renews and releases it; a holder lost
    /// without a release (its status wiped mid-clone) expires after the TTL.
    pub(crate) async fn hold_template(&self, tpl: u32, id: ServerId) -> bool {
        let ttl = self.timing().template_hold_ttl();
        matches!(
            self.store
                .try_singleton(&slot_name(tpl), &id.to_string(), ttl)
                .await,
            Ok(true)
        )
    }

    /// Give up the clone slot of `id` (a no-op in the store if it is not the holder) and wake
    /// the next local waiter.
    pub(crate) async fn release_slot(&self, id: ServerId, tpl: Option<u32>) {
        if let Some(tpl) = tpl {
            // Best effort: a hold that is not released expires after its TTL.
            let _ = self
                .store
                .release_singleton(&slot_name(tpl), &id.to_string())
                .await;
        }
        let woken = self.slots.release(id);
        tracing::debug!(server = %id, ?tpl, woken = woken.len(), "template slot released");
        if !woken.is_empty() {
            self.wake
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(woken);
        }
    }
}
