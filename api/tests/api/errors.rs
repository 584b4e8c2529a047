//! Every refusal: the right status, a problem+json body, and nothing written.

use crate::common::{Harness, expect_problem, paper};
use api::ApiConfig;
use model::store::Store;
use model::{Quota, Role, Standing};
use serde_json::json;

enum Tok {
    None,
    Raw(&'static str),
    Operator,
    Portal,
    Viewer,
    U1,
    U2,
}

enum Body {
    None,
    Json(serde_json::Value),
    /// Raw bytes with `content-type: application/json`.
    Raw(String),
    /// JSON text without a content-type.
    NoContentType(String),
}

struct Case {
    reason: &'static str,
    method: &'static str,
    path: String,
    tok: Tok,
    body: Body,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// A field the problem's `errors` must name.
    field: Option<&'static str>,
    /// Text the detail must contain.
    detail: Option<&'static str>,
}

fn case(
    reason: &'static str,
    method: &'static str,
    path: &str,
    tok: Tok,
    body: Body,
    status: u16,
) -> Case {
    Case {
        reason,
        method,
        path: path.to_string(),
        tok,
        body,
        headers: vec![],
        status,
        field: None,
        detail: None,
    }
}

impl Case {
    fn field(mut self, f: &'static str) -> Self {
        self.field = Some(f);
        self
    }
    fn detail(mut self, d: &'static str) -> Self {
        self.detail = Some(d);
        self
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

fn spec_json() -> serde_json::Value {
    serde_json::to_value(paper()).unwrap()
}

#[tokio::test]
async fn refusals_are_problems_and_write_nothing() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    let portal = h.token(Role::Portal, None).await;
    let viewer = h.token(Role::Viewer, None).await;
    let u1 = h.token(Role::Customer, Some("u1")).await;
    let u2 = h.token(Role::Customer, Some("u2")).await;
    h.store
        .upsert_customer("bad", None, Some(Standing::Suspended))
        .await
        .unwrap();
    h.store
        .upsert_customer(
            "full",
            Some(Quota {
                max_servers: 0,
                max_memory_mib: 1 << 20,
                ..Quota::default()
            }),
            None,
        )
        .await
        .unwrap();
    let s1 = h.seed("u1", paper()).await;
    let s1_op = h.client(&op).list_all(&Default::default()).await.unwrap();
    assert_eq!(s1_op.len(), 1);
    // The create operation of s1, to probe cross-customer operation reads.
    let created = h
        .client(&u1)
        .create(
            &api::wire::CreateServerRequest {
                customer_id: None,
                spec: paper(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        created.server.id, s1.id,
        "no key + identical in progress → the existing one"
    );
    let s1_opid = created.operation_id;

    let valid = json!({"customerId": "u3", "spec": spec_json()});
    let mut wrong_type = valid.clone();
    wrong_type["spec"]["resources"] = json!({"cores": 2, "memoryMib": "lots", "diskGib": 16});
    let mut unknown = valid.clone();
    unknown["spec"]["colour"] = json!("red");
    let mut bad_version = valid.clone();
    bad_version["spec"]["version"] = json!("24w14a");
    let mut unoffered = valid.clone();
    unoffered["spec"]["version"] = json!("1.8.9");
    let unoffered_rt =
        json!({"customerId": "u3", "spec": {"kind": "dev", "runtime": "ruby", "version": "3"}});
    let s = s1.id;
    // Proxmox cannot shrink a container volume: a smaller diskGib is refused.
    let mut shrunk = spec_json();
    shrunk["resources"]["diskGib"] = json!(8);
    let nil = uuid::Uuid::now_v7();

    let cases = vec![
        case("no token at all", "POST", "/api/servers", Tok::None, Body::Json(valid.clone()), 401),
        case("an unknown token", "GET", "/api/servers", Tok::Raw("Bearer zlh_nope"), Body::None, 401),
        case("a non-bearer scheme", "GET", "/api/servers", Tok::Raw("Basic dTpw"), Body::None, 401),
        case("an empty bearer", "GET", "/api/servers", Tok::Raw("Bearer "), Body::None, 401),
        case("viewers are read-only", "POST", "/api/servers", Tok::Viewer, Body::Json(valid.clone()), 403),
        case("viewers may not delete", "DELETE", &format!("/api/servers/{s}"), Tok::Viewer, Body::None, 403),
        case("viewers may not reconcile", "POST", &format!("/api/servers/{s}/reconcile"), Tok::Viewer, Body::None, 403),
        case("pause is for operators", "POST", &format!("/api/servers/{s}/pause"), Tok::Portal, Body::None, 403),
        case("resume is for operators", "POST", &format!("/api/servers/{s}/resume"), Tok::U1, Body::None, 403),
        case("customers do not see the controller", "GET", "/api/controller", Tok::U1, Body::None, 403),
        case("the portal does not see orphans", "GET", "/api/orphans", Tok::Portal, Body::None, 403),
        case("warm pools are for operators", "GET", "/api/pools", Tok::Viewer, Body::None, 403),
        case("quotas are for operators", "PUT", "/api/customers/u1", Tok::Portal, Body::Json(json!({"standing": "active"})), 403),
        case("malformed JSON", "POST", "/api/servers", Tok::Operator, Body::Raw("{\"spec\": ".into()), 400),
        case("JSON that is not an object", "POST", "/api/servers", Tok::Operator, Body::Raw("[1,2]".into()), 422),
        case("an unknown spec field", "POST", "/api/servers", Tok::Operator, Body::Json(unknown), 422).detail("colour"),
        case("an unknown top-level field", "POST", "/api/servers", Tok::Operator, Body::Json(json!({"customerId": "u3", "spec": spec_json(), "x": 1})), 422).detail("x"),
        case("a wrong type names the field", "POST", "/api/servers", Tok::Operator, Body::Json(wrong_type), 422).field("spec.resources.memoryMib"),
        case("a missing spec", "POST", "/api/servers", Tok::Operator, Body::Json(json!({"customerId": "u3"})), 422).detail("spec"),
        case("a body without content-type", "POST", "/api/servers", Tok::Operator, Body::NoContentType(valid.to_string()), 415),
        case("an oversize body", "POST", "/api/servers", Tok::Operator, Body::Raw(format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024))), 413),
        case("a server id that is not a uuid", "GET", "/api/servers/not-a-uuid", Tok::Operator, Body::None, 400),
        case("an operation id that is not a uuid", "GET", "/api/operations/42", Tok::Operator, Body::None, 400),
        case("a portal operation id that is not a uuid", "GET", "/api/instances/operations/x", Tok::Portal, Body::None, 400),
        case("an unknown server", "GET", &format!("/api/servers/{nil}"), Tok::Operator, Body::None, 404),
        case("an unknown operation", "GET", &format!("/api/operations/{nil}"), Tok::Operator, Body::None, 404),
        case("another customer's server is not found", "GET", &format!("/api/servers/{s}"), Tok::U2, Body::None, 404),
        case("another customer's server cannot be deleted", "DELETE", &format!("/api/servers/{s}"), Tok::U2, Body::None, 404),
        case("another customer's server cannot be patched", "PATCH", &format!("/api/servers/{s}"), Tok::U2, Body::Json(json!({"spec": spec_json()})), 404),
        case("another customer's events are not found", "GET", &format!("/api/servers/{s}/events"), Tok::U2, Body::None, 404),
        case("another customer's reconcile is not found", "POST", &format!("/api/servers/{s}/reconcile"), Tok::U2, Body::None, 404),
        case("another customer's operation is not found", "GET", &format!("/api/operations/{s1_opid}"), Tok::U2, Body::None, 404),
        case("another customer's portal operation is not found", "GET", &format!("/api/instances/operations/{s1_opid}"), Tok::U2, Body::None, 404),
        case("another customer's record is not found", "GET", "/api/customers/u1", Tok::U2, Body::None, 404),
        case("a customer creates only for itself", "POST", "/api/servers", Tok::U1, Body::Json(json!({"customerId": "u2", "spec": spec_json()})), 403),
        case("the portal must name the customer", "POST", "/api/servers", Tok::Portal, Body::Json(json!({"spec": spec_json()})), 422).field("customerId"),
        case("customer ids are checked", "POST", "/api/servers", Tok::Portal, Body::Json(json!({"customerId": "a/b", "spec": spec_json()})), 422).field("customerId"),
        case("an invalid spec names the field", "POST", "/api/servers", Tok::Operator, Body::Json(bad_version), 422).field("spec.version"),
        case("an unoffered version names version", "POST", "/api/servers", Tok::Operator, Body::Json(unoffered), 422).field("spec.version"),
        case("an unoffered runtime names runtime", "POST", "/api/servers", Tok::Operator, Body::Json(unoffered_rt), 422).field("spec.runtime"),
        case("a suspended customer is refused", "POST", "/api/servers", Tok::Portal, Body::Json(json!({"customerId": "bad", "spec": spec_json()})), 403).detail("suspended"),
        case("a full quota is refused", "POST", "/api/servers", Tok::Portal, Body::Json(json!({"customerId": "full", "spec": spec_json()})), 403).detail("quota"),
        case("an unknown route", "GET", "/api/nope", Tok::Operator, Body::None, 404),
        case("an unknown route without a token", "GET", "/nope", Tok::None, Body::None, 404),
        case("a method the route lacks", "PUT", "/api/servers", Tok::Operator, Body::None, 405),
        case("a non-numeric limit", "GET", "/api/servers?limit=abc", Tok::Operator, Body::None, 400),
        case("a zero limit", "GET", "/api/servers?limit=0", Tok::Operator, Body::None, 400),
        case("an unknown query parameter", "GET", "/api/servers?colour=red", Tok::Operator, Body::None, 400),
        case("an unknown phase", "GET", "/api/servers?phase=sleepy", Tok::Operator, Body::None, 400),
        case("a bad after cursor", "GET", "/api/servers?after=xyz", Tok::Operator, Body::None, 400),
        case("a bad Last-Event-ID", "GET", "/api/servers?watch=true", Tok::Operator, Body::None, 400).header("last-event-id", "abc"),
        case("an overlong Idempotency-Key", "POST", "/api/servers", Tok::Operator, Body::Json(valid.clone()), 400).header("idempotency-key", "k".repeat(300)),
        case("a stale If-Match", "PATCH", &format!("/api/servers/{s}"), Tok::Operator, Body::Json(json!({"spec": spec_json()})), 409).header("if-match", "\"999999\""),
        case("a stale body resourceVersion", "PATCH", &format!("/api/servers/{s}"), Tok::Operator, Body::Json(json!({"spec": spec_json(), "resourceVersion": 999999})), 409),
        case("the disk cannot shrink", "PATCH", &format!("/api/servers/{s}"), Tok::Operator, Body::Json(json!({"spec": shrunk})), 422).field("spec.resources.diskGib"),
        case("kind cannot change", "PATCH", &format!("/api/servers/{s}"), Tok::Operator, Body::Json(json!({"spec": {"kind": "dev", "runtime": "node", "version": "22"}})), 422).field("spec.kind"),
        case("the portal's ctype is checked", "POST", "/api/instances", Tok::Portal, Body::Json(json!({"customerId": "u3", "ctype": "vm", "version": "1"})), 422).field("ctype"),
        case("the portal's memory is checked", "POST", "/api/instances", Tok::Portal, Body::Json(json!({"customerId": "u3", "ctype": "game", "game": "minecraft", "variant": "paper", "version": "1.21.7", "memoryMiB": 100})), 422).field("memoryMiB"),
        case("the portal's wrong types are 422", "POST", "/api/instances", Tok::Portal, Body::Json(json!({"customerId": "u3", "ctype": "game", "version": 1.21})), 422),
        case("a bad customer id in the path", "GET", "/api/customers/a%20b", Tok::Operator, Body::None, 400),
        case("an unknown customer update field", "PUT", "/api/customers/u1", Tok::Operator, Body::Json(json!({"standing": "active", "vip": true})), 422),
        case("an unknown standing", "PUT", "/api/customers/u1", Tok::Operator, Body::Json(json!({"standing": "asleep"})), 422),
        case("metrics are off in this process", "GET", "/metrics", Tok::None, Body::None, 404),
    ];

    let before = h.all_servers().await;
    let before_u1 = h.store.get_customer("u1").await.unwrap();
    for c in cases {
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut rb = h.http.request(method, h.url(&c.path));
        let secret = match c.tok {
            Tok::None => None,
            Tok::Raw(v) => {
                rb = rb.header("authorization", v);
                None
            }
            Tok::Operator => Some(&op),
            Tok::Portal => Some(&portal),
            Tok::Viewer => Some(&viewer),
            Tok::U1 => Some(&u1),
            Tok::U2 => Some(&u2),
        };
        if let Some(t) = secret {
            rb = rb.bearer_auth(t);
        }
        rb = match c.body {
            Body::None => rb,
            Body::Json(v) => rb.json(&v),
            Body::Raw(s) => rb.header("content-type", "application/json").body(s),
            Body::NoContentType(s) => rb.body(s),
        };
        for (k, v) in &c.headers {
            rb = rb.header(*k, v);
        }
        let res = rb.send().await.unwrap();
        let www = res.headers().get("www-authenticate").cloned();
        let p = expect_problem(res, c.status, c.reason).await;
        if c.status == 401 {
            assert_eq!(www.unwrap(), "Bearer", "{}", c.reason);
        }
        if let Some(f) = c.field {
            let fields: Vec<&str> = p["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                fields.contains(&f),
                "{}: fields {fields:?} in {p}",
                c.reason
            );
        }
        if let Some(d) = c.detail {
            let detail = p["detail"].as_str().unwrap_or("");
            assert!(detail.contains(d), "{}: detail {detail:?}", c.reason);
        }
        let text = p.to_string();
        for t in [&op, &portal, &viewer, &u1, &u2] {
            assert!(!text.contains(t.as_str()), "{}: a token leaked", c.reason);
        }
    }
    assert_eq!(h.all_servers().await, before, "nothing was written");
    let after_u1 = h.store.get_customer("u1").await.unwrap();
    assert_eq!(
        (after_u1.quota, after_u1.standing),
        (before_u1.quota, before_u1.standing)
    );
}

#[tokio::test]
async fn suspended_and_quota_problems_say_why() {
    let h = Harness::start().await;
    let portal = h.client(&h.token(Role::Portal, None).await);
    h.store
        .upsert_customer("late", None, Some(Standing::Overdue))
        .await
        .unwrap();
    let err = portal
        .create(
            &api::wire::CreateServerRequest {
                customer_id: Some("late".into()),
                spec: paper(),
            },
            Some("k1"),
        )
        .await
        .unwrap_err();
    let p = err.problem().unwrap();
    assert_eq!(p.status, 403);
    assert_eq!(p.standing, Some(Standing::Overdue));
    assert!(matches!(err, api::ClientError::Forbidden(_)), "{err}");

    // Memory quota: 4 GiB in all, two 2 GiB servers fit, a third does not.
    h.store
        .upsert_customer(
            "m",
            Some(Quota {
                max_servers: 10,
                max_memory_mib: 4096,
                ..Quota::default()
            }),
            None,
        )
        .await
        .unwrap();
    for k in ["a", "b"] {
        portal
            .create(
                &api::wire::CreateServerRequest {
                    customer_id: Some("m".into()),
                    spec: paper(),
                },
                Some(k),
            )
            .await
            .unwrap();
    }
    let err = portal
        .create(
            &api::wire::CreateServerRequest {
                customer_id: Some("m".into()),
                spec: paper(),
            },
            Some("c"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("memory"), "{err}");
    let servers = h.all_servers().await;
    assert_eq!(servers.iter().filter(|s| s.customer_id == "m").count(), 2);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let h = Harness::start_with(ApiConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 2,
        ..ApiConfig::default()
    })
    .await;
    let t = h.token(Role::Viewer, None).await;
    let other = h.token(Role::Viewer, None).await;
    // Two requests fit the burst; sending more at once soon finds the limit (the refill is
    // one per second, far slower than these requests).
    for i in 0..2 {
        let res = h
            .http
            .get(h.url("/api/servers"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i} is within the burst");
    }
    let mut limited = None;
    for _ in 0..20 {
        let res = h
            .http
            .get(h.url("/api/servers"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("a 429 once the burst is spent");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    expect_problem(res, 429, "over the limit").await;
    // Another token has its own budget.
    let res = h
        .http
        .get(h.url("/api/servers"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_request_that_outlives_the_timeout_is_a_503_problem() {
    // Another connection holds SQLite's write lock, so a create waits on the store far longer
    // (the 5 s busy timeout) than the API's 200 ms request timeout: deterministic.
    let h = Harness::start_with(ApiConfig {
        request_timeout: std::time::Duration::from_millis(200),
        ..ApiConfig::default()
    })
    .await;
    let t = h.token(Role::Operator, None).await;
    let model::store::AnyStore::Sqlite(sqlite) = &h.store else {
        panic!("the harness runs on SQLite");
    };
    let mut blocker = sqlite.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&t)
        .json(&json!({"customerId": "u3", "spec": spec_json()}))
        .send()
        .await
        .unwrap();
    sqlx::query("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    let p = expect_problem(res, 503, "timed out").await;
    assert!(p["type"].as_str().unwrap().ends_with("unavailable"), "{p}");
    drop(blocker);
    assert!(h.all_servers().await.is_empty(), "nothing written");
}
