//! Prometheus HTTP service discovery: the format Prometheus's `http_sd_configs` reads, the
//! roles, the filters, and a server that appears once Ready and disappears once deleted.

use crate::common::{Harness, expect_problem, paper};
use chrono::Utc;
use model::store::Store;
use model::{ConditionStatus, ConditionType, Role, ServerId, ServerSpec};
use serde_json::Value;
use std::collections::BTreeSet;

const PATHS: [&str; 2] = ["/api/sd/targets", "/sd/exporters"];

/// Write the status a controller writes for a Ready server at `ip`.
async fn make_ready(h: &Harness, id: ServerId, ip: &str, vmid: u32) {
    let s = h.get(id).await;
    let mut st = s.status.clone();
    st.observed_generation = s.generation;
    st.vmid = Some(vmid);
    st.node = Some("pve1".into());
    st.hostname = Some(format!("mc-paper-{vmid}"));
    st.ip = Some(ip.into());
    st.set_condition(
        ConditionType::Ready,
        ConditionStatus::True,
        "Ready",
        "",
        s.generation,
        Utc::now(),
    );
    h.store
        .write_status(id, &st, s.resource_version, None)
        .await
        .unwrap();
}

/// GET `path` as `token`; asserts 200 and `application/json`, returns the body.
async fn discover(h: &Harness, path: &str, token: &str) -> Value {
    let res = h
        .http
        .get(h.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{path}: {ct}");
    res.json().await.unwrap()
}

/// The http_sd format: an array of `{targets, labels}` objects, nothing else; every target
/// `host:port`, every label value a string. Returns the groups by target.
fn check_format(body: &Value) -> Vec<(String, serde_json::Map<String, Value>)> {
    let groups = body.as_array().expect("a JSON array");
    groups
        .iter()
        .map(|g| {
            let obj = g.as_object().expect("each group is an object");
            let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["labels", "targets"]), "{g}");
            let targets = obj["targets"].as_array().expect("targets is an array");
            assert_eq!(targets.len(), 1, "one target per group: {g}");
            let target = targets[0].as_str().expect("a target is a string");
            let addr: std::net::SocketAddr = target
                .parse()
                .unwrap_or_else(|e| panic!("{target} is not host:port: {e}"));
            assert_ne!(addr.port(), 0);
            let labels = obj["labels"].as_object().expect("labels is an object");
            for (k, v) in labels {
                assert!(v.is_string(), "label {k} is a string: {v}");
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name {k}"
                );
            }
            (target.to_string(), labels.clone())
        })
        .collect()
}

#[tokio::test]
async fn discovery_lists_ready_servers_per_exporter_in_the_http_sd_format() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    for path in PATHS {
        assert_eq!(
            discover(&h, path, &op).await,
            Value::Array(vec![]),
            "{path}: []"
        );
    }
    let game = h.seed("u1", paper()).await;
    let dev = h.seed("u2", ServerSpec::dev("node", "22")).await;
    let provisioning = h.seed("u1", paper()).await;
    make_ready(&h, game.id, "127.0.3.7", 5001).await;
    make_ready(&h, dev.id, "127.0.2.9", 6001).await;
    let _ = provisioning;

    let body = discover(&h, "/api/sd/targets", &op).await;
    assert_eq!(
        body,
        discover(&h, "/sd/exporters", &op).await,
        "the previous path serves the same"
    );
    let groups = check_format(&body);
    let targets: BTreeSet<&str> = groups.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        BTreeSet::from(["127.0.3.7:9100", "127.0.3.7:9225", "127.0.2.9:9100"]),
        "node_exporter everywhere, the Minecraft exporter in the game; nothing of the server \
         still provisioning"
    );
    let (_, labels) = groups.iter().find(|(t, _)| t == "127.0.3.7:9225").unwrap();
    let want = [
        ("server_id", game.id.to_string()),
        ("vmid", "5001".into()),
        ("hostname", "mc-paper-5001".into()),
        ("customer", "u1".into()),
        ("kind", "game".into()),
        ("game", "minecraft".into()),
        ("variant", "paper".into()),
        ("version", "1.21.7".into()),
        ("node", "pve1".into()),
        ("exporter", "minecraft".into()),
    ];
    for (k, v) in want {
        assert_eq!(labels[k], v.as_str(), "{k}");
        assert_eq!(
            labels[&format!("__meta_zlh_{k}")],
            v.as_str(),
            "__meta_zlh_{k}"
        );
    }
    for ignored in ["path", "scheme", "__metrics_path__", "__scheme__"] {
        assert!(
            !labels.contains_key(ignored),
            "{ignored}: only set where an exporter needs it"
        );
    }
    let (_, dev_labels) = groups.iter().find(|(t, _)| t == "127.0.2.9:9100").unwrap();
    assert_eq!(dev_labels["runtime"], "node");
    assert!(!dev_labels.contains_key("game"), "no empty labels");

    // Filters.
    let cases: &[(&str, &[&str])] = &[
        ("?kind=dev", &["127.0.2.9:9100"]),
        ("?customer=u1", &["127.0.3.7:9100", "127.0.3.7:9225"]),
        ("?exporter=minecraft", &["127.0.3.7:9225"]),
        ("?kind=dev&exporter=minecraft", &[]),
        ("?customer=nobody", &[]),
    ];
    for (query, want) in cases {
        let body = discover(&h, &format!("/api/sd/targets{query}"), &op).await;
        let got: BTreeSet<String> = check_format(&body).into_iter().map(|(t, _)| t).collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{query}");
    }
}

#[tokio::test]
async fn bad_filters_are_a_clear_400() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    let cases: &[(&str, &str)] = &[
        ("?exporter=nginx", "not configured"),
        ("?kind=vm", "kind"),
        ("?customer=a%20b", "customer"),
        ("?job=zlh", "job"),
    ];
    for (query, needle) in cases {
        let res = h
            .http
            .get(h.url(&format!("/api/sd/targets{query}")))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        let p = expect_problem(res, 400, query).await;
        let detail = p["detail"].as_str().unwrap_or("");
        assert!(detail.contains(needle), "{query}: {detail}");
    }
}

/// Prometheus sends `Authorization: Bearer` from `credentials_file`: operator and viewer
/// tokens discover; customer and portal tokens are refused; no token is a 401.
#[tokio::test]
async fn discovery_is_for_operator_and_viewer_tokens() {
    let h = Harness::start().await;
    let cases: &[(Option<Role>, Option<&str>, u16)] = &[
        (Some(Role::Operator), None, 200),
        (Some(Role::Viewer), None, 200),
        (Some(Role::Portal), None, 403),
        (Some(Role::Customer), Some("u1"), 403),
        (None, None, 401),
    ];
    for (role, customer, status) in cases {
        let token = match role {
            Some(r) => Some(h.token(*r, *customer).await),
            None => None,
        };
        for path in PATHS {
            let mut req = h.http.get(h.url(path));
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            let reason = format!("{role:?} {path}");
            if *status == 200 {
                assert_eq!(res.status(), 200, "{reason}");
            } else {
                expect_problem(res, *status, &reason).await;
            }
        }
    }
}

/// Prometheus drops a target when discovery stops listing it: a server is listed from the
/// status that makes it Ready until its row is archived.
#[tokio::test]
async fn a_server_appears_once_ready_and_disappears_once_deleted() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    let s = h.seed("u1", paper()).await;
    assert_eq!(
        discover(&h, "/api/sd/targets", &op).await,
        Value::Array(vec![])
    );
    make_ready(&h, s.id, "127.0.3.8", 5002).await;
    let listed = discover(&h, "/api/sd/targets", &op).await;
    assert_eq!(check_format(&listed).len(), 2, "{listed}");
    h.store.request_deletion(s.id).await.unwrap();
    assert_eq!(
        discover(&h, "/api/sd/targets", &op).await,
        Value::Array(vec![]),
        "a server being deleted is not Ready"
    );
    h.store.archive_and_delete(s.id, None).await.unwrap();
    assert_eq!(
        discover(&h, "/api/sd/targets", &op).await,
        Value::Array(vec![])
    );
}
