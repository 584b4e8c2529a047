//! Scale-out on PostgreSQL: several controller replicas, each with its own store connection,
//! share the work through per-server leases and wake each other with LISTEN/NOTIFY.

use controller::config::Config;
use model::store::{AnyStore, Fence, Store};
use model::{Phase, ServerSpec, SystemClock, Variant};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use zlh_tests::pg::fresh_database;
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(120);

async fn replica_cfg(w: &World, name: &str) -> (Config, AnyStore) {
    let mut cfg = w.cfg.clone();
    cfg.replica_id = name.into();
    // Short leases so a dead replica's servers move on quickly in scaled time.
    cfg.controller.lease_ttl = Duration::from_millis(600);
    let store = AnyStore::connect(&cfg.database_url, Arc::new(SystemClock))
        .await
        .expect("replica store");
    (cfg, store)
}

fn spec(i: usize) -> ServerSpec {
    if i % 5 == 4 {
        ServerSpec::dev("node", "22")
    } else {
        ServerSpec::minecraft(Variant::ALL[i % Variant::ALL.len()], "1.21.7")
    }
}

fn assert_cloned_once(w: &World, servers: &[model::Server]) {
    let pve = w.sims.pve.as_ref().unwrap();
    for s in servers {
        let vmid = s.reserved_vmid.expect("reserved");
        assert_eq!(
            pve.clone_calls_for(vmid),
            1,
            "{}: VMID {vmid} cloned once",
            s.id
        );
    }
}

/// Three replicas provision 60 servers: every server reaches Ready with exactly one clone,
/// and the work is spread across the replicas. Then one replica is killed in the middle of
/// a second wave (its tasks aborted, nothing released): its servers move on after the lease
/// expiry, nothing is cloned twice, nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_work_and_survive_a_death() {
    let db = fresh_database("zlh_replicas").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let mut replicas = Vec::new();
    for n in ["replica-a", "replica-b", "replica-c"] {
        let (cfg, store) = replica_cfg(&w, n).await;
        replicas.push(w.start_controller_on(cfg, store));
    }
    for i in 0..60 {
        w.create("u1", spec(i)).await;
    }
    w.wait_all(Some(Phase::Ready), T).await;
    let servers = w.servers().await;
    assert_cloned_once(&w, &servers);
    for r in &replicas {
        assert!(
            r.controller.reconciled.load(Ordering::Relaxed) > 0,
            "{} did part of the work",
            r.controller.replica_id
        );
    }
    let alive = w
        .store
        .list_replicas(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        alive.len(),
        3,
        "all replicas report in for the status endpoint"
    );

    // Second wave; kill one replica while it works.
    for i in 60..75 {
        w.create("u1", spec(i)).await;
    }
    let pve = w.sims.pve.as_ref().unwrap();
    w.wait_for("second wave under way", T, async || pve.clone_calls() > 62)
        .await;
    replicas.remove(0).kill();
    w.wait_all(Some(Phase::Ready), T).await;
    let servers = w.servers().await;
    assert_eq!(servers.len(), 75);
    assert_cloned_once(&w, &servers);
    let v = check_invariants(&w).await;
    assert!(v.is_empty(), "invariants:\n{}", v.join("\n"));
    for r in replicas {
        r.stop().await;
    }
    drop(w);
    db.drop_db().await;
}

/// A replica stalled past its lease expiry cannot overwrite the status written by the
/// replica that took over: its write carries a stale fencing token and is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_replica_cannot_overwrite_the_new_holders_status() {
    let db = fresh_database("zlh_fencing").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let id = w
        .create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;

    // Replica A claims the lease, then "stalls" (never renews) past the expiry.
    let (cfg_a, store_a) = replica_cfg(&w, "replica-a").await;
    let lease = store_a
        .claim_lease(id, "replica-a", Duration::from_millis(100))
        .await
        .unwrap()
        .expect("A gets the lease");
    let stale = Fence { token: lease.token };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Replica B takes over and provisions the server.
    let (cfg_b, store_b) = replica_cfg(&w, "replica-b").await;
    let b = w.start_controller_on(cfg_b, store_b);
    w.wait_all(Some(Phase::Ready), T).await;
    b.stop().await;
    let before = w.store.get_server(id).await.unwrap().unwrap();

    // A resumes mid-reconcile: it finds the container stopped (drift) and would record a
    // start; the write is fenced off, and B's status stands.
    let vmid = before.reserved_vmid.unwrap();
    w.sims.pve.as_ref().unwrap().stop_behind_back(vmid);
    // A is only the resumed reconcile (no engine of its own running beside it).
    let a = controller::engine::Controller::new(
        store_a,
        w.sims.backends(&cfg_a).unwrap(),
        cfg_a,
        Arc::new(SystemClock),
    );
    let result = controller::reconcile::reconcile(&a.ctx, id, Some(stale)).await;
    assert!(
        matches!(
            result,
            Err(controller::reconcile::ReconcileError::Store(
                model::store::StoreError::Fenced
            ))
        ),
        "stale fence rejected: {result:?}"
    );
    let after = w.store.get_server(id).await.unwrap().unwrap();
    assert_eq!(
        after.status, before.status,
        "the new holder's status is untouched"
    );
    drop(w);
    db.drop_db().await;
}

/// SQLite runs a single controller: a second one against the same file refuses to start
/// with a clear message.
#[tokio::test]
async fn a_second_controller_on_one_sqlite_file_refuses_to_start() {
    let w = World::new(WorldOptions::default()).await;
    let first = zlhd::run::single_controller_lock(&w.store).unwrap();
    assert!(first.is_some(), "SQLite takes the lock");
    let err = zlhd::run::single_controller_lock(&w.store)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another zlhd controller is already running"),
        "{err}"
    );
    drop(first);
    assert!(
        zlhd::run::single_controller_lock(&w.store)
            .unwrap()
            .is_some(),
        "released on exit"
    );
}
