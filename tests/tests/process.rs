//! End-to-end behaviour of the game process against the simulators: a stop typed at the
//! console is repaired, a stop the spec asks for is kept, restarts happen once per request
//! (twice at most across a crash), crashes are started again and fail visibly in the end, an
//! Agent state zlh has never seen degrades instead of failing, and a container restart goes
//! through Proxmox's reboot task. Each test states the promise it checks.

use edge_client::AgentState;
use edge_client::sim::{AgentPower, DEFAULT_CRASH_MESSAGE};
use model::store::Store;
use model::{ConditionType, Phase, Process, Server, ServerId, ServerSpec, Variant};
use std::net::Ipv4Addr;
use std::time::Duration;
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(60);

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

async fn server(w: &World, id: ServerId) -> Server {
    w.store
        .get_server(id)
        .await
        .unwrap()
        .expect("server exists")
}

async fn events(w: &World, id: ServerId) -> Vec<String> {
    let evs = w.store.list_events(id, 200).await.unwrap();
    evs.into_iter().map(|e| e.reason).collect()
}

async fn ip_of(w: &World, id: ServerId) -> Ipv4Addr {
    server(w, id)
        .await
        .status
        .ip
        .expect("a Ready server has an IP")
        .parse()
        .unwrap()
}

fn power_count(w: &World, ip: Ipv4Addr, what: AgentPower) -> usize {
    let agent = w.sims.agent.as_ref().unwrap();
    agent
        .power_requests(ip)
        .iter()
        .filter(|p| **p == what)
        .count()
}

fn agent_state(w: &World, ip: Ipv4Addr) -> Option<AgentState> {
    w.sims.agent.as_ref().unwrap().state(ip)
}

/// Change the spec as the API would (generation + 1).
async fn update(w: &World, id: ServerId, change: impl FnOnce(&mut ServerSpec)) {
    let mut spec = server(w, id).await.spec;
    change(&mut spec);
    w.store.update_spec(id, spec, None).await.unwrap();
}

async fn ready(w: &World, id: ServerId) -> bool {
    let s = server(w, id).await;
    s.phase().0 == Phase::Ready
}

async fn assert_clean(w: &World) {
    let v = check_invariants(w).await;
    assert!(v.is_empty(), "fleet invariants:\n{}", v.join("\n"));
}

/// A player types `stop` at the console of a Ready server: the game is started again (drift
/// repair), and the server never ends `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_typed_at_the_console_is_repaired() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let ip = ip_of(&w, id).await;
    assert!(w.sims.agent.as_ref().unwrap().console_stop(ip));
    w.wait_for("the game started again", T, async || {
        power_count(&w, ip, AgentPower::Start) >= 1
            && agent_state(&w, ip) == Some(AgentState::Running)
            && ready(&w, id).await
    })
    .await;
    let s = server(&w, id).await;
    assert!(
        s.status.failure.is_none(),
        "never failed: {:?}",
        s.status.failure
    );
    let evs = events(&w, id).await;
    assert!(evs.contains(&"GameStarted".to_string()), "{evs:?}");
    assert!(!evs.contains(&"Failed".to_string()), "{evs:?}");
    assert_clean(&w).await;
    ctl.stop().await;
}

/// `process: stopped` is kept: Ready with `ProcessRunning=False StoppedAsAsked`, not started by
/// a new controller, and stopped again after a container reboot (whose Agent comes back idle,
/// is sent its config and starts the game as part of its install).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_game_stays_stopped_across_a_controller_restart_and_a_reboot() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let spec = ServerSpec {
        process: Some(Process::Stopped),
        ..paper()
    };
    let id = w.create("u1", spec).await;
    w.wait_for("stopped as asked", T, async || {
        let s = server(&w, id).await;
        let stopped = s
            .status
            .condition(ConditionType::ProcessRunning)
            .is_some_and(|c| c.reason == "StoppedAsAsked");
        stopped && s.phase().0 == Phase::Ready
    })
    .await;
    let ip = ip_of(&w, id).await;
    assert_eq!(agent_state(&w, ip), Some(AgentState::Stopped));
    let starts = power_count(&w, ip, AgentPower::Start);

    ctl.kill();
    let ctl = w.start_controller();
    let reconciles = || {
        ctl.controller
            .reconciled
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Every server is reconciled once at start; then a resync or two.
    w.wait_for("the new controller looked", T, async || reconciles() >= 3)
        .await;
    assert_eq!(
        agent_state(&w, ip),
        Some(AgentState::Stopped),
        "still stopped"
    );
    assert_eq!(
        power_count(&w, ip, AgentPower::Start),
        starts,
        "never started"
    );

    update(&w, id, |s| s.restarts.container += 1).await;
    let pve = w.sims.pve.as_ref().unwrap();
    w.wait_for("rebooted and stopped again", T, async || {
        let s = server(&w, id).await;
        s.status.observed_restarts.container == 1
            && s.status.observed_generation == s.generation
            && s.phase().0 == Phase::Ready
            && agent_state(&w, ip) == Some(AgentState::Stopped)
    })
    .await;
    assert_eq!(pve.requests_for("reboot"), 1, "one Proxmox reboot");
    assert!(
        events(&w, id)
            .await
            .contains(&"ContainerRebooted".to_string())
    );
    assert_clean(&w).await;
    ctl.stop().await;
}

/// A restart request restarts the game once, even when the controller is killed right after
/// the Agent's `POST /restart`: at least once, and at most twice (the documented double of a
/// crash between the call and its record).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_happens_once_or_at_most_twice_across_a_kill() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let ip = ip_of(&w, id).await;
    update(&w, id, |s| s.restarts.game += 1).await;
    w.wait_for("the Agent asked to restart", T, async || {
        power_count(&w, ip, AgentPower::Restart) >= 1
    })
    .await;
    ctl.kill();
    let ctl = w.start_controller();
    w.wait_for("the restart recorded, the game running", T, async || {
        let s = server(&w, id).await;
        s.status.observed_restarts.game == 1
            && s.phase().0 == Phase::Ready
            && agent_state(&w, ip) == Some(AgentState::Running)
    })
    .await;
    let n = power_count(&w, ip, AgentPower::Restart);
    assert!((1..=2).contains(&n), "restarted {n} times");
    assert!(events(&w, id).await.contains(&"GameRestarted".to_string()));
    assert_clean(&w).await;
    ctl.stop().await;
}

/// A crashed game is started again (not reinstalled first); after `agent_attempts` crashes
/// in a row the server is `failed` with the Agent's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_game_is_started_again_and_fails_after_the_attempts() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let ip = ip_of(&w, id).await;
    let agent = w.sims.agent.as_ref().unwrap();
    let configs = agent.configs_received(ip);
    assert!(agent.crash(ip));
    w.wait_for("the crashed game started again", T, async || {
        power_count(&w, ip, AgentPower::Start) >= 1
            && agent_state(&w, ip) == Some(AgentState::Running)
            && ready(&w, id).await
    })
    .await;
    assert_eq!(
        agent.configs_received(ip),
        configs,
        "started, not reinstalled"
    );
    assert!(events(&w, id).await.contains(&"GameCrashed".to_string()));

    agent.set_crash_on_start(ip, true);
    assert!(agent.crash(ip));
    w.wait_all(Some(Phase::Failed), T).await;
    let s = server(&w, id).await;
    let f = s.status.failure.expect("a terminal failure");
    assert_eq!(f.step, "start-game");
    assert!(
        f.message.contains(DEFAULT_CRASH_MESSAGE),
        "the Agent's message: {}",
        f.message
    );
    ctl.stop().await;
}

/// An Agent state zlh has never seen (a newer Agent) degrades the server instead of failing
/// it, and the server recovers once the Agent answers a known state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_agent_state_degrades_and_recovers() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let ip = ip_of(&w, id).await;
    let agent = w.sims.agent.as_ref().unwrap();
    agent.answer_unknown_state(ip, Some("hibernating"));
    // The game stops answering, so the Agent is asked why.
    assert!(agent.process_exit(ip));
    w.wait_for("Degraded by the Agent", T, async || {
        let s = server(&w, id).await;
        s.phase().0 == Phase::Degraded
            && s.status
                .condition(ConditionType::Degraded)
                .is_some_and(|c| c.reason == "AgentUnavailable")
    })
    .await;
    assert!(
        server(&w, id).await.status.failure.is_none(),
        "never failed"
    );
    agent.answer_unknown_state(ip, None);
    w.wait_for("recovered", T, async || {
        ready(&w, id).await && agent_state(&w, ip) == Some(AgentState::Running)
    })
    .await;
    assert_clean(&w).await;
    ctl.stop().await;
}

/// A container restart goes through Proxmox's reboot task (its UPID tracked like a start),
/// and the server is Ready again afterwards, its game answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_restart_goes_through_the_proxmox_reboot_task() {
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let id = w.create("u1", paper()).await;
    w.wait_all(Some(Phase::Ready), T).await;
    let ip = ip_of(&w, id).await;
    let agent = w.sims.agent.as_ref().unwrap();
    // Configs sent to any Agent (a rebooted container's Agent starts counting afresh).
    let configs = || {
        agent
            .requests()
            .iter()
            .filter(|r| r.uri == "/config")
            .count()
    };
    let sent = configs();
    update(&w, id, |s| s.restarts.container += 1).await;
    let pve = w.sims.pve.as_ref().unwrap();
    // The Agent comes back idle from the reboot and is sent its config again.
    w.wait_for("rebooted, reinstalled and Ready", T, async || {
        let s = server(&w, id).await;
        s.status.observed_restarts.container == 1
            && configs() > sent
            && s.status.in_flight_task.is_none()
            && s.status.observed_generation == s.generation
            && s.phase().0 == Phase::Ready
            && agent_state(&w, ip) == Some(AgentState::Running)
    })
    .await;
    assert_eq!(pve.requests_for("reboot"), 1, "one reboot");
    assert!(
        events(&w, id)
            .await
            .contains(&"ContainerRebooted".to_string())
    );
    assert_clean(&w).await;
    ctl.stop().await;
}
