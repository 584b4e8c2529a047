//! Version skew, each scenario on SQLite and PostgreSQL: the current binary runs on a schema
//! one additive step newer than its own (and its `zlhd migrate` leaves it alone), and refuses
//! a schema outside its range (an empty one, one contracted past it) with a message naming
//! both versions, changing nothing.
//!
//! The newer steps are `migrations/test-only/`, numbered one past the newest embedded
//! migration, applied the way a newer release's `zlhd migrate` would.

mod common;

use common::Db;
use model::store::schema::SchemaState;
use model::store::*;
use model::{EventType, Role, ServerSpec, ServerStatus, SystemClock, Variant};
use sqlx::migrate::{Migration, MigrationType};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

const ADDITIVE: &str = include_str!("../../migrations/test-only/additive.sql");
const CONTRACTING: &str = include_str!("../../migrations/test-only/contracting.sql");

/// A test-only step at `version` (`{next}` in the SQL is the version).
fn step(version: i64, name: &'static str, sql: &str) -> Migration {
    let sql = sql.replace("{next}", &version.to_string());
    Migration::new(
        version,
        Cow::Borrowed(name),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
        false,
    )
}

async fn connect(url: &str) -> AnyStore {
    AnyStore::connect(url, Arc::new(SystemClock))
        .await
        .expect("connect")
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (db, url) = super::Db::sqlite("schema");
                super::$name(&url).await;
                db.drop_db().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let (db, url) = super::Db::postgres("schema").await;
                super::$name(&url).await;
                db.drop_db().await;
            }
        }
    )*};
}

both!(
    an_additive_step_ahead_is_run_on_and_works,
    a_schema_outside_the_range_is_refused_naming_both_versions,
);

/// The binary's schema, a newer release's additive step on top, then the current binary
/// started afresh (another "process"): it accepts the schema with a warning, its own `zlhd
/// migrate` is a no-op rather than an error, and every kind of read and write works.
async fn an_additive_step_ahead_is_run_on_and_works(url: &str) {
    let newer = connect(url).await;
    let own = newer.schema_range().newest;
    assert_eq!(
        newer.migrate().await.expect("migrate"),
        SchemaFit::Current { version: own }
    );
    let next = own + 1;
    let fit = newer
        .migrate_with(&[step(next, "additive", ADDITIVE)])
        .await
        .expect("the newer release's migrate");
    assert_eq!(
        fit,
        SchemaFit::Current { version: next },
        "current for that release"
    );

    let store = connect(url).await;
    let fit = store
        .check_schema()
        .await
        .expect("an additive step is accepted");
    assert_eq!(
        fit,
        SchemaFit::Newer {
            db: next,
            range: store.schema_range()
        },
        "accepted as newer, so the binary warns"
    );
    let fit = store
        .migrate()
        .await
        .expect("the current binary's migrate does not fail on a newer migration");
    assert!(
        matches!(fit, SchemaFit::Newer { db, .. } if db == next),
        "{fit:?}"
    );
    assert_eq!(store.schema_state().await.unwrap().version, next);

    // Servers: create (and its idempotent replay), read, list, change, status under a lease.
    let new = |key: &str| NewServer {
        customer_id: "c1".into(),
        spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
        idempotency: Some(Idempotency {
            key: key.into(),
            request_hash: "h".into(),
            retention: DEFAULT_IDEMPOTENCY_RETENTION,
        }),
        enforce_quota: true,
    };
    let created = store.create_server(new("k1")).await.expect("create");
    assert!(created.created);
    let id = created.server.id;
    let replay = store.create_server(new("k1")).await.expect("replay");
    assert!(!replay.created && replay.server.id == id, "replayed");
    assert!(store.get_server(id).await.unwrap().is_some());
    let page = store
        .list_servers(
            &ServerFilter {
                customer_id: Some("c1".into()),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    let mut spec = created.server.spec.clone();
    spec.resources.memory_mib = 3072;
    let (updated, _) = store
        .update_spec_within_quota(id, spec, Some(created.server.resource_version))
        .await
        .expect("update within quota");
    let lease = store
        .claim_lease(id, "r1", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("free");
    let fence = Some(Fence { token: lease.token });
    let status = ServerStatus {
        observed_generation: updated.generation,
        ..Default::default()
    };
    let written = store
        .write_status(id, &status, updated.resource_version, fence)
        .await
        .expect("status under the lease");
    store
        .renew_lease(
            id,
            "r1",
            Fence { token: lease.token },
            Duration::from_secs(30),
        )
        .await
        .expect("renew");
    let vmid = store
        .reserve_vmid(
            id,
            VmidRange {
                min: 5000,
                max: 5999,
            },
            &[],
            false,
        )
        .await
        .expect("reserve");
    assert!((5000..=5999).contains(&vmid));
    store
        .append_event(id, EventType::Normal, "Tested", "on a newer schema")
        .await
        .expect("event");
    assert_eq!(store.list_events(id, 10).await.unwrap().len(), 1);
    assert!(!store.changes_since(0, 100).await.unwrap().is_empty());
    assert!(written.resource_version > updated.resource_version);

    // Bookkeeping: customers, tokens, heartbeats, orphans, readiness.
    store
        .upsert_customer("c2", None, None)
        .await
        .expect("customer");
    store
        .create_token("t", "hash-1", Role::Operator, None)
        .await
        .expect("token");
    assert!(store.find_token("hash-1").await.unwrap().is_some());
    store.ping().await.expect("the readiness probe writes");

    // Deletion all the way to the archive.
    store.request_deletion(id).await.expect("delete");
    store.release_vmid(id).await.expect("release");
    store.archive_and_delete(id, fence).await.expect("archive");
    assert!(store.get_archived(id).await.unwrap().is_some());
    assert!(store.get_server(id).await.unwrap().is_none());
}

/// An empty database (nothing migrated) and one contracted past this binary are both
/// refused with a message naming the database's version and the binary's; neither check
/// nor the binary's `migrate` of a contracted schema changes anything.
async fn a_schema_outside_the_range_is_refused_naming_both_versions(url: &str) {
    let store = connect(url).await;
    let own = store.schema_range().newest;

    let e = store.check_schema().await.unwrap_err().to_string();
    assert!(
        e.contains("schema is version 0") && e.contains(&format!("(schema {own})")),
        "names both versions: {e}"
    );
    assert!(e.contains(model::store::schema::msg::RUN_MIGRATE), "{e}");
    assert_eq!(
        store.schema_state().await.unwrap().version,
        0,
        "checking migrates nothing"
    );

    store.migrate().await.expect("migrate");
    let next = own + 1;
    let fit = store
        .migrate_with(&[step(next, "contracting", CONTRACTING)])
        .await
        .expect("the contracting release's own migrate");
    assert_eq!(
        fit,
        SchemaFit::Current { version: next },
        "its own binary runs on it"
    );
    let want = SchemaState {
        version: next,
        min_reader: next,
        failed: None,
    };
    assert_eq!(store.schema_state().await.unwrap(), want);

    let fresh = connect(url).await;
    for (what, e) in [
        ("check", fresh.check_schema().await.unwrap_err().to_string()),
        ("migrate", fresh.migrate().await.unwrap_err().to_string()),
    ] {
        assert!(
            e.contains(&format!("schema is version {next}"))
                && e.contains(&format!("schema {next} or newer"))
                && e.contains(&format!("understands schema {own}")),
            "{what} names both versions: {e}"
        );
        assert!(e.contains(model::store::schema::msg::UPGRADE_ZLHD), "{e}");
    }
    assert_eq!(
        fresh.schema_state().await.unwrap(),
        want,
        "a refused migrate changes nothing"
    );
}
