//! End-to-end: servers declared in the store converge to Ready against the simulators, and
//! tear down without leaving anything behind.

use model::Phase;
use model::store::Store;
use std::time::Duration;
use zlh_tests::chaos::mixed;
use zlh_tests::{World, WorldOptions, check_invariants};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_servers_converge_and_tear_down_cleanly() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(w.create("u000", mixed(i)).await);
    }
    w.wait_all(Some(Phase::Ready), Duration::from_secs(60))
        .await;
    let v = check_invariants(&w).await;
    assert!(
        v.is_empty(),
        "invariants after provisioning:\n{}",
        v.join("\n")
    );
    let pve = w.sims.pve.as_ref().unwrap();
    assert_eq!(pve.clone_calls(), 30, "exactly one clone per server");
    assert_eq!(
        pve.destroy_calls(),
        0,
        "nothing destroyed while provisioning"
    );

    for id in &ids {
        w.store.request_deletion(*id).await.unwrap();
    }
    w.wait_all(None, Duration::from_secs(60)).await;
    let v = check_invariants(&w).await;
    assert!(v.is_empty(), "invariants after teardown:\n{}", v.join("\n"));
    let ours = pve.containers().into_iter().filter(|c| !c.template).count();
    assert_eq!(ours, 0, "no container left behind");
    assert!(
        w.store.list_reservations().await.unwrap().is_empty(),
        "no VMID left reserved"
    );
    for id in &ids {
        assert!(
            w.store.get_archived(*id).await.unwrap().is_some(),
            "{id} archived"
        );
    }
    ctl.stop().await;
}
