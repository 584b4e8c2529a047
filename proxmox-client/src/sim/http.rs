//! The HTTP front: serving, the fault control, authentication, routing, dispatch.

use super::Shared;
use super::SimEndpoint;
use super::cluster::{cluster_resources, ct_list, next_id, node_list, release};
use super::faults::{FaultAction, FaultSpec, Outage};
use super::lxc::{
    clone, config_json, config_put, delete, interfaces, reboot, resize, start, status_json, stop,
    with_ct,
};
use super::params::{parse_form, percent_decode, validate};
use super::rate::{Admission, OVERLOADED_CODE, OVERLOADED_MESSAGE};
use super::response::{ok, param_error, pve_error, reset};
use super::tasks::{advance, task_list, task_log, task_status};
use super::wording::E_AUTH_FAILED;
use crate::request::Endpoint;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = axum::Router::new().fallback(handle).with_state(shared);
    let _ = axum::serve(listener, app).await;
}

pub(crate) fn apply_spec(shared: &Shared, spec: FaultSpec) {
    let mut f = shared.faults.lock().unwrap();
    if let Some(outage) = spec.outage {
        f.outage = outage;
    }
    f.rules.extend(spec.rules);
    f.task_errors.extend(spec.task_errors);
}

pub(crate) async fn handle(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    // Before the outage: the fault control always answers, so an outage can be lifted.
    if path == model::faults::FAULTS_PATH {
        return control(&sh, &method, &body);
    }
    sh.counters.lock().unwrap().requests_total += 1;

    // Full outage first: nothing behind pveproxy answers.
    let outage = sh.faults.lock().unwrap().outage.clone();
    match outage {
        Some(Outage::Status { code, message }) => return pve_error(code, &message),
        Some(Outage::Refuse) => return reset(),
        None => {}
    }

    let Some(rest) = path.strip_prefix("/api2/json") else {
        return pve_error(501, "no such uri");
    };
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let routed = route(&method, &segs);
    tracing::trace!(%method, %uri, "pve sim request");
    if let Some((endpoint, _)) = &routed {
        *sh.counters
            .lock()
            .unwrap()
            .per_endpoint
            .entry(endpoint.to_string())
            .or_default() += 1;
    }
    // pveproxy authenticates once the headers are read, before it looks the method up: an
    // unknown path with a bad token is a 401, not a 501.
    if !authorized(&sh, &headers) {
        // Real PVE delays 401s by 3 s; not simulated. Empty body.
        return pve_error(401, E_AUTH_FAILED);
    }
    let Some((endpoint, pp)) = routed else {
        return pve_error(501, &format!("Method '{method} {rest}' not implemented"));
    };

    let node_for_rate = pp.node.clone().unwrap_or_else(|| sh.cfg.nodes[0].clone());
    if admit(&sh, &node_for_rate) == Admission::Overloaded {
        return pve_error(OVERLOADED_CODE, OVERLOADED_MESSAGE);
    }

    let fired = sh.faults.lock().unwrap().evaluate(endpoint);
    if fired.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fired.latency_ms)).await;
    }
    let lose_response = fired.action == Some(FaultAction::LoseResponse);
    match fired.action {
        Some(FaultAction::Error { code, message }) => {
            if crate::classify(Some(code), &message) == model::ErrorClass::Locked {
                sh.counters.lock().unwrap().lock_errors += 1;
            }
            return pve_error(code, &message);
        }
        Some(FaultAction::Hang) => std::future::pending::<()>().await,
        Some(FaultAction::Reset) => return reset(),
        Some(FaultAction::Latency { .. }) | Some(FaultAction::LoseResponse) | None => {}
    }

    // Parameters: query merged over the form body (POST/PUT). A body on GET/DELETE is a 501.
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    if matches!(method, Method::POST | Method::PUT) {
        for (k, v) in parse_form(&String::from_utf8_lossy(&body)) {
            params.insert(k, v);
        }
    } else if !body.is_empty() {
        return pve_error(501, &format!("Unexpected content for method '{method}'"));
    }
    for (k, v) in parse_form(uri.query().unwrap_or("")) {
        params.insert(k, v);
    }
    if let Err(errors) = validate(endpoint, &params, &pp) {
        return param_error(errors);
    }
    let node = pp.node.clone().unwrap_or_default();
    if pp.node.is_some() && !sh.cfg.nodes.contains(&node) {
        return pve_error(
            500,
            &format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            ),
        );
    }

    let now = Instant::now();
    advance(&sh, now);
    let vmid = pp.vmid.unwrap_or(0);
    let resp = match endpoint {
        Endpoint::VERSION => ok(
            json!({"version": sh.cfg.version, "release": release(&sh.cfg.version), "repoid": "0123abcd"}),
        ),
        Endpoint::CLUSTER_RESOURCES => cluster_resources(&sh, now),
        Endpoint::NEXT_ID => next_id(&sh, &params),
        Endpoint::CLONE => clone(&sh, &node, vmid, &params, now),
        Endpoint::CONFIG_GET => with_ct(&sh, &node, vmid, |ct| ok(config_json(ct))),
        Endpoint::CONFIG_PUT => config_put(&sh, &node, vmid, &params),
        Endpoint::STATUS_CURRENT => with_ct(&sh, &node, vmid, |ct| ok(status_json(ct, now))),
        Endpoint::START => start(&sh, &node, vmid, now),
        Endpoint::STOP | Endpoint::SHUTDOWN => stop(&sh, endpoint, &node, vmid, now),
        Endpoint::REBOOT => reboot(&sh, &node, vmid, &params, now),
        Endpoint::DELETE => delete(&sh, &node, vmid, &params, now),
        Endpoint::INTERFACES => interfaces(&sh, &node, vmid, now),
        Endpoint::TASK_STATUS => task_status(&sh, pp.upid.as_deref().unwrap_or(""), now),
        SimEndpoint::TASK_LIST => task_list(&sh, &node, &params),
        SimEndpoint::RESIZE => resize(&sh, &node, vmid, &params, now),
        SimEndpoint::NODE_LIST => node_list(&sh, now),
        SimEndpoint::CT_LIST => ct_list(&sh, &node, now),
        Endpoint::TASK_LOG => task_log(&sh, pp.upid.as_deref().unwrap_or(""), &params, now),
        _ => pve_error(501, "not implemented"),
    };
    if resp.status() == StatusCode::INTERNAL_SERVER_ERROR
        && let Some(r) = resp.extensions().get::<hyper::ext::ReasonPhrase>()
        && crate::classify(Some(500), &String::from_utf8_lossy(r.as_bytes()))
            == model::ErrorClass::Locked
    {
        sh.counters.lock().unwrap().lock_errors += 1;
    }
    if lose_response {
        return reset();
    }
    resp
}

pub(crate) fn control(sh: &Shared, method: &Method, body: &Bytes) -> Response {
    match *method {
        Method::POST => match serde_json::from_slice::<FaultSpec>(body) {
            Ok(spec) => {
                apply_spec(sh, spec);
                ok(Value::Null)
            }
            Err(e) => pve_error(400, &format!("bad fault spec: {e}")),
        },
        Method::DELETE => {
            let mut f = sh.faults.lock().unwrap();
            f.rules.clear();
            f.task_errors.clear();
            f.outage = None;
            ok(Value::Null)
        }
        _ => pve_error(501, "use POST or DELETE"),
    }
}

/// Count the request against its node's rate and apply `SimConfig::api_rate`.
fn admit(sh: &Shared, node: &str) -> Admission {
    let scale = sh.cfg.time_scale.max(0.0);
    // One simulated second, in real time (at least a millisecond, for a zero time scale).
    let window = sh
        .scaled(Duration::from_secs(1))
        .max(Duration::from_millis(1));
    let limit = sh.cfg.api_rate.map(|r| {
        let per_real_sec = if scale > 0.0 {
            r.per_node_per_sec / scale
        } else {
            f64::INFINITY
        };
        (per_real_sec, r.burst)
    });
    sh.rates
        .lock()
        .unwrap()
        .admit(node, Instant::now(), window, limit)
}

pub(crate) fn authorized(sh: &Shared, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // PVE accepts `PVEAPIToken=` or `PVEAPIToken ` before `USER@REALM!TOKENID=SECRET`.
    let Some(rest) = v
        .strip_prefix("PVEAPIToken=")
        .or_else(|| v.strip_prefix("PVEAPIToken "))
    else {
        return false;
    };
    let rest = percent_decode(rest);
    rest == format!("{}={}", sh.cfg.token_id, sh.cfg.token_secret)
}

#[derive(Default)]
pub(crate) struct PathParams {
    pub(crate) node: Option<String>,
    pub(crate) vmid_raw: Option<String>,
    pub(crate) vmid: Option<u32>,
    pub(crate) upid: Option<String>,
}

pub(crate) fn route(method: &Method, segs: &[String]) -> Option<(&'static str, PathParams)> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let ct = |node: &str, vmid: &str| PathParams {
        node: Some(node.into()),
        vmid_raw: Some(vmid.into()),
        vmid: vmid.parse().ok(),
        upid: None,
    };
    let node = |node: &str| PathParams {
        node: Some(node.into()),
        ..PathParams::default()
    };
    let task = |node: &str, upid: &str| PathParams {
        node: Some(node.into()),
        upid: Some(upid.into()),
        ..PathParams::default()
    };
    Some(match (m, s.as_slice()) {
        ("GET", ["version"]) => (Endpoint::VERSION, PathParams::default()),
        ("GET", ["cluster", "resources"]) => (Endpoint::CLUSTER_RESOURCES, PathParams::default()),
        ("GET", ["cluster", "nextid"]) => (Endpoint::NEXT_ID, PathParams::default()),
        ("GET", ["nodes"]) => (SimEndpoint::NODE_LIST, PathParams::default()),
        ("GET", ["nodes", n, "lxc"]) => (SimEndpoint::CT_LIST, node(n)),
        ("GET", ["nodes", n, "tasks"]) => (SimEndpoint::TASK_LIST, node(n)),
        ("PUT", ["nodes", n, "lxc", v, "resize"]) => (SimEndpoint::RESIZE, ct(n, v)),
        ("DELETE", ["nodes", n, "lxc", v]) => (Endpoint::DELETE, ct(n, v)),
        ("POST", ["nodes", n, "lxc", v, "clone"]) => (Endpoint::CLONE, ct(n, v)),
        ("GET", ["nodes", n, "lxc", v, "config"]) => (Endpoint::CONFIG_GET, ct(n, v)),
        ("PUT", ["nodes", n, "lxc", v, "config"]) => (Endpoint::CONFIG_PUT, ct(n, v)),
        ("GET", ["nodes", n, "lxc", v, "status", "current"]) => {
            (Endpoint::STATUS_CURRENT, ct(n, v))
        }
        ("POST", ["nodes", n, "lxc", v, "status", "start"]) => (Endpoint::START, ct(n, v)),
        ("POST", ["nodes", n, "lxc", v, "status", "stop"]) => (Endpoint::STOP, ct(n, v)),
        ("POST", ["nodes", n, "lxc", v, "status", "shutdown"]) => (Endpoint::SHUTDOWN, ct(n, v)),
        ("POST", ["nodes", n, "lxc", v, "status", "reboot"]) => (Endpoint::REBOOT, ct(n, v)),
        ("GET", ["nodes", n, "lxc", v, "interfaces"]) => (Endpoint::INTERFACES, ct(n, v)),
        ("GET", ["nodes", n, "tasks", u, "status"]) => (Endpoint::TASK_STATUS, task(n, u)),
        ("GET", ["nodes", n, "tasks", u, "log"]) => (Endpoint::TASK_LOG, task(n, u)),
        _ => return None,
    })
}
