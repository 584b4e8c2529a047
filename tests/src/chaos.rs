//! Helpers shared by the chaos suites (`tests/tests/chaos*.rs`, `kill9.rs`, `scenario*.rs`):
//! seeds that can be replayed, the soak switch, fresh PostgreSQL databases, fleet specs and
//! the end-of-run assertions. Included by each test crate with `#[path = "../src/chaos.rs"]`.

#![allow(dead_code)]

use model::store::Store;
use model::{Phase, ServerId, ServerSpec, Variant};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::time::Duration;
use zlh_tests::World;
use zlh_tests::invariants::{check_clones, check_deleted};

/// The seed of this run: `ZLH_SEED` if set (replay), else random. Printed either way, so a
/// failure's output always says how to replay it.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("ZLH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ZLH_SEED={s:?} is not a u64")),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!(
        "{test}: seed={seed} (replay: ZLH_SEED={seed} cargo test -p zlh-tests --test <file> {test})"
    );
    seed
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `ZLH_SOAK=1`: longer runs, bigger fleets, more kills.
pub fn soak() -> bool {
    std::env::var("ZLH_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A mixed fleet: two game servers (all variants in turn) for every dev server.
pub fn mixed(i: usize) -> ServerSpec {
    if i % 3 == 2 {
        ServerSpec::dev(
            if i.is_multiple_of(2) {
                "node"
            } else {
                "python"
            },
            if i.is_multiple_of(2) { "22" } else { "3.12" },
        )
    } else {
        ServerSpec::minecraft(Variant::ALL[i % Variant::ALL.len()], "1.21.7")
    }
}

/// How many live servers are in each phase.
pub async fn phases(w: &World) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in w.servers().await {
        *m.entry(s.phase().0.as_str().to_string()).or_default() += 1;
    }
    m
}

/// The end-of-run checks every chaos test shares: the fleet invariants, every deleted server
/// gone without a trace, and no server cloned twice (`extra_clones` more clones per VMID
/// allowed where a test injects failed clone tasks).
pub async fn assert_fleet(w: &World, deleted: &[ServerId], extra_clones: u64, what: &str) {
    let mut v = zlh_tests::check_invariants(w).await;
    v.extend(check_deleted(w, deleted).await);
    v.extend(check_clones(w, deleted, extra_clones).await);
    assert!(
        v.is_empty(),
        "{what}: fleet invariants violated:\n{}",
        v.join("\n")
    );
}

/// Wait for every live server to be Ready; the panic names the stragglers.
pub async fn converge(w: &World, timeout: Duration) {
    w.wait_all(Some(Phase::Ready), timeout).await;
}

/// Requeue every live server (as `zctl reconcile --all` does).
pub async fn poke_all(w: &World) {
    for s in w.servers().await {
        let _ = w.store.request_reconcile(s.id, false).await;
    }
}

/// A fresh PostgreSQL database for one test, dropped by `drop_db` (or left behind, named
/// `zlh_chaos_*`, if the test panics first). The server is `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`, trust auth).
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        use sqlx::Connection;
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("zlh_chaos_{}", ServerId::new().0.simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
        PgDb {
            url: format!("{prefix}/{name}{query}"),
            admin_url,
            name,
        }
    }

    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}
