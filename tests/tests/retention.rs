//! Retention (`[retention]`, `controller/src/retention.rs`), on SQLite and PostgreSQL: a
//! prune round keeps what the configuration says (events per server and in total, finished
//! operations, the archive, the change feed); a mirror behind the feed's new horizon reads
//! everything again and equals the store; a reader behind it is told `FeedGone`, one at or
//! after it is not; Ready servers are left exactly as they were; a deleted server's events
//! and operations go `deleted_servers` after its deletion, never after its archive row.

use controller::config::RetentionSection;
use controller::mirror::Mirror;
use controller::retention::{Round, prune_round};
use model::store::{AnyStore, Store, StoreError};
use model::{EventType, ManualClock, OperationId, Phase, ServerId, ServerSpec, Variant};
use std::sync::Arc;
use std::time::Duration;
use zlh_tests::pg::fresh_database;
use zlh_tests::{World, WorldOptions};

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

/// Keep nothing old: every age-based target prunes all that was written before the round;
/// two events per server and ten in all stay.
fn keep_little() -> RetentionSection {
    RetentionSection {
        batch: 3,
        max_batches: 1000,
        change_feed: Duration::ZERO,
        events_per_server: 2,
        events_total: 10,
        operations: Duration::ZERO,
        archive: Duration::ZERO,
        ..RetentionSection::default()
    }
}

async fn pruning_keeps_what_the_configuration_says(postgres: bool) {
    let db = match postgres {
        true => Some(fresh_database("zlh_retention").await),
        false => None,
    };
    let w = World::new(WorldOptions {
        database_url: db.as_ref().map(|d| d.url.clone()),
        ..Default::default()
    })
    .await;
    let ctl = w.start_controller();
    let kept = w
        .store
        .create_server(model::store::NewServer {
            customer_id: "kept".into(),
            spec: paper(),
            idempotency: None,
            enforce_quota: false,
        })
        .await
        .unwrap();
    let mut ids = vec![kept.server.id];
    for i in 0..7 {
        ids.push(w.create(&format!("u{i}"), paper()).await);
    }
    w.wait_all(Some(Phase::Ready), Duration::from_secs(120))
        .await;
    // A deleted server (archived) and a superseded operation (a spec update).
    let doomed = ids.pop().unwrap();
    let (_, delete_op) = w.store.request_deletion(doomed).await.unwrap();
    w.wait_for(
        "the deleted server archived",
        Duration::from_secs(60),
        async || w.store.get_server(doomed).await.unwrap().is_none(),
    )
    .await;
    // Its replica took the retention singleton at start: prune as that replica.
    let replica = ctl.controller.replica_id.clone();
    ctl.stop().await;
    let first = w.store.get_server(ids[0]).await.unwrap().unwrap();
    for k in 0..5 {
        w.store
            .append_event(ids[0], EventType::Normal, "Test", &format!("event {k}"))
            .await
            .unwrap();
    }

    let mut mirror = Mirror::default();
    mirror.refresh(&w.store).await.unwrap();
    let old_position = w.store.latest_seq().await.unwrap();
    // One more change, so the mirror is behind what the prune removes.
    w.store.request_reconcile(ids[1], false).await.unwrap();
    let before = w.servers().await;

    let round = prune_round(&w.store, &keep_little(), &replica)
        .await
        .unwrap();
    let Round::Pruned(pruned) = round else {
        panic!("the only pruner gets the singleton: {round:?}")
    };
    assert!(
        pruned.changes > 0 && pruned.events + pruned.events_per_server > 0,
        "{pruned:?}"
    );

    // Events: two per server, ten in all.
    let mut total = 0;
    for id in &ids {
        let n = w.store.list_events(*id, 1000).await.unwrap().len();
        assert!(n <= 2, "at most 2 events per server, {id} has {n}");
        total += n;
    }
    assert!(total <= 10, "at most 10 events in all: {total}");
    let newest = w.store.list_events(ids[0], 1).await.unwrap();
    assert_eq!(newest[0].message, "event 4", "the newest event stays");
    // The archive and the finished (server gone) operation are gone; a live server's
    // current operation stays.
    assert!(w.store.get_archived(doomed).await.unwrap().is_none());
    assert!(w.store.get_operation(delete_op.id).await.unwrap().is_none());
    assert!(
        w.store
            .get_operation(kept.operation.id)
            .await
            .unwrap()
            .is_some(),
        "the operation of a live server's current generation stays"
    );

    // The feed: a reader behind the horizon is told so, one at the newest position is not.
    match w.store.changes_since(old_position, 10).await {
        Err(StoreError::FeedGone { .. }) => {}
        other => panic!("a position behind the horizon: FeedGone, got {other:?}"),
    }
    let latest = w.store.latest_seq().await.unwrap();
    assert!(latest >= old_position, "the position never goes back");
    assert_eq!(w.store.changes_since(latest, 10).await.unwrap(), vec![]);
    // The mirror reads everything again and equals the store.
    let got = mirror.refresh(&w.store).await.unwrap();
    let got: Vec<model::Server> = got.iter().map(|s| (**s).clone()).collect();
    assert_eq!(got, w.servers().await, "the mirror recovers by a full read");
    // A new change after the prune is followed as usual.
    let s = w.store.request_reconcile(ids[2], false).await.unwrap();
    let feed = w.store.changes_since(latest, 10).await.unwrap();
    assert_eq!(feed.last().map(|c| c.seq), Some(s.resource_version));

    // Ready servers are untouched: same rows, still Ready.
    let after: Vec<model::Server> = w
        .servers()
        .await
        .into_iter()
        .filter(|x| x.id != ids[2])
        .collect();
    let before: Vec<model::Server> = before.into_iter().filter(|x| x.id != ids[2]).collect();
    assert_eq!(after, before, "a prune changes no server row");
    assert!(after.iter().all(|s| s.phase().0 == Phase::Ready));
    assert_eq!(
        w.store
            .get_server(first.id)
            .await
            .unwrap()
            .unwrap()
            .generation,
        first.generation
    );
    drop(w);
    if let Some(db) = db {
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pruning_keeps_what_the_configuration_says() {
    pruning_keeps_what_the_configuration_says(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pruning_keeps_what_the_configuration_says() {
    pruning_keeps_what_the_configuration_says(true).await;
}

/// On PostgreSQL one replica at a time prunes: a second holder's round is skipped while the
/// first holds the singleton.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_replica_prunes_at_a_time() {
    let db = fresh_database("zlh_retention").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let cfg = RetentionSection::default();
    let a = prune_round(&w.store, &cfg, "replica-a").await.unwrap();
    assert!(matches!(a, Round::Pruned(_)), "{a:?}");
    let b = prune_round(&w.store, &cfg, "replica-b").await.unwrap();
    assert_eq!(b, Round::Skipped, "the other replica skips the round");
    drop(w);
    db.drop_db().await;
}

/// A server's history as the test sees it: its events, whether its operations and its
/// archive row are still there.
#[derive(Debug, PartialEq, Eq)]
struct History {
    events: usize,
    operations: usize,
    archived: bool,
}

async fn history(store: &AnyStore, id: ServerId, ops: &[OperationId]) -> History {
    let mut operations = 0;
    for op in ops {
        operations += usize::from(store.get_operation(*op).await.unwrap().is_some());
    }
    History {
        events: store.list_events(id, 1000).await.unwrap().len(),
        operations,
        archived: store.get_archived(id).await.unwrap().is_some(),
    }
}

/// A server with `events` events; its operations (the create, and the delete if deleted).
async fn with_history(
    store: &AnyStore,
    customer: &str,
    events: usize,
) -> (ServerId, Vec<OperationId>) {
    let created = store
        .create_server(model::store::NewServer {
            customer_id: customer.into(),
            spec: paper(),
            idempotency: None,
            enforce_quota: false,
        })
        .await
        .unwrap();
    let id = created.server.id;
    for k in 0..events {
        store
            .append_event(id, EventType::Normal, "Test", &format!("event {k}"))
            .await
            .unwrap();
    }
    (id, vec![created.operation.id])
}

async fn delete(store: &AnyStore, id: ServerId, ops: &mut Vec<OperationId>) {
    let (_, op) = store.request_deletion(id).await.unwrap();
    ops.push(op.id);
    store.archive_and_delete(id, None).await.unwrap();
}

/// Only the deleted servers' history rules are short: the per-server and total event caps
/// and the finished-operations age are out of reach, so what goes is theirs.
fn deleted_rules(deleted_servers: Duration, archive: Duration) -> RetentionSection {
    RetentionSection {
        batch: 2,
        max_batches: 1000,
        events_per_server: 1000,
        events_total: 1_000_000,
        deleted_servers,
        archive,
        ..RetentionSection::default()
    }
}

/// Events and operations of deleted servers go `deleted_servers` after the deletion, in
/// batches, led by the archive (a server deleted more recently and a live one keep theirs);
/// the archive row stays for `archive`. With `archive` the shorter, both go at `archive` and
/// no event or operation outlives the archive row.
async fn deleted_servers_history_goes_after_retention(postgres: bool) {
    let day = chrono::Duration::days(1);
    let db = match postgres {
        true => Some(fresh_database("zlh_retention").await),
        false => None,
    };
    let dir = std::env::temp_dir().join(format!("zlh-retention-{}", ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = match &db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/zlh.db", dir.display()),
    };
    let clock = ManualClock::new(chrono::Utc::now());
    let store = AnyStore::connect(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (live, live_ops) = with_history(&store, "live", 5).await;
    let (old, mut old_ops) = with_history(&store, "old", 5).await;
    let (recent, mut recent_ops) = with_history(&store, "recent", 5).await;
    delete(&store, old, &mut old_ops).await;
    clock.advance(day * 3);
    delete(&store, recent, &mut recent_ops).await;
    clock.advance(chrono::Duration::hours(1));

    // Deleted 3 days ago goes at 2 days; deleted an hour ago stays; the archive (90 days)
    // keeps both rows.
    let before = [
        history(&store, live, &live_ops).await,
        history(&store, old, &old_ops).await,
        history(&store, recent, &recent_ops).await,
    ];
    assert!(
        before.iter().all(|h| h.events >= 5 && h.operations >= 1),
        "{before:?}"
    );
    let gone = |archived: bool| History {
        events: 0,
        operations: 0,
        archived,
    };
    let two_days = Duration::from_secs(2 * 24 * 3600);
    let cfg = deleted_rules(two_days, RetentionSection::default().archive);
    let Round::Pruned(pruned) = prune_round(&store, &cfg, "replica-a").await.unwrap() else {
        panic!("the only pruner gets the singleton")
    };
    assert_eq!(
        pruned.of_deleted as usize,
        before[1].events + before[1].operations,
        "old's events and operations, nothing else"
    );
    let [live_before, _, recent_before] = before;
    let cases = [
        (
            live,
            &live_ops,
            live_before,
            "a live server keeps its history",
        ),
        (
            old,
            &old_ops,
            gone(true),
            "deleted 3 days ago: history gone, archive kept",
        ),
        (
            recent,
            &recent_ops,
            recent_before,
            "deleted an hour ago: all kept",
        ),
    ];
    let mut recent_had = 0;
    for (id, ops, want, why) in cases {
        if id == recent {
            recent_had = want.events + want.operations;
        }
        assert_eq!(history(&store, id, ops).await, want, "{why}");
    }

    // An archive shorter than `deleted_servers`: both go at the archive's age, the history
    // first (no event outlives the row that leads the prune to it).
    clock.advance(day * 2);
    let live_before = history(&store, live, &live_ops).await;
    let cfg = deleted_rules(RetentionSection::default().deleted_servers, two_days);
    let Round::Pruned(pruned) = prune_round(&store, &cfg, "replica-a").await.unwrap() else {
        panic!("the holder prunes again")
    };
    assert_eq!(
        (pruned.of_deleted as usize, pruned.archive),
        (recent_had, 2),
        "recent's history, then both archive rows"
    );
    let cases = [
        (
            live,
            &live_ops,
            live_before,
            "a live server still keeps its history",
        ),
        (old, &old_ops, gone(false), "old: the archive row gone too"),
        (recent, &recent_ops, gone(false), "recent: all gone"),
    ];
    for (id, ops, want, why) in cases {
        assert_eq!(history(&store, id, ops).await, want, "{why}");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(db) = db {
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deleted_servers_history_goes_after_retention() {
    deleted_servers_history_goes_after_retention(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deleted_servers_history_goes_after_retention() {
    deleted_servers_history_goes_after_retention(true).await;
}
