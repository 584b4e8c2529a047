//! Fleet-scale zctl: `reconcile --all` is one bulk call, and the client rides out a spent
//! rate limit by honouring `Retry-After`.

mod ops;

use model::Role;
use model::store::{ServerFilter, Store, list_all};
use ops::{Api, server, sqlite_store, token};

/// 200 servers, the default rate limit (20/s, burst 40) with the burst already spent:
/// `zctl reconcile --all --retry` waits out the 429 and queues every server, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_all_queues_200_servers_within_the_default_rate_limit() {
    let (store, dir) = sqlite_store().await;
    for i in 0..200 {
        server(&store, &format!("u{}", i % 7)).await;
    }
    let api = Api::start(store.clone()).await;
    let op = token(&store, "oncall", Role::Operator, None).await;
    // Spend the burst: the next request is refused with 429 and a Retry-After.
    let mut limited = None;
    for _ in 0..200 {
        let res = api
            .http
            .get(format!("{}/api/controller", api.base))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let limited = limited.expect("the default burst is spent within 200 requests");
    assert!(
        limited.headers().contains_key("retry-after"),
        "429 says when"
    );

    let run = api.zctl(&op, &["reconcile", "--all", "--retry"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("requested for 200 server(s)"),
        "{run:?}"
    );
    let servers = list_all(&store, &ServerFilter::default()).await.unwrap();
    assert_eq!(servers.len(), 200);
    // One audit entry for the call, naming what it matched.
    let audit = store
        .list_audit(
            &model::AuditFilter {
                action: Some("servers.reconcile".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].actor, "oncall");
    assert_eq!(
        audit[0].detail,
        "reconcile with retry of 200 server(s) matching all"
    );
    let unqueued: Vec<_> = servers
        .iter()
        .filter(|s| s.retry_requested_at.is_none())
        .map(|s| s.id)
        .collect();
    assert!(unqueued.is_empty(), "not queued: {unqueued:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The bulk route is scoped like the list: a customer's token queues only its own servers,
/// and `-o json` answers the count and the ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_all_is_scoped_like_the_list() {
    let (store, dir) = sqlite_store().await;
    let mine = [server(&store, "u1").await, server(&store, "u1").await];
    let theirs = server(&store, "u2").await;
    let api = Api::start(store.clone()).await;
    let customer = token(&store, "u1", Role::Customer, Some("u1")).await;
    let run = api
        .zctl(&customer, &["reconcile", "--all", "--retry", "-o", "json"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["queued"], 2, "{doc}");
    let mut ids: Vec<String> = doc["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = mine.iter().map(|i| i.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    let other = store.get_server(theirs).await.unwrap().unwrap();
    assert!(other.retry_requested_at.is_none(), "u2's server untouched");
    // Asking for another customer's servers matches nothing (as the list answers nothing).
    let run = api
        .zctl(
            &customer,
            &["reconcile", "--all", "--customer", "u2", "-o", "json"],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"queued\": 0"), "{run:?}");
    let _ = std::fs::remove_dir_all(dir);
}
