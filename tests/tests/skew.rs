//! Version skew in the split layout on PostgreSQL, with the real `zlhd` binary: a
//! `zlhd controller` started before a newer release's `zlhd migrate` of an additive step
//! keeps reconciling through it (creates, a spec change, a delete); this binary's own `zlhd
//! migrate` on the newer schema changes nothing and succeeds (an N-1 API unit's pre-start);
//! the controller restarted on the newer schema starts with a warning and carries on; and a
//! controller never migrates by itself: against an empty database it refuses to start,
//! naming both versions, and leaves the database empty.

use model::store::{AnyStore, Store, schema};
use model::{Phase, ServerId, ServerSpec, SystemClock, Variant};
use sqlx::migrate::{Migration, MigrationType};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use zlh_tests::invariants::check_deleted;
use zlh_tests::pg::fresh_database;
use zlh_tests::process::{Zlhd, tail, write_config, zlhd_path};
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(120);
const ADDITIVE: &str = include_str!("../../migrations/test-only/additive.sql");

/// A newer release's additive step at `version`.
fn additive(version: i64) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed("additive"),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(ADDITIVE.to_string())),
        false,
    )
}

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_started_before_migrate_keeps_reconciling_through_an_additive_step() {
    let db = fresh_database("zlh_skew").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("zlh-skew-{}", ServerId::new()));
    let config = write_config(&w, &dir, |c| c.replica_id = "skew-controller".into());
    let log = dir.join("controller.log");
    let ctl = Zlhd::spawn(&config, &["controller"], &log);

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(w.create(&format!("u{i}"), paper()).await);
    }
    w.wait_all(Some(Phase::Ready), T).await;

    // A newer release's `zlhd migrate`, while the controller runs.
    let next = w.store.schema_range().newest + 1;
    w.store
        .migrate_with(&[additive(next)])
        .await
        .expect("the additive step applies");

    // This binary's `zlhd migrate` (the API unit's pre-start of the older release).
    let out = std::process::Command::new(zlhd_path())
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(schema::msg::NEWER_SCHEMA), "{stderr}");
    assert_eq!(w.store.schema_state().await.unwrap().version, next);

    // The controller started before the step keeps reconciling: creates, a change, a delete.
    for i in 3..6 {
        ids.push(w.create(&format!("u{i}"), paper()).await);
    }
    let mut spec = w.store.get_server(ids[0]).await.unwrap().unwrap().spec;
    spec.resources.memory_mib = 3072;
    w.store.update_spec(ids[0], spec, None).await.unwrap();
    w.store.request_deletion(ids[1]).await.unwrap();
    w.wait_all(Some(Phase::Ready), T).await;
    w.wait_for("the deleted server archived", T, async || {
        w.store.get_server(ids[1]).await.unwrap().is_none()
    })
    .await;
    let changed = w.store.get_server(ids[0]).await.unwrap().unwrap();
    assert_eq!(changed.status.observed_generation, changed.generation);

    // Restarted on the newer schema, the same binary starts (with a warning) and carries on.
    ctl.kill9().await;
    let ctl = Zlhd::spawn(&config, &["controller"], &log);
    ids.push(w.create("u9", paper()).await);
    w.wait_all(Some(Phase::Ready), T).await;
    assert!(
        tail(&log, 200).contains(schema::msg::NEWER_SCHEMA),
        "the restart warned about the newer schema"
    );
    assert_eq!(w.servers().await.len(), 6);
    let v = check_invariants(&w).await;
    assert!(v.is_empty(), "invariants:\n{}", v.join("\n"));
    let v = check_deleted(&w, &[ids[1]]).await;
    assert!(v.is_empty(), "deleted:\n{}", v.join("\n"));
    ctl.kill9().await;
    drop(w);
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_never_migrates_and_refuses_an_older_schema_naming_both_versions() {
    let db = fresh_database("zlh_skew_empty").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let empty = fresh_database("zlh_skew_empty").await;
    let dir = std::env::temp_dir().join(format!("zlh-skew-{}", ServerId::new()));
    let config = write_config(&w, &dir, |c| c.database_url = empty.url.clone());
    let out = std::process::Command::new(zlhd_path())
        .arg("--config")
        .arg(&config)
        .arg("controller")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused: {stderr}");
    let own = w.store.schema_range().newest;
    assert!(
        stderr.contains("schema is version 0") && stderr.contains(&format!("(schema {own})")),
        "names both versions: {stderr}"
    );
    assert!(stderr.contains(schema::msg::RUN_MIGRATE), "{stderr}");
    let store = AnyStore::connect(&empty.url, Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(
        store.schema_state().await.unwrap().version,
        0,
        "the controller migrated nothing"
    );
    drop(store);
    drop(w);
    empty.drop_db().await;
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&dir);
}
