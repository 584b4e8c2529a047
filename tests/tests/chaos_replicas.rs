//! Multi-replica chaos on PostgreSQL: three controllers share a fresh database; one of them
//! is killed (aborted mid-await, no lease release) at random moments and restarted.
//!
//! Needs PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! trust auth); each run creates and drops its own `zlh_chaos_*` database.
//! Seeded: `seed=...` is printed; replay with `ZLH_SEED=...`. `ZLH_SOAK=1`: 40 servers, 40
//! kills.

use zlh_tests::chaos;

use chaos::{assert_fleet, mixed, phases, poke_all, rng, seed, soak};
use model::store::Store;
use model::{Phase, ServerId};
use rand::Rng;
use std::time::Duration;
use zlh_tests::world::Running;
use zlh_tests::{World, WorldOptions};

/// Proves that replicas dying at any instant neither lose nor duplicate work: 20 servers
/// declared and 5 deleted while one of three replicas is killed at least 10 times (each time
/// a random one, restarted after a random pause, so its leases must expire before others take
/// over); afterwards every remaining server is Ready, the fleet invariants hold, every
/// deleted server left nothing behind, and no VMID was cloned twice (`clone_calls_for(vmid)
/// <= 1` per holder) — fencing and leases keep two replicas from acting on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_at_random_converge() {
    let seed = seed("three_replicas_one_killed_at_random_converge");
    let mut rng = rng(seed);
    let (total, to_delete, kills): (usize, usize, usize) =
        if soak() { (40, 10, 40) } else { (20, 5, 12) };
    let db = zlh_tests::pg::fresh_database("zlh_chaos").await;
    {
        let w = World::new(WorldOptions {
            database_url: Some(db.url.clone()),
            workers: 6,
            ..WorldOptions::default()
        })
        .await;
        // Each replica has its own connection, so they wake each other via LISTEN/NOTIFY.
        let start = async |i: usize| -> Running {
            let mut cfg = w.cfg.clone();
            cfg.replica_id = format!("replica-{i}");
            let store = model::store::AnyStore::connect(
                &cfg.database_url,
                std::sync::Arc::new(model::SystemClock),
            )
            .await
            .expect("replica store");
            w.start_controller_on(cfg, store)
        };
        let mut replicas: Vec<Option<Running>> = Vec::new();
        for i in 0..3 {
            replicas.push(Some(start(i).await));
        }
        let pve = w.sims.pve.as_ref().unwrap();
        let mut ids = Vec::new();
        let mut deleted: Vec<ServerId> = Vec::new();
        let per_wave = total.div_ceil(4);
        for k in 0..kills {
            if ids.len() < total && k % (kills / 4).max(1) == 0 {
                for _ in 0..per_wave.min(total - ids.len()) {
                    ids.push(w.create("u000", mixed(ids.len())).await);
                }
            }
            if deleted.len() < to_delete && k >= 2 && rng.random_bool(0.6) {
                let c: Vec<ServerId> = ids
                    .iter()
                    .copied()
                    .filter(|i| !deleted.contains(i))
                    .collect();
                let victim = c[rng.random_range(0..c.len())];
                w.store.request_deletion(victim).await.unwrap();
                deleted.push(victim);
            }
            if rng.random_bool(0.3) {
                poke_all(&w).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(30..600))).await;
            let victim = rng.random_range(0..3);
            eprintln!(
                "kill #{k}: replica-{victim}; clones={} destroys={} {:?}",
                pve.clone_calls(),
                pve.destroy_calls(),
                phases(&w).await
            );
            replicas[victim].take().unwrap().kill();
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            replicas[victim] = Some(start(victim).await);
        }
        while ids.len() < total {
            ids.push(w.create("u000", mixed(ids.len())).await);
        }
        while deleted.len() < to_delete {
            let victim = *ids.iter().find(|i| !deleted.contains(i)).unwrap();
            w.store.request_deletion(victim).await.unwrap();
            deleted.push(victim);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let servers = w.servers().await;
            if servers.len() == total - to_delete
                && servers.iter().all(|s| s.phase().0 == Phase::Ready)
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                w.wait_all(Some(Phase::Ready), Duration::ZERO).await;
                panic!("{} servers live, want {}", servers.len(), total - to_delete);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_fleet(&w, &deleted, 0, "after replica kills").await;
        let mut held_before = Vec::new();
        for id in &deleted {
            if let Some(a) = w.store.get_archived(*id).await.unwrap() {
                held_before.extend(a.server.reserved_vmid.or(a.server.status.vmid));
            }
        }
        for s in w.servers().await {
            let vm = s.reserved_vmid.unwrap();
            let earlier = held_before.iter().filter(|v| **v == vm).count() as u64;
            assert!(
                pve.clone_calls_for(vm) <= 1 + earlier,
                "{}: VMID {vm} cloned {} times",
                s.id,
                pve.clone_calls_for(vm)
            );
        }
        for r in replicas.into_iter().flatten() {
            r.stop().await;
        }
    }
    db.drop_db().await;
}
