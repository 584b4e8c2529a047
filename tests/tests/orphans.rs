//! Orphan reports: a container whose marker is only in its description (a clone that failed
//! before its first config write) is reported like a tagged one; a container in our ranges
//! without any marker is someone else's and is not. Nothing is destroyed.

use model::ServerId;
use model::store::Store;
use std::time::Duration;
use zlh_tests::{World, WorldOptions};

const T: Duration = Duration::from_secs(60);

/// Reported from its description, after a bounded read of its config by the resync; the
/// foreign container beside it is not reported, and neither is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_description_only_orphan_is_reported() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    let gone = ServerId::new();
    let marker = controller::ownership::marker_line(gone);
    pve.add_described_ct("pve", 5990, "mc-paper-5990", &format!("{marker}\n"));
    pve.add_foreign_ct("pve", 5991, "legacy");
    let ctl = w.start_controller();
    w.wait_for("the orphan reported", T, async || {
        let list = w.store.list_orphans().await.unwrap();
        list.iter()
            .any(|o| o.vmid == 5990 && o.marker == gone.to_string())
    })
    .await;
    let list = w.store.list_orphans().await.unwrap();
    assert!(
        list.iter().all(|o| o.vmid != 5991),
        "a foreign container is no orphan: {list:?}"
    );
    assert!(
        pve.container(5990).is_some() && pve.container(5991).is_some(),
        "nothing destroyed"
    );
    ctl.stop().await;
}
