//! End-to-end behaviour of the reconcile engine against the simulators: crash safety at
//! every step, adoption, VMID conflicts, failures and forced retries, drift repair, spec
//! changes and pause. Each test states the promise it checks.

use model::store::{Store, VmidRange};
use model::{EventType, Phase, Power, ServerId, ServerSpec, ServerStatus, Variant};
use std::time::Duration;
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(60);

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

async fn events(w: &World, id: ServerId) -> Vec<String> {
    w.store
        .list_events(id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect()
}

async fn assert_clean(w: &World) {
    let v = check_invariants(w).await;
    assert!(v.is_empty(), "fleet invariants:\n{}", v.join("\n"));
    let pve = w.sims.pve.as_ref().unwrap();
    for s in w.servers().await {
        if let Some(vmid) = s.reserved_vmid {
            assert!(
                pve.clone_calls_for(vmid) <= 1,
                "VMID {vmid} was cloned {} times",
                pve.clone_calls_for(vmid)
            );
        }
    }
}

/// The clone happens but its answer (the UPID) is lost, exactly as if the controller died
/// between the clone call and recording it: the next reconcile finds the container at the
/// reserved VMID, proves it is ours and adopts it; nothing is cloned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_clone_answer_is_adopted_not_recloned() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    pve.lose_response_next("clone", 1);
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    assert_eq!(
        pve.clone_calls(),
        1,
        "one clone, adopted after the lost answer"
    );
    let evs = events(&w, id).await;
    assert!(
        evs.contains(&"Adopted".to_string()),
        "adoption is visible: {evs:?}"
    );
    assert_clean(&w).await;
    ctl.stop().await;
}

/// Crash (abort, like SIGKILL) at each observable point of provisioning and teardown, then
/// start a new controller on the same store: everything converges with exactly one container
/// per server and nothing leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_at_every_step_converges_without_leaks() {
    type Point = (&'static str, fn(&World) -> bool);
    let points: &[Point] = &[
        ("VMID reserved", |w| {
            w.sims
                .pve
                .as_ref()
                .unwrap()
                .requests_for("cluster_resources")
                > 0
        }),
        ("clone called", |w| {
            w.sims.pve.as_ref().unwrap().clone_calls() > 0
        }),
        ("configured", |w| {
            w.sims
                .pve
                .as_ref()
                .unwrap()
                .containers()
                .iter()
                .any(|c| c.tags.iter().any(|t| t == "zlh"))
        }),
        ("disk resized", |w| {
            w.sims.pve.as_ref().unwrap().requests_for("resize") > 0
        }),
        ("started", |w| {
            w.sims.pve.as_ref().unwrap().start_calls() > 0
        }),
        ("agent configured", |w| {
            w.sims
                .agent
                .as_ref()
                .unwrap()
                .states()
                .values()
                .any(|s| !matches!(s, edge_client::AgentState::Idle))
        }),
        ("DNS published", |w| {
            !w.sims.technitium.as_ref().unwrap().records().is_empty()
        }),
        ("proxy registered", |w| {
            !w.sims.velocity.as_ref().unwrap().registrations().is_empty()
        }),
    ];
    let modes = [model::CloneMode::Full, model::CloneMode::Linked];
    for ((name, reached), mode) in points.iter().flat_map(|p| modes.map(|m| (p, m))) {
        let w = World::new(WorldOptions::default()).await;
        let mut cfg = w.cfg.clone();
        for t in &mut cfg.templates {
            t.clone_mode = mode;
        }
        let ctl = w.start_controller_with(cfg.clone());
        for i in 0..4 {
            let spec = ServerSpec::minecraft(Variant::ALL[i % 3], "1.21.7");
            w.create("u1", spec).await;
        }
        w.wait_for(name, T, async || reached(&w)).await;
        ctl.kill();
        let ctl = w.start_controller_with(cfg.clone());
        w.wait_all(Some(Phase::Ready), T).await;
        assert_clean(&w).await;
        assert_eq!(
            w.sims.pve.as_ref().unwrap().clone_calls(),
            4,
            "{name} ({mode:?}): one clone per server"
        );

        // And the same during teardown.
        for s in w.servers().await {
            w.store.request_deletion(s.id).await.unwrap();
        }
        let teardown: &[Point] = &[
            ("unregistered", |w| {
                w.sims.velocity.as_ref().unwrap().registrations().len() < 4
            }),
            ("destroy issued", |w| {
                w.sims.pve.as_ref().unwrap().destroy_calls() > 0
            }),
        ];
        let (tname, treached) = teardown[name.len() % teardown.len()];
        w.wait_for(tname, T, async || treached(&w)).await;
        ctl.kill();
        let ctl = w.start_controller_with(cfg);
        w.wait_all(None, T).await;
        assert_clean(&w).await;
        let left = w
            .sims
            .pve
            .as_ref()
            .unwrap()
            .containers()
            .into_iter()
            .filter(|c| !c.template)
            .count();
        assert_eq!(left, 0, "{name}/{tname} ({mode:?}): no container left");
        ctl.stop().await;
    }
}

/// A VMID reserved in the store but occupied in Proxmox by something that is not ours is a
/// conflict: another VMID is reserved and the intruder is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intruder_at_reserved_vmid_is_left_alone() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    let id = w.create("u1", paper()).await;
    let vmid = w
        .store
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
        .unwrap();
    pve.add_foreign_ct("pve", vmid, "legacy-box");
    let ctl = w.start_controller();
    w.wait_all(Some(Phase::Ready), T).await;
    assert_left_alone(&w, id, vmid, "legacy-box").await;
    assert_eq!(
        pve.clone_calls_for(vmid),
        0,
        "never cloned onto the intruder"
    );
    ctl.stop().await;
}

/// `id` moved off `vmid` with a visible conflict; the guest at `vmid` (named `hostname`) was
/// not changed, tagged or destroyed.
async fn assert_left_alone(w: &World, id: ServerId, vmid: u32, hostname: &str) {
    let pve = w.sims.pve.as_ref().unwrap();
    let s = w.store.get_server(id).await.unwrap().unwrap();
    assert_ne!(s.reserved_vmid, Some(vmid), "moved to another VMID");
    let intruder = pve.container(vmid).expect("the intruder still exists");
    assert_eq!(intruder.hostname, hostname, "and is unchanged");
    assert!(intruder.tags.is_empty(), "no tags written to it");
    assert_eq!(pve.destroy_calls(), 0);
    assert!(events(w, id).await.contains(&"VmidConflict".to_string()));
}

/// Waits until the controller's first resync has listed the cluster (its snapshot is taken).
async fn wait_first_snapshot(w: &World) {
    let pve = w.sims.pve.as_ref().unwrap();
    let t = std::time::Instant::now();
    while pve.requests_for("cluster_resources") == 0 {
        assert!(t.elapsed() < T, "no resync listed the cluster");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The listing is answered; give the resync a moment to install the snapshot.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Reserving a VMID takes the taken set from the fresh fleet snapshot: declaring servers
/// costs no cluster listing each, so a declaration does not cost O(fleet).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_use_the_snapshot_not_a_listing_each() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    // One resync (at start) in the whole test, so every other listing would be a reservation's.
    let mut cfg = w.cfg.clone();
    cfg.controller.resync_interval = Duration::from_secs(600);
    let ctl = w.start_controller_with(cfg);
    wait_first_snapshot(&w).await;
    let listings = pve.requests_for("cluster_resources");
    for i in 0..6 {
        w.create(&format!("u{i}"), paper()).await;
    }
    w.wait_all(Some(Phase::Ready), T).await;
    assert_eq!(
        pve.requests_for("cluster_resources"),
        listings,
        "no cluster listing per reservation"
    );
    let mut vmids: Vec<u32> = w
        .servers()
        .await
        .iter()
        .filter_map(|s| s.reserved_vmid)
        .collect();
    vmids.sort_unstable();
    vmids.dedup();
    assert_eq!(vmids.len(), 6, "six distinct VMIDs");
    assert_clean(&w).await;
    ctl.stop().await;
}

/// A guest that appears after the snapshot at the VMID a reservation picks is not in the
/// snapshot's taken set: the clone's `already exists` sends the server down the conflict
/// path; the newcomer is left untouched and the server is Ready at another VMID.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_created_after_the_snapshot_is_a_conflict_not_a_collision() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    let ctl = w.start_controller();
    wait_first_snapshot(&w).await;
    let first = w.cfg.vmids.game[0];
    pve.add_foreign_ct("pve", first, "late-arrival");
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    assert_left_alone(&w, id, first, "late-arrival").await;
    ctl.stop().await;
}

/// An Agent install error is retried in place up to the configured attempts, then the server
/// shows `failed` with the step and message; a forced retry brings it to Ready once the Agent
/// stops failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_install_fails_visibly_then_forced_retry_recovers() {
    let w = World::new(WorldOptions::default()).await;
    let agent = w.sims.agent.as_ref().unwrap();
    agent.set_failure(Some(
        "install failed: artifact download returned 404".into(),
    ));
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Failed), T).await;
    let s = w.store.get_server(id).await.unwrap().unwrap();
    let f = s.status.failure.clone().expect("failure recorded");
    assert_eq!(f.step, "wait-for-agent");
    assert!(
        f.message.contains("artifact download returned 404"),
        "{}",
        f.message
    );
    let ip: std::net::Ipv4Addr = s.status.ip.clone().unwrap().parse().unwrap();
    assert_eq!(
        agent.configs_received(ip),
        w.cfg.controller.agent_attempts,
        "retried in place exactly up to the attempts"
    );
    let evs = w.store.list_events(id, 100).await.unwrap();
    assert!(
        evs.iter()
            .any(|e| e.reason == "AgentInstallFailed" && e.type_ == EventType::Warning)
    );

    // Still failed after a while: no hammering, no silent retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.store.get_server(id).await.unwrap().unwrap().phase().0,
        Phase::Failed
    );
    assert_eq!(agent.configs_received(ip), w.cfg.controller.agent_attempts);

    agent.set_failure(None);
    w.store.request_reconcile(id, true).await.unwrap();
    w.wait_all(Some(Phase::Ready), T).await;
    assert_clean(&w).await;
    assert_eq!(
        w.sims.pve.as_ref().unwrap().clone_calls(),
        1,
        "the container was kept"
    );
    ctl.stop().await;
}

/// A wiped status is rebuilt from observation: the container is adopted, not re-cloned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_status_is_rebuilt_from_observation() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let s = w.store.get_server(id).await.unwrap().unwrap();
    let vmid = s.reserved_vmid;
    w.store
        .write_status(id, &ServerStatus::default(), s.resource_version, None)
        .await
        .unwrap();
    w.store.request_reconcile(id, false).await.unwrap();
    let r = tokio::time::timeout(T, async {
        loop {
            let s = w.store.get_server(id).await.unwrap().unwrap();
            if s.phase().0 == Phase::Ready && s.status.hostname.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    let s = w.store.get_server(id).await.unwrap().unwrap();
    assert!(
        r.is_ok(),
        "status not rebuilt: {:?} {:#?}",
        s.phase(),
        s.status
    );
    let s = w.store.get_server(id).await.unwrap().unwrap();
    assert_eq!(s.reserved_vmid, vmid);
    assert_eq!(
        w.sims.pve.as_ref().unwrap().clone_calls(),
        1,
        "adopted, not re-cloned"
    );
    assert_clean(&w).await;
    ctl.stop().await;
}

/// Drift on a Ready server is repaired: a container stopped behind our back is started, a
/// wrong DNS record is fixed, forgotten proxy registrations (proxy restart) come back, and an
/// Agent that lost its config after a restart gets it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_repaired() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let s = w.store.get_server(id).await.unwrap().unwrap();
    let vmid = s.reserved_vmid.unwrap();
    let fqdn = s.status.fqdn.clone().unwrap();
    let ip: std::net::Ipv4Addr = s.status.ip.clone().unwrap().parse().unwrap();
    let pve = w.sims.pve.as_ref().unwrap();

    pve.stop_behind_back(vmid);
    w.wait_for("container started again", T, async || {
        pve.container(vmid)
            .is_some_and(|c| c.status == proxmox_client::CtState::Running)
    })
    .await;
    w.wait_all(Some(Phase::Ready), T).await;

    let tech = w.sims.technitium.as_ref().unwrap();
    tech.set_a(&fqdn, "127.9.9.9".parse().unwrap());
    w.sims.velocity.as_ref().unwrap().restart();
    let agent = w.sims.agent.as_ref().unwrap();
    let sent = agent.configs_received(ip);
    agent.restart_agent(ip);
    w.wait_for("drift repaired", T, async || {
        check_invariants(&w).await.is_empty()
            && agent.configs_received(ip) > sent
            && agent.state(ip) == Some(edge_client::AgentState::Running)
    })
    .await;
    assert_eq!(pve.clone_calls(), 1);
    assert_eq!(pve.destroy_calls(), 0, "repair never destroys");
    assert!(events(&w, id).await.contains(&"DriftRepaired".to_string()));
    ctl.stop().await;
}

/// Wait until the controller's queue has been empty, with nothing running, for 100 ms.
async fn drained(ctl: &controller::engine::Controller) {
    let mut quiet = 0;
    let t = std::time::Instant::now();
    while quiet < 20 && t.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(5)).await;
        quiet = if ctl.queue.depth() == 0 && ctl.queue.running() == 0 {
            quiet + 1
        } else {
            0
        };
    }
}

/// A resync reconciles only what the fleet snapshot does not show settled, and probes the
/// health of each Ready server once per health interval (here every 3rd resync), not on
/// every resync: Proxmox sees one call per resync, each game one Server List Ping per cycle,
/// and an Agent whose game answers is not asked. Drift the snapshot shows (a stopped
/// container) is repaired at the next resync; a crashed game, which only a probe shows,
/// within one health cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resync_reconciles_what_is_unsettled_and_probes_health_in_turn() {
    const EVERY: u32 = 3;
    let w = World::new(WorldOptions::default()).await;
    let mut cfg = w.cfg.clone();
    // No periodic resync after the first: the test calls them.
    cfg.controller.resync_interval = Duration::from_secs(3600);
    cfg.controller.health_interval = cfg.controller.resync_interval * EVERY;
    let run = w.start_controller_with(cfg);
    let ctl = run.controller.clone();
    let n = 6;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(w.create(&format!("u{i}"), paper()).await);
    }
    w.wait_all(Some(Phase::Ready), T).await;
    drained(&ctl).await;
    let pve = w.sims.pve.as_ref().unwrap();
    let agent = w.sims.agent.as_ref().unwrap();
    let status_calls = || {
        agent
            .requests()
            .iter()
            .filter(|r| r.uri == "/status")
            .count()
    };

    let mut per_resync = Vec::new();
    let agent_calls = status_calls();
    let reconciles = ctl.reconciled.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..EVERY {
        let (p0, s0) = (pve.requests_total(), agent.slp_answered());
        ctl.resync().await;
        drained(&ctl).await;
        assert_eq!(
            pve.requests_total() - p0,
            1,
            "a settled fleet costs one cluster/resources call per resync"
        );
        per_resync.push(agent.slp_answered() - s0);
    }
    assert_eq!(
        per_resync.iter().sum::<u64>(),
        n as u64,
        "each game is probed exactly once per health cycle: {per_resync:?}"
    );
    assert_eq!(
        status_calls(),
        agent_calls,
        "an Agent whose game answers is not asked"
    );
    assert_eq!(
        ctl.reconciled.load(std::sync::atomic::Ordering::Relaxed),
        reconciles,
        "a settled game that answers its probe costs no reconcile"
    );

    // Drift the snapshot shows: repaired at the next resync, whoever's probe turn it is.
    let s = w.store.get_server(ids[0]).await.unwrap().unwrap();
    let vmid = s.reserved_vmid.unwrap();
    pve.stop_behind_back(vmid);
    ctl.resync().await;
    w.wait_for("container started again", T, async || {
        pve.container(vmid)
            .is_some_and(|c| c.status == proxmox_client::CtState::Running)
    })
    .await;

    // A crash only a probe shows: repaired within one cycle of resyncs.
    w.wait_all(Some(Phase::Ready), T).await;
    drained(&ctl).await;
    let s = w.store.get_server(ids[1]).await.unwrap().unwrap();
    let ip: std::net::Ipv4Addr = s.status.ip.clone().unwrap().parse().unwrap();
    let starts = agent.power_requests(ip).len();
    agent.crash(ip);
    for _ in 0..EVERY {
        ctl.resync().await;
        drained(&ctl).await;
    }
    // A crashed game is started again first (the Agent's `POST /start`).
    w.wait_for("crashed game started again", T, async || {
        agent.power_requests(ip).len() > starts
            && agent.state(ip) == Some(edge_client::AgentState::Running)
    })
    .await;
    w.wait_all(Some(Phase::Ready), T).await;
    assert_clean(&w).await;
    run.stop().await;
}

/// Spec changes are applied (resources, power) and `observedGeneration` follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spec_changes_are_applied() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let mut spec = paper();
    spec.resources.memory_mib = 4096;
    spec.resources.cores = 4;
    let (s, _) = w.store.update_spec(id, spec.clone(), None).await.unwrap();
    assert_eq!(s.generation, 2);
    w.wait_for("generation 2 observed", T, async || {
        let s = w.store.get_server(id).await.unwrap().unwrap();
        s.status.observed_generation == 2 && s.phase().0 == Phase::Ready
    })
    .await;
    let ct = w
        .sims
        .pve
        .as_ref()
        .unwrap()
        .container(s.reserved_vmid.unwrap())
        .unwrap();
    assert_eq!((ct.cores, ct.memory), (4, 4096));

    spec.power = Power::Stopped;
    w.store.update_spec(id, spec, None).await.unwrap();
    w.wait_for("stopped as asked", T, async || {
        let s = w.store.get_server(id).await.unwrap().unwrap();
        s.status.observed_generation == 3 && s.phase().0 == Phase::Ready
    })
    .await;
    assert_clean(&w).await;
    ctl.stop().await;
}

/// A paused server is not acted on; resuming it lets it converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_servers_are_not_acted_on() {
    let w = World::new(WorldOptions::default()).await;
    let id = w.create("u1", paper()).await;
    w.store.set_paused(id, true).await.unwrap();
    let ctl = w.start_controller();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pve = w.sims.pve.as_ref().unwrap();
    assert_eq!(pve.clone_calls(), 0, "nothing cloned while paused");
    assert!(
        w.store
            .get_server(id)
            .await
            .unwrap()
            .unwrap()
            .reserved_vmid
            .is_none()
    );
    w.store.set_paused(id, false).await.unwrap();
    w.wait_all(Some(Phase::Ready), T).await;
    assert_clean(&w).await;
    ctl.stop().await;
}

/// During a full Proxmox outage servers show Degraded and nothing is destroyed; afterwards
/// everything converges. With 30% socket resets nothing is destroyed or recreated either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxmox_outage_and_resets_degrade_but_never_destroy() {
    let w = World::new(WorldOptions::default()).await;
    let pve = w.sims.pve.as_ref().unwrap();
    let ctl = w.start_controller();
    for i in 0..6 {
        w.create("u1", ServerSpec::minecraft(Variant::ALL[i % 6], "1.21.7"))
            .await;
    }
    pve.fail_rate(
        "*",
        0.3,
        500,
        "failed to read from command socket: Connection reset by peer",
    );
    w.wait_all(Some(Phase::Ready), T).await;
    pve.clear_faults();
    assert_eq!(pve.clone_calls(), 6);
    assert_eq!(pve.destroy_calls(), 0);

    pve.set_outage(Some(proxmox_client::sim::Outage::Status {
        code: 595,
        message: "Connection refused".into(),
    }));
    // Make them look: a spec change needs Proxmox.
    for s in w.servers().await {
        let mut spec = s.spec.clone();
        spec.resources.cores = 3;
        w.store.update_spec(s.id, spec, None).await.unwrap();
    }
    w.wait_all(Some(Phase::Degraded), T).await;
    for s in w.servers().await {
        let e = s.status.last_error.expect("last error shown");
        assert_eq!(e.class, model::ErrorClass::Transient);
    }
    pve.set_outage(None);
    w.wait_all(Some(Phase::Ready), T).await;
    assert_eq!(pve.clone_calls(), 6, "nothing recreated");
    assert_eq!(pve.destroy_calls(), 0, "nothing destroyed");
    assert_clean(&w).await;
    ctl.stop().await;
}
