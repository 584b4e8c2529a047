//! Storms: a provisioned fleet lives through a backend misbehaving for a while (30 % transient
//! Proxmox errors, a full Proxmox outage, Cloudflare 429s, Technitium down, the proxy
//! forgetting its registrations, Agents restarting) while the controller keeps reconciling
//! and is poked to requeue. In every storm: zero containers destroyed or recreated by the
//! controller (counted by the simulator), no server ever `failed` (a transient error is
//! never a failure), servers `Degraded` while the storm hits a backend they consult (or Ready
//! where they do not consult it), and the fleet invariants hold once the storm ends.
//!
//! Storms last `STORM` of real time (≈ 10 simulated minutes at time scale 200, longer than
//! the engine's maximum backoff); `ZLH_SOAK=1` makes them 5× longer and fleets bigger.

use zlh_tests::chaos;

use chaos::{assert_fleet, converge, mixed, poke_all, soak};
use model::{CloneMode, Kind, Phase, ServerId};
use proxmox_client::sim::Outage;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use zlh_tests::world::Running;
use zlh_tests::{World, WorldOptions};

const CONVERGE: Duration = Duration::from_secs(60);

fn storm_len() -> Duration {
    if soak() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(3)
    }
}

/// How many times its length a storm may go on while the test waits for what it asserts.
const STORM_PATIENCE: u32 = 5;

fn fleet_size() -> usize {
    if soak() { 30 } else { 12 }
}

/// A Ready fleet of `n` servers (two game for each dev), invariants checked.
async fn ready_fleet(n: usize) -> (World, Running, Vec<ServerId>) {
    ready_fleet_cloned(n, CloneMode::Full).await
}

/// [`ready_fleet`], its templates cloned in `mode`.
async fn ready_fleet_cloned(n: usize, mode: CloneMode) -> (World, Running, Vec<ServerId>) {
    let w = World::new(WorldOptions {
        workers: 8,
        ..WorldOptions::default()
    })
    .await;
    let mut cfg = w.cfg.clone();
    for t in &mut cfg.templates {
        t.clone_mode = mode;
    }
    let ctl = w.start_controller_with(cfg);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(w.create("u000", mixed(i)).await);
    }
    converge(&w, CONVERGE).await;
    assert_fleet(&w, &[], 0, "before the storm").await;
    (w, ctl, ids)
}

/// What was seen during a storm: per server, every phase it showed.
#[derive(Default)]
struct Seen {
    phases: HashMap<ServerId, HashSet<Phase>>,
}

impl Seen {
    fn ids_in(&self, p: Phase) -> Vec<ServerId> {
        self.phases
            .iter()
            .filter(|(_, ps)| ps.contains(&p))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Run the storm for `len`: every 50 ms sample every server's phase, every 100 ms request a
/// reconcile of everything (as on-call would). Throughout: no container destroyed or cloned,
/// no server `failed`, `queued` or `deleting`.
async fn weather(w: &World, len: Duration) -> Seen {
    weather_until(w, len, |_| true).await
}

/// [`weather`], and on past `len` (up to [`STORM_PATIENCE`] times it) until `seen` holds:
/// on a busy machine the controller may make fewer Proxmox calls in `len` than it needs to
/// meet the storm, and the test waits for what it asserts instead of hoping for it.
async fn weather_until(w: &World, len: Duration, seen_enough: impl Fn(&Seen) -> bool) -> Seen {
    let pve = w.sims.pve.as_ref().unwrap();
    let clones = pve.clone_calls();
    let destroys = pve.destroy_calls();
    let mut seen = Seen::default();
    let start = tokio::time::Instant::now();
    let (end, give_up) = (start + len, start + len * STORM_PATIENCE);
    let mut tick = 0u32;
    loop {
        let now = tokio::time::Instant::now();
        if now >= give_up || (now >= end && seen_enough(&seen)) {
            break;
        }
        if tick.is_multiple_of(2) {
            poke_all(w).await;
        }
        tick += 1;
        for s in w.servers().await {
            let (p, _) = s.phase();
            assert!(
                !matches!(p, Phase::Failed | Phase::Queued | Phase::Deleting),
                "{} became {p:?} during a storm (last error {:?}, failure {:?})",
                s.id,
                s.status.last_error,
                s.status.failure
            );
            seen.phases.entry(s.id).or_default().insert(p);
        }
        assert_eq!(
            pve.destroy_calls(),
            destroys,
            "a container was destroyed during a storm"
        );
        assert_eq!(
            pve.clone_calls(),
            clones,
            "a container was cloned during a storm"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

/// After the storm: converged, invariants, and still exactly one clone per server and no
/// destroy at all.
async fn after_storm(w: &World, n: usize, what: &str) {
    converge(w, CONVERGE).await;
    assert_fleet(w, &[], 0, what).await;
    let pve = w.sims.pve.as_ref().unwrap();
    assert_eq!(pve.destroy_calls(), 0, "{what}: containers destroyed");
    assert_eq!(pve.clone_calls(), n as u64, "{what}: containers recreated");
    let ours = pve.containers().into_iter().filter(|c| !c.template).count();
    assert_eq!(ours, n, "{what}: containers present");
}

async fn kinds(w: &World) -> HashMap<ServerId, Kind> {
    w.servers()
        .await
        .into_iter()
        .map(|s| (s.id, s.spec.kind))
        .collect()
}

/// ~30 % of all Proxmox requests fail with the transient errors seen in production: command
/// socket reset, config lock timeout, 596 proxy timeout (about 11 % each).
fn proxmox_storm(pve: &proxmox_client::sim::PveSimHandle) {
    for (code, message) in [
        (
            500,
            "failed to read from command socket: Connection reset by peer",
        ),
        (
            500,
            "can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout",
        ),
        (596, "Connection timed out"),
    ] {
        pve.fail_rate("*", 0.11, code, message);
    }
}

/// Proxmox answers ~30 % of all requests with the transient 500s seen in production (command
/// socket reset, config lock timeout, 596 proxy timeout): servers that need Proxmox show
/// `Degraded`, nothing is destroyed or re-cloned, and the fleet is whole afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_transient_500s_at_30_percent() {
    transient_500s_at_30_percent(CloneMode::Full).await;
}

/// The same on a fleet built from linked clones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_transient_500s_at_30_percent_linked_clones() {
    transient_500s_at_30_percent(CloneMode::Linked).await;
}

async fn transient_500s_at_30_percent(mode: CloneMode) {
    let n = fleet_size();
    let (w, ctl, _) = ready_fleet_cloned(n, mode).await;
    let pve = w.sims.pve.as_ref().unwrap();
    proxmox_storm(pve);
    let seen = weather_until(&w, storm_len(), |s| !s.ids_in(Phase::Degraded).is_empty()).await;
    assert!(
        !seen.ids_in(Phase::Degraded).is_empty(),
        "{mode:?}: no server showed Degraded during 30 % Proxmox errors"
    );
    pve.clear_faults();
    after_storm(&w, n, &format!("{mode:?}: after 30 % Proxmox errors")).await;
    ctl.stop().await;
}

/// Proxmox is entirely unreachable (503 on everything, then connections dropped): every
/// server shows `Degraded` and keeps its last known status (VMID, IP); nothing is destroyed;
/// everything is Ready again when Proxmox returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_full_outage() {
    let n = fleet_size();
    let (w, ctl, ids) = ready_fleet(n).await;
    let before: HashMap<ServerId, (Option<u32>, Option<String>)> = w
        .servers()
        .await
        .into_iter()
        .map(|s| (s.id, (s.reserved_vmid, s.status.ip.clone())))
        .collect();
    let pve = w.sims.pve.as_ref().unwrap();
    pve.set_outage(Some(Outage::Status {
        code: 503,
        message: "Service Unavailable".into(),
    }));
    let mut seen = weather(&w, storm_len() / 2).await;
    pve.set_outage(Some(Outage::Refuse));
    let later = weather(&w, storm_len() / 2).await;
    for (id, ps) in later.phases {
        seen.phases.entry(id).or_default().extend(ps);
    }
    let degraded: HashSet<ServerId> = seen.ids_in(Phase::Degraded).into_iter().collect();
    let never: Vec<&ServerId> = ids.iter().filter(|id| !degraded.contains(id)).collect();
    assert!(
        never.is_empty(),
        "servers never Degraded during a full Proxmox outage: {never:?}"
    );
    for s in w.servers().await {
        assert_eq!(
            (s.reserved_vmid, s.status.ip.clone()),
            before[&s.id],
            "{}: last known VMID/IP lost during the outage",
            s.id
        );
    }
    pve.clear_faults();
    after_storm(&w, n, "after a full Proxmox outage").await;
    ctl.stop().await;
}

/// Cloudflare answers half of all requests with 429: game servers (which publish there)
/// show `Degraded`, dev servers (which do not) stay Ready throughout; afterwards the records
/// are right in both DNS providers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_429s() {
    let n = fleet_size();
    let (w, ctl, _) = ready_fleet(n).await;
    let kinds = kinds(&w).await;
    let cf = w.sims.cloudflare.as_ref().unwrap();
    cf.faults().set_error_rate("*", 0.5, 429);
    let seen = weather(&w, storm_len()).await;
    let degraded = seen.ids_in(Phase::Degraded);
    assert!(
        !degraded.is_empty(),
        "no game server showed Degraded during Cloudflare 429s"
    );
    assert!(
        degraded.iter().all(|id| kinds[id] == Kind::Game),
        "a dev server (no DNS) was Degraded by Cloudflare 429s"
    );
    for (id, ps) in &seen.phases {
        if kinds[id] == Kind::Dev {
            assert_eq!(
                ps,
                &HashSet::from([Phase::Ready]),
                "{id}: dev server left Ready during Cloudflare 429s"
            );
        }
    }
    cf.faults().clear();
    after_storm(&w, n, "after Cloudflare 429s").await;
    ctl.stop().await;
}

/// Technitium refuses connections: every game server shows `Degraded`, dev servers stay
/// Ready; afterwards all records are back and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technitium_down() {
    let n = fleet_size();
    let (w, ctl, _) = ready_fleet(n).await;
    let kinds = kinds(&w).await;
    let t = w.sims.technitium.as_ref().unwrap();
    t.set_outage(true).await.unwrap();
    let seen = weather(&w, storm_len()).await;
    let degraded: HashSet<ServerId> = seen.ids_in(Phase::Degraded).into_iter().collect();
    for (id, k) in &kinds {
        match k {
            Kind::Game => assert!(
                degraded.contains(id),
                "{id}: game server never Degraded while Technitium was down"
            ),
            Kind::Dev => assert_eq!(
                seen.phases[id],
                HashSet::from([Phase::Ready]),
                "{id}: dev server left Ready while Technitium was down"
            ),
        }
    }
    t.set_outage(false).await.unwrap();
    after_storm(&w, n, "after Technitium was down").await;
    ctl.stop().await;
}

/// The Velocity proxy restarts three times and forgets every registration each time: the
/// controller notices (resync) and registers every game server again, without touching
/// containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_restart_forgets_registrations() {
    let n = fleet_size();
    let (w, ctl, _) = ready_fleet(n).await;
    let games = kinds(&w)
        .await
        .values()
        .filter(|k| **k == Kind::Game)
        .count();
    let v = w.sims.velocity.as_ref().unwrap();
    assert_eq!(v.registrations().len(), games);
    for _ in 0..3 {
        v.restart();
        assert!(v.registrations().is_empty(), "the proxy sim did not forget");
        weather(&w, storm_len() / 3).await;
    }
    w.wait_for("every game server registered again", CONVERGE, async || {
        v.registrations().len() == games
    })
    .await;
    after_storm(&w, n, "after proxy restarts").await;
    ctl.stop().await;
}

/// Every container's Agent restarts (back to `idle`, config forgotten): the controller sends
/// the config again to each one and the fleet is Ready again, with no container recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarts_get_config_again() {
    let n = fleet_size();
    let (w, ctl, _) = ready_fleet(n).await;
    let agent = w.sims.agent.as_ref().unwrap().clone();
    let pve = w.sims.pve.as_ref().unwrap();
    let ips: Vec<_> = w
        .servers()
        .await
        .iter()
        .map(|s| pve.ip_for(s.reserved_vmid.unwrap()))
        .collect();
    let before: Vec<u32> = ips.iter().map(|ip| agent.configs_received(*ip)).collect();
    assert!(before.iter().all(|c| *c >= 1), "every Agent got a config");
    for ip in &ips {
        agent.restart_agent(*ip);
        assert!(
            agent.last_config(*ip).is_none(),
            "the Agent sim did not forget"
        );
    }
    weather(&w, storm_len()).await;
    w.wait_for("every Agent got its config again", CONVERGE, async || {
        ips.iter()
            .zip(&before)
            .all(|(ip, b)| agent.configs_received(*ip) > *b && agent.last_config(*ip).is_some())
    })
    .await;
    after_storm(&w, n, "after Agent restarts").await;
    ctl.stop().await;
}

/// Servers declared *during* a 30 % Proxmox error storm converge after it: each gets exactly
/// one clone (a failed clone request never leads to a second clone onto the same VMID), no
/// container is destroyed, and the invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_during_a_storm_converges_after_it() {
    provisioning_during_a_storm(CloneMode::Full).await;
}

/// The same with linked clones (seconds per clone, so the storm hits many more of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_during_a_storm_converges_after_it_linked_clones() {
    provisioning_during_a_storm(CloneMode::Linked).await;
}

async fn provisioning_during_a_storm(mode: CloneMode) {
    let n = fleet_size();
    let w = World::new(WorldOptions {
        workers: 8,
        ..WorldOptions::default()
    })
    .await;
    let mut cfg = w.cfg.clone();
    for t in &mut cfg.templates {
        t.clone_mode = mode;
    }
    let ctl = w.start_controller_with(cfg);
    let pve = w.sims.pve.as_ref().unwrap();
    proxmox_storm(pve);
    for i in 0..n {
        w.create("u000", mixed(i)).await;
    }
    let end = tokio::time::Instant::now() + storm_len();
    while tokio::time::Instant::now() < end {
        poke_all(&w).await;
        for s in w.servers().await {
            assert_ne!(
                s.phase().0,
                Phase::Failed,
                "{}: failed on transient errors: {:?}",
                s.id,
                s.status.failure
            );
        }
        assert_eq!(pve.destroy_calls(), 0, "destroyed during a storm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pve.clear_faults();
    after_storm(&w, n, "provisioned during a storm").await;
    for s in w.servers().await {
        let vm = s.reserved_vmid.unwrap();
        assert_eq!(
            pve.clone_calls_for(vm),
            1,
            "{} ({mode:?}): VMID {vm} cloned twice",
            s.id
        );
    }
    ctl.stop().await;
}
