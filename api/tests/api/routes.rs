//! Every route, answered as it should for each role.

use crate::common::{Harness, paper};
use api::client::PageParams;
use api::wire::{CreateServerRequest, CustomerUpdate, ListFilter, OperationState};
use model::store::{Orphan, ReplicaInfo, Store, VmidRange};
use model::{EventType, Kind, OperationKind, Phase, Quota, Role, ServerSpec, Standing};
use std::time::Duration;

fn req(customer: Option<&str>, spec: ServerSpec) -> CreateServerRequest {
    CreateServerRequest {
        customer_id: customer.map(String::from),
        spec,
    }
}

#[tokio::test]
async fn server_lifecycle_as_operator() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);

    // Create: 202, Location, statusUrl, pending operation.
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(h.token(Role::Operator, None).await)
        .json(&req(Some("u1"), paper()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(res.headers().contains_key("x-request-id"));
    let acc: api::wire::Accepted = res.json().await.unwrap();
    assert_eq!(location, acc.status_url);
    assert_eq!(
        acc.status_url,
        format!("/api/operations/{}", acc.operation_id)
    );
    assert_eq!(acc.server.customer_id, "u1");
    assert_eq!(acc.server.generation, 1);
    let id = acc.server.id;
    assert_eq!(h.get(id).await.spec, paper(), "recorded in the store");

    let st = op.operation(acc.operation_id).await.unwrap();
    assert_eq!(st.state, OperationState::Pending);
    assert_eq!(st.operation.kind, OperationKind::Create);
    let sum = st.server.unwrap();
    assert_eq!(
        (sum.phase, sum.ready, sum.archived),
        (Phase::Queued, false, false)
    );

    // Get with an ETag of the resourceVersion.
    let res = h
        .http
        .get(h.url(&format!("/api/servers/{id}")))
        .bearer_auth(h.token(Role::Viewer, None).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = res.json().await.unwrap();
    // The derived phase and step are in the JSON, so no client re-derives them.
    assert_eq!(
        (&body["phase"], &body["step"]),
        (&"queued".into(), &"allocate-vmid".into()),
        "{body}"
    );
    let got: model::Server = serde_json::from_value(body).unwrap();
    assert_eq!(etag, format!("\"{}\"", got.resource_version));

    // Patch with a current If-Match: generation 2, an update operation.
    let mut bigger = paper();
    bigger.resources.memory_mib = 4096;
    let res = h
        .http
        .patch(h.url(&format!("/api/servers/{id}")))
        .bearer_auth(h.token(Role::Operator, None).await)
        .header("if-match", &etag)
        .json(&serde_json::json!({ "spec": bigger }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let patched: api::wire::Accepted = res.json().await.unwrap();
    assert_eq!(patched.server.generation, 2);
    assert_eq!(patched.server.spec.resources.memory_mib, 4096);
    let upd = op.operation(patched.operation_id).await.unwrap();
    assert_eq!(upd.operation.kind, OperationKind::Update);
    assert_eq!(upd.operation.generation, 2);
    // The create operation was superseded by the update.
    assert_eq!(
        op.operation(acc.operation_id).await.unwrap().state,
        OperationState::Superseded
    );
    // The typed client's patch with the now-stale version is a conflict.
    let err = op
        .patch(id, paper(), Some(got.resource_version))
        .await
        .unwrap_err();
    assert!(matches!(err, api::ClientError::Conflict(_)), "{err}");

    // Reconcile with retry, pause, resume.
    let s = op.reconcile(id, true).await.unwrap();
    assert!(s.retry_requested_at.is_some());
    let s = op.reconcile(id, false).await.unwrap();
    assert_eq!(s.id, id);
    assert!(op.pause(id).await.unwrap().paused);
    assert!(h.get(id).await.paused);
    assert!(!op.resume(id).await.unwrap().paused);

    // Events, newest first.
    h.store
        .append_event(id, EventType::Normal, "Cloning", "cloning from 900")
        .await
        .unwrap();
    h.store
        .append_event(id, EventType::Warning, "ProxmoxUnavailable", "503")
        .await
        .unwrap();
    let ev = op.events(id).await.unwrap();
    assert_eq!(
        (ev[0].reason.as_str(), ev[0].type_, ev[1].reason.as_str()),
        ("ProxmoxUnavailable", EventType::Warning, "Cloning")
    );
    // The rest: who asked for each change so far (create, patch, reconciles, pause, resume).
    assert!(
        ev[2..].iter().all(|e| e.message.contains("requested by")),
        "{ev:?}"
    );
    assert_eq!(ev.len(), 2 + 6, "{ev:?}");

    // Delete: 202, a delete operation, deleting; a repeat returns the same operation.
    let del = op.delete(id).await.unwrap();
    assert!(del.server.deletion_requested_at.is_some());
    assert_eq!(op.delete(id).await.unwrap().operation_id, del.operation_id);
    let st = op.operation(del.operation_id).await.unwrap();
    assert_eq!(st.state, OperationState::Running);
    assert_eq!(st.server.unwrap().phase, Phase::Deleting);
    // Spec changes of a server being deleted are refused.
    let err = op.patch(id, paper(), None).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    // The controller archives it: the delete succeeded, the create's server is archived.
    h.store.archive_and_delete(id, None).await.unwrap();
    let st = op.operation(del.operation_id).await.unwrap();
    assert_eq!(st.state, OperationState::Succeeded);
    assert!(st.server.unwrap().archived);
    assert_eq!(
        op.operation(acc.operation_id).await.unwrap().state,
        OperationState::Deleted
    );
    assert!(matches!(
        op.get(id).await.unwrap_err(),
        api::ClientError::NotFound(_)
    ));
}

#[tokio::test]
async fn list_filters_and_pagination() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let mut ids = Vec::new();
    for (i, customer) in ["a", "a", "a", "b"].iter().enumerate() {
        let spec = if i == 3 {
            ServerSpec::dev("node", "22")
        } else {
            paper()
        };
        let acc = op
            .create(&req(Some(customer), spec), Some(&format!("k{i}")))
            .await
            .unwrap();
        ids.push(acc.server.id);
    }
    // Keyset pages of 2, in creation order.
    let p1 = op
        .list(
            &ListFilter::default(),
            PageParams {
                limit: Some(2),
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(p1.items.iter().map(|s| s.id).collect::<Vec<_>>(), ids[..2]);
    let p2 = op
        .list(
            &ListFilter::default(),
            PageParams {
                limit: Some(2),
                after: p1.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(p2.items.iter().map(|s| s.id).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(p2.next, None);
    assert_eq!(op.list_all(&ListFilter::default()).await.unwrap().len(), 4);

    let cases: Vec<(&str, ListFilter, usize)> = vec![
        (
            "by customer",
            ListFilter {
                customer: Some("a".into()),
                ..Default::default()
            },
            3,
        ),
        (
            "by kind",
            ListFilter {
                kind: Some(Kind::Dev),
                ..Default::default()
            },
            1,
        ),
        (
            "by phase",
            ListFilter {
                phase: Some(Phase::Queued),
                ..Default::default()
            },
            4,
        ),
        (
            "by a phase nobody is in",
            ListFilter {
                phase: Some(Phase::Ready),
                ..Default::default()
            },
            0,
        ),
        (
            "by hostname nobody has",
            ListFilter {
                hostname: Some("mc-x-1".into()),
                ..Default::default()
            },
            0,
        ),
        (
            "by vmid nobody has",
            ListFilter {
                vmid: Some(5000),
                ..Default::default()
            },
            0,
        ),
    ];
    for (reason, f, n) in cases {
        assert_eq!(op.list_all(&f).await.unwrap().len(), n, "{reason}");
    }
    // Limits above the maximum are clamped, not refused.
    let res = h
        .http
        .get(h.url("/api/servers?limit=100000"))
        .bearer_auth(h.token(Role::Viewer, None).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn customer_tokens_see_only_their_own() {
    let h = Harness::start().await;
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let viewer = h.client(&h.token(Role::Viewer, None).await);
    let theirs = h.seed("u2", paper()).await;

    // A customer token creates for itself without naming the customer.
    let mine = u1.create(&req(None, paper()), None).await.unwrap();
    assert_eq!(mine.server.customer_id, "u1");
    let listed = u1.list_all(&ListFilter::default()).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [mine.server.id]
    );
    let asked = ListFilter {
        customer: Some("u2".into()),
        ..Default::default()
    };
    assert!(
        u1.list_all(&asked).await.unwrap().is_empty(),
        "asking for another customer shows nothing"
    );
    assert!(matches!(
        u1.get(theirs.id).await.unwrap_err(),
        api::ClientError::NotFound(_)
    ));
    assert_eq!(u1.get(mine.server.id).await.unwrap().id, mine.server.id);
    assert_eq!(
        u1.operation(mine.operation_id).await.unwrap().state,
        OperationState::Pending
    );
    assert_eq!(u1.customer("u1").await.unwrap().id, "u1");

    // A viewer sees everyone's.
    assert_eq!(
        viewer.list_all(&ListFilter::default()).await.unwrap().len(),
        2
    );
    assert_eq!(viewer.get(theirs.id).await.unwrap().customer_id, "u2");
}

#[tokio::test]
async fn portal_acts_for_any_customer() {
    let h = Harness::start().await;
    let portal = h.client(&h.token(Role::Portal, None).await);
    let a = portal
        .create(&req(Some("u7"), paper()), Some("p1"))
        .await
        .unwrap();
    assert_eq!(a.server.customer_id, "u7");
    let d = portal.delete(a.server.id).await.unwrap();
    assert!(d.server.deletion_requested_at.is_some());
    let s = portal.reconcile(a.server.id, false).await.unwrap();
    assert_eq!(s.id, a.server.id);
    assert_eq!(
        portal.customer("u7").await.unwrap().standing,
        Standing::Active
    );
}

#[tokio::test]
async fn customers_controller_orphans_catalog_and_health() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let viewer = h.client(&h.token(Role::Viewer, None).await);

    // Customers: defaults, then an operator sets quota and standing.
    let c = op.customer("u5").await.unwrap();
    assert_eq!((c.standing, c.quota), (Standing::Active, Quota::default()));
    let q = Quota {
        max_servers: 2,
        max_memory_mib: 8192,
        max_cores: 6,
        max_disk_gib: 100,
    };
    let c = op
        .set_customer(
            "u5",
            &CustomerUpdate {
                quota: Some(q),
                standing: Some(Standing::Overdue),
            },
        )
        .await
        .unwrap();
    assert_eq!((c.quota, c.standing), (q, Standing::Overdue));
    let c = op
        .set_customer(
            "u5",
            &CustomerUpdate {
                quota: None,
                standing: Some(Standing::Active),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (c.quota, c.standing),
        (q, Standing::Active),
        "omitted quota kept"
    );
    assert_eq!(viewer.customer("u5").await.unwrap().quota, q);

    // Controller status from replica heartbeats.
    let now = chrono::Utc::now();
    for (id, depth) in [("r1", 3), ("r2", 4)] {
        h.store
            .heartbeat(&ReplicaInfo {
                id: id.into(),
                started_at: now,
                last_seen: now,
                queue_depth: depth,
                workers_busy: 1,
                leases_held: 0,
            })
            .await
            .unwrap();
    }
    let cs = viewer.controller_status().await.unwrap();
    assert_eq!(cs.replicas.len(), 2);
    assert_eq!(cs.queue_depth, 7);

    // Orphans as reported by the controller.
    assert!(op.orphans().await.unwrap().is_empty());
    h.store
        .replace_orphans(&[Orphan {
            vmid: 5999,
            node: "pve".into(),
            marker: uuid::Uuid::now_v7().to_string(),
            name: Some("mc-paper-5999".into()),
            first_seen: now,
            last_seen: now,
        }])
        .await
        .unwrap();
    assert_eq!(viewer.orphans().await.unwrap()[0].vmid, 5999);

    // Catalog, in the Portal's shapes.
    let g = serde_json::to_value(viewer.catalog_game().await.unwrap()).unwrap();
    assert_eq!(g["games"][0]["id"], "minecraft");
    assert_eq!(g["games"][0]["variants"].as_array().unwrap().len(), 6);
    let d = serde_json::to_value(viewer.catalog_dev().await.unwrap()).unwrap();
    assert_eq!(
        d["runtimes"][1],
        serde_json::json!({"id": "python", "versions": ["3.12", "3.13"]})
    );

    // Health, readiness and the OpenAPI document need no token.
    let anon = api::ApiClient::new(&h.base, None).unwrap();
    anon.health().await.unwrap();
    anon.ready().await.unwrap();
    let doc: serde_json::Value = h
        .http
        .get(h.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/servers"].is_object());
    // But the API does.
    assert!(matches!(
        anon.list(&ListFilter::default(), PageParams::default())
            .await
            .unwrap_err(),
        api::ClientError::Unauthorized(_)
    ));
}

#[tokio::test]
async fn metrics_are_rendered_when_enabled() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let h = Harness::start_full(api::ApiConfig::default(), Some(handle)).await;
    let res = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn unreachable_api_is_reported_as_such() {
    // A port that was just free: nothing listens.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let c = api::ApiClient::new(&format!("http://{addr}"), None).unwrap();
    let err = c.health().await.unwrap_err();
    assert!(matches!(err, api::ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn graceful_shutdown_ends_watch_streams() {
    use futures::StreamExt;
    let mut h = Harness::start().await;
    let viewer = h.client(&h.token(Role::Viewer, None).await);
    let mut w = Box::pin(viewer.watch(&ListFilter::default(), None));
    // The bookmark proves the stream is open.
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap();
    assert!(matches!(
        first,
        Some(Ok(api::wire::WatchEvent::Bookmark { .. }))
    ));
    h.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(_))), "the stream ended: {end:?}");
}

/// `GET /api/pools`: a pool no longer declared still shows while it has members (it drains),
/// with its counts and members.
#[tokio::test]
async fn pools_show_members_until_drained() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    assert!(op.pools().await.unwrap().is_empty(), "no pool declared");
    let new = model::NewPoolMember {
        template: 900,
        node: "pve".into(),
        template_digest: "f1".into(),
        template_version: None,
    };
    let range = VmidRange {
        min: 5000,
        max: 5999,
    };
    let free = h
        .store
        .reserve_pool_member(&new, model::Kind::Game, range, &[])
        .await
        .unwrap();
    h.store.member_ready(free.vmid).await.unwrap();
    h.store
        .reserve_pool_member(&new, model::Kind::Game, range, &[])
        .await
        .unwrap();
    let pools = op.pools().await.unwrap();
    assert_eq!(pools.len(), 1);
    let p = &pools[0];
    assert_eq!(
        (p.template, p.desired, p.free, p.cloning, p.retiring),
        (900, 0, 1, 1, 0),
        "{p:?}"
    );
    assert_eq!(p.members.len(), 2);
    assert!(p.oldest_free_age_secs.is_some(), "a free member has an age");
}
