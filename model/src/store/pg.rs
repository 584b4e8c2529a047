//! PostgreSQL: the backend for several controller replicas. What it does differently is in
//! its [`Backend`](super::Backend) implementation: server writes lock their row
//! (`SELECT ... FOR UPDATE`) and share-lock the lease row they check the fence against, so a
//! lease claim cannot slip between the check and the write; creates serialise per customer
//! (an advisory lock) for the launch guard and quota. Every server write is announced on
//! [`PG_CHANNEL`] after its commit by a `NOTIFY` task (here, see [`Remote`] for why not
//! inside the write); a `LISTEN` task (here) feeds the notices of other processes into
//! [`subscribe`](SqlStore::subscribe).

use super::notify::{CAPACITY, Notice, PG_CHANNEL, PUBLISH_CAPACITY, Remote};
use super::options;
use super::rules::connect_error;
use super::*;
use crate::Clock;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Pause between `LISTEN` reconnection attempts.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// How long a constructor waits for `LISTEN` to be in place before returning anyway.
const LISTEN_READY_WAIT: Duration = Duration::from_secs(5);
/// Notices one `NOTIFY` transaction sends at most (each its own notification, so every
/// release's listener reads them).
const PUBLISH_BATCH: usize = 512;
/// One transaction: the cluster-wide `NOTIFY` lock once for the whole batch. Its commit does
/// not wait for the WAL flush (`synchronous_commit` off for this transaction only): it
/// carries no data, so a crash can lose only hints, and the lock is not held across an
/// fsync (`pg_notify` gives the transaction an id, so its commit would flush like a write's).
const NOTIFY_ALL: &str = "SELECT pg_notify($1, p) \
     FROM set_config('synchronous_commit', 'off', true) AS c, unnest($2::text[]) AS p";

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
            self.remote.clone(),
        )
    }

    /// Wrap an existing pool (e.g. from `#[sqlx::test]`). Starts the `LISTEN` task, which
    /// keeps one connection of the pool, and waits (briefly) until it listens; and the
    /// `NOTIFY` task, which takes a connection for each batch it sends.
    pub async fn from_pool(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        let (notices, _) = broadcast::channel(CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (out, queued) = mpsc::channel(PUBLISH_CAPACITY);
        tokio::spawn(listen(pool.clone(), notices.clone(), stop_rx, ready_tx));
        tokio::spawn(publish(pool.clone(), queued));
        if tokio::time::timeout(LISTEN_READY_WAIT, ready_rx)
            .await
            .is_err()
        {
            tracing::warn!(
                channel = PG_CHANNEL,
                "LISTEN not ready yet; continuing, it keeps retrying"
            );
        }
        let remote = Remote {
            out,
            _stop_listen: stop_tx,
        };
        Self::with_parts(pool, clock, Some(notices), Some(Arc::new(remote)))
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        None
    }
}

/// Send the notices of committed writes, each batch what queued up while the previous one
/// was sent, until the store is dropped (its queue closes). A failed batch is dropped: the
/// notices are hints (see [`super::notify`]).
async fn publish(pool: PgPool, mut queued: mpsc::Receiver<Notice>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queued.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut payloads: Vec<String> = batch.drain(..).map(|n| n.to_payload()).collect();
        // The same server written twice in a batch wakes its receivers once.
        payloads.sort_unstable();
        payloads.dedup();
        if let Err(e) = sqlx::query(NOTIFY_ALL)
            .bind(PG_CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, dropped = payloads.len(), "NOTIFY failed; notices dropped");
        }
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
