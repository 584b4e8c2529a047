//! `writes`: the store's write path on PostgreSQL without the API.
//!
//! - K concurrent status writers (K = 1, 4, 16), each on a store of its own (its own pool,
//!   as replicas would be), each writing its own servers, for a fixed time, while a reader
//!   on yet another store follows the change feed as an SSE watch does (woken by the
//!   writers' `NOTIFY`s, reading at least every second): writes/s, write latency p50/p99
//!   per K, and the reader's lag (from the writer's commit returning to the reader handing
//!   the change out). With the old global feed lock throughput stayed flat in K.
//! - VMID reservation cost with 10 and with 900 of a 1,000-VMID range reserved.
//! - A simulated hour (a manual clock, one minute per step) of status writes and events with
//!   retention on: row counts at the start and the end.

use super::percentile;
use super::report::{Table, ms};
use crate::pg::fresh_database;
use controller::config::RetentionSection;
use controller::retention::prune_round;
use model::store::{AnyStore, NewServer, Store, StoreOptions, VmidRange};
use model::{EventType, ManualClock, ServerId, ServerSpec, ServerStatus, SystemClock, Variant};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Args {
    pub writers: Vec<usize>,
    /// Seconds of writing per K.
    pub duration: f64,
}

/// Servers each writer owns (its writes never wait on another writer's row lock).
const SERVERS_PER_WRITER: usize = 4;
/// Reservations timed at each fill level.
const RESERVATIONS_TIMED: usize = 30;
const VMID_RANGE: VmidRange = VmidRange {
    min: 10_000,
    max: 10_999,
};

fn spec() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

async fn create(store: &AnyStore, customer: &str) -> anyhow::Result<model::Server> {
    Ok(store
        .create_server(NewServer {
            customer_id: customer.into(),
            spec: spec(),
            idempotency: None,
            enforce_quota: false,
        })
        .await?
        .server)
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    let db = fresh_database("zlh_bench_writes").await;
    let result = run_on(a, &db.url).await;
    db.drop_db().await;
    result
}

async fn run_on(a: &Args, url: &str) -> anyhow::Result<Vec<Table>> {
    let store = AnyStore::connect(url, Arc::new(SystemClock)).await?;
    store.migrate().await?;
    let mut tables = vec![writers(a, url, &store).await?];
    tables.push(reservations(&store).await?);
    tables.push(soak(url).await?);
    Ok(tables)
}

/// One writer's figures.
struct Run {
    writes: usize,
    latencies: Vec<f64>,
    /// Each write's feed position and when its commit returned.
    committed: Vec<(i64, Instant)>,
}

/// How often the reader reads without a wake-up (the API's default `watch_poll_interval`).
const READER_POLL: Duration = Duration::from_secs(1);

async fn writers(a: &Args, url: &str, store: &AnyStore) -> anyhow::Result<Table> {
    let mut t = Table::new("writes on postgres: K status writers, feed read concurrently");
    let max_k = a.writers.iter().copied().max().unwrap_or(1);
    let mut owned: Vec<Vec<model::Server>> = Vec::new();
    for w in 0..max_k {
        let mut mine = Vec::new();
        for i in 0..SERVERS_PER_WRITER {
            mine.push(create(store, &format!("w{w}-{i}")).await?);
        }
        owned.push(mine);
    }
    // Three: the store's LISTEN task keeps one, its NOTIFY task takes one per batch, the
    // writes use the third.
    let one = StoreOptions::default().with_max_connections(3);
    let mut throughput = Vec::new();
    for &k in &a.writers {
        let stop = Arc::new(AtomicBool::new(false));
        // Every writer has stopped and seen its last commit return.
        let written = Arc::new(AtomicBool::new(false));
        // The reader: its own store, woken like an SSE watch; when it handed out what.
        let reader = {
            let r = AnyStore::connect_with(url, Arc::new(SystemClock), &one).await?;
            let from = r.latest_seq().await?;
            let done = written.clone();
            tokio::spawn(async move {
                let mut wake = r.subscribe();
                let (mut pos, mut seen) = (from, Vec::new());
                loop {
                    // Read to the end of what the writers wrote: no change goes uncounted.
                    let finished = done.load(Ordering::SeqCst);
                    let page = r.changes_since(pos, 1000).await.expect("read");
                    if page.is_empty() && finished {
                        break;
                    }
                    let now = Instant::now();
                    for c in &page {
                        pos = c.seq;
                        seen.push((c.seq, now));
                    }
                    if page.len() < 1000 {
                        tokio::select! {
                            _ = wake.recv() => {}
                            _ = tokio::time::sleep(READER_POLL) => {}
                        }
                    }
                }
                seen
            })
        };
        let mut tasks = Vec::new();
        for servers in owned.iter().take(k).cloned() {
            let s = AnyStore::connect_with(url, Arc::new(SystemClock), &one).await?;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut servers = servers;
                let mut run = Run {
                    writes: 0,
                    latencies: Vec::new(),
                    committed: Vec::new(),
                };
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let i = n % servers.len();
                    n += 1;
                    let status = ServerStatus {
                        hostname: Some(format!("h{n}")),
                        ..servers[i].status.clone()
                    };
                    let t0 = Instant::now();
                    let written = s
                        .write_status(servers[i].id, &status, servers[i].resource_version, None)
                        .await
                        .expect("write");
                    let done = Instant::now();
                    run.latencies.push((done - t0).as_secs_f64());
                    run.committed.push((written.resource_version, done));
                    run.writes += 1;
                    servers[i] = written;
                }
                (run, servers)
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let (mut writes, mut lat) = (0, Vec::new());
        let mut committed = std::collections::HashMap::new();
        for (w, task) in tasks.into_iter().enumerate() {
            let (run, servers) = task.await?;
            writes += run.writes;
            lat.extend(run.latencies);
            committed.extend(run.committed);
            owned[w] = servers;
        }
        written.store(true, Ordering::SeqCst);
        // Handed out before the writer saw its commit return: no lag (0).
        let lags: Vec<f64> = reader
            .await?
            .into_iter()
            .filter_map(|(seq, at)| {
                committed
                    .get(&seq)
                    .map(|c| at.saturating_duration_since(*c))
            })
            .map(|d| d.as_secs_f64())
            .collect();
        let rate = writes as f64 / elapsed;
        throughput.push((k, rate));
        t.add(
            &format!("k{k}_writes_per_s"),
            &format!("K={k}: writes/s"),
            rate,
            format!("{rate:.0}"),
        );
        for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
            let v = percentile(&lat, p);
            t.add(
                &format!("k{k}_write_{name}_s"),
                &format!("K={k}: write {name}"),
                v,
                ms(v),
            );
        }
        let lag99 = percentile(&lags, 99.0);
        t.target(
            &format!("k{k}_reader_lag_p99_s"),
            &format!("K={k}: reader lag p99 ({} changes)", lags.len()),
            lag99,
            ms(lag99),
            "<= 100 ms",
            lag99 <= 0.1,
        );
    }
    let first = throughput.first().copied();
    let last = throughput.last().copied();
    if let (Some((k1, r1)), Some((kn, rn))) = (first, last)
        && kn > k1
    {
        let x = rn / r1;
        t.target(
            "scaling",
            &format!("throughput K={kn} / K={k1}"),
            x,
            format!("{x:.1}x"),
            ">= 4x",
            x >= 4.0,
        );
    }
    Ok(t)
}

/// Time `RESERVATIONS_TIMED` reservations after `fill` of the range are reserved.
async fn reservations(store: &AnyStore) -> anyhow::Result<Table> {
    let mut t = Table::new("VMID reservation on postgres (1,000-VMID range)");
    let mut ids: Vec<ServerId> = Vec::new();
    for i in 0..(900 + 2 * RESERVATIONS_TIMED) {
        ids.push(create(store, &format!("r{i}")).await?.id);
    }
    let mut next = 0;
    let mut means = Vec::new();
    for fill in [10usize, 900] {
        while next < fill {
            store
                .reserve_vmid(ids[next], VMID_RANGE, &[], false)
                .await?;
            next += 1;
        }
        let mut lat = Vec::new();
        for _ in 0..RESERVATIONS_TIMED {
            let t0 = Instant::now();
            store
                .reserve_vmid(ids[next], VMID_RANGE, &[], false)
                .await?;
            lat.push(t0.elapsed().as_secs_f64());
            // Released again: the fill level stays where it is measured.
            store.release_vmid(ids[next]).await?;
            next += 1;
        }
        let p50 = percentile(&lat, 50.0);
        means.push(p50);
        t.add(
            &format!("reserve_p50_at_{fill}_s"),
            &format!("reserve p50 with {fill} reserved"),
            p50,
            ms(p50),
        );
    }
    let ratio = means[1] / means[0];
    t.target(
        "reserve_900_over_10",
        "cost at 900 / cost at 10",
        ratio,
        format!("{ratio:.2}x"),
        "~1x (<= 1.5x)",
        ratio <= 1.5,
    );
    Ok(t)
}

/// Row counts of the tables retention bounds.
async fn counts(store: &AnyStore) -> anyhow::Result<[i64; 4]> {
    let AnyStore::Pg(s) = store else {
        anyhow::bail!("the soak runs on postgres");
    };
    let mut out = [0; 4];
    for (i, table) in ["server_changes", "events", "operations", "servers_archive"]
        .iter()
        .enumerate()
    {
        out[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(s.pool())
            .await?;
    }
    Ok(out)
}

/// A simulated hour: every simulated minute 50 servers get a status write and an event, one
/// server is created and one deleted (archive, operations); every 5 minutes a prune round
/// keeping 10 minutes of feed, 20 events per server, 30 minutes of finished operations, of
/// deleted servers' events and operations and of archive (the total event cap out of
/// reach: what bounds the events is the per-server cap and the deleted servers' rule).
/// Counted at the start, at minute 35 (every window full) and at minute 60.
async fn soak(url: &str) -> anyhow::Result<Table> {
    const MINUTES: usize = 60;
    const WRITES_PER_MINUTE: usize = 50;
    let mut t = Table::new("retention soak on postgres (60 simulated minutes)");
    let clock = ManualClock::new(chrono::Utc::now());
    let store = AnyStore::connect(url, Arc::new(clock.clone())).await?;
    let cfg = RetentionSection {
        change_feed: Duration::from_secs(600),
        events_per_server: 20,
        events_total: 1_000_000,
        operations: Duration::from_secs(1800),
        deleted_servers: Duration::from_secs(1800),
        archive: Duration::from_secs(1800),
        ..RetentionSection::default()
    };
    let mut live: Vec<model::Server> = Vec::new();
    for i in 0..WRITES_PER_MINUTE {
        live.push(create(&store, &format!("soak{i}")).await?);
    }
    let at_start = counts(&store).await?;
    let mut start = None;
    for minute in 0..MINUTES {
        clock.advance(chrono::Duration::minutes(1));
        for s in live.iter_mut() {
            let status = ServerStatus {
                hostname: Some(format!("m{minute}")),
                ..s.status.clone()
            };
            *s = store
                .write_status(s.id, &status, s.resource_version, None)
                .await?;
            store
                .append_event(s.id, EventType::Normal, "Soak", &format!("minute {minute}"))
                .await?;
        }
        // Churn: one server goes (archived), one comes.
        let gone = live.remove(0);
        store.request_deletion(gone.id).await?;
        store.archive_and_delete(gone.id, None).await?;
        live.push(create(&store, &format!("soak-new{minute}")).await?);
        if minute % 5 == 4 {
            prune_round(&store, &cfg, "bench").await?;
        }
        if minute == 34 {
            start = Some(counts(&store).await?);
        }
    }
    let end = counts(&store).await?;
    let start = start.unwrap_or_default();
    for (i, table) in ["server_changes", "events", "operations", "servers_archive"]
        .iter()
        .enumerate()
    {
        t.add(
            &format!("{table}_rows_start"),
            &format!("{table} rows at the start"),
            at_start[i],
            at_start[i].to_string(),
        );
        t.add(
            &format!("{table}_rows_minute_35"),
            &format!("{table} rows at minute 35"),
            start[i],
            start[i].to_string(),
        );
        let flat = end[i] <= start[i] + start[i] / 5;
        t.target(
            &format!("{table}_rows_minute_60"),
            &format!("{table} rows at minute 60"),
            end[i],
            end[i].to_string(),
            "flat (<= +20%)",
            flat,
        );
    }
    Ok(t)
}
