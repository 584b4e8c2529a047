//! The simulator's HTTP side: routing, auth, strict parameter checks, PVE semantics.

use super::faults::{FaultAction, FaultSpec, Outage};
use super::{Ct, CtEvent, Effect, Reboot, Shared, Task};
use crate::request::Endpoint;
use crate::upid::Upid;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// PVE's wording (docs/proxmox-api.md §2, §4).
pub(crate) const E_NOT_DEFINED: &str =
    "property is not defined in schema and the schema does not allow additional properties";
pub(crate) const E_MISSING: &str = "property is missing and it is not optional";
pub(crate) const E_PARAM_VERIFICATION: &str = "Parameter verification failed.";
pub(crate) const E_AUTH_FAILED: &str = "Authentication failed!";
pub(crate) const E_NO_SUCH_TASK: &str = "no such task";
pub(crate) const E_UNPARSABLE_UPID: &str = "unable to parse worker upid";
pub(crate) const E_MODIFIED: &str =
    "detected modified configuration - file changed by other user? Try again.";
pub(crate) const E_NO_OPTIONS: &str = "no options specified";
pub(crate) const E_TEMPLATE_START: &str = "you can't start a CT if it's a template";
pub(crate) const E_STORAGE_LINKED: &str = "parameter 'storage' not allowed for linked clones";
pub(crate) const E_NAME_MISSING: &str =
    "invalid format - missing key in comma-separated list property";

fn e_config_missing(node: &str, vmid: u32) -> String {
    format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
}
fn e_locked(lock: &str) -> String {
    // Quirk: no vmid in this message.
    format!("CT is locked ({lock})")
}
fn e_exists(vmid: u32, node: &str) -> String {
    format!("CT {vmid} already exists on node '{node}'")
}

// ---------- responses ----------

/// PVE error: reason phrase = first line; body `{"data":null,"message":"...\n"}`, or empty
/// for 401 and the pveproxy proxy codes (595..599); `Connection: close` on every status >= 400.
pub(crate) fn pve_error(code: u16, message: &str) -> Response {
    let first = message
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    let empty = code == 401 || (595..=599).contains(&code);
    let body = if empty {
        Body::empty()
    } else {
        Body::from(
            json!({"data": null, "message": format!("{}\n", message.trim_end_matches('\n'))})
                .to_string(),
        )
    };
    finish_error(code, &first, body)
}

fn finish_error(code: u16, reason: &str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(reason.to_string().into_bytes()) {
        r.extensions_mut().insert(rp);
    }
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// 400 `Parameter verification failed.` with the per-parameter `errors` map.
pub(crate) fn param_error(errors: BTreeMap<String, String>) -> Response {
    let errs: Map<String, Value> = errors
        .into_iter()
        .map(|(k, v)| (k, Value::String(format!("{v}\n"))))
        .collect();
    let body =
        json!({"data": null, "message": format!("{E_PARAM_VERIFICATION}\n"), "errors": errs});
    finish_error(400, E_PARAM_VERIFICATION, Body::from(body.to_string()))
}

fn one_param_error(k: &str, v: impl Into<String>) -> Response {
    param_error(BTreeMap::from([(k.to_string(), v.into())]))
}

fn ok(data: Value) -> Response {
    ok_with(data, None)
}

fn ok_with(data: Value, total: Option<usize>) -> Response {
    let mut body = json!({"data": data});
    if let Some(t) = total {
        body["total"] = json!(t);
    }
    let mut r = Response::new(Body::from(body.to_string()));
    let h = r.headers_mut();
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// A response whose body fails: hyper aborts the connection, the client sees a reset.
fn reset() -> Response {
    let s = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    Body::from_stream(s).into_response()
}

// ---------- serving ----------

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

async fn handle(
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
    let Some((endpoint, pp)) = route(&method, &segs) else {
        return pve_error(501, &format!("Method '{method} {rest}' not implemented"));
    };
    *sh.counters
        .lock()
        .unwrap()
        .per_endpoint
        .entry(endpoint.to_string())
        .or_default() += 1;

    if !authorized(&sh, &headers) {
        // Real PVE delays 401s by 3 s; not simulated. Empty body.
        return pve_error(401, E_AUTH_FAILED);
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

fn release(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn control(sh: &Shared, method: &Method, body: &Bytes) -> Response {
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

fn authorized(sh: &Shared, headers: &HeaderMap) -> bool {
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
struct PathParams {
    node: Option<String>,
    vmid_raw: Option<String>,
    vmid: Option<u32>,
    upid: Option<String>,
}

fn route(method: &Method, segs: &[String]) -> Option<(&'static str, PathParams)> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let ct = |node: &str, vmid: &str| PathParams {
        node: Some(node.into()),
        vmid_raw: Some(vmid.into()),
        vmid: vmid.parse().ok(),
        upid: None,
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

// ---------- strict parameter checks (hand-written from docs/proxmox-api.md §2; PVE has
// additionalProperties: 0 on every method used here) ----------

#[derive(Clone, Copy)]
enum P {
    Bool,
    Int(i64, Option<i64>),
    Num,
    Str(Option<usize>),
    Enum(&'static [&'static str]),
}

fn spec(endpoint: &str) -> &'static [(&'static str, P, bool)] {
    use P::*;
    const VMID: P = Int(100, Some(999_999_999));
    match endpoint {
        Endpoint::CLUSTER_RESOURCES => &[("type", Enum(&["vm", "storage", "node", "sdn"]), false)],
        Endpoint::NEXT_ID => &[("vmid", VMID, false)],
        Endpoint::CLONE => &[
            ("newid", VMID, true),
            ("hostname", Str(Some(255)), false),
            ("description", Str(None), false),
            ("full", Bool, false),
            ("storage", Str(None), false),
            ("target", Str(None), false),
            ("pool", Str(None), false),
            ("snapname", Str(Some(40)), false),
            ("bwlimit", Num, false),
        ],
        Endpoint::CONFIG_GET => &[("current", Bool, false), ("snapshot", Str(Some(40)), false)],
        Endpoint::CONFIG_PUT => &[
            (
                "arch",
                Enum(&["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"]),
                false,
            ),
            ("cmode", Enum(&["shell", "console", "tty"]), false),
            ("console", Bool, false),
            ("cores", Int(1, Some(8192)), false),
            ("cpulimit", Num, false),
            ("cpuunits", Int(0, Some(500_000)), false),
            ("debug", Bool, false),
            ("delete", Str(None), false),
            ("description", Str(Some(8192)), false),
            ("digest", Str(Some(40)), false),
            ("entrypoint", Str(None), false),
            ("env", Str(None), false),
            ("features", Str(None), false),
            ("hookscript", Str(None), false),
            ("hostname", Str(Some(255)), false),
            ("memory", Int(16, None), false),
            ("nameserver", Str(None), false),
            ("onboot", Bool, false),
            ("ostype", Str(None), false),
            ("protection", Bool, false),
            ("revert", Str(None), false),
            ("rootfs", Str(None), false),
            ("searchdomain", Str(None), false),
            ("startup", Str(None), false),
            ("swap", Int(0, None), false),
            ("tags", Str(None), false),
            ("template", Bool, false),
            ("timezone", Str(None), false),
            ("tty", Int(0, Some(6)), false),
            ("unprivileged", Bool, false),
        ],
        Endpoint::START => &[("skiplock", Bool, false), ("debug", Bool, false)],
        Endpoint::STOP => &[
            ("skiplock", Bool, false),
            ("overrule-shutdown", Bool, false),
        ],
        Endpoint::SHUTDOWN => &[("forceStop", Bool, false), ("timeout", Int(0, None), false)],
        Endpoint::REBOOT => &[("timeout", Int(0, None), false)],
        Endpoint::DELETE => &[
            ("purge", Bool, false),
            ("force", Bool, false),
            ("destroy-unreferenced-disks", Bool, false),
        ],
        Endpoint::TASK_LOG => &[
            ("start", Int(0, None), false),
            ("limit", Int(0, None), false),
            ("download", Bool, false),
        ],
        _ => &[],
    }
}

/// `net[n]` (0..31), `mp[n]`/`dev[n]`/`unused[n]` (0..255) on config PUT.
fn indexed_ok(endpoint: &str, k: &str) -> bool {
    if endpoint != Endpoint::CONFIG_PUT {
        return false;
    }
    for (prefix, max) in [("net", 31u32), ("mp", 255), ("dev", 255), ("unused", 255)] {
        if let Some(n) = k.strip_prefix(prefix)
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && n.parse::<u32>().is_ok_and(|i| i <= max)
            && (n == "0" || !n.starts_with('0'))
        {
            return true;
        }
    }
    false
}

fn check_value(p: P, v: &str) -> Result<(), String> {
    match p {
        // Quirk: booleans must be 0/1 (or JSON true/false); the string "true" is refused.
        P::Bool => match v {
            "0" | "1" => Ok(()),
            _ => Err(format!("type check ('boolean') failed - got '{v}'")),
        },
        P::Int(min, max) => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            if n < min {
                return Err(format!("value must have a minimum value of {min}"));
            }
            if let Some(max) = max
                && n > max
            {
                return Err(format!("value must have a maximum value of {max}"));
            }
            Ok(())
        }
        P::Num => v
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| format!("type check ('number') failed - got '{v}'")),
        P::Str(Some(max)) if v.chars().count() > max => {
            Err(format!("value may only be {max} characters long"))
        }
        P::Str(_) => Ok(()),
        P::Enum(vals) if vals.contains(&v) => Ok(()),
        P::Enum(vals) => Err(format!(
            "value '{v}' does not have a value in the enumeration '{}'",
            vals.join(", ")
        )),
    }
}

fn valid_tag(t: &str) -> bool {
    crate::request::is_valid_tag(t)
}

fn validate(
    endpoint: &str,
    params: &BTreeMap<String, String>,
    pp: &PathParams,
) -> Result<(), BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    if let Some(raw) = &pp.vmid_raw
        && let Err(e) = check_value(P::Int(100, Some(999_999_999)), raw)
    {
        errors.insert("vmid".to_string(), e);
    }
    let spec = spec(endpoint);
    for (k, v) in params {
        if let Some((_, p, _)) = spec.iter().find(|(n, _, _)| n == k) {
            if let Err(e) = check_value(*p, v) {
                errors.insert(k.clone(), e);
            }
        } else if indexed_ok(endpoint, k) {
            // Quirk: `name` is the one required key of netN.
            if k.starts_with("net") && !v.split(',').any(|kv| kv.starts_with("name=")) {
                errors.insert(k.clone(), E_NAME_MISSING.into());
            }
        } else {
            errors.insert(k.clone(), E_NOT_DEFINED.into());
        }
    }
    for (k, _, required) in spec {
        if *required && !params.contains_key(*k) {
            errors.insert(k.to_string(), E_MISSING.into());
        }
    }
    if endpoint == Endpoint::CONFIG_PUT
        && let Some(tags) = params.get("tags")
        && let Some(bad) = crate::types::split_tags(tags)
            .into_iter()
            .find(|t| !valid_tag(t))
    {
        errors.insert(
            "tags".into(),
            format!("invalid format - invalid characters in tag '{bad}'"),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

// ---------- state ----------

pub(crate) fn new_ct(vmid: u32, node: &str, hostname: &str, now: Instant) -> Ct {
    let mut ct = Ct {
        vmid,
        node: node.into(),
        hostname: hostname.into(),
        description: None,
        tags: vec![],
        running: false,
        lock: None,
        template: false,
        cores: 1,
        memory: 512,
        swap: 512,
        onboot: false,
        net0: format!(
            "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
            random_mac()
        ),
        rootfs: format!("local-lvm:vm-{vmid}-disk-0,size=8G"),
        digest: String::new(),
        created: now,
        preexisting: false,
        started_at: None,
    };
    touch(&mut ct, 0);
    ct
}

fn random_mac() -> String {
    // Locally administered unicast, like PVE's generated addresses (BC:24:11 is Proxmox's OUI).
    let b: [u8; 3] = rand::random();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// Quirk: the digest changes on every write.
fn touch(ct: &mut Ct, counter: u64) {
    let mut h = Sha256::new();
    h.update(format!("{ct:?}{counter}{}", rand::random::<u64>()).as_bytes());
    ct.digest = hex::encode(h.finalize())[..40].to_string();
}

fn new_upid(sh: &Shared, st: &mut super::State, task_type: &str, id: u32, now: Instant) -> Upid {
    st.pid = st.pid.wrapping_add(rand::random_range(1..64));
    let starttime = sh.start_unix + now.duration_since(sh.epoch).as_secs() as i64;
    Upid::new(
        &sh.cfg.nodes[0],
        st.pid,
        0x0123_4567,
        starttime,
        task_type,
        &id.to_string(),
        &sh.cfg.token_id,
    )
}

pub(crate) struct NewTask<'a> {
    endpoint: &'a str,
    task_type: &'a str,
    id: u32,
    node: &'a str,
    effect: Effect,
    duration: Duration,
    error: Option<String>,
}

fn push_task(sh: &Shared, st: &mut super::State, t: NewTask<'_>, now: Instant) -> Upid {
    let NewTask {
        endpoint,
        task_type,
        id,
        node,
        effect,
        duration,
        mut error,
    } = t;
    if error.is_none() {
        error = sh.faults.lock().unwrap().take_task_error(endpoint);
    }
    let mut upid = new_upid(sh, st, task_type, id, now);
    if upid.node != node {
        upid = Upid::new(
            node,
            upid.pid,
            upid.pstart,
            upid.starttime,
            task_type,
            &id.to_string(),
            &upid.user,
        );
    }
    st.tasks.push(Task {
        upid: upid.clone(),
        visible_at: now + sh.scaled(sh.cfg.timings.task_visible_after),
        ends_at: now + sh.scaled(duration),
        effect,
        error,
        exit: None,
        log: vec![],
    });
    upid
}

/// Finish every task whose time has come, in order, applying its effect.
pub(crate) fn advance(sh: &Shared, now: Instant) {
    let mut events = Vec::new();
    {
        let mut st = sh.state.lock().unwrap();
        // The shutdown half of every reboot whose time has come (before any task ends, so a
        // reboot due now goes down before it comes back up).
        for i in 0..st.tasks.len() {
            let Effect::Reboot(mut r) = st.tasks[i].effect else {
                continue;
            };
            if r.was_up.is_some() || st.tasks[i].exit.is_some() || r.down_at > now {
                continue;
            }
            let was_up = st.cts.get_mut(&r.vmid).is_some_and(|ct| {
                let up = ct.running;
                ct.running = false;
                ct.started_at = None;
                up
            });
            if was_up {
                events.push(CtEvent::Stopped { vmid: r.vmid });
            }
            r.was_up = Some(was_up);
            st.tasks[i].effect = Effect::Reboot(r);
        }
        let mut due: Vec<usize> = (0..st.tasks.len())
            .filter(|&i| st.tasks[i].exit.is_none() && st.tasks[i].ends_at <= now)
            .collect();
        due.sort_by_key(|&i| st.tasks[i].ends_at);
        for i in due {
            let task = st.tasks[i].clone();
            let ok = task.error.is_none();
            let mut log = Vec::new();
            match task.effect {
                Effect::Clone { source, newid } => {
                    if let Some(src) = st.cts.get_mut(&source)
                        && src.lock.as_deref() == Some("disk")
                    {
                        src.lock = None;
                    }
                    log.push(format!(
                        "create linked clone of mount point rootfs (local-lvm:base-{source}-disk-0)"
                    ));
                    if ok {
                        if let Some(ct) = st.cts.get_mut(&newid) {
                            ct.lock = None;
                            touch(ct, 1);
                        }
                    } else if st
                        .cts
                        .get(&newid)
                        .is_some_and(|c| c.lock.as_deref() == Some("create"))
                    {
                        // PVE destroys the half-made CT when the clone worker fails.
                        st.cts.remove(&newid);
                    }
                }
                Effect::Start { vmid } if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.running = true;
                        ct.started_at = Some(task.ends_at);
                        events.push(CtEvent::Started {
                            vmid,
                            ip: sh.ip_for(vmid),
                        });
                    }
                }
                Effect::Stop { vmid } if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid)
                        && ct.running
                    {
                        ct.running = false;
                        ct.started_at = None;
                        events.push(CtEvent::Stopped { vmid });
                    }
                }
                // PVE's worker does nothing for a CT that is no longer running.
                Effect::Reboot(Reboot {
                    vmid,
                    was_up: Some(true),
                    ..
                }) if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.running = true;
                        ct.started_at = Some(task.ends_at);
                        events.push(CtEvent::Started {
                            vmid,
                            ip: sh.ip_for(vmid),
                        });
                    }
                }
                Effect::Destroy { vmid } => {
                    if ok {
                        if let Some(ct) = st.cts.remove(&vmid) {
                            if ct.running {
                                events.push(CtEvent::Stopped { vmid });
                            }
                            events.push(CtEvent::Destroyed { vmid });
                        }
                    } else if let Some(ct) = st.cts.get_mut(&vmid)
                        && ct.lock.as_deref() == Some("destroyed")
                    {
                        ct.lock = None;
                    }
                }
                _ => {}
            }
            let exit = match &task.error {
                None => "OK".to_string(),
                Some(e) => e.clone(),
            };
            if ok {
                log.push("TASK OK".into());
            } else {
                log.push(format!("TASK ERROR: {exit}"));
                if crate::classify(None, &exit) == model::ErrorClass::Locked {
                    sh.counters.lock().unwrap().lock_errors += 1;
                }
            }
            st.tasks[i].log = log;
            st.tasks[i].exit = Some(exit);
        }
        // Forget old finished tasks (bounded memory for long `zlhd dev` runs).
        if st.tasks.len() > 4096 {
            let cut = st.tasks.len() - 4096;
            let mut n = 0;
            st.tasks.retain(|t| {
                let drop = t.exit.is_some() && n < cut;
                if drop {
                    n += 1;
                }
                !drop
            });
        }
    }
    for e in events {
        sh.emit(e);
    }
}

fn with_ct(sh: &Shared, node: &str, vmid: u32, f: impl FnOnce(&Ct) -> Response) -> Response {
    let st = sh.state.lock().unwrap();
    match st.cts.get(&vmid).filter(|c| c.node == node) {
        Some(ct) => f(ct),
        // Also what PVE says when the CT lives on another node.
        None => pve_error(500, &e_config_missing(node, vmid)),
    }
}

fn tags_str(tags: &[String]) -> String {
    tags.join(";")
}

fn config_json(ct: &Ct) -> Value {
    let mut m = json!({
        "arch": "amd64",
        "cores": ct.cores,
        "memory": ct.memory,
        "swap": ct.swap,
        "hostname": ct.hostname,
        "net0": ct.net0,
        "ostype": "debian",
        "rootfs": ct.rootfs,
        "unprivileged": 1,
        "digest": ct.digest,
    });
    if let Some(d) = &ct.description {
        // Quirk: stored as `#` comment lines, read back with a trailing newline.
        m["description"] = json!(format!("{d}\n"));
    }
    if !ct.tags.is_empty() {
        m["tags"] = json!(tags_str(&ct.tags));
    }
    if ct.onboot {
        m["onboot"] = json!(1);
    }
    if ct.template {
        m["template"] = json!(1);
    }
    if let Some(l) = &ct.lock {
        m["lock"] = json!(l);
    }
    m
}

fn status_json(ct: &Ct, now: Instant) -> Value {
    let uptime = ct
        .started_at
        .map(|s| now.saturating_duration_since(s).as_secs())
        .unwrap_or(0);
    let mut m = json!({
        "vmid": ct.vmid,
        "type": "lxc",
        "status": if ct.running { "running" } else { "stopped" },
        "name": ct.hostname,
        "uptime": uptime,
        "cpus": ct.cores,
        "cpu": 0,
        "mem": if ct.running { 64 * 1024 * 1024 } else { 0 },
        "maxmem": ct.memory * 1024 * 1024,
        "swap": 0,
        "maxswap": ct.swap * 1024 * 1024,
        "disk": 0,
        "maxdisk": 8u64 << 30,
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "ha": {"managed": 0},
    });
    if ct.running {
        m["pid"] = json!(10_000 + ct.vmid);
    }
    // Quirk: tags, template (only as 1) and lock appear only when set.
    if !ct.tags.is_empty() {
        m["tags"] = json!(tags_str(&ct.tags));
    }
    if ct.template {
        m["template"] = json!(1);
    }
    if let Some(l) = &ct.lock {
        m["lock"] = json!(l);
    }
    m
}

/// The simulated traffic of a running CT (`netin`; `netout` is twice this).
const SIM_NET_BYTES_PER_SEC: u64 = 4096;

fn cluster_resources(sh: &Shared, now: Instant) -> Response {
    let lag = sh.scaled(sh.cfg.timings.resources_lag);
    let st = sh.state.lock().unwrap();
    let list: Vec<Value> = st
        .cts
        .values()
        .map(|ct| {
            let mut m = json!({
                "id": format!("lxc/{}", ct.vmid),
                "vmid": ct.vmid,
                "node": ct.node,
                "type": "lxc",
                "maxcpu": ct.cores,
                "maxmem": ct.memory * 1024 * 1024,
                "maxdisk": 8u64 << 30,
            });
            // Quirk: name/status/template come from the RRD broadcast (~10 s lag); a fresh CT
            // shows status "unknown" and no name. tags and lock are read from the config.
            if !ct.preexisting && now.saturating_duration_since(ct.created) < lag {
                m["status"] = json!("unknown");
            } else {
                m["status"] = json!(if ct.running { "running" } else { "stopped" });
                m["name"] = json!(ct.hostname);
                m["template"] = json!(ct.template as u8);
                let uptime = ct
                    .started_at
                    .map(|s| now.saturating_duration_since(s).as_secs())
                    .unwrap_or(0);
                m["uptime"] = json!(uptime);
                // A running CT's metrics, made up but steady: a tenth of each core busy, a
                // quarter of its memory, a gigabyte of disk, traffic growing with uptime.
                // A stopped one reports zeros, as PVE does.
                if ct.running {
                    m["cpu"] = json!(f64::from(ct.cores) * 0.1);
                    m["mem"] = json!(ct.memory * 1024 * 1024 / 4);
                    m["disk"] = json!(1u64 << 30);
                    m["netin"] = json!(SIM_NET_BYTES_PER_SEC * (uptime + 1));
                    m["netout"] = json!(2 * SIM_NET_BYTES_PER_SEC * (uptime + 1));
                } else {
                    for k in ["cpu", "mem", "disk", "netin", "netout"] {
                        m[k] = json!(0);
                    }
                }
            }
            if !ct.tags.is_empty() {
                m["tags"] = json!(tags_str(&ct.tags));
            }
            if let Some(l) = &ct.lock {
                m["lock"] = json!(l);
            }
            m
        })
        .collect();
    ok(Value::Array(list))
}

fn next_id(sh: &Shared, params: &BTreeMap<String, String>) -> Response {
    let st = sh.state.lock().unwrap();
    if let Some(v) = params.get("vmid") {
        let vmid: u32 = v.parse().unwrap_or(0);
        if st.cts.contains_key(&vmid) {
            // Quirk: 400 with an errors map, and the text says VM even for a CT.
            return one_param_error("vmid", format!("VM {vmid} already exists"));
        }
        return ok(json!(vmid.to_string()));
    }
    let mut id = 100u32;
    while st.cts.contains_key(&id) {
        id += 1;
    }
    // Quirk: nextid is a string.
    ok(json!(id.to_string()))
}

fn clone(
    sh: &Shared,
    node: &str,
    source: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let newid: u32 = params
        .get("newid")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut st = sh.state.lock().unwrap();
    let Some(src) = st.cts.get(&source).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, source));
    };
    if let Some(t) = params.get("target")
        && t != node
    {
        return pve_error(
            500,
            &format!("can't clone CT to node '{t}' (CT uses local storage)"),
        );
    }
    let full = params
        .get("full")
        .map(|v| v == "1")
        .unwrap_or(!src.template);
    if params.contains_key("storage") && !full {
        return pve_error(500, E_STORAGE_LINKED);
    }
    // 1. lock the source `disk` (a second clone of the same template fails here).
    if let Some(l) = &src.lock {
        return pve_error(500, &e_locked(l));
    }
    // 2. the new id must be free, cluster-wide.
    if let Some(existing) = st.cts.get(&newid) {
        return pve_error(500, &e_exists(newid, &existing.node));
    }
    *sh.counters
        .lock()
        .unwrap()
        .clone_calls
        .entry(newid)
        .or_default() += 1;
    st.cts.get_mut(&source).expect("checked").lock = Some("disk".into());
    // 3. new config: lock `create`, a new random MAC, hostname/description from the request.
    let hostname = params
        .get("hostname")
        .cloned()
        .unwrap_or_else(|| src.hostname.clone());
    let mut ct = new_ct(newid, node, &hostname, now);
    ct.description = params
        .get("description")
        .map(|d| d.trim_end_matches('\n').to_string())
        .or(src.description);
    ct.tags = src.tags.clone();
    ct.cores = src.cores;
    ct.memory = src.memory;
    ct.swap = src.swap;
    ct.lock = Some("create".into());
    ct.rootfs = if full {
        format!("local-lvm:vm-{newid}-disk-0,size=8G")
    } else {
        format!("local-lvm:base-{source}-disk-0/vm-{newid}-disk-0,size=8G")
    };
    st.cts.insert(newid, ct);
    let dur = sh.cfg.timings.clone;
    // Quirk: the clone task's UPID names the SOURCE vmid.
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::CLONE,
            task_type: "vzclone",
            id: source,
            node,
            effect: Effect::Clone { source, newid },
            duration: dur,
            error: None,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

fn config_put(sh: &Shared, node: &str, vmid: u32, params: &BTreeMap<String, String>) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get_mut(&vmid).filter(|c| c.node == node) else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    // Order as PVE: lock the file, load, check_lock, then the digest.
    if let Some(l) = &ct.lock {
        return pve_error(500, &e_locked(l));
    }
    if let Some(d) = params.get("digest")
        && *d != ct.digest
    {
        return pve_error(500, E_MODIFIED);
    }
    if params.keys().all(|k| k == "digest") {
        return pve_error(500, E_NO_OPTIONS);
    }
    for (k, v) in params {
        match k.as_str() {
            "cores" => ct.cores = v.parse().unwrap_or(ct.cores),
            "memory" => ct.memory = v.parse().unwrap_or(ct.memory),
            "swap" => ct.swap = v.parse().unwrap_or(ct.swap),
            "onboot" => ct.onboot = v == "1",
            "hostname" => ct.hostname = v.clone(),
            "description" => ct.description = Some(v.trim_end_matches('\n').to_string()),
            "net0" => ct.net0 = v.clone(),
            "tags" => {
                // Quirk: split on [;, ], lower-cased, sorted, de-duplicated, `;`-joined.
                let mut t: Vec<String> = crate::types::split_tags(v)
                    .into_iter()
                    .map(|t| t.to_lowercase())
                    .collect();
                t.sort();
                t.dedup();
                ct.tags = t;
            }
            _ => {}
        }
    }
    if let Some(del) = params.get("delete") {
        for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            match k {
                "tags" => ct.tags.clear(),
                "description" => ct.description = None,
                "onboot" => ct.onboot = false,
                _ => {}
            }
        }
    }
    touch(ct, 2);
    // Synchronous: `{"data":null}`.
    ok(Value::Null)
}

fn start(sh: &Shared, node: &str, vmid: u32, now: Instant) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if ct.running {
        return pve_error(500, &format!("CT {vmid} already running"));
    }
    sh.counters.lock().unwrap().start_calls += 1;
    // The lock and template checks run inside the task.
    let err = if let Some(l) = &ct.lock {
        Some(e_locked(l))
    } else if ct.template {
        Some(E_TEMPLATE_START.to_string())
    } else {
        None
    };
    let dur = sh.cfg.timings.start;
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::START,
            task_type: "vzstart",
            id: vmid,
            node,
            effect: Effect::Start { vmid },
            duration: dur,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

fn stop(sh: &Shared, endpoint: &'static str, node: &str, vmid: u32, now: Instant) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if !ct.running {
        return pve_error(500, &format!("CT {vmid} not running"));
    }
    let err = ct.lock.as_ref().map(|l| e_locked(l));
    let (ty, dur) = if endpoint == Endpoint::STOP {
        ("vzstop", sh.cfg.timings.stop)
    } else {
        ("vzshutdown", sh.cfg.timings.shutdown)
    };
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint,
            task_type: ty,
            id: vmid,
            node,
            effect: Effect::Stop { vmid },
            duration: dur,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

/// docs/proxmox-api.md §2: checks only that the CT runs, then one `vzreboot` task shuts it
/// down (killed after `timeout`) and starts it again, with the events and IP delay of a start.
fn reboot(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if !ct.running {
        // Quirk: `VM`, not `CT`, in this one message.
        return pve_error(500, &format!("VM {vmid} not running"));
    }
    let t = &sh.cfg.timings;
    let mut down = t.shutdown;
    if let Some(secs) = params.get("timeout").and_then(|v| v.parse().ok()) {
        down = down.min(Duration::from_secs(secs));
    }
    // PVE checks no lock at dispatch; the start half refuses a locked CT, as `start` does.
    let err = ct.lock.as_ref().map(|l| e_locked(l));
    let effect = Effect::Reboot(Reboot {
        vmid,
        down_at: now + sh.scaled(down),
        was_up: None,
    });
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::REBOOT,
            task_type: "vzreboot",
            id: vmid,
            node,
            effect,
            duration: down + t.start,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

fn delete(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if let Some(l) = &ct.lock {
        return pve_error(500, &e_locked(l));
    }
    let force = params.get("force").is_some_and(|v| v == "1");
    if ct.running && !force {
        return pve_error(
            500,
            &format!("unable to destroy CT {vmid} - container is running"),
        );
    }
    sh.counters.lock().unwrap().destroy_calls += 1;
    st.cts.get_mut(&vmid).expect("checked").lock = Some("destroyed".into());
    let dur = sh.cfg.timings.destroy;
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::DELETE,
            task_type: "vzdestroy",
            id: vmid,
            node,
            effect: Effect::Destroy { vmid },
            duration: dur,
            error: None,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

fn interfaces(sh: &Shared, node: &str, vmid: u32, now: Instant) -> Response {
    let ip = sh.ip_for(vmid);
    let ip_ready = sh.scaled(sh.cfg.timings.ip_delay);
    with_ct(sh, node, vmid, |ct| {
        let Some(started) = ct.started_at.filter(|_| ct.running) else {
            // Quirk: null while the CT is not running.
            return ok(Value::Null);
        };
        let hw = crate::types::NetConfig::parse(&ct.net0)
            .hwaddr
            .unwrap_or_default()
            .to_lowercase();
        let lo = json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "hardware-address": "00:00:00:00:00:00",
            "inet": "127.0.0.1/8", "inet6": "::1/128",
            "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8},
                             {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}]});
        let mut eth0 = json!({"name": "eth0", "hwaddr": hw, "hardware-address": hw,
            "inet6": "fe80::be24:11ff:fe00:1/64",
            "ip-addresses": [{"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "inet6", "prefix": 64}]});
        if now.saturating_duration_since(started) >= ip_ready {
            // Both shapes: `inet` (8.1+) and `ip-addresses` (8.4+).
            eth0["inet"] = json!(format!("{ip}/8"));
            eth0["ip-addresses"].as_array_mut().expect("array").insert(
                0,
                json!({"ip-address": ip.to_string(), "ip-address-type": "inet", "prefix": 8}),
            );
        }
        ok(json!([lo, eth0]))
    })
}

fn find_task<'a>(st: &'a super::State, upid: &str, now: Instant) -> Result<&'a Task, &'static str> {
    if upid.parse::<Upid>().is_err() {
        return Err(E_UNPARSABLE_UPID);
    }
    // Quirk: right after dispatch the task log may not exist yet: 400 `no such task`.
    st.tasks
        .iter()
        .find(|t| t.upid.as_str() == upid && now >= t.visible_at)
        .ok_or(E_NO_SUCH_TASK)
}

fn task_status(sh: &Shared, upid: &str, now: Instant) -> Response {
    let st = sh.state.lock().unwrap();
    let t = match find_task(&st, upid, now) {
        Ok(t) => t,
        Err(e) => return one_param_error("upid", e),
    };
    let u = &t.upid;
    let (user, tokenid) = match u.user.split_once('!') {
        Some((user, tok)) => (user.to_string(), Some(tok.to_string())),
        None => (u.user.clone(), None),
    };
    let mut m = json!({
        "upid": u.to_string(), "node": u.node, "pid": u.pid, "pstart": u.pstart,
        "starttime": u.starttime, "type": u.task_type, "id": u.id, "user": user,
        "status": if t.exit.is_some() { "stopped" } else { "running" },
    });
    if let Some(tok) = tokenid {
        m["tokenid"] = json!(tok);
    }
    if let Some(e) = &t.exit {
        m["exitstatus"] = json!(e);
    }
    ok(m)
}

fn task_log(sh: &Shared, upid: &str, params: &BTreeMap<String, String>, now: Instant) -> Response {
    let st = sh.state.lock().unwrap();
    let t = match find_task(&st, upid, now) {
        Ok(t) => t,
        Err(e) => return one_param_error("upid", e),
    };
    let start: usize = params
        .get("start")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    ok_with(Value::Array(lines), Some(t.log.len()))
}
