//! The reconcile glue against in-memory fakes of every backend (no HTTP) and a scratch
//! SQLite store: each test states the calls made and the conditions written.

use super::*;
use crate::decide::{AgentObs, EdgeObs, PowerObs};
use crate::ownership::{FLEET_TAG, marker_tag};
use crate::reason as r;
use edge_client::dns::DnsProvider;
use edge_client::fake::{FakeAgent, FakeDns, FakeProxy};
use edge_client::{AgentState, Proxy};
use model::store::{NewServer, Store};
use model::{ErrorClass, ServerSpec, SystemClock, Variant};
use proxmox_client::fake::{FakeProxmox, PveCall, PveMethod, timeout};
use proxmox_client::{Proxmox, PveError};
use secrecy::SecretString;

/// Every backend in memory.
pub(crate) struct Fakes;

impl Stack for Fakes {
    type Pve = FakeProxmox;
    type Agent = FakeAgent;
    type Technitium = FakeDns;
    type Cloudflare = FakeDns;
    type Proxy = FakeProxy;
}

const TEMPLATE: u32 = 900;
const IP: &str = "127.1.0.7";

async fn context() -> Context<Fakes> {
    context_with(Arc::new(SystemClock)).await
}

async fn context_with(clock: Arc<dyn model::Clock>) -> Context<Fakes> {
    let dir = std::env::temp_dir().join(format!("zlh-reconcile-{}", ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/zlh.db", dir.display());
    let store = AnyStore::connect(&url, Arc::new(SystemClock))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let pve = FakeProxmox::new();
    pve.put_template("pve", TEMPLATE, "tpl-paper");
    let backends = Backends::<Fakes> {
        pve,
        agent: FakeAgent::new(),
        technitium: Some(FakeDns::new("technitium")),
        cloudflare: Some(FakeDns::new("cloudflare")),
        velocity: Some(FakeProxy::new()),
        admin_secret: SecretString::from("unit-test-secret".to_string()),
    };
    Context::new(store, backends, Config::default(), clock)
}

async fn game(ctx: &Context<Fakes>) -> ServerId {
    game_of(ctx, "u1").await
}

/// A game server of `customer` (the same spec for the same customer is the same server).
async fn game_of(ctx: &Context<Fakes>, customer: &str) -> ServerId {
    let new = NewServer {
        customer_id: customer.into(),
        spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
        idempotency: None,
        enforce_quota: false,
    };
    ctx.store.create_server(new).await.unwrap().server.id
}

async fn server(ctx: &Context<Fakes>, id: ServerId) -> Server {
    ctx.store
        .get_server(id)
        .await
        .unwrap()
        .expect("server exists")
}

async fn once(ctx: &Context<Fakes>, id: ServerId) -> Requeue {
    reconcile(ctx, id, None).await.expect("reconcile")
}

/// Event reasons, oldest first.
async fn event_reasons(ctx: &Context<Fakes>, id: ServerId) -> Vec<String> {
    let mut ev = ctx.store.list_events(id, 100).await.unwrap();
    ev.reverse();
    ev.into_iter().map(|e| e.reason).collect()
}

fn clones(pve: &FakeProxmox) -> usize {
    pve.calls()
        .iter()
        .filter(|c| c.method() == PveMethod::CloneCt)
        .count()
}

fn condition(s: &Server, t: ConditionType) -> (ConditionStatus, String, String) {
    let c = s.status.condition(t).expect("condition written");
    (c.status, c.reason.clone(), c.message.clone())
}

/// Whether another server could take the fleet-wide hold on the template now.
async fn template_free(ctx: &Context<Fakes>) -> bool {
    let other = ServerId::new().to_string();
    let name = format!("clone-template-{TEMPLATE}");
    let free = ctx
        .store
        .try_singleton(&name, &other, Duration::from_secs(60))
        .await
        .unwrap();
    if free {
        ctx.store.release_singleton(&name, &other).await.unwrap();
    }
    free
}

/// Proxmox did the clone but its answer was lost: the next reconcile finds the container at
/// the reserved VMID with our marker and adopts it instead of cloning again.
#[tokio::test]
async fn a_lost_clone_answer_is_adopted_not_cloned_again() {
    let ctx = context().await;
    let id = game(&ctx).await;
    ctx.backends
        .pve
        .lose_answer_next(PveMethod::CloneCt, timeout(PveMethod::CloneCt));

    assert_eq!(
        once(&ctx, id).await,
        Requeue::Backoff,
        "a lost answer is transient"
    );
    let s = server(&ctx, id).await;
    let e = s
        .status
        .last_error
        .as_ref()
        .expect("the lost answer is recorded");
    assert_eq!(
        (e.class, e.step.as_str()),
        (ErrorClass::Transient, "clone-container")
    );
    assert_eq!(clones(&ctx.backends.pve), 1);
    let vmid = s.reserved_vmid.expect("VMID reserved before the clone");

    let next = once(&ctx, id).await;
    assert_eq!(
        next,
        Requeue::After(ctx.timing().wait_poll),
        "the clone still runs: a wait"
    );
    let s = server(&ctx, id).await;
    assert_eq!(
        condition(&s, ConditionType::ContainerCreated),
        (
            ConditionStatus::False,
            r::CLONING.as_str().into(),
            format!("container {vmid} is locked (create)")
        )
    );
    assert_eq!(clones(&ctx.backends.pve), 1, "never cloned twice");

    ctx.backends.pve.finish_running_tasks();
    ctx.backends.pve.clear_calls();
    once(&ctx, id).await;
    let calls = ctx.backends.pve.calls();
    let tags = calls.iter().find_map(|c| match c {
        PveCall::UpdateCtConfig {
            vmid: v, update, ..
        } if *v == vmid => update.tags.clone(),
        _ => None,
    });
    let tags = tags.expect("the adopted clone is configured");
    assert!(tags.contains(&marker_tag(id)) && tags.contains(&FLEET_TAG.to_string()));
    // The template's 8 GiB rootfs is grown to the spec's size (a task) before the start.
    let disk = server(&ctx, id).await.spec.resources.disk_gib;
    assert!(calls.iter().any(
        |c| matches!(c, PveCall::ResizeCt { vmid: v, size_gib, .. } if *v == vmid && *size_gib == disk)
    ));
    ctx.backends.pve.finish_running_tasks();
    once(&ctx, id).await;
    let calls = ctx.backends.pve.calls();
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, PveCall::StartCt { vmid: v, .. } if *v == vmid))
    );
    assert_eq!(clones(&ctx.backends.pve), 0);
    let adopted = event_reasons(&ctx, id).await;
    let adopted = adopted
        .iter()
        .filter(|e| *e == r::EV_ADOPTED.as_str())
        .count();
    assert_eq!(adopted, 1, "one Adopted event");
}

/// The template's clone slot is given back however a clone ends, so the next server from
/// the same template is not held up.
#[tokio::test]
async fn the_template_slot_is_released_on_every_exit() {
    struct Case {
        reason: &'static str,
        /// What happens to the clone after the first reconcile started it (or tried to).
        end: fn(&FakeProxmox),
        before_clone: fn(&FakeProxmox),
        /// The clone ends in a later reconcile (else in the first one).
        later: bool,
    }
    let nothing = |_: &FakeProxmox| {};
    let cases = [
        Case {
            reason: "a clone call that fails transiently frees the template",
            before_clone: |p| p.fail_next(PveMethod::CloneCt, timeout(PveMethod::CloneCt)),
            end: nothing,
            later: false,
        },
        Case {
            reason: "a clone task that succeeds frees the template",
            before_clone: nothing,
            end: |p| {
                p.finish_running_tasks();
            },
            later: true,
        },
        Case {
            reason: "a clone task that fails frees the template",
            before_clone: nothing,
            end: |p| {
                for u in p.running_tasks() {
                    p.finish_task(&u, Err("clone failed: disk full".into()));
                }
            },
            later: true,
        },
    ];
    for c in cases {
        let ctx = context().await;
        let id = game(&ctx).await;
        (c.before_clone)(&ctx.backends.pve);
        once(&ctx, id).await;
        if c.later {
            assert!(
                ctx.slots.holds(id),
                "{}: the running clone holds the slot",
                c.reason
            );
            (c.end)(&ctx.backends.pve);
            once(&ctx, id).await;
        }
        assert!(!ctx.slots.holds(id), "{}: local slot", c.reason);
        assert!(template_free(&ctx).await, "{}: fleet-wide hold", c.reason);
    }
    // A server deleted from the store while it held the slot.
    let ctx = context().await;
    let id = game(&ctx).await;
    once(&ctx, id).await;
    assert!(ctx.slots.holds(id), "the running clone holds the slot");
    ctx.store.request_deletion(id).await.unwrap();
    let s = server(&ctx, id).await;
    ctx.store.archive_and_delete(s.id, None).await.unwrap();
    once(&ctx, id).await;
    assert!(!ctx.slots.holds(id), "a server that is gone holds nothing");
}

/// A backend error degrades the server with the backend's reason and message; transient and
/// locked ones back off, the kinds that do not fix themselves are retried only slowly.
#[tokio::test]
async fn a_backend_error_degrades_by_class() {
    struct Case {
        reason: &'static str,
        error: PveError,
        class: ErrorClass,
        next: fn(&ControllerSection) -> Requeue,
    }
    let endpoint = PveMethod::CtConfig.endpoint();
    let cases = [
        Case {
            reason: "a transient error backs off",
            error: PveError::http(endpoint, 500, "got timeout"),
            class: ErrorClass::Transient,
            next: |_| Requeue::Backoff,
        },
        Case {
            reason: "a lock held by someone else backs off",
            error: PveError::http(endpoint, 500, "CT is locked (backup)"),
            class: ErrorClass::Locked,
            next: |_| Requeue::Backoff,
        },
        Case {
            reason: "a revoked token is retried only every backoff_max",
            error: PveError::http(endpoint, 401, "authentication failure"),
            class: ErrorClass::Unauthorized,
            next: |t| Requeue::After(t.backoff_max),
        },
        Case {
            reason: "a request Proxmox calls invalid is retried only every backoff_max",
            error: PveError::http(endpoint, 400, "Parameter verification failed."),
            class: ErrorClass::Invalid,
            next: |t| Requeue::After(t.backoff_max),
        },
    ];
    for c in cases {
        let ctx = context().await;
        let id = game(&ctx).await;
        // The clone's end reads the config (a new server's clone needs no read first).
        assert!(matches!(once(&ctx, id).await, Requeue::After(_)), "cloned");
        ctx.backends.pve.finish_running_tasks();
        assert_eq!(c.error.class, c.class, "{}: the fixture's class", c.reason);
        let message = format!("proxmox: {}", c.error.message);
        ctx.backends
            .pve
            .fail_always(PveMethod::CtConfig, Some(c.error));
        assert_eq!(once(&ctx, id).await, (c.next)(ctx.timing()), "{}", c.reason);
        let s = server(&ctx, id).await;
        assert_eq!(
            condition(&s, ConditionType::Degraded),
            (
                ConditionStatus::True,
                r::PROXMOX_UNAVAILABLE.as_str().into(),
                message.clone()
            ),
            "{}",
            c.reason
        );
        let e = s.status.last_error.as_ref().expect("last error recorded");
        assert_eq!(
            (e.class, e.step.as_str(), e.message.as_str()),
            (c.class, "clone-container", message.as_str()),
            "{}",
            c.reason
        );
        assert_eq!(
            clones(&ctx.backends.pve),
            1,
            "{}: unknown is not absent (no second clone)",
            c.reason
        );
    }
}

/// A DNS write our own Cloudflare budget has no room for (nothing sent) is a wait for that
/// long, not an outage: no Degraded, no backoff, and the write goes through once there is room.
#[tokio::test]
async fn a_dns_write_over_the_budget_waits_for_room() {
    let ctx = context().await;
    let s = ready_game(&ctx).await;
    let (_, fqdn) = ctx.names(&ctx.desired(&s));
    let cloudflare = ctx.backends.cloudflare.as_ref().unwrap();
    cloudflare.set_records(&fqdn, Default::default());
    let wait = Duration::from_secs(7);
    let over = edge_client::EdgeError::over_budget(cloudflare.backend(), wait);
    cloudflare.fail_next(edge_client::fake::DnsMethod::Ensure, over);
    let technitium = ctx.backends.technitium.as_ref().unwrap();
    cloudflare.clear_calls();
    technitium.clear_calls();
    // (The fixture's rootfs is grown first: a resize task to wait out.)
    let mut next = Requeue::Now;
    for _ in 0..5 {
        next = once(&ctx, s.id).await;
        if !cloudflare.calls().is_empty() {
            break;
        }
        ctx.backends.pve.finish_running_tasks();
    }
    assert_eq!(next, Requeue::After(wait), "back when there is room");
    let after = server(&ctx, s.id).await;
    assert!(
        !after.status.is_true(ConditionType::Degraded),
        "our own budget is not an outage"
    );
    assert!(after.status.last_error.is_none(), "nor an error");
    assert!(
        !technitium
            .calls()
            .iter()
            .any(|c| matches!(c, edge_client::fake::DnsCall::Ensure { .. })),
        "Cloudflare is written first: the attempt it refused cost nothing else"
    );
    once(&ctx, s.id).await;
    assert!(
        !cloudflare.records(&fqdn).is_empty(),
        "published once there is room"
    );
}

/// A forced retry clears a terminal failure and acts again at once; without it, a failed
/// server is left alone.
#[tokio::test]
async fn a_forced_retry_clears_a_failure() {
    let ctx = context().await;
    let id = game(&ctx).await;
    let mut s = server(&ctx, id).await;
    s.status.failure = Some(model::status::Failure {
        step: "wait-for-agent".into(),
        message: "download failed".into(),
        at: ctx.clock.now(),
        generation: s.generation,
    });
    s.status.attempts = 3;
    ctx.store
        .write_status(id, &s.status, s.resource_version, None)
        .await
        .unwrap();

    assert_eq!(once(&ctx, id).await, Requeue::AwaitChange);
    assert!(
        ctx.backends.pve.calls().is_empty(),
        "a failed server is not acted on"
    );

    ctx.store.request_reconcile(id, true).await.unwrap();
    once(&ctx, id).await;
    let s = server(&ctx, id).await;
    assert!(s.status.failure.is_none(), "the failure is cleared");
    assert!(
        event_reasons(&ctx, id)
            .await
            .contains(&r::EV_RETRY_REQUESTED.as_str().to_string())
    );
    assert_eq!(clones(&ctx.backends.pve), 1, "and provisioning goes on");
}

/// A Ready game with everything in place, as a reconcile that saw it all writes it; the
/// fakes hold the same world, so a snapshot of them shows it.
async fn ready_game(ctx: &Context<Fakes>) -> Server {
    let id = game(ctx).await;
    let range = ctx.cfg.vmids.range(model::Kind::Game);
    let vmid = ctx.store.reserve_vmid(id, range, &[], false).await.unwrap();
    let s = server(ctx, id).await;
    let d = ctx.desired(&s);
    let mut config = proxmox_client::fake::lxc_config(d.hostname.as_deref().unwrap());
    config.tags = vec![FLEET_TAG.into(), marker_tag(id)];
    ctx.backends.pve.put_container("pve", vmid, config, true);
    let (hostname, fqdn) = ctx.names(&d);
    let edge = ctx.edge_target(&hostname, &fqdn);
    let b = &ctx.backends;
    b.technitium
        .as_ref()
        .unwrap()
        .ensure(&fqdn, &edge.records(false))
        .await
        .unwrap();
    b.cloudflare
        .as_ref()
        .unwrap()
        .ensure(&fqdn, &edge.records(true))
        .await
        .unwrap();
    b.velocity
        .as_ref()
        .unwrap()
        .ensure(&hostname, IP, edge.game_port)
        .await
        .unwrap();
    b.agent.set_state(IP, AgentState::Running);

    let c = crate::observe::container_obs(&ctx.backends.pve.ct_config("pve", vmid).await.unwrap());
    let obs = Observed {
        task: None,
        container: Some(Ok(Some(crate::decide::ContainerObs {
            cores: Some(d.cores),
            memory_mib: Some(d.memory_mib),
            swap_mib: Some(d.swap_mib),
            bridge: Some(d.bridge.clone()),
            rootfs_gib: Some(d.disk_gib),
            ..c
        }))),
        power: Some(Ok(PowerObs::Running)),
        ip: Some(Ok(Some(IP.into()))),
        agent: Some(Ok(AgentObs::RUNNING)),
        dns: Some(Ok(EdgeObs {
            desired_present: true,
            any_ours_present: true,
        })),
        proxy: Some(Ok(EdgeObs {
            desired_present: true,
            any_ours_present: true,
        })),
        slp: Some(Ok(true)),
        clone_slot: None,
        agent_detail: None,
        ..Observed::default()
    };
    let mut status = s.status.clone();
    ctx.identity(&mut status, &d);
    let now = ctx.clock.now();
    let inputs = Inputs {
        status: &status,
        now,
        timing: ctx.timing(),
    };
    let Decision { action, conditions } = decide::decide(&d, &obs, &inputs);
    assert_eq!(
        action,
        Action::Control(Control::Ready),
        "the fixture is Ready"
    );
    record::apply(&mut status, &conditions, &action, &obs, &d, now);
    record::mark_ready(&mut status, s.generation, &obs);
    ctx.store
        .write_status(id, &status, s.resource_version, None)
        .await
        .unwrap()
}

/// The resync's in-memory check: a Ready server the snapshot confirms needs no reconcile;
/// one the snapshot contradicts does.
#[tokio::test]
async fn is_settled_trusts_only_what_the_snapshot_confirms() {
    struct Case {
        reason: &'static str,
        change: fn(&Context<Fakes>, u32),
        settled: bool,
    }
    let cases = [
        Case {
            reason: "everything in place: settled",
            change: |_, _| {},
            settled: true,
        },
        Case {
            reason: "a stopped container is not settled",
            change: |c, v| {
                c.backends.pve.set_running(v, false);
            },
            settled: false,
        },
        Case {
            reason: "a proxy that forgot the registration is not settled",
            change: |c, _| c.backends.velocity.as_ref().unwrap().forget_all(),
            settled: false,
        },
        Case {
            reason: "a container without our tag is not settled",
            change: |c, v| {
                let mut x = c.backends.pve.container(v).unwrap().config;
                x.tags.clear();
                c.backends.pve.put_container("pve", v, x, true);
            },
            settled: false,
        },
    ];
    for c in cases {
        let ctx = context().await;
        let s = ready_game(&ctx).await;
        (c.change)(&ctx, s.reserved_vmid.unwrap());
        let snap = crate::resync::take_snapshot(&ctx.backends).await;
        assert_eq!(ctx.is_settled(&s, &snap), c.settled, "{}", c.reason);
    }
    // Nothing is called beyond the snapshot's own listings.
    let ctx = context().await;
    let s = ready_game(&ctx).await;
    let snap = crate::resync::take_snapshot(&ctx.backends).await;
    ctx.backends.pve.clear_calls();
    assert!(ctx.is_settled(&s, &snap));
    assert!(
        ctx.backends.pve.calls().is_empty(),
        "the check is in memory"
    );
}

/// Only real changes are written: the bookkeeping stamps alone are not a change.
#[test]
fn status_changed_ignores_bookkeeping_stamps() {
    let now = chrono::Utc::now();
    let base = ServerStatus {
        observed_generation: 1,
        ip: Some(IP.into()),
        ..ServerStatus::default()
    };
    type Change = fn(&mut ServerStatus, DateTime<Utc>);
    let cases: [(&str, Change, bool); 5] = [
        ("identical: no write", |_, _| {}, false),
        (
            "a new reconcile stamp alone: no write",
            |s, t| s.last_reconcile_at = Some(t),
            false,
        ),
        (
            "a new retry stamp alone: no write",
            |s, t| s.next_retry_at = Some(t),
            false,
        ),
        (
            "a changed IP with new stamps: a write",
            |s, t| {
                s.last_reconcile_at = Some(t);
                s.ip = Some("127.1.0.8".into())
            },
            true,
        ),
        (
            "recorded progress is a change",
            |s, _| s.progress.agent_install = Some(1),
            true,
        ),
    ];
    for (reason, change, want) in cases {
        let mut new = base.clone();
        change(&mut new, now);
        assert_eq!(status_changed(&base, &new), want, "{reason}");
    }
}

/// A paused server queued for a template leaves the queue at its next reconcile, so the
/// server behind it is woken and clones as soon as the template is free.
#[tokio::test]
async fn a_paused_server_does_not_hold_back_the_clone_queue() {
    let ctx = context().await;
    let a = game_of(&ctx, "u1").await;
    let b = game_of(&ctx, "u2").await;
    let c = game_of(&ctx, "u3").await;
    once(&ctx, a).await;
    assert!(ctx.slots.holds(a), "a clones");
    once(&ctx, b).await;
    once(&ctx, c).await;
    assert!(ctx.slots.waits(b) && ctx.slots.waits(c), "b and c queue");
    ctx.take_woken();

    ctx.store.set_paused(b, true).await.unwrap();
    once(&ctx, b).await;
    assert!(!ctx.slots.waits(b), "paused: out of the queue");

    ctx.backends.pve.finish_running_tasks();
    once(&ctx, a).await;
    assert_eq!(ctx.take_woken(), vec![c], "c is next, not the paused b");
    ctx.backends.pve.clear_calls();
    once(&ctx, c).await;
    let vmid = server(&ctx, c).await.reserved_vmid.unwrap();
    let cloned = ctx
        .backends
        .pve
        .calls()
        .iter()
        .any(|call| matches!(call, PveCall::CloneCt { req, .. } if req.newid == vmid));
    assert!(cloned, "c clones");
}

/// A destroy task that runs past `teardown_deadline` shows `Degraded` naming its UPID; the
/// container is neither forgotten nor skipped, and the row is archived only once the task ends.
#[tokio::test]
async fn a_teardown_task_past_its_deadline_degrades_and_is_still_waited_for() {
    let clock = model::ManualClock::default();
    let ctx = context_with(Arc::new(clock.clone())).await;
    let s = ready_game(&ctx).await;
    let (id, vmid) = (s.id, s.reserved_vmid.unwrap());
    ctx.backends.pve.set_running(vmid, false);
    ctx.store.request_deletion(id).await.unwrap();
    // Unregister, remove DNS, destroy: the destroy task is left running.
    once(&ctx, id).await;
    let task = server(&ctx, id)
        .await
        .status
        .in_flight_task
        .expect("a destroy in flight");
    assert_eq!(task.action, model::TaskKind::Destroy);

    clock.advance(chrono::Duration::from_std(ctx.timing().teardown_deadline).unwrap() * 2);
    assert_eq!(once(&ctx, id).await, Requeue::Backoff);
    let s = server(&ctx, id).await;
    let (status, reason, message) = condition(&s, ConditionType::Degraded);
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::True, r::PROXMOX_UNAVAILABLE.as_str())
    );
    assert!(message.contains(&task.upid), "names the task: {message}");
    assert_eq!(
        s.status.last_error.as_ref().map(|e| e.step.as_str()),
        Some("teardown")
    );
    assert!(
        ctx.backends.pve.container(vmid).is_some(),
        "the container is not forgotten"
    );
    assert_eq!(
        s.status.in_flight_task.as_ref(),
        Some(&task),
        "still waited for"
    );

    ctx.backends.pve.finish_running_tasks();
    // The next poll (the node's task listing is renewed at most every poll).
    clock.advance(chrono::Duration::from_std(ctx.timing().task_poll).unwrap());
    once(&ctx, id).await;
    assert!(
        ctx.store.get_server(id).await.unwrap().is_none(),
        "archived once it ended"
    );
    assert!(ctx.backends.pve.container(vmid).is_none());
}

/// A context whose catalog clones every template in `mode` (to `storage`, for full clones).
async fn context_cloning(mode: model::CloneMode, storage: Option<&str>) -> Context<Fakes> {
    let mut ctx = context().await;
    for t in &mut ctx.catalog.templates {
        t.clone_mode = mode;
        t.storage = storage.map(str::to_string);
    }
    ctx
}

/// The exact clone call per template mode: `full` always sent (unset, PVE would pick linked
/// for a template), the target storage only with a full clone.
#[tokio::test]
async fn the_clone_call_follows_the_template_clone_mode() {
    use model::CloneMode;
    /// (reason, mode, configured storage, `full` sent, `storage` sent)
    type Case = (
        &'static str,
        CloneMode,
        Option<&'static str>,
        Option<bool>,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        (
            "full to a chosen storage, as the previous system cloned",
            CloneMode::Full,
            Some("local-lvm"),
            Some(true),
            Some("local-lvm"),
        ),
        (
            "full on the template's own storage: no storage sent",
            CloneMode::Full,
            None,
            Some(true),
            None,
        ),
        (
            "linked: full=0 and never a storage",
            CloneMode::Linked,
            None,
            Some(false),
            None,
        ),
    ];
    for (why, mode, storage, want_full, want_storage) in cases {
        let ctx = context_cloning(*mode, *storage).await;
        let id = game(&ctx).await;
        once(&ctx, id).await;
        let vmid = server(&ctx, id).await.reserved_vmid.expect(why);
        let req = ctx
            .backends
            .pve
            .calls()
            .into_iter()
            .find_map(|c| match c {
                PveCall::CloneCt {
                    node,
                    source_vmid,
                    req,
                } if node == "pve" && source_vmid == TEMPLATE => Some(req),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{why}: a clone call"));
        assert_eq!(req.newid, vmid, "{why}");
        assert_eq!(req.full, *want_full, "{why}");
        assert_eq!(req.storage.as_deref(), *want_storage, "{why}");
        assert_eq!(
            req.hostname.as_deref(),
            Some(format!("mc-paper-{vmid}").as_str()),
            "{why}"
        );
    }
}

/// `spec.resources.diskGib` is applied: the template's 8 GiB rootfs is grown after the clone
/// (a task, with a `DiskResized` event and a condition naming the pending resize), and grown
/// again when the spec grows.
#[tokio::test]
async fn the_rootfs_is_grown_to_the_spec_after_the_clone_and_when_the_spec_grows() {
    let ctx = context().await;
    ctx.backends.pve.set_tasks_finish_immediately(true);
    let id = game(&ctx).await;
    let resizes = |pve: &FakeProxmox| -> Vec<u32> {
        pve.calls()
            .iter()
            .filter_map(|c| match c {
                PveCall::ResizeCt { size_gib, .. } => Some(*size_gib),
                _ => None,
            })
            .collect()
    };
    // Clone, then configure and resize (the resize is a task: the reconcile ends there).
    for _ in 0..3 {
        once(&ctx, id).await;
        if !resizes(&ctx.backends.pve).is_empty() {
            break;
        }
    }
    let s = server(&ctx, id).await;
    let want = s.spec.resources.disk_gib;
    assert_eq!(
        resizes(&ctx.backends.pve),
        vec![want],
        "one resize to the spec"
    );
    assert_eq!(
        condition(&s, ConditionType::ContainerCreated),
        (
            ConditionStatus::False,
            r::RESIZING_DISK.as_str().into(),
            r::msg::resizing_disk(8, want)
        ),
        "the pending resize shows"
    );
    assert_eq!(
        s.status.in_flight_task.as_ref().map(|t| t.action),
        Some(TaskKind::Resize)
    );
    assert!(
        event_reasons(&ctx, id)
            .await
            .contains(&r::EV_DISK_RESIZED.as_str().to_string())
    );
    let vmid = s.reserved_vmid.unwrap();
    let cfg = ctx.backends.pve.ct_config("pve", vmid).await.unwrap();
    assert_eq!(cfg.rootfs_gib, Some(want));

    // The task ended: the next reconcile reads the new size and does not resize again.
    ctx.backends.pve.clear_calls();
    once(&ctx, id).await;
    assert!(resizes(&ctx.backends.pve).is_empty(), "grown once");
    let s = server(&ctx, id).await;
    assert_eq!(
        condition(&s, ConditionType::ContainerCreated).0,
        ConditionStatus::True
    );

    // The spec grows the disk: grown again, to the new size.
    let mut spec = s.spec.clone();
    spec.resources.disk_gib = want + 16;
    ctx.store.update_spec(id, spec, None).await.unwrap();
    ctx.backends.pve.clear_calls();
    once(&ctx, id).await;
    assert_eq!(resizes(&ctx.backends.pve), vec![want + 16]);
}

/// A container larger than the spec (a template with a bigger disk) is left as it is:
/// Proxmox cannot shrink, and zlh never asks it to.
#[tokio::test]
async fn a_rootfs_larger_than_the_spec_is_never_shrunk() {
    let ctx = context().await;
    ctx.backends.pve.set_tasks_finish_immediately(true);
    let id = game(&ctx).await;
    let mut s = server(&ctx, id).await;
    let mut spec = s.spec.clone();
    spec.resources.disk_gib = 4;
    ctx.store.update_spec(id, spec, None).await.unwrap();
    for _ in 0..4 {
        once(&ctx, id).await;
        s = server(&ctx, id).await;
    }
    assert!(
        !ctx.backends
            .pve
            .calls()
            .iter()
            .any(|c| c.method() == PveMethod::ResizeCt),
        "no resize of the template's 8 GiB to 4"
    );
    assert_eq!(
        condition(&s, ConditionType::ContainerCreated).0,
        ConditionStatus::True
    );
}

/// Fifty servers waiting on their clone tasks on one node cost one task listing per poll,
/// not fifty status reads; a task that ends is read once, for its exit status.
#[tokio::test]
async fn fifty_waiting_clones_cost_one_task_listing_per_poll() {
    const N: u32 = 50;
    let clock = model::ManualClock::default();
    let mut ctx = context_with(Arc::new(clock.clone())).await;
    // One template per server, so every clone runs at once (clones of one template queue).
    let template = ctx.catalog.templates[0].clone();
    ctx.catalog.templates = (0..N)
        .map(|i| model::Template {
            versions: vec![format!("1.21.{}", 100 + i)],
            vmid: 2000 + i,
            ..template.clone()
        })
        .collect();
    let pve = &ctx.backends.pve;
    for i in 0..N {
        pve.put_template("pve", 2000 + i, &format!("tpl-{i}"));
    }
    let mut ids = Vec::new();
    for i in 0..N {
        let new = NewServer {
            customer_id: format!("u{i}"),
            spec: ServerSpec::minecraft(Variant::Paper, &format!("1.21.{}", 100 + i)),
            idempotency: None,
            enforce_quota: false,
        };
        ids.push(ctx.store.create_server(new).await.unwrap().server.id);
    }
    for id in &ids {
        once(&ctx, *id).await;
    }
    assert_eq!(
        clones(&ctx.backends.pve),
        N as usize,
        "every server cloning"
    );

    let count =
        |pve: &FakeProxmox, m: PveMethod| pve.calls().iter().filter(|c| c.method() == m).count();
    for poll in 1..=3 {
        clock.advance(chrono::Duration::from_std(ctx.timing().task_poll).unwrap());
        ctx.backends.pve.clear_calls();
        for id in &ids {
            assert_eq!(
                once(&ctx, *id).await,
                Requeue::After(ctx.timing().task_poll),
                "poll {poll}: still waiting on the clone"
            );
        }
        let pve = &ctx.backends.pve;
        assert_eq!(
            count(pve, PveMethod::NodeTasks),
            1,
            "poll {poll}: one listing"
        );
        assert_eq!(
            count(pve, PveMethod::TaskStatus),
            0,
            "poll {poll}: no status reads"
        );
    }

    // The clones end: the same listing carries every exit status; no task is read on its own.
    ctx.backends.pve.finish_running_tasks();
    clock.advance(chrono::Duration::from_std(ctx.timing().task_poll).unwrap());
    ctx.backends.pve.clear_calls();
    for id in &ids {
        once(&ctx, *id).await;
    }
    let pve = &ctx.backends.pve;
    assert_eq!(
        (
            count(pve, PveMethod::NodeTasks),
            count(pve, PveMethod::TaskStatus)
        ),
        (1, 0),
        "the ends: one listing, no status reads"
    );
    for id in &ids {
        let s = server(&ctx, *id).await;
        assert_ne!(
            s.status.in_flight_task.as_ref().map(|t| t.action),
            Some(TaskKind::Clone),
            "the clone is over"
        );
    }
}

/// A container in a snapshot taken before its server's teardown finished is no orphan: the
/// server was archived after the listing was asked for (the container was destroyed after it).
/// The same container, listed after the archive, is one.
#[tokio::test]
async fn a_server_archived_after_the_snapshot_leaves_no_orphan() {
    let ctx = context().await;
    ctx.backends.pve.set_tasks_finish_immediately(true);
    let s = ready_game(&ctx).await;
    let (id, vmid) = (s.id, s.reserved_vmid.unwrap());
    let mut snap = crate::resync::take_snapshot(&ctx.backends).await;
    snap.listed_from = Some(ctx.clock.now());
    assert!(
        snap.containers.contains_key(&vmid),
        "listed before the teardown"
    );

    ctx.store.request_deletion(id).await.unwrap();
    for _ in 0..6 {
        once(&ctx, id).await;
    }
    assert!(
        ctx.store.get_archived(id).await.unwrap().is_some(),
        "archived"
    );
    // The sweep after the teardown: the server is gone from the store.
    let sweep = crate::resync::Sweep::default();
    crate::orphans::report(&ctx, &snap, &sweep, 0).await;
    assert!(
        ctx.store.list_orphans().await.unwrap().is_empty(),
        "archived after the listing: not an orphan"
    );

    // A listing asked for after the archive that still shows the container: an orphan.
    let mut later = crate::resync::take_snapshot(&ctx.backends).await;
    later.containers = snap.containers.clone();
    later.listed_from = Some(ctx.clock.now() + chrono::Duration::seconds(1));
    crate::orphans::report(&ctx, &later, &sweep, 1).await;
    let orphans = ctx.store.list_orphans().await.unwrap();
    assert_eq!(
        orphans.iter().map(|o| o.vmid).collect::<Vec<_>>(),
        vec![vmid]
    );
}

/// The Proxmox calls of one reconcile, in order.
async fn calls_of_once(ctx: &Context<Fakes>, id: ServerId) -> (Requeue, Vec<PveMethod>) {
    ctx.backends.pve.clear_calls();
    let next = once(ctx, id).await;
    let calls = ctx
        .backends
        .pve
        .calls()
        .iter()
        .map(|c| c.method())
        .collect();
    (next, calls)
}

/// From declaration to the Agent's install, a server in flux costs Proxmox only what its
/// state needs: no config or status read per wait (the node's list answers while nothing is
/// to be done), no `interfaces` read before an address is plausible, no re-read of what a
/// config write or a task's own end already says, and a task not looked at before one like it
/// ended last time.
#[tokio::test]
async fn a_server_in_flux_costs_only_the_calls_its_state_needs() {
    use PveMethod as M;
    let clock = model::ManualClock::default();
    let ctx = context_with(Arc::new(clock.clone())).await;
    let t = ctx.timing().clone();
    let advance = |d: Duration| clock.advance(chrono::Duration::from_std(d).unwrap());
    let pve = &ctx.backends.pve;
    let id = game(&ctx).await;

    // (what happens before the reconcile, the calls it makes, when it looks again, reason)
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::ClusterResources, M::CloneCt],
        "no snapshot yet: the reservation lists; a new server clones at once (the clone is \
         refused on a taken VMID)"
    );
    assert_eq!(next, Requeue::After(t.task_poll));

    pve.finish_running_tasks();
    advance(t.task_poll);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeTasks, M::CtConfig, M::UpdateCtConfig, M::ResizeCt],
        "the clone's end (its exit in the listing): one config read; the write is not read back"
    );
    assert_eq!(next, Requeue::After(t.task_poll));

    pve.finish_running_tasks();
    advance(t.task_poll);
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeTasks, M::CtStatus, M::StartCt],
        "the resize's end: one status read (disk size, lock, power) before the start"
    );

    pve.finish_running_tasks();
    advance(t.task_poll);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeTasks],
        "the start's end says it runs, the container was read built; no address asked for yet"
    );
    assert_eq!(next, Requeue::After(t.dhcp_expected), "the IP schedule");

    // A look meanwhile (a resync): the address is not due, so nothing is read.
    advance(t.dhcp_expected / 2);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(calls, [], "the DHCP wait costs nothing");
    assert_eq!(next, Requeue::After(t.dhcp_expected / 2));

    // Due, and late: read, then looked at again later the later it is.
    advance(t.dhcp_expected);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeCts, M::CtInterfaces],
        "due: the node's list (shared), then the address"
    );
    assert_eq!(next, Requeue::After(t.wait_poll));

    let vmid = server(&ctx, id).await.reserved_vmid.unwrap();
    pve.set_ipv4(vmid, IP.parse().unwrap());
    ctx.backends.agent.set_state(IP, AgentState::Idle);
    advance(t.wait_poll * 2);
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeCts, M::CtInterfaces],
        "the address, then the Agent"
    );
    assert_eq!(
        ctx.backends.agent.sent(IP).len(),
        1,
        "the Agent has its config"
    );

    // The install: the Agent is asked, Proxmox is not.
    advance(t.wait_poll);
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(calls, [], "an install in progress costs Proxmox nothing");

    // Installed: DNS and the proxy are written on their own answers; Proxmox is listed only.
    let b = &ctx.backends;
    let (technitium, cloudflare) = (
        b.technitium.as_ref().unwrap(),
        b.cloudflare.as_ref().unwrap(),
    );
    let velocity = b.velocity.as_ref().unwrap();
    technitium.clear_calls();
    cloudflare.clear_calls();
    velocity.clear_calls();
    b.agent.set_state(IP, AgentState::Running);
    advance(t.wait_poll * 2);
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeCts],
        "the edge costs Proxmox one shared listing"
    );
    let s = server(&ctx, id).await;
    assert!(s.status.is_true(ConditionType::DnsPublished));
    assert!(s.status.is_true(ConditionType::ProxyRegistered));
    for dns in [technitium, cloudflare] {
        let calls = dns.calls();
        assert!(
            matches!(calls[..], [edge_client::fake::DnsCall::Ensure { .. }]),
            "never published, so written at once (the write lists for itself) and not \
             looked at again: {calls:?}"
        );
    }
    let calls = velocity.calls();
    assert!(
        matches!(calls[..], [edge_client::fake::ProxyCall::Ensure { .. }]),
        "the proxy likewise: {calls:?}"
    );
}

/// A second task like one already seen is not looked at before about when that one ended,
/// and then through the node's listing, which also carries its end; until then a reconcile
/// (a resync, a wake-up) costs nothing.
#[tokio::test]
async fn a_task_is_not_looked_at_before_one_like_it_ended() {
    use PveMethod as M;
    let clock = model::ManualClock::default();
    let ctx = context_with(Arc::new(clock.clone())).await;
    let t = ctx.timing().clone();
    let advance = |d: Duration| clock.advance(chrono::Duration::from_std(d).unwrap());
    let pve = &ctx.backends.pve;
    let like = crate::task_listing::TaskKey {
        node: "pve",
        kind: TaskKind::Clone,
        template: Some(TEMPLATE),
    };
    ctx.durations.learn(like, t.task_poll * 20);
    let due = ctx.durations.expected(like).expect("learned");
    let id = game(&ctx).await;
    let (next, _) = calls_of_once(&ctx, id).await;
    assert_eq!(next, Requeue::After(due), "looked at when due");

    advance(due / 2);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(calls, [], "presumed running: no call");
    assert_eq!(next, Requeue::After(due - due / 2));

    advance(due - due / 2);
    let (next, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls,
        [M::NodeTasks],
        "due: the node's listing (shared by every task due there)"
    );
    assert_eq!(
        next,
        Requeue::After(t.task_near_end_poll()),
        "due and still running: looked at again soon"
    );

    advance(t.task_near_end_poll() / 2);
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(calls, [], "the listing, fresh enough, answers again");
    pve.finish_running_tasks();
    advance(t.task_near_end_poll());
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls[..2],
        [M::NodeTasks, M::CtConfig],
        "ended: the listing carries its exit status"
    );
}

/// A clone presumed running past its deadline is looked at before the server fails: a
/// presumption only ever makes a server wait.
#[tokio::test]
async fn a_presumed_task_is_read_before_anything_is_decided_from_it() {
    use PveMethod as M;
    let clock = model::ManualClock::default();
    let ctx = context_with(Arc::new(clock.clone())).await;
    let t = ctx.timing().clone();
    let advance = |d: Duration| clock.advance(chrono::Duration::from_std(d).unwrap());
    ctx.durations.learn(
        crate::task_listing::TaskKey {
            node: "pve",
            kind: TaskKind::Clone,
            template: Some(TEMPLATE),
        },
        t.clone_deadline * 2,
    );
    let id = game(&ctx).await;
    once(&ctx, id).await;
    advance(t.clone_deadline + t.task_poll);
    ctx.backends.pve.finish_running_tasks();
    let (_, calls) = calls_of_once(&ctx, id).await;
    assert_eq!(
        calls[0],
        M::NodeTasks,
        "looked at before the deadline fails it"
    );
    let s = server(&ctx, id).await;
    assert!(
        s.status.failure.is_none(),
        "the clone had ended: no failure"
    );
}
