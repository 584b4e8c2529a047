//! Regressions of defects found when the API was attacked from outside (issue 24, item 7):
//! quotas on update, cores and disk; idempotency keys outliving their server; internal
//! addresses hidden from customers; unknown tokens limited per address; watches from the
//! future refused.

use crate::common::{Harness, expect_problem, paper};
use api::ApiConfig;
use api::wire::CreateServerRequest;
use chrono::Utc;
use futures::future::join_all;
use model::class::ErrorClass;
use model::status::{Failure, LastError};
use model::store::Store;
use model::{ConditionStatus, ConditionType, EventType, Quota, Resources, Role, ServerSpec};

fn sized(cores: u32, memory_mib: u32, disk_gib: u32) -> ServerSpec {
    ServerSpec {
        resources: Resources {
            cores,
            memory_mib,
            disk_gib,
        },
        ..paper()
    }
}

fn req(spec: ServerSpec) -> CreateServerRequest {
    CreateServerRequest {
        customer_id: None,
        spec,
    }
}

/// Two concurrent PATCHes took a customer to 4,096 MiB against a 3,072 MiB quota: the check
/// ran outside the store's transaction. Eight servers of 512 MiB under 6,144 MiB leave room
/// for exactly four of eight concurrent raises to 1,024 MiB, whatever the interleaving.
#[tokio::test]
async fn concurrent_patches_stay_within_the_memory_quota() {
    let h = Harness::start().await;
    h.store
        .upsert_customer(
            "u1",
            Some(Quota {
                max_servers: 10,
                max_memory_mib: 6144,
                ..Quota::default()
            }),
            None,
        )
        .await
        .unwrap();
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let mut ids = Vec::new();
    for i in 0..8 {
        let key = format!("k{i}");
        let c = u1
            .create(&req(sized(1, 512, 16)), Some(&key))
            .await
            .unwrap();
        ids.push(c.server.id);
    }
    let results = join_all(ids.iter().map(|id| u1.patch(*id, sized(1, 1024, 16), None))).await;
    let mut accepted = 0;
    for r in &results {
        match r {
            Ok(_) => accepted += 1,
            Err(e) => {
                let p = e.problem().expect("a problem");
                assert_eq!(p.status, 403, "{p}");
                assert!(p.type_.ends_with("quota-exceeded"), "{p}");
            }
        }
    }
    assert_eq!(accepted, 4, "exactly the raises that fit: {results:?}");
    let total: u32 = h
        .all_servers()
        .await
        .iter()
        .map(|s| s.spec.resources.memory_mib)
        .sum();
    assert_eq!(total, 6144, "at the quota, never above");
}

/// A customer token could raise its own server to 16 cores and 1 TiB of disk: only the
/// server count and memory were quotas. The default quota refuses both; operators may.
#[tokio::test]
async fn cores_and_disk_are_quotas_at_create_and_update() {
    let h = Harness::start().await;
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let op = h.client(&h.token(Role::Operator, None).await);
    let d = Quota::default();
    let s = u1.create(&req(paper()), Some("a")).await.unwrap().server;
    for (reason, spec, what) in [
        ("16 cores", sized(16, 2048, 16), "cores"),
        ("1 TiB", sized(2, 2048, 1024), "disk"),
    ] {
        let err = u1.patch(s.id, spec.clone(), None).await.unwrap_err();
        let p = err.problem().expect("a problem");
        assert_eq!(p.status, 403, "{reason}: {p}");
        let detail = p.detail.clone().unwrap_or_default();
        assert!(detail.contains(what), "{reason}: {detail}");
        let err = u1.create(&req(spec), Some(what)).await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{reason} at create: {err}");
    }
    assert_eq!(h.get(s.id).await.generation, 1, "nothing written");
    assert!(
        d.max_cores < 16 && d.max_disk_gib < 1024,
        "defaults below the largest plan"
    );
    // Operators set the new quotas, and are not bound by them.
    let c = op
        .set_customer(
            "u1",
            &api::wire::CustomerUpdate {
                quota: Some(Quota { max_cores: 16, ..d }),
                standing: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (c.quota.max_cores, c.quota.max_disk_gib),
        (16, d.max_disk_gib)
    );
    u1.patch(s.id, sized(16, 2048, 16), None).await.unwrap();
    op.patch(s.id, sized(16, 2048, 1024), None).await.unwrap();
}

/// An `Idempotency-Key` was forgotten when its server was archived, so a late retry of a
/// deleted server's create made a new server. It now answers the original operation.
#[tokio::test]
async fn a_late_retry_of_a_deleted_servers_create_replays_it() {
    let h = Harness::start().await;
    let portal = h.client(&h.token(Role::Portal, None).await);
    let body = CreateServerRequest {
        customer_id: Some("u1".into()),
        spec: paper(),
    };
    let first = portal.create(&body, Some("click-1")).await.unwrap();
    portal.delete(first.server.id).await.unwrap();
    // The controller's last step of a teardown.
    h.store
        .archive_and_delete(first.server.id, None)
        .await
        .unwrap();
    let retry = portal.create(&body, Some("click-1")).await.unwrap();
    assert_eq!(
        (retry.server.id, retry.operation_id),
        (first.server.id, first.operation_id),
        "the original operation"
    );
    assert!(h.all_servers().await.is_empty(), "no new server");
}

/// Customers saw internal backend URLs (the Proxmox API address) in their server's events
/// and `lastError`. They and the Portal now get the class and a message without addresses;
/// operators and viewers see everything.
#[tokio::test]
async fn only_operators_and_viewers_see_internal_addresses() {
    const URL: &str = "https://127.20.30.40:8006/api2/json/nodes/pve/lxc/5208/status/current";
    let message = format!("proxmox status_current: error sending request for url ({URL})");
    let h = Harness::start().await;
    let created = h
        .store
        .create_server(model::store::NewServer {
            customer_id: "u1".into(),
            spec: paper(),
            idempotency: None,
            enforce_quota: false,
        })
        .await
        .unwrap();
    let (s, op_id) = (created.server, created.operation.id);
    let mut st = s.status.clone();
    st.set_condition(
        ConditionType::Degraded,
        ConditionStatus::True,
        "ProxmoxUnavailable",
        message.clone(),
        1,
        Utc::now(),
    );
    st.last_error = Some(LastError {
        class: ErrorClass::Transient,
        step: "clone-container".into(),
        message: message.clone(),
        at: Utc::now(),
    });
    st.failure = Some(Failure {
        step: "clone-container".into(),
        message: format!("agent 127.20.30.41:18888 refused: {message}"),
        at: Utc::now(),
        generation: 1,
    });
    h.store
        .write_status(s.id, &st, s.resource_version, None)
        .await
        .unwrap();
    h.store
        .append_event(s.id, EventType::Warning, "ProxmoxUnavailable", &message)
        .await
        .unwrap();
    let paths = [
        format!("/api/servers/{}", s.id),
        "/api/servers".to_string(),
        format!("/api/servers/{}/events", s.id),
        format!("/api/operations/{op_id}"),
        format!("/api/instances/operations/{op_id}"),
    ];
    for (role, scope, sees) in [
        (Role::Operator, None, true),
        (Role::Viewer, None, true),
        (Role::Portal, None, false),
        (Role::Customer, Some("u1"), false),
    ] {
        let token = h.token(role, scope).await;
        for path in &paths {
            let res = h
                .http
                .get(h.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{role} {path}");
            let body = res.text().await.unwrap();
            assert_eq!(body.contains("127.20.30."), sees, "{role} {path}: {body}");
            if !sees && path.contains(&s.id.to_string()) {
                assert!(
                    body.contains(api::redact::REDACTED),
                    "{role} {path}: {body}"
                );
                assert!(
                    body.contains("error sending request"),
                    "the rest is kept: {body}"
                );
            }
        }
    }
    // The class stays visible to a customer.
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let e = u1.get(s.id).await.unwrap().status.last_error.unwrap();
    assert_eq!(
        (e.class, e.step.as_str()),
        (ErrorClass::Transient, "clone-container")
    );
}

/// Requests with unknown tokens were never rate limited (each costs a store lookup). Per
/// client address they now are, before the lookup; tokens seen valid are not counted, so a
/// client sharing the address keeps working.
#[tokio::test]
async fn unknown_tokens_are_limited_per_client_address() {
    let h = Harness::start_with(ApiConfig {
        address_rate_limit_per_second: 1,
        address_rate_limit_burst: 3,
        ..ApiConfig::default()
    })
    .await;
    let good = h.token(Role::Viewer, None).await;
    let get = |token: String| {
        let rb = h.http.get(h.url("/api/servers")).bearer_auth(token);
        async move { rb.send().await.unwrap() }
    };
    // Counted once (its first request), then known.
    for _ in 0..5 {
        assert_eq!(get(good.clone()).await.status(), 200);
    }
    // The burst of unknown tokens is answered 401, then (the refill is one per second, far
    // slower than these requests) 429 before any lookup.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let res = get(format!("zlh_guess_{i}")).await;
        let status = res.status().as_u16();
        statuses.push(status);
        if status == 429 {
            assert!(res.headers().contains_key("retry-after"));
            let p = expect_problem(res, 429, "over the address limit").await;
            assert!(
                p["detail"].as_str().unwrap().contains("client address"),
                "{p}"
            );
            break;
        }
    }
    assert!(statuses.len() >= 2, "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "401s until the limit: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The known token still works from the limited address.
    assert_eq!(get(good).await.status(), 200);
}

/// A watch with a `Last-Event-ID` beyond the change feed was accepted in silence (and would
/// have skipped every change up to it): 400 problem+json.
#[tokio::test]
async fn a_watch_from_the_future_is_refused() {
    let h = Harness::start().await;
    h.seed("u1", paper()).await;
    let token = h.token(Role::Viewer, None).await;
    let latest = h.store.latest_seq().await.unwrap();
    let watch = |header: Option<i64>, query: Option<i64>| {
        let mut url = h.url("/api/servers?watch=true");
        if let Some(q) = query {
            url.push_str(&format!("&resourceVersion={q}"));
        }
        let mut rb = h.http.get(url).bearer_auth(&token);
        if let Some(v) = header {
            rb = rb.header("Last-Event-ID", v.to_string());
        }
        async move { rb.send().await.unwrap() }
    };
    for (reason, header, query, name) in [
        ("Last-Event-ID", Some(latest + 1000), None, "Last-Event-ID"),
        ("resourceVersion", None, Some(latest + 1), "resourceVersion"),
    ] {
        let p = expect_problem(watch(header, query).await, 400, reason).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains(name) && detail.contains(api::watch::RESUME_AHEAD),
            "{reason}: {detail}"
        );
    }
    // The feed's own latest sequence is a fine resume point.
    let res = watch(Some(latest), None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
}
