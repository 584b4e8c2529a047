//! End-to-end: servers declared in the store converge to Ready against the simulators, and
//! tear down without leaving anything behind.

use model::store::Store;
use model::{CloneMode, Phase};
use std::time::Duration;
use zlh_tests::chaos::mixed;
use zlh_tests::{World, WorldOptions, check_invariants};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_servers_converge_and_tear_down_cleanly_full_clones() {
    thirty_servers_converge_and_tear_down_cleanly(CloneMode::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_servers_converge_and_tear_down_cleanly_linked_clones() {
    thirty_servers_converge_and_tear_down_cleanly(CloneMode::Linked).await;
}

async fn thirty_servers_converge_and_tear_down_cleanly(mode: CloneMode) {
    let w = World::new(WorldOptions::default()).await;
    let mut cfg = w.cfg.clone();
    for t in &mut cfg.templates {
        t.clone_mode = mode;
    }
    let ctl = w.start_controller_with(cfg);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(w.create("u000", mixed(i)).await);
    }
    w.wait_all(Some(Phase::Ready), Duration::from_secs(60))
        .await;
    // The spec's disk is applied: every rootfs grown from the template's size.
    for s in w.servers().await {
        let vmid = s.reserved_vmid.expect("a VMID");
        let ct = w
            .sims
            .pve
            .as_ref()
            .unwrap()
            .container(vmid)
            .expect("its container");
        assert_eq!(
            ct.rootfs_bytes,
            u64::from(s.spec.resources.disk_gib) << 30,
            "{mode:?}: CT {vmid} rootfs {}",
            ct.rootfs
        );
    }
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
