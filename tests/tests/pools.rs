//! End-to-end: warm pools (docs/pools.md) against the simulators. A pool fills, a server
//! claims a member instead of cloning, an empty pool means an on-demand clone, the pool
//! refills after claims, a smaller pool destroys only unclaimed members, a changed template
//! replaces members, a removed pool drains; every fleet invariant (pools included) holds.

use controller::config::Config;
use controller::ownership::{FLEET_TAG, POOL_TAG, marker_tag};
use model::store::Store;
use model::{MemberState, Phase, PoolMember, ServerId, ServerSpec, Variant};
use std::collections::HashSet;
use std::time::Duration;
use zlh_tests::{World, WorldOptions, check_invariants};

/// The template that builds paper servers in the example catalog.
const TPL: u32 = 900;
const WAIT: Duration = Duration::from_secs(60);

fn with_pool(w: &World, size: u32, edit: impl FnOnce(&mut model::Template)) -> Config {
    let mut cfg = w.cfg.clone();
    let t = cfg
        .templates
        .iter_mut()
        .find(|t| t.vmid == TPL)
        .expect("template 900");
    t.pool = size;
    edit(t);
    cfg
}

async fn members(w: &World) -> Vec<PoolMember> {
    w.store
        .list_pool_members()
        .await
        .expect("list members")
        .into_iter()
        .filter(|m| m.template == TPL)
        .collect()
}

/// Wait until the pool holds exactly `n` members, all free (and `also` holds of them).
async fn wait_pool(w: &World, n: usize, also: impl Fn(&[PoolMember]) -> bool) -> Vec<PoolMember> {
    w.wait_for(&format!("{n} free members"), WAIT, async || {
        let m = members(w).await;
        m.len() == n && m.iter().all(|m| m.state == MemberState::Free) && also(&m)
    })
    .await;
    members(w).await
}

async fn assert_invariants(w: &World, what: &str) {
    let v = check_invariants(w).await;
    assert!(
        v.is_empty(),
        "{what}: invariants violated:\n{}",
        v.join("\n")
    );
}

async fn claimed(w: &World, id: ServerId) -> bool {
    w.store
        .list_events(id, 100)
        .await
        .unwrap()
        .iter()
        .any(|e| e.reason == "PoolMemberClaimed")
}

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_claim_from_a_full_pool_and_the_pool_refills() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller_with(with_pool(&w, 3, |_| {}));
    let pve = w.sims.pve.clone().unwrap();
    let first: HashSet<u32> = wait_pool(&w, 3, |_| true)
        .await
        .iter()
        .map(|m| m.vmid)
        .collect();
    assert_eq!(pve.clone_calls(), 3, "one clone per member");
    assert_invariants(&w, "pool filled").await;

    let ids = [
        w.create("u000", paper()).await,
        w.create("u001", paper()).await,
    ];
    w.wait_all(Some(Phase::Ready), WAIT).await;
    for id in ids {
        let s = w.store.get_server(id).await.unwrap().unwrap();
        let vmid = s.reserved_vmid.unwrap();
        assert!(first.contains(&vmid), "{id}: VMID {vmid} is a member's");
        assert!(claimed(&w, id).await, "{id}: PoolMemberClaimed recorded");
        assert_eq!(s.status.progress.pool_claim, None, "{id}: claim completed");
        let ct = pve.container(vmid).unwrap();
        assert!(
            ct.tags.contains(&marker_tag(id)) && ct.tags.iter().any(|t| t == FLEET_TAG),
            "{id}: the member carries the server's marker: {:?}",
            ct.tags
        );
        assert!(
            !ct.tags.iter().any(|t| t == POOL_TAG),
            "{id}: no pool tag left"
        );
        assert_eq!(
            Some(ct.hostname.clone()),
            s.status.hostname,
            "{id}: renamed"
        );
        assert_eq!(
            pve.clone_calls_for(vmid),
            1,
            "{id}: claimed, not cloned again"
        );
    }
    // Refill after the claims: two new members, and no server cloned on demand.
    let refilled = wait_pool(&w, 3, |_| true).await;
    let fresh = refilled.iter().filter(|m| !first.contains(&m.vmid)).count();
    assert_eq!(fresh, 2, "two members replaced the claimed ones");
    assert_eq!(
        pve.clone_calls(),
        5,
        "3 members + 2 refills, no on-demand clone"
    );
    let pool_events = w
        .store
        .list_events(controller::pool::pool_event_id(TPL), 100)
        .await
        .unwrap();
    assert!(
        pool_events.iter().any(|e| e.reason == "PoolRefilled"),
        "PoolRefilled on the pool: {pool_events:?}"
    );
    assert_invariants(&w, "after claims and refill").await;

    // A claimed server tears down like any other; its members are not touched.
    for id in ids {
        w.store.request_deletion(id).await.unwrap();
    }
    w.wait_all(None, WAIT).await;
    assert_eq!(members(&w).await.len(), 3, "the pool is untouched");
    assert_invariants(&w, "after teardown").await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_pool_means_an_on_demand_clone() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller_with(with_pool(&w, 1, |_| {}));
    let pve = w.sims.pve.clone().unwrap();
    let member = wait_pool(&w, 1, |_| true).await[0].vmid;
    let ids = [
        w.create("u000", paper()).await,
        w.create("u001", paper()).await,
        w.create("u002", paper()).await,
    ];
    w.wait_all(Some(Phase::Ready), WAIT).await;
    let mut claims = 0;
    for id in ids {
        let s = w.store.get_server(id).await.unwrap().unwrap();
        let vmid = s.reserved_vmid.unwrap();
        if claimed(&w, id).await {
            claims += 1;
            assert_eq!(vmid, member, "{id}: the claim took the one member");
        } else {
            let events = w.store.list_events(id, 100).await.unwrap();
            assert!(
                events.iter().any(|e| e.reason == "CloneStarted"),
                "{id}: cloned on demand: {events:?}"
            );
        }
        assert_eq!(
            pve.clone_calls_for(vmid),
            1,
            "{id}: VMID {vmid} cloned once"
        );
    }
    assert_eq!(claims, 1, "one member, one claim");
    wait_pool(&w, 1, |_| true).await;
    assert_eq!(pve.clone_calls(), 4, "1 member + 2 on demand + 1 refill");
    assert_invariants(&w, "after on-demand clones").await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shrink_destroys_only_unclaimed_members_a_template_change_replaces_and_removal_drains() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.clone().unwrap();
    let ctl = w.start_controller_with(with_pool(&w, 3, |_| {}));
    wait_pool(&w, 3, |_| true).await;
    let id = w.create("u000", paper()).await;
    w.wait_all(Some(Phase::Ready), WAIT).await;
    let server_vmid = w
        .store
        .get_server(id)
        .await
        .unwrap()
        .unwrap()
        .reserved_vmid
        .unwrap();
    wait_pool(&w, 3, |_| true).await;
    ctl.stop().await;

    // Shrink 3 → 1: two members destroyed, the claimed container untouched.
    let destroys = pve.destroy_calls();
    let ctl = w.start_controller_with(with_pool(&w, 1, |_| {}));
    let left = wait_pool(&w, 1, |_| true).await;
    w.wait_for("the surplus destroyed", WAIT, async || {
        pve.containers().iter().filter(|c| !c.template).count() == 2
    })
    .await;
    assert_eq!(
        pve.destroy_calls() - destroys,
        2,
        "exactly the surplus destroyed"
    );
    assert!(
        pve.container(server_vmid).is_some(),
        "the claimed one is kept"
    );
    assert!(
        pve.container(left[0].vmid).is_some(),
        "the kept member is there"
    );
    w.wait_all(Some(Phase::Ready), WAIT).await;
    assert_invariants(&w, "after shrink").await;
    ctl.stop().await;

    // A configured version change replaces the member.
    let old = left[0].vmid;
    let ctl = w.start_controller_with(with_pool(&w, 1, |t| t.version = Some("v2".into())));
    let replaced = wait_pool(&w, 1, |m| m[0].template_version.as_deref() == Some("v2")).await;
    assert_ne!(replaced[0].vmid, old, "a new member");
    w.wait_for("the old member destroyed", WAIT, async || {
        pve.container(old).is_none()
    })
    .await;
    let events = w
        .store
        .list_events(controller::pool::pool_event_id(TPL), 100)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.reason == "PoolMemberReplaced"),
        "PoolMemberReplaced on the pool: {events:?}"
    );
    assert_invariants(&w, "after a version change").await;
    ctl.stop().await;

    // Removing the setting drains the pool; the server stays.
    let ctl = w.start_controller_with(with_pool(&w, 0, |t| t.version = Some("v2".into())));
    w.wait_for("the pool drained", WAIT, async || {
        members(&w).await.is_empty()
    })
    .await;
    w.wait_for("the drained member destroyed", WAIT, async || {
        pve.containers().iter().filter(|c| !c.template).count() == 1
    })
    .await;
    assert!(
        pve.container(server_vmid).is_some(),
        "the server's container is kept"
    );
    w.wait_all(Some(Phase::Ready), WAIT).await;
    assert_invariants(&w, "after drain").await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_template_config_replaces_members() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.clone().unwrap();
    let mut cfg = with_pool(&w, 2, |_| {});
    // Read the template's fingerprint every few polls, so a change is seen soon.
    cfg.controller.resync_interval = cfg.controller.task_poll * 4;
    let ctl = w.start_controller_with(cfg.clone());
    // Members by id: a replaced member's VMID is free again and may be reused.
    let before: HashSet<String> = wait_pool(&w, 2, |_| true)
        .await
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    let digest = members(&w).await[0].template_digest.clone();
    // Someone edits the template (cores), as a template rebuild would change it.
    let client = proxmox_client::client::PveClient::new(pve.client_config()).unwrap();
    use proxmox_client::Proxmox;
    let update = proxmox_client::ConfigUpdate {
        cores: Some(4),
        ..Default::default()
    };
    client.update_ct_config("pve", TPL, &update).await.unwrap();
    let after = wait_pool(&w, 2, |m| {
        m.iter().all(|m| !before.contains(&m.id.to_string()))
    })
    .await;
    for m in &after {
        assert_ne!(
            m.template_digest, digest,
            "{}: made from the changed template",
            m.vmid
        );
    }
    let cts = pve.containers().into_iter().filter(|c| !c.template).count();
    assert_eq!(cts, 2, "the replaced members are destroyed");
    assert_invariants(&w, "after a template change").await;
    ctl.stop().await;
}

/// A container tagged as a pool member that no pool holds (its store row lost, say) is an
/// orphan to report, never destroyed; the pool's real members are not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_marked_container_no_pool_holds_is_reported_never_destroyed() {
    use controller::ownership::{pool_hostname, pool_marker_line};
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.clone().unwrap();
    let stray = 5990;
    pve.add_described_ct("pve", stray, &pool_hostname(stray), &pool_marker_line(TPL));
    let client = proxmox_client::client::PveClient::new(pve.client_config()).unwrap();
    use proxmox_client::Proxmox;
    let tags = proxmox_client::ConfigUpdate {
        tags: Some(vec![FLEET_TAG.into(), POOL_TAG.into()]),
        ..Default::default()
    };
    client.update_ct_config("pve", stray, &tags).await.unwrap();
    let mut cfg = with_pool(&w, 2, |_| {});
    cfg.controller.resync_interval = cfg.controller.task_poll * 4;
    let ctl = w.start_controller_with(cfg);
    let members: HashSet<u32> = wait_pool(&w, 2, |_| true)
        .await
        .iter()
        .map(|m| m.vmid)
        .collect();
    w.wait_for("the stray member reported", WAIT, async || {
        w.store
            .list_orphans()
            .await
            .unwrap()
            .iter()
            .any(|o| o.vmid == stray && o.marker == controller::orphans::POOL_ORPHAN_MARKER)
    })
    .await;
    let orphans = w.store.list_orphans().await.unwrap();
    assert!(
        orphans.iter().all(|o| !members.contains(&o.vmid)),
        "real members are no orphans: {orphans:?}"
    );
    assert!(pve.container(stray).is_some(), "never destroyed");
    let v = check_invariants(&w).await;
    assert!(
        v.iter().any(|m| m.contains(&format!("container {stray}"))),
        "the invariants flag the leak too: {v:?}"
    );
    ctl.stop().await;
}

/// The claim path on PostgreSQL (row locks, `SKIP LOCKED`): a burst larger than the pool
/// claims every member exactly once and clones the rest on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_on_postgres_take_each_member_once() {
    let db = zlh_tests::pg::fresh_database("zlh_pools").await;
    {
        let w = World::new(WorldOptions {
            database_url: Some(db.url.clone()),
            ..WorldOptions::default()
        })
        .await;
        let pve = w.sims.pve.clone().unwrap();
        let ctl = w.start_controller_with(with_pool(&w, 3, |_| {}));
        let first: HashSet<u32> = wait_pool(&w, 3, |_| true)
            .await
            .iter()
            .map(|m| m.vmid)
            .collect();
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(w.create(&format!("u{i:03}"), paper()).await);
        }
        w.wait_all(Some(Phase::Ready), WAIT).await;
        let mut claimed = HashSet::new();
        for id in &ids {
            let s = w.store.get_server(*id).await.unwrap().unwrap();
            let vmid = s.reserved_vmid.unwrap();
            if first.contains(&vmid) {
                assert!(claimed.insert(vmid), "{id}: VMID {vmid} claimed twice");
            }
            assert_eq!(pve.clone_calls_for(vmid), 1, "{id}: cloned once");
        }
        assert_eq!(claimed, first, "every member claimed once");
        wait_pool(&w, 3, |_| true).await;
        assert_invariants(&w, "after claims on PostgreSQL").await;
        ctl.stop().await;
    }
    db.drop_db().await;
}
