//! The controller: work queue, workers, triggers (notifications, resync, requeue timers),
//! leases on PostgreSQL, heartbeats, graceful shutdown.

use crate::backends::{Backends, Live, Stack};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::metrics as m;
use crate::mirror::Mirror;
use crate::queue::WorkQueue;
use crate::reconcile::{self, Context, Requeue};
use crate::{orphans, resync};
use model::store::{AnyStore, Fence, Origin, ReplicaInfo, Store};
use model::{Clock, ServerId};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

pub const SINGLETON_RESYNC: &str = "resync";
/// A worker or the resync loop ended before shutdown (it panicked).
pub const ERR_TASK_ENDED: &str = "a controller task ended unexpectedly";
/// A lease renewal that did not answer before the lease could expire.
pub const ERR_RENEWAL_HUNG: &str = "the lease renewal did not answer in time";

pub struct Controller<S: Stack = Live> {
    pub ctx: Arc<Context<S>>,
    pub queue: Arc<WorkQueue<ServerId>>,
    backoff: Backoff<ServerId>,
    pub replica_id: String,
    /// Leases and fencing only where several replicas can exist (PostgreSQL).
    use_leases: bool,
    started_at: chrono::DateTime<chrono::Utc>,
    /// Reconciles this replica completed under its lease (work spread across replicas).
    pub reconciled: std::sync::atomic::AtomicU64,
    /// Resyncs this replica ran: picks which share of the fleet is health-probed.
    resync_round: std::sync::atomic::AtomicU64,
    /// The warm-pool loop's last pass found members (it keeps passing until they are gone,
    /// even with no pool declared: a removed pool drains).
    pool_members_seen: std::sync::atomic::AtomicBool,
    /// The resync's copy of the fleet (only the resync touches it).
    pub mirror: tokio::sync::Mutex<Mirror>,
    /// The main loop's and the resync's progress (the listener's `/readyz`, the watchdog).
    pub health: Arc<crate::health::Health>,
}

impl<S: Stack> Controller<S> {
    pub fn new(store: AnyStore, backends: Backends<S>, cfg: Config, clock: Arc<dyn Clock>) -> Self {
        let use_leases = store.backend() == "postgres";
        let replica_id = cfg.replica_id();
        let timing = cfg.controller.clone();
        let started_at = clock.now();
        Controller {
            ctx: Arc::new(Context::new(store, backends, cfg, clock)),
            queue: Arc::new(WorkQueue::new()),
            backoff: Backoff::new(timing.backoff_base, timing.backoff_max),
            health: Arc::new(crate::health::Health::new(&replica_id)),
            replica_id,
            use_leases,
            started_at,
            reconciled: std::sync::atomic::AtomicU64::new(0),
            resync_round: std::sync::atomic::AtomicU64::new(0),
            // Until a pass says otherwise: members of a pool removed from the config may be
            // left from before a restart.
            pool_members_seen: std::sync::atomic::AtomicBool::new(true),
            mirror: Default::default(),
        }
    }

    fn timing(&self) -> &crate::config::ControllerSection {
        self.ctx.timing()
    }

    /// Run until `shutdown`; then stop taking work, let in-flight reconciles finish within the
    /// grace period, and release leases.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let store = &self.ctx.store;
        let mut notices = store.subscribe();
        info!(replica = %self.replica_id, backend = store.backend(), "controller starting");
        // Everything once at start: rebuild the picture after a restart.
        for id in store.all_server_ids().await? {
            self.queue.add(id);
        }
        let mut tasks = JoinSet::new();
        let workers = CancellationToken::new();
        for _ in 0..self.timing().workers {
            let me = self.clone();
            let stop = workers.clone();
            tasks.spawn(async move { me.worker(stop).await });
        }
        // Its own task: a resync probes games for up to a quarter of the interval, and the
        // loop below must keep draining notifications meanwhile (a full broadcast buffer
        // costs a requeue of the whole fleet). In the same set as the workers, so it ends
        // with them (and is aborted with them if this future is dropped).
        {
            let me = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let mut every = tokio::time::interval(me.timing().resync_interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Stopping midway is harmless: a resync's writes (the singleton claim, the
                // orphan report) are each one transaction, and the rest is reads and requeues.
                stop.run_until_cancelled(async {
                    loop {
                        every.tick().await;
                        me.resync().await;
                    }
                })
                .await;
            });
        }
        // Warm pools: their own loop (`pool.rs`), a pass per `pool_poll` or when a claim or
        // a freed clone slot wakes it.
        {
            let me = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                // Stopping midway is harmless: every step records in the store before it
                // relies on it and observes before it acts.
                stop.run_until_cancelled(async {
                    loop {
                        me.pools().await;
                        let poll = me.timing().pool_poll();
                        tokio::select! {
                            _ = tokio::time::sleep(poll) => {}
                            _ = me.ctx.pools.woken() => {}
                        }
                    }
                })
                .await;
            });
        }
        // Retention: its own task, a round at a time (`retention.rs`).
        {
            let me = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let cfg = me.ctx.cfg.retention.clone();
                let mut every = tokio::time::interval(cfg.interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Stopping midway is harmless: each batch is one transaction.
                stop.run_until_cancelled(async {
                    loop {
                        every.tick().await;
                        let store = &me.ctx.store;
                        if let Err(e) =
                            crate::retention::prune_round(store, &cfg, &me.replica_id).await
                        {
                            warn!(error = %e, "retention round failed; retrying next round");
                        }
                    }
                })
                .await;
            });
        }
        let mut beat = tokio::time::interval(self.timing().heartbeat_interval());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = notices.recv() => match n {
                    Ok(n) if n.origin == Origin::User => self.queue.add(n.server_id),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        // Lost notifications: the cheapest safe answer is a full requeue.
                        warn!(lost = k, "notification backlog overflowed; requeueing everything");
                        if let Ok(ids) = store.all_server_ids().await {
                            ids.into_iter().for_each(|id| self.queue.add(id));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        notices = store.subscribe();
                    }
                },
                _ = beat.tick() => self.heartbeat().await,
                // Workers and the resync loop run until shutdown: one that ends early has
                // panicked, and a controller missing a part must not look alive. (The resync
                // loop also ends on shutdown, possibly before this loop sees the token.)
                Some(ended) = tasks.join_next() => {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    workers.cancel();
                    tasks.shutdown().await;
                    anyhow::bail!("{}: {ended:?}", ERR_TASK_ENDED);
                }
            }
        }
        info!("shutting down: no new work; waiting for in-flight reconciles");
        self.queue.shut_down();
        let grace = self.timing().shutdown_grace;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "reconciles still running after the grace period; cancelling them"
            );
            workers.cancel();
            tasks.shutdown().await;
        }
        if self.use_leases {
            match store.release_all_leases(&self.replica_id).await {
                Ok(n) => info!(released = n, "leases released"),
                Err(e) => warn!(error = %e, "could not release leases; they will expire"),
            }
        }
        Ok(())
    }

    async fn worker(self: Arc<Self>, stop: CancellationToken) {
        while let Some(id) = self.queue.get().await {
            let span = tracing::info_span!(
                "reconcile",
                server = %id,
                vmid = tracing::field::Empty,
                step = tracing::field::Empty
            );
            tokio::select! {
                _ = stop.cancelled() => { self.queue.done(&id); return; }
                _ = self.process(id).instrument(span) => {}
            }
            self.queue.done(&id);
            metrics::gauge!(m::WORKQUEUE_DEPTH).set(self.queue.depth() as f64);
        }
    }

    /// One reconcile of `id` under its lease, then schedule the next look.
    pub async fn process(&self, id: ServerId) {
        let store = &self.ctx.store;
        let ttl = self.timing().lease_ttl;
        let renew_every = self.timing().lease_renew_interval();
        let fence = if self.use_leases {
            match store.claim_lease(id, &self.replica_id, ttl).await {
                Ok(Some(l)) => {
                    m::lease_claim(m::LEASE_CLAIMED);
                    Some(Fence { token: l.token })
                }
                Ok(None) => {
                    m::lease_claim(m::LEASE_HELD_ELSEWHERE);
                    // Another replica works on it; look again when its lease could expire.
                    self.queue.add_after(id, ttl);
                    return;
                }
                Err(e) => {
                    m::lease_claim(m::LEASE_ERROR);
                    warn!(error = %e, "cannot claim lease; the store is unreachable");
                    self.queue.add_after(id, self.backoff.next(&id));
                    return;
                }
            }
        } else {
            None
        };
        let started = std::time::Instant::now();
        let result = match fence {
            Some(f) => {
                // Renew while working; if the lease cannot be renewed (store lost, or taken
                // over after a stall), stop acting at once.
                let renew = async {
                    loop {
                        tokio::time::sleep(renew_every).await;
                        // Bounded, so a renewal hung on a lost store cannot outlive the lease.
                        let renewal = store.renew_lease(id, &self.replica_id, f, ttl);
                        let error = match tokio::time::timeout(renew_every, renewal).await {
                            Ok(Ok(_)) => continue,
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => ERR_RENEWAL_HUNG.to_string(),
                        };
                        warn!(error, "lease lost; abandoning this reconcile");
                        metrics::counter!(m::LEASE_LOSSES).increment(1);
                        return;
                    }
                };
                tokio::select! {
                    r = reconcile::reconcile_isolated(&self.ctx, id, fence) => Some(r),
                    _ = renew => None,
                }
            }
            None => Some(reconcile::reconcile_isolated(&self.ctx, id, None).await),
        };
        let elapsed = started.elapsed().as_secs_f64();
        metrics::histogram!(m::RECONCILE_DURATION).record(elapsed);
        if let Some(f) = fence {
            let _ = store.release_lease(id, &self.replica_id, f).await;
        }
        for w in self.ctx.take_woken() {
            // The next in line for a freed template: ahead of the resync's sweep.
            self.queue.prioritize(w);
            self.queue.add(w);
        }
        if self.ctx.slots.holds(id) {
            // Its clone's end frees the template for the next waiter: looked at on time.
            self.queue.prioritize(id);
        }
        let label = match &result {
            Some(Ok(Requeue::Backoff)) => "backoff",
            Some(Ok(_)) => "success",
            Some(Err(reconcile::ReconcileError::Panicked(_))) => "panic",
            Some(Err(_)) => "error",
            None => "lease_lost",
        };
        metrics::counter!(m::RECONCILE_TOTAL, "result" => label).increment(1);
        if matches!(result, Some(Ok(_))) {
            self.reconciled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match result {
            Some(Ok(Requeue::AwaitChange)) => self.backoff.reset(&id),
            Some(Ok(Requeue::After(d))) => {
                self.backoff.reset(&id);
                self.queue.add_after(id, d);
            }
            Some(Ok(Requeue::Now)) => {
                self.backoff.reset(&id);
                self.queue.add(id);
            }
            Some(Ok(Requeue::Backoff)) => {
                metrics::counter!(m::WORKQUEUE_RETRIES).increment(1);
                self.queue.add_after(id, self.backoff.next(&id));
            }
            Some(Err(e)) => {
                warn!(error = %e, "reconcile failed");
                metrics::counter!(m::WORKQUEUE_RETRIES).increment(1);
                self.queue.add_after(id, self.backoff.next(&id));
            }
            None => self.queue.add_after(id, ttl),
        }
        debug!(elapsed, "reconciled");
    }

    /// One pass of the warm-pool loop, on one replica at a time (`pool.rs`). Nothing to do
    /// (no template declares a pool, and the last pass found no member) costs nothing.
    async fn pools(&self) {
        use std::sync::atomic::Ordering;
        let declared = self.ctx.catalog.templates.iter().any(|t| t.pool > 0);
        if !declared && !self.pool_members_seen.load(Ordering::Relaxed) {
            return;
        }
        let ttl = self.timing().lease_ttl;
        match self
            .ctx
            .store
            .try_singleton(crate::pool::SINGLETON_POOLS, &self.replica_id, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(error = %e, "pools: store unreachable; next pass");
                return;
            }
        }
        match crate::pool::pass(&self.ctx).await {
            Ok(members) => self.pool_members_seen.store(members > 0, Ordering::Relaxed),
            Err(e) => warn!(error = %e, "pools: pass failed; next pass"),
        }
        for w in self.ctx.take_woken() {
            self.queue.add(w);
        }
    }

    /// The periodic resync: on one replica at a time, take the fleet snapshot, report
    /// orphans, requeue every server the snapshot does not show settled, then run this
    /// round's share of health probes: settled games are pinged here, and whatever does not
    /// answer (or only its Agent can tell about, a dev container) is requeued.
    pub async fn resync(&self) {
        let store = &self.ctx.store;
        let ttl = self.timing().resync_claim_ttl();
        match store
            .try_singleton(SINGLETON_RESYNC, &self.replica_id, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.health.resync_elsewhere(),
            Err(e) => {
                warn!(error = %e, "resync skipped: store unreachable");
                return;
            }
        }
        metrics::counter!(m::RESYNC_TOTAL).increment(1);
        let listed_from = self.ctx.clock.now();
        let mut snap = resync::take_snapshot(&self.ctx.backends).await;
        snap.listed_from = Some(listed_from);
        let snap = Arc::new(snap);
        *self.ctx.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        let t = self.timing();
        let every = (t.health_interval.as_millis() / t.resync_interval.as_millis().max(1)).max(1);
        let every = u64::try_from(every).unwrap_or(u64::MAX);
        let round = self
            .resync_round
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut mirror = self.mirror.lock().await;
        match resync::sweep(&self.ctx, &mut mirror, &snap, round, every).await {
            Ok(sweep) => {
                self.health.resync_swept();
                orphans::report(&self.ctx, &snap, &sweep, round).await;
                resync::record_phases(&sweep.phases);
                metrics::counter!(m::RESYNC_REQUEUED).increment(sweep.requeue.len() as u64);
                debug!(
                    requeued = sweep.requeue.len(),
                    settled = sweep.settled,
                    probes = sweep.probes.len(),
                    "resync swept the fleet"
                );
                sweep.requeue.into_iter().for_each(|id| self.queue.add(id));
                drop(mirror);
                // What is left over when the budget runs out is reconciled instead.
                let budget = t.probe_budget();
                let probed = resync::probe(sweep.probes, self.ctx.cfg.agent.timeout, budget).await;
                metrics::counter!(m::RESYNC_REQUEUED).increment(probed.unanswered.len() as u64);
                probed
                    .unanswered
                    .into_iter()
                    .for_each(|id| self.queue.add(id));
                let now = self.ctx.clock.now();
                resync::record_stats(&self.ctx.store, now, sweep.usage, probed.players).await;
            }
            Err(e) => warn!(error = %e, "resync: cannot list servers"),
        }
    }

    async fn heartbeat(&self) {
        let info = ReplicaInfo {
            id: self.replica_id.clone(),
            started_at: self.started_at,
            last_seen: self.ctx.clock.now(),
            queue_depth: self.queue.depth() as i64,
            workers_busy: self.queue.running() as i64,
            leases_held: 0,
        };
        if let Err(e) = self.ctx.store.heartbeat(&info).await {
            warn!(error = %e, "heartbeat failed");
        }
        self.health.beat(&self.queue);
    }
}
