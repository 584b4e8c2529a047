//! Wake-ups for watchers and controller workers: "server X was written".
//!
//! Every server write sends a `Notice` after its commit. SQLite sends on an in-process
//! broadcast channel only. Postgres also `NOTIFY`s channel [`PG_CHANNEL`] inside the writing
//! transaction (delivered on commit), and each `PgStore` runs a `LISTEN` task that feeds the
//! same broadcast, so replicas in other processes wake too. A local write can therefore be
//! seen twice (once locally, once via `NOTIFY`); receivers must be idempotent, which a work
//! queue keyed by server id is. Notices are hints: lagging receivers and lost `NOTIFY`s
//! (reconnects) are covered by the periodic resync and the change feed.

use crate::ServerId;
use std::str::FromStr;

/// The Postgres notification channel.
pub const PG_CHANNEL: &str = "zlh_servers";

/// Buffered notices per receiver before it lags (and gets `RecvError::Lagged`).
pub(crate) const CAPACITY: usize = 4096;

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
