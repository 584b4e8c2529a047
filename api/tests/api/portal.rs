//! The Portal's create-and-poll flow, replayed byte for byte, with the server driven through
//! its statuses as the controller would write them.

use crate::common::{Harness, expect_problem};
use chrono::Utc;
use model::status::{Failure, reason};
use model::store::Store;
use model::{ConditionStatus as S, ConditionType as T, Role, ServerId, ServerStatus};
use serde_json::{Value, json};

/// Write the server's status as the controller does (conditions, generation 1).
async fn drive(h: &Harness, id: ServerId, f: impl FnOnce(&mut ServerStatus)) {
    let s = h.get(id).await;
    let mut st = s.status.clone();
    st.observed_generation = s.generation;
    f(&mut st);
    h.store
        .write_status(id, &st, s.resource_version, None)
        .await
        .unwrap();
}

fn set(st: &mut ServerStatus, t: T, s: S, r: &str) {
    st.set_condition(t, s, r, "", 1, Utc::now());
}

async fn poll(h: &Harness, token: &str, status_url: &str) -> Value {
    let res = h
        .http
        .get(h.url(status_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn sp(v: &Value) -> (String, String) {
    (
        v["status"].as_str().unwrap().into(),
        v["phase"].as_str().unwrap().into(),
    )
}

async fn portal_create(h: &Harness, token: &str, key: &str, body: &Value) -> Value {
    let res = h
        .http
        .post(h.url("/api/instances"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: Value = res.json().await.unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "operationId",
            "phase",
            "requestId",
            "serverId",
            "status",
            "statusUrl"
        ]
    );
    assert_eq!(v["requestId"], request_id.as_str());
    assert_eq!(
        v["statusUrl"],
        format!(
            "/api/instances/operations/{}",
            v["operationId"].as_str().unwrap()
        )
        .as_str()
    );
    v
}

#[tokio::test]
async fn create_and_poll_until_ready() {
    let h = Harness::start().await;
    let t = h.token(Role::Portal, None).await;
    let body = json!({"customerId": "u000", "ctype": "game", "game": "minecraft", "variant": "vanilla", "version": "1.21.7", "memoryMiB": 2048});
    let accepted = portal_create(&h, &t, "click-7f3a", &body).await;
    assert_eq!(
        sp(&accepted),
        ("provisioning_queued".into(), "queued".into())
    );
    let url = accepted["statusUrl"].as_str().unwrap().to_string();
    let id: ServerId = accepted["serverId"].as_str().unwrap().parse().unwrap();
    let server = h.get(id).await;
    assert_eq!(server.customer_id, "u000");
    assert_eq!(server.spec.resources.memory_mib, 2048);

    // A double click (same key, same body) is the same operation.
    let again = portal_create(&h, &t, "click-7f3a", &body).await;
    assert_eq!(again["operationId"], accepted["operationId"]);

    type Drive = Box<dyn FnOnce(&mut ServerStatus)>;
    let script: Vec<(&str, Drive, (&str, &str))> = vec![
        (
            "nothing observed yet",
            Box::new(|_| {}),
            ("provisioning_queued", "queued"),
        ),
        (
            "allocating a VMID",
            Box::new(|st| set(st, T::VmidAllocated, S::False, "Allocating")),
            ("provisioning_running", "allocate-vmid"),
        ),
        (
            "cloning",
            Box::new(|st| {
                set(st, T::VmidAllocated, S::True, "Reserved");
                st.vmid = Some(5208);
                set(st, T::ContainerCreated, S::False, "Cloning");
            }),
            ("provisioning_running", "clone-container"),
        ),
        (
            "configuring",
            Box::new(|st| set(st, T::ContainerCreated, S::False, reason::CONFIGURING)),
            ("provisioning_running", "configure-container"),
        ),
        (
            "starting",
            Box::new(|st| {
                set(st, T::ContainerCreated, S::True, "Created");
                set(st, T::ContainerRunning, S::False, "Starting");
            }),
            ("provisioning_running", "start-container"),
        ),
        (
            "a transient Proxmox error is still running, at its step",
            Box::new(|st| set(st, T::Degraded, S::True, "ProxmoxUnavailable")),
            ("provisioning_running", "start-container"),
        ),
        (
            "waiting for an IP",
            Box::new(|st| {
                set(st, T::Degraded, S::False, "Healthy");
                set(st, T::ContainerRunning, S::True, "Running");
                set(st, T::NetworkReady, S::False, "WaitingForIp");
            }),
            ("provisioning_running", "wait-for-ip"),
        ),
        (
            "sending the agent config",
            Box::new(|st| {
                set(st, T::NetworkReady, S::True, "HasIp");
                st.ip = Some("127.0.0.8".into());
                set(st, T::AgentReady, S::False, "Pending");
            }),
            ("provisioning_running", "send-agent-config"),
        ),
        (
            "waiting for the agent",
            Box::new(|st| set(st, T::AgentReady, S::False, reason::CONFIG_SENT)),
            ("provisioning_running", "wait-for-agent"),
        ),
        (
            "the agent starting the game",
            Box::new(|st| {
                set(st, T::AgentReady, S::True, "Running");
                set(st, T::ProcessRunning, S::False, "Starting");
            }),
            ("provisioning_running", "start-game"),
        ),
        (
            "publishing DNS and proxy",
            Box::new(|st| {
                set(st, T::ProcessRunning, S::True, "Running");
                set(st, T::DnsPublished, S::False, "Publishing");
            }),
            ("provisioning_running", "publish-edge"),
        ),
        (
            "ready",
            Box::new(|st| {
                set(st, T::DnsPublished, S::True, "Published");
                set(st, T::ProxyRegistered, S::True, "Registered");
                set(st, T::Ready, S::True, "Ready");
                st.hostname = Some("mc-vanilla-5208".into());
                st.fqdn = Some("mc-vanilla-5208.zerolaghub.quest".into());
            }),
            ("ready", "complete"),
        ),
    ];
    let mut seen = Vec::new();
    let mut want = Vec::new();
    for (why, f, expected) in script {
        drive(&h, id, f).await;
        let v = poll(&h, &t, &url).await;
        assert_eq!(v["operationId"], accepted["operationId"], "{why}");
        assert_eq!(v["serverId"], accepted["serverId"], "{why}");
        assert!(v.get("error").is_none(), "{why}: {v}");
        seen.push(sp(&v));
        want.push((expected.0.to_string(), expected.1.to_string()));
    }
    assert_eq!(seen, want);
    let last = poll(&h, &t, &url).await;
    assert_eq!(last["vmid"], 5208);
    assert_eq!(last["hostname"], "mc-vanilla-5208");
    assert_eq!(last["fqdn"], "mc-vanilla-5208.zerolaghub.quest");
}

#[tokio::test]
async fn create_and_poll_until_failed() {
    let h = Harness::start().await;
    let t = h.token(Role::Portal, None).await;
    let body = json!({"customerId": "u001", "ctype": "dev", "runtime": "python", "version": "3.12", "memoryMiB": 2048});
    let accepted = portal_create(&h, &t, "click-1", &body).await;
    let url = accepted["statusUrl"].as_str().unwrap().to_string();
    let id: ServerId = accepted["serverId"].as_str().unwrap().parse().unwrap();

    let mut seen = vec![sp(&poll(&h, &t, &url).await)];
    drive(&h, id, |st| {
        for c in [
            T::VmidAllocated,
            T::ContainerCreated,
            T::ContainerRunning,
            T::NetworkReady,
        ] {
            set(st, c, S::True, "Ok");
        }
        st.vmid = Some(6088);
        st.hostname = Some("dev-6088".into());
        set(st, T::AgentReady, S::False, reason::INSTALLING);
    })
    .await;
    seen.push(sp(&poll(&h, &t, &url).await));
    drive(&h, id, |st| {
        st.failure = Some(Failure {
            step: "wait-for-agent".into(),
            message: "agent reported error: runtime install failed (exit 1)".into(),
            at: Utc::now(),
            generation: 1,
        });
    })
    .await;
    let failed = poll(&h, &t, &url).await;
    seen.push(sp(&failed));
    let want: Vec<(String, String)> = [
        ("provisioning_queued", "queued"),
        ("provisioning_running", "wait-for-agent"),
        ("provisioning_failed", "wait-for-agent"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want);
    assert_eq!(
        failed["error"],
        "agent reported error: runtime install failed (exit 1)"
    );
    assert_eq!(failed["vmid"], 6088);
    assert_eq!(failed["hostname"], "dev-6088");
}

#[tokio::test]
async fn portal_idempotency_rules() {
    let h = Harness::start().await;
    let t = h.token(Role::Portal, None).await;
    let a = json!({"customerId": "u000", "ctype": "game", "game": "minecraft", "variant": "paper", "version": "1.21.7", "memoryMiB": 2048});
    let b = json!({"customerId": "u000", "ctype": "game", "game": "minecraft", "variant": "paper", "version": "1.21.1", "memoryMiB": 2048});
    let first = portal_create(&h, &t, "k1", &a).await;

    let send = |key: Option<&'static str>, body: Value| {
        let mut rb = h
            .http
            .post(h.url("/api/instances"))
            .bearer_auth(&t)
            .json(&body);
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        rb.send()
    };
    // Same key, different payload → 409.
    expect_problem(
        send(Some("k1"), b.clone()).await.unwrap(),
        409,
        "key reused",
    )
    .await;
    // No key, identical payload in progress → the existing operation, 202.
    let res = send(None, a.clone()).await.unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["operationId"], first["operationId"]);
    // No key, different payload in progress → 409.
    expect_problem(send(None, b).await.unwrap(), 409, "launch guard").await;
    assert_eq!(h.all_servers().await.len(), 1);
}
