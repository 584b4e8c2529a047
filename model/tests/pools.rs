//! The API's own pool (`AnyStore::with_own_pool`, what `zlhd serve` gives the API), on SQLite
//! and PostgreSQL: API clients holding every connection of it leave the controller's pool
//! untouched (its writes go on, the API's own operations fail within the acquire timeout
//! instead of hanging), and writes through it still wake the controller (the notices are
//! shared).

mod common;

use common::Db;
use model::store::*;
use model::{ServerSpec, SystemClock, Variant};
use std::sync::Arc;
use std::time::Duration;

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (db, url) = super::Db::sqlite("pools");
                super::$name(&url).await;
                db.drop_db().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let (db, url) = super::Db::postgres("pools").await;
                super::$name(&url).await;
                db.drop_db().await;
            }
        }
    )*};
}

both!(an_exhausted_api_pool_leaves_the_controllers_pool_alone);

fn new_server(customer: &str) -> NewServer {
    NewServer {
        customer_id: customer.into(),
        spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
        idempotency: None,
        enforce_quota: false,
    }
}

async fn an_exhausted_api_pool_leaves_the_controllers_pool_alone(url: &str) {
    let opts = StoreOptions {
        max_connections: 3,
        acquire_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let controller = AnyStore::connect_with(url, Arc::new(SystemClock), &opts)
        .await
        .expect("connect");
    controller.migrate().await.expect("migrate");
    let api = controller.with_own_pool(&opts.with_max_connections(1));

    // A write through the API's pool wakes whoever listens on the controller's store.
    let mut notices = controller.subscribe();
    let created = api.create_server(new_server("u1")).await.expect("create");
    let notice = tokio::time::timeout(Duration::from_secs(30), notices.recv())
        .await
        .expect("a notice")
        .expect("open");
    assert_eq!(notice.server_id, created.server.id);

    // API clients hold the API's only connection.
    let held = match &api {
        AnyStore::Sqlite(s) => Held::Sqlite(s.pool().acquire().await.expect("acquire")),
        AnyStore::Pg(s) => Held::Pg(s.pool().acquire().await.expect("acquire")),
    };
    let err = api
        .get_server(created.server.id)
        .await
        .expect_err("the API's pool is exhausted");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    let other = controller
        .create_server(new_server("u2"))
        .await
        .expect("the controller's pool is untouched");
    controller
        .write_status(
            other.server.id,
            &other.server.status,
            other.server.resource_version,
            None,
        )
        .await
        .expect("and it writes");
    drop(held);
    assert!(
        api.get_server(other.server.id).await.unwrap().is_some(),
        "the API's pool serves again once its connection is back"
    );
}

/// A connection taken out of a pool (kept only to be dropped).
#[allow(dead_code)]
enum Held {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Pg(sqlx::pool::PoolConnection<sqlx::Postgres>),
}
