//! PostgreSQL: the backend for several controller replicas. What it does differently is in
//! its [`Backend`](super::Backend) implementation: server writes lock their row
//! (`SELECT ... FOR UPDATE`) and share-lock the lease row they check the fence against, so a
//! lease claim cannot slip between the check and the write; creates serialise per customer
//! (an advisory lock) for the launch guard and quota. Every server write `NOTIFY`s
//! [`PG_CHANNEL`]; a `LISTEN` task (here) feeds the notices of other processes into
//! [`subscribe`](SqlStore::subscribe).

use super::notify::{CAPACITY, Notice, PG_CHANNEL};
use super::options;
use super::rules::connect_error;
use super::*;
use crate::Clock;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};

/// Pause between `LISTEN` reconnection attempts.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// How long a constructor waits for `LISTEN` to be in place before returning anyway.
const LISTEN_READY_WAIT: Duration = Duration::from_secs(5);

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connect to a `postgres://` URL. Does not migrate. Errors never contain the URL's
    /// password.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, &StoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with the pool size and timeouts of `opts`.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        opts: &StoreOptions,
    ) -> Result<Self> {
        let conn: PgConnectOptions = url.parse().map_err(|e| connect_error(e, url))?;
        let pool = options::pool_options(opts)
            .connect_with(conn)
            .await
            .map_err(|e| connect_error(e, url))?;
        Ok(Self::from_pool(pool, clock).await)
    }

    /// The same database and notices through a pool of its own (see
    /// [`AnyStore::with_own_pool`]); the `LISTEN` stays on this store's pool.
    pub fn with_own_pool(&self, opts: &StoreOptions) -> Self {
        let conn = (*self.pool.connect_options()).clone();
        let pool = options::pool_options(opts).connect_lazy_with(conn);
        Self::with_parts(
            pool,
            self.clock.clone(),
            Some(self.notices.clone()),
            self.listener.clone(),
        )
    }

    /// Wrap an existing pool (e.g. from `#[sqlx::test]`). Starts the `LISTEN` task, which
    /// keeps one connection of the pool, and waits (briefly) until it listens.
    pub async fn from_pool(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        let (notices, _) = broadcast::channel(CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(listen(pool.clone(), notices.clone(), stop_rx, ready_tx));
        if tokio::time::timeout(LISTEN_READY_WAIT, ready_rx)
            .await
            .is_err()
        {
            tracing::warn!(
                channel = PG_CHANNEL,
                "LISTEN not ready yet; continuing, it keeps retrying"
            );
        }
        Self::with_parts(pool, clock, Some(notices), Some(Arc::new(stop_tx)))
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        None
    }
}

/// Feed `NOTIFY`s from other processes into the broadcast, reconnecting after errors, until
/// the store is dropped (`stop`) or its pool is closed.
async fn listen(
    pool: PgPool,
    notices: broadcast::Sender<Notice>,
    mut stop: oneshot::Receiver<()>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            e = listen_once(&pool, &notices, &mut ready) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(channel = PG_CHANNEL, error = %e, "LISTEN failed; reconnecting");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

/// Listen until an error (which it returns). `PgListener` itself reconnects after a lost
/// connection and re-listens; anything else comes back here.
async fn listen_once(
    pool: &PgPool,
    notices: &broadcast::Sender<Notice>,
    ready: &mut Option<oneshot::Sender<()>>,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(PG_CHANNEL).await {
        return e;
    }
    if let Some(r) = ready.take() {
        let _ = r.send(());
    }
    loop {
        match listener.recv().await {
            Ok(n) => match Notice::from_payload(n.payload()) {
                Some(notice) => {
                    let _ = notices.send(notice);
                }
                None => tracing::warn!(payload = n.payload(), "ignoring malformed notification"),
            },
            Err(e) => return e,
        }
    }
}
