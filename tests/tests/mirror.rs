//! The resync's mirror of the store: whatever was written, created or deleted since the last
//! refresh is what the next refresh returns (it follows the change feed and reads the changed
//! rows only, never keeps a stale one), on SQLite and on PostgreSQL.

use controller::mirror::Mirror;
use model::store::Store;
use model::{ServerSpec, ServerStatus, Variant};
use zlh_tests::pg::fresh_database;
use zlh_tests::{World, WorldOptions};

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

struct Case {
    why: &'static str,
    /// Servers before the first refresh.
    n: usize,
    /// Servers created between the two refreshes.
    late: usize,
    /// Status writes on one server between the two refreshes (feed entries, few ids).
    rewrites: usize,
}

/// Table of fleet sizes and later changes: a handful is read row by row, a large first refresh
/// or a mass change page by page, a long feed about few servers page after page of the feed;
/// in every case the mirror equals the store after a status write, creations and a deletion.
async fn refresh_returns_exactly_what_the_store_holds(postgres: bool) {
    let cases = [
        Case {
            why: "few changes: read one by one",
            n: 3,
            late: 1,
            rewrites: 1,
        },
        Case {
            why: "first refresh of a larger fleet: read page by page",
            n: 450,
            late: 1,
            rewrites: 1,
        },
        Case {
            why: "a mass change after the first refresh: read page by page again",
            n: 3,
            late: 250,
            rewrites: 1,
        },
        Case {
            why: "a feed longer than one page about few servers: every feed page is followed",
            n: 3,
            late: 1,
            rewrites: 1_100,
        },
    ];
    for c in cases {
        let db = match postgres {
            true => Some(fresh_database("zlh_mirror").await),
            false => None,
        };
        let w = World::new(WorldOptions {
            database_url: db.as_ref().map(|d| d.url.clone()),
            ..Default::default()
        })
        .await;
        for i in 0..c.n {
            w.create(&format!("u{i}"), paper()).await;
        }
        let why = c.why;
        let mut m = Mirror::default();
        let same_as_store = |got: Vec<std::sync::Arc<model::Server>>, store: Vec<model::Server>| {
            let got: Vec<model::Server> = got.iter().map(|s| (**s).clone()).collect();
            assert_eq!(got, store, "{why}: mirror equals the store");
        };
        same_as_store(m.refresh(&w.store).await.unwrap(), w.servers().await);

        let all = w.servers().await;
        let mut rv = all[0].resource_version;
        for k in 0..c.rewrites {
            let st = ServerStatus {
                hostname: Some(format!("changed-{k}")),
                ..all[0].status.clone()
            };
            rv = w
                .store
                .write_status(all[0].id, &st, rv, None)
                .await
                .unwrap()
                .resource_version;
        }
        for i in 0..c.late {
            w.create(&format!("late{i}"), paper()).await;
        }
        w.store.archive_and_delete(all[1].id, None).await.unwrap();
        let got = m.refresh(&w.store).await.unwrap();
        assert!(
            got.iter().all(|s| s.id != all[1].id),
            "{why}: deleted is gone"
        );
        same_as_store(got, w.servers().await);
        drop(w);
        if let Some(db) = db {
            db.drop_db().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mirror_follows_every_change() {
    refresh_returns_exactly_what_the_store_holds(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mirror_follows_every_change() {
    refresh_returns_exactly_what_the_store_holds(true).await;
}
