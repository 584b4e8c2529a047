//! Idempotency-Key and the no-key launch guard, through the API.

use crate::common::{Harness, expect_problem, paper};
use api::wire::CreateServerRequest;
use model::{Role, ServerSpec, Variant};
use std::collections::HashSet;

fn req(customer: &str, spec: ServerSpec) -> CreateServerRequest {
    CreateServerRequest {
        customer_id: Some(customer.into()),
        spec,
    }
}

async fn concurrent_creates(h: &Harness, customer: &str, key: Option<&str>) {
    let portal = h.client(&h.token(Role::Portal, None).await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = portal.clone();
            let r = req(customer, paper());
            let key = key.map(String::from);
            tokio::spawn(async move { c.create(&r, key.as_deref()).await })
        })
        .collect();
    let mut servers = HashSet::new();
    let mut ops = HashSet::new();
    for t in tasks {
        let acc = t.await.unwrap().unwrap();
        servers.insert(acc.server.id);
        ops.insert(acc.operation_id);
    }
    assert_eq!(servers.len(), 1, "one server for 20 identical creates");
    assert_eq!(ops.len(), 1, "one operation");
    let stored = h.all_servers().await;
    assert_eq!(
        stored.iter().filter(|s| s.customer_id == customer).count(),
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_identical_creates_with_a_key_make_one_server() {
    let h = Harness::start().await;
    concurrent_creates(&h, "u1", Some("click-1")).await;
}

#[tokio::test]
async fn twenty_concurrent_identical_creates_without_a_key_make_one_server() {
    let h = Harness::start().await;
    concurrent_creates(&h, "u1", None).await;
}

#[tokio::test]
async fn key_and_guard_rules() {
    let h = Harness::start().await;
    let t = h.token(Role::Portal, None).await;
    let portal = h.client(&t);
    let first = portal
        .create(&req("u1", paper()), Some("k1"))
        .await
        .unwrap();

    // Same key, same payload (keys in another order): the same server and operation, 202.
    let reordered = serde_json::json!({"spec": paper(), "customerId": "u1"});
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&t)
        .header("idempotency-key", "k1")
        .json(&reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let again: api::wire::Accepted = res.json().await.unwrap();
    assert_eq!(
        (again.server.id, again.operation_id),
        (first.server.id, first.operation_id)
    );

    // Same key, different payload: 409, nothing written.
    let other = ServerSpec::minecraft(Variant::Vanilla, "1.21.1");
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&t)
        .header("idempotency-key", "k1")
        .json(&req("u1", other.clone()))
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, 409, "key reused with another payload").await;
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-conflict"),
        "{p}"
    );

    // No key, identical payload while the first is in progress: the existing operation.
    let same = portal.create(&req("u1", paper()), None).await.unwrap();
    assert_eq!(
        (same.server.id, same.operation_id),
        (first.server.id, first.operation_id)
    );

    // No key, different payload while one is in progress: 409 naming that operation.
    let err = portal
        .create(&req("u1", other.clone()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, api::ClientError::Conflict(_)), "{err}");
    assert_eq!(
        err.problem().unwrap().operation_id,
        Some(first.operation_id.to_string())
    );

    // Another customer is not affected by u1's guard.
    portal.create(&req("u2", other), None).await.unwrap();
    assert_eq!(h.all_servers().await.len(), 2);
}
