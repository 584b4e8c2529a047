//! The Portal's remaining routes: `DELETE /api/containers/{vmid}`, `GET /api/health`,
//! `GET /api/instances`, and VMIDs on every server route.

use crate::common::{Harness, expect_problem, paper};
use model::store::{Store, VmidRange};
use model::{Role, ServerId};
use serde_json::Value;

const VMIDS: VmidRange = VmidRange {
    min: 5000,
    max: 5999,
};

async fn seeded(h: &Harness, customer: &str) -> (ServerId, u32) {
    let id = h.seed(customer, paper()).await.id;
    let vmid = h.store.reserve_vmid(id, VMIDS, &[], false).await.unwrap();
    (id, vmid)
}

#[tokio::test]
async fn delete_by_vmid_is_the_native_deletion_and_scoped() {
    let h = Harness::start().await;
    let u1 = h.token(Role::Customer, Some("u1")).await;
    let (mine, my_vmid) = seeded(&h, "u1").await;
    let (theirs, their_vmid) = seeded(&h, "u2").await;
    let del = |vmid: String, token: Option<&str>| {
        let mut r = h.http.delete(h.url(&format!("/api/containers/{vmid}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    expect_problem(
        del(my_vmid.to_string(), None).await.unwrap(),
        401,
        "the old route needed no token; this one does",
    )
    .await;
    expect_problem(
        del(their_vmid.to_string(), Some(&u1)).await.unwrap(),
        404,
        "another customer's VMID does not exist for u1",
    )
    .await;
    assert!(!h.get(theirs).await.is_deleting(), "and it was not touched");
    expect_problem(
        del(mine.to_string(), Some(&u1)).await.unwrap(),
        400,
        "this route takes VMIDs, not ids",
    )
    .await;
    let res = del(my_vmid.to_string(), Some(&u1)).await.unwrap();
    assert_eq!(res.status(), 202, "one's own server by VMID");
    let body: Value = res.json().await.unwrap();
    assert!(
        body["operationId"].is_string(),
        "the delete operation: {body}"
    );
    assert!(
        h.get(mine).await.is_deleting(),
        "the teardown was requested"
    );
}

#[tokio::test]
async fn health_answers_like_healthz() {
    let h = Harness::start().await;
    let a: Value = h
        .http
        .get(h.url("/api/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = h
        .http
        .get(h.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a, b, "the same answer, no token needed");
    assert_eq!(a["status"], "ok");
}

#[tokio::test]
async fn instances_are_the_callers_own() {
    let h = Harness::start().await;
    let (mine, vmid) = seeded(&h, "u1").await;
    seeded(&h, "u2").await;
    let list = |token: String, query: &'static str| {
        let req = h
            .http
            .get(h.url(&format!("/api/instances{query}")))
            .bearer_auth(token);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let u1 = h.token(Role::Customer, Some("u1")).await;
    let own = list(u1.clone(), "").await;
    let items = own["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "u1 sees only its own: {own}");
    assert_eq!(items[0]["serverId"], mine.to_string());
    assert_eq!(items[0]["vmid"], vmid);
    assert_eq!(items[0]["ctype"], "game");
    assert_eq!(items[0]["variant"], "paper");
    assert_eq!(items[0]["status"], "queued");
    let asked = list(u1, "?customerId=u2").await;
    assert_eq!(
        asked["items"].as_array().unwrap().len(),
        0,
        "asking for u2 shows nothing"
    );
    let portal = h.token(Role::Portal, None).await;
    assert_eq!(
        list(portal.clone(), "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the Portal's backend sees all"
    );
    assert_eq!(
        list(portal, "?customerId=u2").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "or one customer's"
    );
}

#[tokio::test]
async fn every_server_route_takes_the_vmid() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    let (_, vmid) = seeded(&h, "u1").await;
    // (reason, method, path); each must find the server (not 400 or 404).
    let cases = [
        ("get", "GET", format!("/api/servers/{vmid}")),
        ("events", "GET", format!("/api/servers/{vmid}/events")),
        (
            "reconcile",
            "POST",
            format!("/api/servers/{vmid}/reconcile"),
        ),
        ("pause", "POST", format!("/api/servers/{vmid}/pause")),
        ("resume", "POST", format!("/api/servers/{vmid}/resume")),
        (
            "game power",
            "POST",
            format!("/api/servers/{vmid}/game/stop"),
        ),
        (
            "host power",
            "POST",
            format!("/api/servers/{vmid}/host/restart"),
        ),
        ("delete", "DELETE", format!("/api/servers/{vmid}")),
    ];
    for (reason, method, path) in cases {
        let res = h
            .http
            .request(method.parse().unwrap(), h.url(&path))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "{reason}: {} {}",
            res.status(),
            res.text().await.unwrap()
        );
    }
    let res = h
        .http
        .post(h.url(&format!("/api/servers/{vmid}/power")))
        .bearer_auth(&op)
        .json(&serde_json::json!({"signal": "start"}))
        .send()
        .await
        .unwrap();
    // Deleting by now: the power route finds it (409, not 404).
    assert_eq!(
        res.status(),
        409,
        "power by VMID finds the server being deleted"
    );
}
