//! The resync's copy of the store's servers, kept up to date by resource version: each resync
//! lists only (id, resource_version) and reads just the rows that changed since the last one,
//! so sweeping a steady fleet decodes no JSON. The store stays the truth; a row is never
//! trusted past a version the store no longer shows.

use model::Server;
use model::store::{ServerFilter, Store, StoreError, list_all};
use model::{ServerId, store::AnyStore};
use std::collections::HashMap;
use std::sync::Arc;

/// More changed rows than this are read a page at a time instead of one by one (the first
/// resync, or after a mass change): one query per page beats one per row.
const READ_ONE_BY_ONE_UP_TO: usize = 200;

#[derive(Default)]
pub struct Mirror {
    servers: HashMap<ServerId, Arc<Server>>,
}

impl Mirror {
    /// Every live server, by id, as the store has it now.
    pub async fn refresh(&mut self, store: &AnyStore) -> Result<Vec<Arc<Server>>, StoreError> {
        let versions = store.server_versions().await?;
        let changed: Vec<ServerId> = versions
            .iter()
            .filter(|(id, rv)| {
                self.servers
                    .get(id)
                    .is_none_or(|s| s.resource_version != *rv)
            })
            .map(|(id, _)| *id)
            .collect();
        if changed.len() > READ_ONE_BY_ONE_UP_TO {
            self.read_all(store).await?;
        } else {
            for id in changed {
                match store.get_server(id).await? {
                    Some(s) => self.servers.insert(id, Arc::new(s)),
                    // Deleted since the listing.
                    None => self.servers.remove(&id),
                };
            }
        }
        let mut live = Vec::with_capacity(versions.len());
        let mut keep = HashMap::with_capacity(versions.len());
        for (id, _) in versions {
            if let Some(s) = self.servers.remove(&id) {
                live.push(s.clone());
                keep.insert(id, s);
            }
        }
        // What is left was deleted.
        self.servers = keep;
        Ok(live)
    }

    async fn read_all(&mut self, store: &AnyStore) -> Result<(), StoreError> {
        for s in list_all(store, &ServerFilter::default()).await? {
            self.servers.insert(s.id, Arc::new(s));
        }
        Ok(())
    }
}
