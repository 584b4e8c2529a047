//! PostgreSQL goes away mid-run and comes back. The API and a controller (wired as `zlhd
//! serve` wires them: the API on a pool of its own) reach the database through a loopback
//! proxy the test fails, so the shared cluster stays up for other tests: cut, as a database
//! restart does (open connections closed, new ones refused), or stalled, as a network
//! partition does (connections open, nothing answers, so every wait must be bounded).
//!
//! While it is cut: the API answers 503 problem+json (no hang, no driver text), `/readyz`
//! is unready, `/healthz` still answers; a reconcile caught inside a slow Proxmox call
//! abandons its server when the lease cannot be renewed, and the controller then mutates
//! nothing, although one server is half provisioned and another needs repair and is queued
//! (it can neither claim nor renew a lease). Once restored,
//! everything resumes by itself: `/readyz` ready, the create refused during the outage
//! succeeds on retry exactly once, the repair happens, the fleet converges, and the
//! invariants hold with nothing lost.

use model::store::{AnyStore, Store};
use model::{Phase, SystemClock};
use proxmox_client::CtState;
use proxmox_client::request::Endpoint;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zlh_tests::pg::fresh_database;
use zlh_tests::tcp_proxy::{TcpProxy, upstream_of, via};
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(120);
const REPLICA: &str = "outage-replica";
/// Proxmox calls that change something.
const MUTATIONS: &[&str] = &[
    Endpoint::CLONE,
    Endpoint::CONFIG_PUT,
    Endpoint::START,
    Endpoint::STOP,
    Endpoint::SHUTDOWN,
    Endpoint::REBOOT,
    Endpoint::DELETE,
];

fn mutations(w: &World) -> u64 {
    let pve = w.sims.pve.as_ref().unwrap();
    MUTATIONS.iter().map(|e| pve.requests_for(e)).sum()
}

/// `zlh_lease_losses_total`: reconciles abandoned because their lease could not be renewed.
fn lease_losses(rendered: &str) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(controller::metrics::LEASE_LOSSES))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn create_body(customer: &str) -> Value {
    json!({
        "customerId": customer,
        "spec": {"kind": "game", "game": "minecraft", "variant": "paper", "version": "1.21.7"}
    })
}

/// Status and body; every error must be problem+json.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("the API answers (no hang)");
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert!(
            ct.starts_with(api::problem::PROBLEM_JSON),
            "{status} is problem+json, not {ct}: {body}"
        );
    }
    (status, body)
}

/// A 503 problem of type `unavailable` naming nothing of the driver or the database.
fn assert_unavailable(what: &str, (status, problem): &(u16, Value)) {
    assert_eq!(*status, 503, "{what}: {problem}");
    assert_eq!(
        problem["type"],
        api::problem::kind::UNAVAILABLE.uri,
        "{what}: {problem}"
    );
    let text = problem.to_string().to_lowercase();
    for leak in [
        "pool",
        "timed out",
        "connection",
        "postgres",
        "sqlx",
        "127.0.0.1",
        "5432",
        "zlh_",
    ] {
        assert!(!text.contains(leak), "{what} leaks {leak:?}: {problem}");
    }
}

async fn leases_held(w: &World) -> i64 {
    w.store
        .list_replicas(Duration::from_secs(3600))
        .await
        .expect("the test's own connection is not cut")
        .iter()
        .filter(|r| r.id == REPLICA)
        .map(|r| r.leases_held)
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Cut,
    Stall,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_answers_503_stops_the_controller_and_recovers_with_nothing_lost() {
    outage(Failure::Cut).await;
}

/// The same through a partition: the lease renewal hangs instead of failing, and the
/// reconcile is abandoned all the same (the renewal is bounded), the API answers 503 at its
/// request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_that_stops_answering_is_an_outage_too() {
    outage(Failure::Stall).await;
}

async fn outage(failure: Failure) {
    let metrics = controller::metrics::install();
    let db = fresh_database("zlh_outage").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let proxy = TcpProxy::start(upstream_of(&db.url)).await;
    let mut cfg = w.cfg.clone();
    cfg.replica_id = REPLICA.into();
    cfg.database_url = via(&db.url, proxy.addr());
    cfg.database.acquire_timeout = match failure {
        // Refusals come back sooner (nothing asserts on time).
        Failure::Cut => Duration::from_secs(1),
        // Far longer than the lease: only the renewal's own bound can stop the reconcile.
        Failure::Stall => Duration::from_secs(600),
    };
    cfg.api.limits.request_timeout = Duration::from_secs(2);
    let store = AnyStore::connect_with(&cfg.database_url, Arc::new(SystemClock), &cfg.database)
        .await
        .expect("through the proxy");
    store.check_schema().await.expect("migrated by the World");
    let api_store = store.with_own_pool(&zlhd::store::api_options(&cfg));
    let ctl = w.start_controller_on(cfg.clone(), store);

    let secret = model::customer::new_token_secret();
    w.store
        .create_token(
            "op",
            &model::customer::token_hash(&secret),
            model::Role::Operator,
            None,
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let api_task = {
        let state = api::AppState {
            store: api_store,
            catalog: Arc::new(cfg.catalog()),
            config: cfg.api.limits.clone(),
            metrics: None,
            sd: cfg.sd.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(api::serve(listener, state, async move {
            stop.cancelled().await
        }))
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |customer: &str, key: &str| {
        http.post(format!("{base}/api/servers"))
            .bearer_auth(&secret)
            .header("Idempotency-Key", key)
            .json(&create_body(customer))
    };
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&secret);

    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, body) = send(post(&format!("u{i}"), &format!("k{i}"))).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["server"]["id"].as_str().unwrap().to_string());
    }
    w.wait_all(Some(Phase::Ready), T).await;
    let before = w.servers().await;

    // One more server, caught inside a slow config write (its start would follow) when the
    // database goes.
    let pve = w.sims.pve.as_ref().unwrap();
    let config_puts = pve.requests_for(Endpoint::CONFIG_PUT);
    pve.add_latency(Endpoint::CONFIG_PUT, Duration::from_secs(2));
    let (status, body) = send(post("u4", "k4")).await;
    assert_eq!(status, 202, "{body}");
    w.wait_for("a reconcile inside the slow call", T, async || {
        pve.requests_for(Endpoint::CONFIG_PUT) > config_puts
    })
    .await;
    let losses = lease_losses(&metrics.render());

    match failure {
        Failure::Cut => proxy.cut(),
        Failure::Stall => proxy.stall(),
    }
    let (status, _) = send(get("/healthz")).await;
    assert_eq!(status, 200, "the process is alive");
    assert_unavailable("readyz", &send(get("/readyz")).await);
    assert_unavailable("a list", &send(get("/api/servers")).await);
    assert_unavailable("a create", &send(post("u9", "k-outage")).await);
    assert_unavailable(
        "a server's events",
        &send(get(&format!("/api/servers/{}/events", ids[1]))).await,
    );

    // The reconcile in the slow call stops acting as soon as its lease cannot be renewed,
    // and every lease taken before the cut runs out: from here on, any mutation would be one
    // made without a lease.
    w.wait_for("the in-flight reconcile abandoned", T, async || {
        lease_losses(&metrics.render()) > losses
    })
    .await;
    w.wait_for("the replica's leases ran out", T, async || {
        leases_held(&w).await == 0
    })
    .await;
    let baseline = mutations(&w);
    // A call slowed as much, sent after the slow config write: once it is answered, so is
    // that write, and a reconcile still acting would have sent its next mutation.
    pve.add_latency(Endpoint::VERSION, Duration::from_secs(2));
    let probe = proxmox_client::PveClient::new(pve.client_config()).unwrap();
    let _ = proxmox_client::Proxmox::version(&probe).await;
    let drifted = before[0].reserved_vmid.expect("a Ready server has a VMID");
    assert!(pve.stop_behind_back(drifted), "drift injected");
    ctl.controller.queue.add(before[0].id);
    if failure == Failure::Cut {
        let refused = proxy.refused();
        w.wait_for("the controller kept trying the store", T, async || {
            proxy.refused() >= refused + 20
        })
        .await;
    }
    assert_eq!(
        mutations(&w),
        baseline,
        "no Proxmox mutation while no lease can be claimed or renewed"
    );
    assert_eq!(
        pve.container(drifted).map(|c| c.status),
        Some(CtState::Stopped),
        "the queued repair waits for the store"
    );

    pve.clear_faults();
    proxy.restore();
    w.wait_for("/readyz ready again", T, async || {
        send(get("/readyz")).await.0 == 200
    })
    .await;
    let (status, body) = send(post("u9", "k-outage")).await;
    assert_eq!(
        status, 202,
        "the create refused during the outage, retried: {body}"
    );
    let retried = body["server"]["id"].as_str().unwrap().to_string();
    let (_, replay) = send(post("u9", "k-outage")).await;
    assert_eq!(replay["server"]["id"], retried.as_str(), "created once");

    w.wait_for("the drifted container repaired", T, async || {
        pve.container(drifted).map(|c| c.status) == Some(CtState::Running)
    })
    .await;
    w.wait_all(Some(Phase::Ready), T).await;
    let after = w.servers().await;
    assert_eq!(
        after.len(),
        6,
        "the 4 from before, the half-provisioned one and the retried create"
    );
    for s in &before {
        let now = after.iter().find(|a| a.id == s.id).expect("nothing lost");
        assert_eq!(
            (now.generation, &now.spec, now.reserved_vmid),
            (s.generation, &s.spec, s.reserved_vmid)
        );
    }
    assert!(after.iter().any(|s| s.id.to_string() == retried));
    let v = check_invariants(&w).await;
    assert!(v.is_empty(), "invariants:\n{}", v.join("\n"));

    stop.cancel();
    api_task.await.unwrap().unwrap();
    ctl.stop().await;
    drop(w);
    db.drop_db().await;
}
