//! The resync's mirror of the store: whatever was written, created or deleted since the last
//! refresh is what the next refresh returns (it follows the change feed and reads the changed
//! rows only, never keeps a stale one).

use controller::mirror::Mirror;
use model::store::Store;
use model::{ServerSpec, ServerStatus, Variant};
use zlh_tests::{World, WorldOptions};

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

/// Table of fleet sizes and later changes: a handful is read row by row, a large first refresh
/// or a mass change page by page; either way the mirror equals the store after every kind of
/// change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_returns_exactly_what_the_store_holds() {
    for (n, late, why) in [
        (3, 1, "few changes: read one by one"),
        (450, 1, "first refresh of a larger fleet: read page by page"),
        (
            3,
            250,
            "a mass change after the first refresh: read page by page again",
        ),
    ] {
        let w = World::new(WorldOptions::default()).await;
        for i in 0..n {
            w.create(&format!("u{i}"), paper()).await;
        }
        let mut m = Mirror::default();
        let same_as_store = |got: Vec<std::sync::Arc<model::Server>>, store: Vec<model::Server>| {
            let got: Vec<model::Server> = got.iter().map(|s| (**s).clone()).collect();
            assert_eq!(got, store, "{why}: mirror equals the store");
        };
        same_as_store(m.refresh(&w.store).await.unwrap(), w.servers().await);

        // A status write, a new server and a deletion between two refreshes.
        let all = w.servers().await;
        let st = ServerStatus {
            hostname: Some("changed".into()),
            ..all[0].status.clone()
        };
        w.store
            .write_status(all[0].id, &st, all[0].resource_version, None)
            .await
            .unwrap();
        for i in 0..late {
            w.create(&format!("late{i}"), paper()).await;
        }
        w.store.archive_and_delete(all[1].id, None).await.unwrap();
        let got = m.refresh(&w.store).await.unwrap();
        assert!(
            got.iter().all(|s| s.id != all[1].id),
            "{why}: deleted is gone"
        );
        same_as_store(got, w.servers().await);
    }
}
