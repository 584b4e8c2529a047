//! The change feed under concurrency, on SQLite and PostgreSQL (docs/store.md, "The change
//! feed"): many writers commit in random order after random delays, some roll back, while a
//! reader follows the feed and now and then restarts from a saved position. The reader sees
//! every committed change exactly once, none that rolled back, in one order (a restarted
//! reader sees again exactly what it saw after its saved position).

mod common;

use chrono::{DateTime, Utc};
use common::Db;
use model::store::*;
use model::{ServerId, ServerSpec, SystemClock, Variant};
use rand::Rng;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (db, url) = super::Db::sqlite("feed");
                super::$name(&url).await;
                db.drop_db().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let (db, url) = super::Db::postgres("feed").await;
                super::$name(&url).await;
                db.drop_db().await;
            }
        }
    )*};
}

both!(every_committed_change_is_read_exactly_once_in_one_order);

/// Raw writers (transactions held open for a random time, committed or rolled back).
const RAW_WRITERS: usize = 8;
/// Writers through the store's own methods.
const STORE_WRITERS: usize = 2;
const WRITES_EACH: usize = 25;
/// One in this many raw transactions rolls back.
const ROLLBACK_ONE_IN: u32 = 5;
/// Small pages, so restarts land mid-stream.
const PAGE: u32 = 7;
/// The reader gives up (and the test fails) after this long.
const DEADLINE: Duration = Duration::from_secs(120);

/// A change is known by its position and time: SQLite reuses the position of a rolled-back
/// change (AUTOINCREMENT rolls back too), so each raw write carries a time of its own.
type Mark = (i64, DateTime<Utc>);

#[derive(Default)]
struct Outcomes {
    committed: BTreeSet<Mark>,
    rolled_back: BTreeSet<DateTime<Utc>>,
    /// Writes finished, either way.
    finished: usize,
}

/// One change of `id` at `at` in a transaction held open for a random time before and after
/// its insert, then committed or rolled back. Returns the position and whether it committed.
async fn raw_write(store: &AnyStore, id: ServerId, at: DateTime<Utc>) -> (i64, bool) {
    let (before, after, commit) = {
        let mut r = rand::rng();
        (
            Duration::from_millis(r.random_range(0..15)),
            Duration::from_millis(r.random_range(0..15)),
            r.random_ratio(ROLLBACK_ONE_IN - 1, ROLLBACK_ONE_IN),
        )
    };
    const INSERT: &str = "INSERT INTO server_changes (server_id, kind, at) \
         VALUES ($1, 'upsert', $2) RETURNING seq";
    match store {
        AnyStore::Pg(s) => {
            let mut tx = s.pool().begin().await.unwrap();
            // The transaction id is taken here (a row lock, as every store write starts),
            // long before the insert: ids and inserts interleave across writers.
            sqlx::query("SELECT id FROM servers WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .unwrap();
            tokio::time::sleep(before).await;
            let seq: i64 = sqlx::query_scalar(INSERT)
                .bind(id.0)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tokio::time::sleep(after).await;
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            (seq, commit)
        }
        AnyStore::Sqlite(s) => {
            tokio::time::sleep(before).await;
            let mut tx = s.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
            let seq: i64 = sqlx::query_scalar(INSERT)
                .bind(id.0)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tokio::time::sleep(after).await;
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            (seq, commit)
        }
    }
}

async fn every_committed_change_is_read_exactly_once_in_one_order(url: &str) {
    let opts = StoreOptions {
        max_connections: 16,
        ..StoreOptions::default()
    };
    let store = AnyStore::connect_with(url, Arc::new(SystemClock), &opts)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let mut ids = Vec::new();
    for i in 0..RAW_WRITERS + STORE_WRITERS {
        let created = store
            .create_server(NewServer {
                customer_id: format!("u{i}"),
                spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
                idempotency: None,
                enforce_quota: false,
            })
            .await
            .expect("create");
        ids.push(created.server.id);
    }
    let start = store.latest_seq().await.expect("latest");
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));

    let mut writers = Vec::new();
    for (n, id) in ids.iter().copied().enumerate() {
        let (store, outcomes) = (store.clone(), outcomes.clone());
        writers.push(tokio::spawn(async move {
            for k in 0..WRITES_EACH {
                if n < RAW_WRITERS {
                    // A time of its own, long before the store writes' (the system clock).
                    let at = DateTime::from_timestamp(0, 0).unwrap()
                        + chrono::Duration::microseconds((n * WRITES_EACH + k) as i64);
                    let (seq, committed) = raw_write(&store, id, at).await;
                    let mut o = outcomes.lock().unwrap();
                    if committed {
                        o.committed.insert((seq, at));
                    } else {
                        o.rolled_back.insert(at);
                    }
                    o.finished += 1;
                } else {
                    let s = store.request_reconcile(id, true).await.expect("write");
                    let mut o = outcomes.lock().unwrap();
                    o.committed.insert((s.resource_version, s.updated_at));
                    o.finished += 1;
                }
            }
        }));
    }

    // The reader: follows from `start`; every few pages saves its position; now and then
    // restarts from the saved one and must see the same changes again, in the same order.
    let reader = {
        let (store, outcomes) = (store.clone(), outcomes.clone());
        tokio::spawn(async move {
            let total = (RAW_WRITERS + STORE_WRITERS) * WRITES_EACH;
            let mut delivered: Vec<Mark> = Vec::new();
            let (mut pos, mut saved) = (start, (start, 0usize));
            let mut expect: VecDeque<Mark> = VecDeque::new();
            let (mut restarts, mut pages) = (0, 0);
            let t0 = Instant::now();
            loop {
                assert!(t0.elapsed() < DEADLINE, "the reader did not catch up");
                let page = store.changes_since(pos, PAGE).await.expect("read");
                pages += 1;
                for c in &page {
                    assert!(c.seq > pos, "positions only grow: {} after {pos}", c.seq);
                    pos = c.seq;
                    let mark = (c.seq, c.at);
                    match expect.pop_front() {
                        Some(e) => assert_eq!(mark, e, "a restarted reader sees the same order"),
                        None => delivered.push(mark),
                    }
                }
                if pages % 3 == 0 && expect.is_empty() {
                    saved = (pos, delivered.len());
                }
                // Restart from the saved position now and then; at least once before the end
                // (a fast run may read everything in a few pages), from the start if need be.
                let finished = outcomes.lock().unwrap().finished >= total;
                let must = restarts == 0 && finished && expect.is_empty() && !delivered.is_empty();
                if must && saved.1 == delivered.len() {
                    saved = (start, 0);
                }
                if (must || rand::rng().random_ratio(1, 8)) && saved.1 < delivered.len() {
                    expect = delivered[saved.1..].iter().copied().collect();
                    pos = saved.0;
                    restarts += 1;
                    continue;
                }
                let committed = outcomes.lock().unwrap().committed.len();
                let done = outcomes.lock().unwrap().finished >= total;
                if done && delivered.len() >= committed && expect.is_empty() {
                    return (delivered, restarts);
                }
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    let (delivered, restarts) = reader.await.expect("reader");
    let o = std::mem::take(&mut *outcomes.lock().unwrap());
    let unique: BTreeSet<Mark> = delivered.iter().copied().collect();
    assert_eq!(unique.len(), delivered.len(), "no change twice");
    assert_eq!(unique, o.committed, "every committed change, nothing else");
    assert!(
        unique.iter().all(|(_, at)| !o.rolled_back.contains(at)),
        "no change of a rolled-back transaction"
    );
    assert!(!o.rolled_back.is_empty(), "some transactions rolled back");
    assert!(restarts > 0, "the reader restarted from saved positions");
    // And a fresh reader from the start reads the same sequence.
    let mut again = Vec::new();
    let mut p = start;
    loop {
        let page = store.changes_since(p, 100).await.expect("read");
        let Some(last) = page.last() else { break };
        p = last.seq;
        again.extend(page.iter().map(|c| (c.seq, c.at)));
    }
    assert_eq!(again, delivered);
}
