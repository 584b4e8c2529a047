//! Randomized scenarios (property-based, seeded): random interleavings of creates, spec
//! changes (resources, container power, the game process, game and container restarts),
//! deletes, forced reconciles, faults switched on and off and controller crashes
//! and restarts. At the end of each run every fault is cleared and the fleet must converge to
//! exactly what was declared.
//!
//! Each case prints `case i seed=...`; replay one with `ZLH_SEED=<that seed> ZLH_CASES=1`.
//! `ZLH_CASES` sets the number of cases (default 3; `ZLH_SOAK=1`: 20 cases of 3× the steps).

use zlh_tests::chaos;

use chaos::{assert_fleet, mixed, phases, rng, seed, soak};
use model::store::Store;
use model::{Kind, Phase, Power, Process, Resources, ServerId};
use proxmox_client::sim::Outage;
use rand::Rng;
use rand::rngs::StdRng;
use std::time::Duration;
use zlh_tests::world::Running;
use zlh_tests::{World, WorldOptions};

#[derive(Debug, Clone, Copy)]
enum Fault {
    PveErrors,
    PveOutage,
    CloudflareErrors,
    TechnitiumDown,
    ProxyRestart,
    AgentRestart,
}

const FAULTS: [Fault; 6] = [
    Fault::PveErrors,
    Fault::PveOutage,
    Fault::CloudflareErrors,
    Fault::TechnitiumDown,
    Fault::ProxyRestart,
    Fault::AgentRestart,
];

async fn fault_on(w: &World, f: Fault, rng: &mut StdRng) {
    let pve = w.sims.pve.as_ref().unwrap();
    match f {
        Fault::PveErrors => {
            pve.fail_rate(
                "*",
                0.15,
                500,
                "failed to read from command socket: Connection reset by peer",
            );
            pve.fail_rate("*", 0.15, 596, "Connection timed out");
        }
        Fault::PveOutage => pve.set_outage(Some(Outage::Status {
            code: 595,
            message: "Connection refused".into(),
        })),
        Fault::CloudflareErrors => w
            .sims
            .cloudflare
            .as_ref()
            .unwrap()
            .faults()
            .set_error_rate("*", 0.4, 429),
        Fault::TechnitiumDown => w
            .sims
            .technitium
            .as_ref()
            .unwrap()
            .set_outage(true)
            .await
            .unwrap(),
        Fault::ProxyRestart => w.sims.velocity.as_ref().unwrap().restart(),
        Fault::AgentRestart => {
            let servers = w.servers().await;
            let with_vmid: Vec<u32> = servers.iter().filter_map(|s| s.reserved_vmid).collect();
            if !with_vmid.is_empty() {
                let vm = with_vmid[rng.random_range(0..with_vmid.len())];
                w.sims.agent.as_ref().unwrap().restart_agent(pve.ip_for(vm));
            }
        }
    }
}

async fn faults_off(w: &World) {
    w.sims.pve.as_ref().unwrap().clear_faults();
    let cf = w.sims.cloudflare.as_ref().unwrap();
    cf.faults().clear();
    cf.set_outage(false).await.unwrap();
    let t = w.sims.technitium.as_ref().unwrap();
    t.faults().clear();
    t.set_outage(false).await.unwrap();
}

fn random_spec_change(spec: &model::ServerSpec, rng: &mut StdRng) -> model::ServerSpec {
    let mut s = spec.clone();
    let game = s.kind == Kind::Game;
    match rng.random_range(0..6) {
        // Power and restarts, as the power route changes them.
        3 if game => {
            s.process = Some(if s.process() == Process::Running {
                Process::Stopped
            } else {
                Process::Running
            })
        }
        4 if game => s.restarts.game += 1,
        5 => s.restarts.container += 1,
        0 => {
            s.resources = Resources {
                cores: rng.random_range(1..=4),
                memory_mib: [1024, 2048, 3072, 4096][rng.random_range(0..4)],
                disk_gib: s.resources.disk_gib,
            }
        }
        1 => {
            s.power = if s.power == Power::Running {
                Power::Stopped
            } else {
                Power::Running
            }
        }
        _ => {
            s.resources.cores = rng.random_range(1..=4);
            s.power = if rng.random_bool(0.5) {
                Power::Running
            } else {
                Power::Stopped
            };
        }
    }
    s
}

/// One run: `steps` random operations, then faults off, converge, check.
async fn run_case(case_seed: u64, steps: usize) {
    let mut rng = rng(case_seed);
    let w = World::new(WorldOptions {
        workers: 8,
        ..WorldOptions::default()
    })
    .await;
    let mut ctl: Option<Running> = Some(w.start_controller());
    let mut deleted: Vec<ServerId> = Vec::new();
    let mut created = 0usize;
    let mut log = Vec::new();
    for step in 0..steps {
        let live: Vec<_> = w
            .servers()
            .await
            .into_iter()
            .filter(|s| !s.is_deleting())
            .collect();
        let op = rng.random_range(0..100);
        let what = match op {
            0..=24 if live.len() < 14 => {
                let id = w.create("u000", mixed(rng.random_range(0..30))).await;
                created += 1;
                format!("create {id}")
            }
            25..=39 if !live.is_empty() => {
                let s = &live[rng.random_range(0..live.len())];
                let spec = random_spec_change(&s.spec, &mut rng);
                let r = w.store.update_spec(s.id, spec.clone(), None).await;
                format!(
                    "update {} cores={} mem={} power={:?}: {}",
                    s.id,
                    spec.resources.cores,
                    spec.resources.memory_mib,
                    spec.power,
                    if r.is_ok() { "ok" } else { "refused" }
                )
            }
            40..=49 if !live.is_empty() => {
                let s = &live[rng.random_range(0..live.len())];
                w.store.request_deletion(s.id).await.unwrap();
                deleted.push(s.id);
                format!("delete {}", s.id)
            }
            50..=59 if !live.is_empty() => {
                let s = &live[rng.random_range(0..live.len())];
                let retry = rng.random_bool(0.3);
                let _ = w.store.request_reconcile(s.id, retry).await;
                format!("reconcile {} retry={retry}", s.id)
            }
            60..=74 => {
                let f = FAULTS[rng.random_range(0..FAULTS.len())];
                fault_on(&w, f, &mut rng).await;
                format!("fault {f:?}")
            }
            75..=84 => {
                faults_off(&w).await;
                "faults off".to_string()
            }
            _ => {
                if let Some(c) = ctl.take() {
                    c.kill();
                }
                if rng.random_bool(0.5) {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
                }
                ctl = Some(w.start_controller());
                "controller killed and restarted".to_string()
            }
        };
        log.push(format!("step {step}: {what}"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..200))).await;
    }
    faults_off(&w).await;
    eprintln!(
        "seed={case_seed}: {created} created, {} deleted; before convergence {:?}",
        deleted.len(),
        phases(&w).await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let agent = w.sims.agent.as_ref().unwrap();
    // The game process as the spec asks. An Agent restarted while its server was Ready says
    // nothing to anyone: the status stays Ready until the resync's health probe finds the
    // game silent, so "all Ready" alone can be seen before that repair has started.
    let process_as_asked = |s: &model::Server| {
        let running_game = s.spec.kind == Kind::Game && s.spec.power == Power::Running;
        !running_game
            || s.status
                .ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .is_some_and(|ip| {
                    let want = match s.spec.process() {
                        Process::Running => edge_client::AgentState::Running,
                        Process::Stopped => edge_client::AgentState::Stopped,
                    };
                    agent.state(ip) == Some(want)
                })
    };
    loop {
        let servers = w.servers().await;
        // Ready, and the world as the invariants say: a Ready server whose Agent is being
        // reinstalled (an Agent restart) repairs the rest of its edge only afterwards.
        if servers
            .iter()
            .all(|s| s.phase().0 == Phase::Ready && process_as_asked(s))
            && zlh_tests::check_invariants(&w).await.is_empty()
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("operations (seed={case_seed}):\n{}", log.join("\n"));
            // Names the servers not Ready, if any; else the rest did not converge.
            w.wait_all(Some(Phase::Ready), Duration::ZERO).await;
            let off: Vec<_> = servers
                .iter()
                .filter(|s| !process_as_asked(s))
                .map(|s| s.id)
                .collect();
            panic!(
                "seed={case_seed}: not converged in 60 s: game process not as asked on {off:?}, \
                 invariants {:?}",
                zlh_tests::check_invariants(&w).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_fleet(&w, &deleted, 0, &format!("seed={case_seed}")).await;
    // Spec changes took effect: every container has the resources and power its spec says.
    let pve = w.sims.pve.as_ref().unwrap();
    for s in w.servers().await {
        let vm = s.reserved_vmid.unwrap();
        let ct = pve.container(vm).expect("container");
        assert_eq!(
            (ct.cores, ct.memory),
            (
                s.spec.resources.cores,
                u64::from(s.spec.resources.memory_mib)
            ),
            "seed={case_seed}: {} container {vm} resources differ from its spec",
            s.id
        );
        assert_eq!(
            ct.status == proxmox_client::CtState::Running,
            s.spec.power == Power::Running,
            "seed={case_seed}: {} power differs",
            s.id
        );
        if s.spec.kind == Kind::Game && s.spec.power == Power::Running {
            assert!(
                s.status.ip.is_some(),
                "seed={case_seed}: {} Ready without an IP",
                s.id
            );
            // The game process is as the latest spec says, and every restart it asked for
            // was carried out.
            let ip = s.status.ip.as_deref().unwrap().parse().unwrap();
            let want = match s.spec.process() {
                Process::Running => edge_client::AgentState::Running,
                Process::Stopped => edge_client::AgentState::Stopped,
            };
            assert_eq!(
                w.sims.agent.as_ref().unwrap().state(ip),
                Some(want),
                "seed={case_seed}: {} game process differs from its spec",
                s.id
            );
            assert_eq!(
                s.status.observed_restarts.container, s.spec.restarts.container,
                "seed={case_seed}: {} container restarts not carried out",
                s.id
            );
            if s.spec.process() == Process::Running {
                assert_eq!(
                    s.status.observed_restarts.game, s.spec.restarts.game,
                    "seed={case_seed}: {} game restarts not carried out",
                    s.id
                );
            }
        }
    }
    if let Some(c) = ctl {
        c.stop().await;
    }
}

/// Proves that no interleaving of user actions, backend faults and controller crashes
/// leaves the fleet different from what was declared once the faults stop: every live server
/// Ready with the resources and power of its latest spec, every deleted one gone without a
/// trace, no server cloned twice, nothing leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_converge() {
    let base = seed("random_interleavings_converge");
    let cases: u64 = std::env::var("ZLH_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if soak() { 20 } else { 3 });
    let steps = if soak() { 120 } else { 40 };
    for i in 0..cases {
        let case_seed = base.wrapping_add(i);
        eprintln!("case {i} seed={case_seed} (replay: ZLH_SEED={case_seed} ZLH_CASES=1)");
        run_case(case_seed, steps).await;
    }
}
