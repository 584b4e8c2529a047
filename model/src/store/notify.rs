//! Wake-ups for watchers and controller workers: "server X was written".
//!
//! Every server write sends a `Notice` after its commit. SQLite sends on an in-process
//! broadcast channel only. Postgres also hands it to the store's `NOTIFY` task ([`Remote`]),
//! which sends what has queued up on channel [`PG_CHANNEL`] in one short transaction of its
//! own, and each `PgStore` runs a `LISTEN` task that feeds the same broadcast, so replicas in
//! other processes wake too. A local write can therefore be seen twice (once locally, once
//! via `NOTIFY`); receivers must be idempotent, which a work queue keyed by server id is.
//! Notices are hints: lagging receivers and lost `NOTIFY`s (reconnects, a crash between a
//! commit and its `NOTIFY`, a full queue) are covered by the periodic resync and the change
//! feed.

use crate::ServerId;
use std::str::FromStr;

/// The Postgres notification channel.
pub const PG_CHANNEL: &str = "zlh_servers";

/// Buffered notices per receiver before it lags (and gets `RecvError::Lagged`).
pub(crate) const CAPACITY: usize = 4096;

/// Notices waiting for the `NOTIFY` task; past this (PostgreSQL answering `NOTIFY` slower
/// than the writes commit, for a long while) they are dropped: they are hints.
pub(crate) const PUBLISH_CAPACITY: usize = 4096;

/// The Postgres store's cross-process side: the `NOTIFY` task's queue, and the `LISTEN`
/// task's stop signal. Dropped with the last clone of the store, which ends both tasks.
///
/// PostgreSQL quirk: a transaction that ran `NOTIFY` takes one lock shared by the whole
/// cluster at commit (`PreCommit_Notify`, `async.c`) and holds it until its commit record
/// is flushed, so every notifying commit waits for the previous one's fsync. Inside the
/// write it made the writes themselves queue one behind the other (16 writers committed
/// fewer writes than one). So the writes never `NOTIFY`; one task per store does, after
/// their commits, all that queued up while its previous `NOTIFY` committed, in one
/// transaction: one cluster-wide commit per batch, and no writer waits for it.
pub(crate) struct Remote {
    pub(crate) out: tokio::sync::mpsc::Sender<Notice>,
    pub(crate) _stop_listen: tokio::sync::oneshot::Sender<()>,
}

impl Remote {
    /// Queue a committed write's notice for the other processes; a full queue drops it.
    pub(crate) fn publish(&self, notice: Notice) {
        if self.out.try_send(notice).is_err() {
            tracing::debug!(server_id = %notice.server_id, "NOTIFY queue full; notice dropped");
        }
    }
}

/// Who made the write, so the controller can skip waking itself for its own status writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// API-side writes: create, spec update, pause, reconcile request, deletion request.
    User,
    /// Controller-side writes: status, VMID reservation/release, archive.
    Controller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Notice {
    pub server_id: ServerId,
    pub origin: Origin,
}

impl Notice {
    /// The `NOTIFY` payload: `<uuid>:u` or `<uuid>:c`.
    pub fn to_payload(&self) -> String {
        let o = match self.origin {
            Origin::User => 'u',
            Origin::Controller => 'c',
        };
        format!("{}:{o}", self.server_id)
    }

    pub fn from_payload(s: &str) -> Option<Notice> {
        let (id, o) = s.rsplit_once(':')?;
        let origin = match o {
            "u" => Origin::User,
            "c" => Origin::Controller,
            _ => return None,
        };
        Some(Notice {
            server_id: ServerId::from_str(id).ok()?,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        for origin in [Origin::User, Origin::Controller] {
            let n = Notice {
                server_id: ServerId::new(),
                origin,
            };
            assert_eq!(Notice::from_payload(&n.to_payload()), Some(n));
        }
        assert_eq!(Notice::from_payload("nonsense"), None);
        assert_eq!(Notice::from_payload("nonsense:u"), None);
    }
}
