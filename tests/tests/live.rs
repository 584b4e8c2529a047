//! Live detail (issue 20, item 4): after convergence, a game server shows players online and
//! resource usage, refreshed by each resync from what it already gathers (one
//! `cluster/resources` call, the health probes' Server List Ping), with no per-server
//! Proxmox call and no status write; the API serves the sample and the list's cards.

use model::customer::{new_token_secret, token_hash};
use model::store::Store;
use model::{Phase, Role, ServerId, ServerSpec, ServerStats, Variant};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zlh_tests::{World, WorldOptions};

const T: Duration = Duration::from_secs(60);

async fn stats(w: &World, id: ServerId) -> ServerStats {
    let mut got = w.store.list_stats(&[id]).await.unwrap();
    assert_eq!(got.len(), 1, "the resync sampled {id}");
    got.pop().unwrap()
}

/// Players and usage come from the resync alone: Proxmox sees only its one
/// `cluster/resources` call, the server's `resourceVersion` does not move, and a change of
/// players shows at the next resync, in the stats route and in the list's cards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resync_keeps_players_and_usage_without_per_server_calls() {
    let w = World::new(WorldOptions::default()).await;
    let mut cfg = w.cfg.clone();
    // No periodic resync after the first (the test calls them); every game probed each time.
    cfg.controller.resync_interval = Duration::from_secs(3600);
    cfg.controller.health_interval = cfg.controller.resync_interval;
    let run = w.start_controller_with(cfg);
    let ctl = run.controller.clone();
    let paper = ServerSpec::minecraft(Variant::Paper, "1.21.7");
    let id = w.create("u1", paper.clone()).await;
    let theirs = w.create("u2", paper).await;
    w.wait_all(Some(Phase::Ready), T).await;
    w.wait_for("an idle queue", T, async || {
        ctl.queue.depth() == 0 && ctl.queue.running() == 0
    })
    .await;
    let pve = w.sims.pve.as_ref().unwrap();
    let agent = w.sims.agent.as_ref().unwrap();
    let s = w.store.get_server(id).await.unwrap().unwrap();
    let ip: Ipv4Addr = s.status.ip.clone().unwrap().parse().unwrap();
    agent.set_players(ip, &["alex", "steve"]);

    let (total, listings) = (pve.requests_total(), pve.requests_for("cluster_resources"));
    ctl.resync().await;
    assert_eq!(
        (
            pve.requests_total() - total,
            pve.requests_for("cluster_resources") - listings
        ),
        (1, 1),
        "the sample costs Proxmox only the resync's cluster/resources call"
    );
    let first = stats(&w, id).await;
    let players = first.players.clone().expect("players from the probe");
    assert_eq!((players.online, players.max), (2, 20));
    assert_eq!(players.sample, vec!["alex", "steve"]);
    let usage = first
        .resources
        .clone()
        .expect("usage from cluster/resources");
    assert!(usage.cpu > 0.0, "a running CT uses CPU: {usage:?}");
    assert!(
        usage.mem_bytes > 0 && usage.mem_bytes < usage.maxmem_bytes,
        "{usage:?}"
    );
    assert!(usage.disk_bytes > 0 && usage.netin_bytes > 0, "{usage:?}");
    assert_eq!(
        w.store
            .get_server(id)
            .await
            .unwrap()
            .unwrap()
            .resource_version,
        s.resource_version,
        "a sample is not a status write"
    );

    agent.set_players(ip, &["alex"]);
    ctl.resync().await;
    let second = stats(&w, id).await;
    assert_eq!(
        second.players.as_ref().map(|p| p.online),
        Some(1),
        "updated by the resync"
    );
    assert!(second.last_seen() >= first.last_seen(), "seen again");

    // The API: the sample, the list's cards, and no one else's server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = api::AppState {
        store: w.store.clone(),
        catalog: Arc::new(w.cfg.catalog()),
        config: w.cfg.api.limits.clone(),
        metrics: None,
        sd: w.cfg.sd.clone(),
    };
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(api::serve(listener, state, async move {
            stop.cancelled().await
        }))
    };
    let secret = new_token_secret();
    w.store
        .create_token("u1", &token_hash(&secret), Role::Customer, Some("u1"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .bearer_auth(&secret)
            .send()
    };
    let r = get(format!("/api/servers/{id}/stats")).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: ServerStats = r.json().await.unwrap();
    assert_eq!(body, second, "the route returns the stored sample");
    let list: api::wire::ServerList = get("/api/servers".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.cards.len(), 1, "one card per item: {list:?}");
    let card = &list.cards[0];
    assert_eq!((card.id, card.phase), (id, Phase::Ready));
    assert_eq!(card.players.as_ref().map(|p| p.online), Some(1));
    assert_eq!(card.last_seen, second.last_seen());
    let r = get(format!("/api/servers/{theirs}/stats")).await.unwrap();
    assert_eq!(r.status(), 404, "another customer's server is not found");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "as a problem"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
    run.stop().await;
}
