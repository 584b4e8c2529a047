//! The resync's copy of the store's servers, kept up to date from the change feed: each
//! resync reads only the feed entries since the last one and the rows they name, so sweeping
//! a steady fleet costs one small query and decodes no JSON. The store stays the truth; a row
//! is never kept past a feed entry that names it.
//!
//! Relies on the feed's contract (`Store::changes_since`): every write to a server row is
//! stamped in the same transaction, and a reader only ever gets final positions (nothing can
//! still commit below them; `docs/store.md`). A mirror that fell behind the retention horizon
//! (`StoreError::FeedGone`) reads everything again.

use crate::metrics::MIRROR_FEED_LAG;
use chrono::{DateTime, Utc};
use model::Server;
use model::store::{ServerFilter, Store, StoreError, list_all};
use model::{ServerId, store::AnyStore};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// More changed servers than this are read a page at a time instead of one by one (the first
/// resync, or after a mass change): one query per page beats one per row.
const READ_ONE_BY_ONE_UP_TO: usize = 200;

/// Feed entries read per query.
const FEED_PAGE: u32 = 1000;

/// More feed pages than this since the last refresh (a replica that takes the resync over
/// after hours, with a few servers changing all the time) are not walked: reading every row
/// costs less.
const FEED_PAGES_UP_TO: usize = 10;

#[derive(Default)]
pub struct Mirror {
    servers: BTreeMap<ServerId, Arc<Server>>,
    /// The feed position the copy reflects; `None` until the first full read.
    seq: Option<i64>,
}

impl Mirror {
    /// Every live server, by id, as the store has it now. Records how far behind the copy
    /// was (`zlh_mirror_feed_lag_seconds`: the age of the oldest change it had not applied).
    pub async fn refresh(&mut self, store: &AnyStore) -> Result<Vec<Arc<Server>>, StoreError> {
        match self.seq {
            None => {
                self.read_all(store).await?;
                metrics::gauge!(MIRROR_FEED_LAG).set(0.0);
            }
            Some(after) => {
                let (changed, oldest) = match changed_since(store, after).await {
                    Err(e @ StoreError::FeedGone { .. }) => {
                        tracing::warn!(error = %e, "mirror behind the feed's retention; reading every server");
                        self.read_all(store).await?;
                        metrics::gauge!(MIRROR_FEED_LAG).set(0.0);
                        return Ok(self.servers.values().cloned().collect());
                    }
                    r => r?,
                };
                metrics::gauge!(MIRROR_FEED_LAG).set(lag_seconds(oldest));
                match changed {
                    Some((ids, seq)) => {
                        for id in ids {
                            match store.get_server(id).await? {
                                Some(s) => self.servers.insert(id, Arc::new(s)),
                                None => self.servers.remove(&id),
                            };
                        }
                        self.seq = Some(seq);
                    }
                    None => self.read_all(store).await?,
                }
            }
        }
        Ok(self.servers.values().cloned().collect())
    }

    async fn read_all(&mut self, store: &AnyStore) -> Result<(), StoreError> {
        // The position first: a write during the listing is read again next time (reading a
        // row twice is harmless; missing one is not).
        let seq = store.latest_seq().await?;
        self.servers = list_all(store, &ServerFilter::default())
            .await?
            .into_iter()
            .map(|s| (s.id, Arc::new(s)))
            .collect();
        self.seq = Some(seq);
        Ok(())
    }
}

/// What [`changed_since`] found: the servers named and the position reached (`None`: read
/// everything instead), and when the oldest change was made (`None`: nothing changed).
type Changed = (Option<(BTreeSet<ServerId>, i64)>, Option<DateTime<Utc>>);

/// The servers the feed names after `after`, and the feed position reached; `None` when more
/// than [`READ_ONE_BY_ONE_UP_TO`] changed, or the backlog is longer than
/// [`FEED_PAGES_UP_TO`] pages (cheaper to read everything).
async fn changed_since(store: &AnyStore, after: i64) -> Result<Changed, StoreError> {
    let (mut ids, mut seq, mut oldest) = (BTreeSet::new(), after, None);
    for _ in 0..FEED_PAGES_UP_TO {
        let page = store.changes_since(seq, FEED_PAGE).await?;
        let last_page = page.len() < FEED_PAGE as usize;
        for c in page {
            oldest.get_or_insert(c.at);
            ids.insert(c.server_id);
            seq = c.seq;
        }
        if ids.len() > READ_ONE_BY_ONE_UP_TO {
            return Ok((None, oldest));
        }
        if last_page {
            return Ok((Some((ids, seq)), oldest));
        }
    }
    Ok((None, oldest))
}

/// Seconds since `oldest` (0 without one; never negative, should clocks disagree).
fn lag_seconds(oldest: Option<DateTime<Utc>>) -> f64 {
    oldest.map_or(0.0, |at| {
        (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
    })
}
