//! The power routes: `POST /api/servers/{id}/power` and the Portal's
//! `/api/servers/{id}/game|host/{signal}`, over route × role × standing × bad input. Every
//! case runs on a fresh server and checks what was written (or that nothing was).

use crate::common::{Harness, expect_problem, paper};
use api::PowerOutcome;
use api::wire::{Accepted, PowerRequest, PowerSignal, PowerTarget};
use model::store::{Store, VmidRange};
use model::{OperationKind, Power, Process, Restarts, Role, Server, ServerSpec, Standing};
use serde_json::{Value, json};

const VMIDS: VmidRange = VmidRange {
    min: 5000,
    max: 5999,
};

/// The event every changing request records.
const POWER_REQUESTED: &str = "PowerRequested";

#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// `POST /api/servers/{id}/power` with a JSON body.
    Native,
    /// `POST /api/servers/{id}/game/{signal}`.
    Game,
    /// `POST /api/servers/{id}/host/{signal}`.
    Host,
}

#[derive(Clone, Copy)]
enum Tok {
    None,
    Operator,
    Portal,
    Viewer,
    /// A customer token of the server's customer.
    Owner,
    /// A customer token of another customer (`u2`).
    Other,
}

#[derive(Clone, Copy)]
enum Id {
    Uuid,
    /// The server's reserved VMID.
    Vmid,
    /// A VMID nobody has.
    UnknownVmid,
    Garbage,
}

#[derive(Clone, Copy)]
enum IfMatch {
    No,
    Current,
    Stale,
    Malformed,
}

enum Want {
    /// 202 with the spec's (process, power, restarts) after.
    Changed(Option<Process>, Power, Restarts),
    /// 200, nothing written.
    Unchanged,
    /// A problem: status, the end of its type URI, a field `errors` names, text in the detail.
    Problem(
        u16,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
}

struct Case {
    reason: &'static str,
    route: Route,
    tok: Tok,
    /// The server's customer: `u1` active, `late` overdue, `susp` suspended.
    customer: &'static str,
    dev: bool,
    process: Option<Process>,
    power: Power,
    deleting: bool,
    id: Id,
    if_match: IfMatch,
    /// The signal (in the body, or the path of the Portal's routes).
    signal: &'static str,
    target: Option<&'static str>,
    /// A native body other than `{signal, target}`.
    body: Option<Value>,
    want: Want,
}

fn case(reason: &'static str, route: Route, tok: Tok, signal: &'static str, want: Want) -> Case {
    Case {
        reason,
        route,
        tok,
        customer: "u1",
        dev: false,
        process: None,
        power: Power::Running,
        deleting: false,
        id: Id::Uuid,
        if_match: IfMatch::No,
        signal,
        target: None,
        body: None,
        want,
    }
}

impl Case {
    fn customer(mut self, c: &'static str) -> Self {
        self.customer = c;
        self
    }
    fn dev(mut self) -> Self {
        self.dev = true;
        self
    }
    fn game_stopped(mut self) -> Self {
        self.process = Some(Process::Stopped);
        self
    }
    fn container_stopped(mut self) -> Self {
        self.power = Power::Stopped;
        self
    }
    fn deleting(mut self) -> Self {
        self.deleting = true;
        self
    }
    fn id(mut self, id: Id) -> Self {
        self.id = id;
        self
    }
    fn if_match(mut self, m: IfMatch) -> Self {
        self.if_match = m;
        self
    }
    fn target(mut self, t: &'static str) -> Self {
        self.target = Some(t);
        self
    }
    fn body(mut self, b: Value) -> Self {
        self.body = Some(b);
        self
    }
}

const RUN: Option<Process> = Some(Process::Running);
const STOPPED: Option<Process> = Some(Process::Stopped);
const ON: Power = Power::Running;
const OFF: Power = Power::Stopped;

fn restarts(game: u64, container: u64) -> Restarts {
    Restarts { game, container }
}

fn changed(process: Option<Process>, power: Power, r: Restarts) -> Want {
    Want::Changed(process, power, r)
}

fn problem(status: u16, slug: &'static str) -> Want {
    Want::Problem(status, slug, None, None)
}

fn invalid(field: &'static str, detail: &'static str) -> Want {
    Want::Problem(422, "validation-failed", Some(field), Some(detail))
}

#[tokio::test]
async fn power_route_table() {
    use IfMatch as M;
    use Route::{Game, Host, Native};
    use Tok::{Operator, Other, Owner, Portal, Viewer};
    let zero = restarts(0, 0);
    let not_active = || Want::Problem(403, "customer-not-active", None, Some("is "));

    // One line per case, so the table reads as one.
    #[rustfmt::skip]
    let cases = vec![
        // --- roles -------------------------------------------------------------------------
        case("an operator stops a game", Native, Operator, "stop", changed(STOPPED, ON, zero)),
        case("the portal stops any customer's game", Native, Portal, "stop", changed(STOPPED, ON, zero)),
        case("a customer stops its own game", Native, Owner, "stop", changed(STOPPED, ON, zero)),
        case("another customer's server is not found, not forbidden", Native, Other, "stop", problem(404, "not-found")),
        case("viewers are read-only", Native, Viewer, "stop", problem(403, "forbidden")),
        case("a token is required", Native, Tok::None, "stop", problem(401, "unauthorized")),
        // --- standing ----------------------------------------------------------------------
        case("an overdue customer may stop", Native, Owner, "stop", changed(STOPPED, ON, zero)).customer("late"),
        case("an overdue customer may not start", Native, Owner, "start", not_active()).customer("late").game_stopped(),
        case("an overdue customer may not restart", Native, Owner, "restart", not_active()).customer("late"),
        case("standing is checked before looking whether a start would change anything", Native, Owner, "start", not_active()).customer("late"),
        case("a suspended customer may stop its container", Native, Owner, "stop", changed(None, OFF, zero)).customer("susp").target("container"),
        case("a suspended customer may not start its container", Native, Owner, "start", not_active()).customer("susp").target("container").container_stopped(),
        case("a suspended customer may not reboot its container", Native, Owner, "restart", not_active()).customer("susp").target("container"),
        case("the portal is refused too for a customer not active", Native, Portal, "restart", not_active()).customer("susp"),
        case("operators may start for a customer not active", Native, Operator, "start", changed(RUN, ON, zero)).customer("susp").game_stopped(),
        // --- bad input ---------------------------------------------------------------------
        case("an unknown signal names the field", Native, Operator, "jump", invalid("signal", "unknown signal")),
        case("kill is refused as unsupported", Native, Operator, "kill", invalid("signal", "not supported")),
        case("an unknown target names the field", Native, Operator, "stop", invalid("target", "unknown variant")).target("vm"),
        case("a dev container has no game", Native, Operator, "stop", invalid("target", "dev container")).dev().target("game"),
        case("a missing signal is refused", Native, Operator, "stop", Want::Problem(422, "validation-failed", None, Some("signal"))).body(json!({"target": "game"})),
        case("an unknown body field is refused", Native, Operator, "stop", Want::Problem(422, "validation-failed", None, Some("force"))).body(json!({"signal": "stop", "force": true})),
        case("a server being deleted cannot be powered", Native, Operator, "stop", Want::Problem(409, "conflict", None, Some("being deleted"))).deleting(),
        case("a stale If-Match is refused as PATCH refuses it", Native, Operator, "stop", problem(409, "stale-resource-version")).if_match(M::Stale),
        case("a stale If-Match is refused even when nothing would change", Native, Operator, "start", problem(409, "stale-resource-version")).if_match(M::Stale),
        case("a current If-Match is honoured", Native, Operator, "stop", changed(STOPPED, ON, zero)).if_match(M::Current),
        case("a malformed If-Match is a bad request", Native, Operator, "stop", problem(400, "bad-request")).if_match(M::Malformed),
        case("an id that is neither a UUID nor a VMID", Native, Operator, "stop", problem(400, "bad-request")).id(Id::Garbage),
        case("a VMID nobody has", Native, Operator, "stop", problem(404, "not-found")).id(Id::UnknownVmid),
        // --- what changes ------------------------------------------------------------------
        case("restarting the game counts one restart", Native, Owner, "restart", changed(None, ON, restarts(1, 0))),
        case("restarting a stopped game also runs it", Native, Owner, "restart", changed(RUN, ON, restarts(1, 0))).game_stopped(),
        case("starting a stopped game", Native, Owner, "start", changed(RUN, ON, zero)).game_stopped(),
        case("rebooting the container counts one reboot", Native, Owner, "restart", changed(None, ON, restarts(0, 1))).target("container"),
        case("starting a stopped container", Native, Owner, "start", changed(None, ON, zero)).target("container").container_stopped(),
        case("a dev container's default target is the container", Native, Owner, "stop", changed(None, OFF, zero)).dev(),
        case("a dev container restarts as a reboot", Native, Owner, "restart", changed(None, ON, restarts(0, 1))).dev(),
        case("stopping a stopped game changes nothing", Native, Owner, "stop", Want::Unchanged).game_stopped(),
        case("starting a running game changes nothing", Native, Owner, "start", Want::Unchanged),
        case("starting a running container changes nothing", Native, Owner, "start", Want::Unchanged).target("container"),
        case("stopping a stopped dev container changes nothing", Native, Owner, "stop", Want::Unchanged).dev().container_stopped(),
        // --- by VMID -----------------------------------------------------------------------
        case("by VMID as by UUID", Native, Owner, "stop", changed(STOPPED, ON, zero)).id(Id::Vmid),
        case("by VMID, nothing to change", Native, Portal, "start", Want::Unchanged).id(Id::Vmid),
        case("another customer's VMID is not found", Native, Other, "stop", problem(404, "not-found")).id(Id::Vmid),
        // --- the Portal's routes -----------------------------------------------------------
        case("game/stop", Game, Portal, "stop", changed(STOPPED, ON, zero)),
        case("game/start of a running game is ok, nothing written", Game, Portal, "start", Want::Unchanged),
        case("game/restart by VMID", Game, Portal, "restart", changed(None, ON, restarts(1, 0))).id(Id::Vmid),
        case("game/start by the owner", Game, Owner, "start", changed(RUN, ON, zero)).game_stopped(),
        case("host/restart reboots the container", Host, Owner, "restart", changed(None, ON, restarts(0, 1))),
        case("host/stop by VMID", Host, Operator, "stop", changed(None, OFF, zero)).id(Id::Vmid),
        case("host/stop of a dev container", Host, Owner, "stop", changed(None, OFF, zero)).dev(),
        case("game/stop of another customer's server is not found", Game, Other, "stop", problem(404, "not-found")),
        case("host/restart of another customer's VMID is not found", Host, Other, "restart", problem(404, "not-found")).id(Id::Vmid),
        case("game/stop by a viewer is forbidden", Game, Viewer, "stop", problem(403, "forbidden")),
        case("host/start without a token", Host, Tok::None, "start", problem(401, "unauthorized")),
        case("game/start of an overdue customer", Game, Owner, "start", not_active()).customer("late").game_stopped(),
        case("game/stop of a dev container names the target", Game, Operator, "stop", invalid("target", "dev container")).dev(),
        case("game/kill is unsupported", Game, Operator, "kill", invalid("signal", "not supported")),
        case("host/jump is unknown", Host, Operator, "jump", invalid("signal", "unknown signal")),
        case("host/stop of a server being deleted", Host, Portal, "stop", Want::Problem(409, "conflict", None, Some("being deleted"))).deleting(),
        case("game/stop with a stale If-Match", Game, Operator, "stop", problem(409, "stale-resource-version")).if_match(M::Stale),
        case("game/stop by a garbage id", Game, Operator, "stop", problem(400, "bad-request")).id(Id::Garbage),
    ];

    let h = Harness::start().await;
    for (c, s) in [("late", Standing::Overdue), ("susp", Standing::Suspended)] {
        h.store.upsert_customer(c, None, Some(s)).await.unwrap();
    }
    let op = h.token(Role::Operator, None).await;
    let portal = h.token(Role::Portal, None).await;
    let viewer = h.token(Role::Viewer, None).await;
    let other = h.token(Role::Customer, Some("u2")).await;
    let mut owners = std::collections::HashMap::new();
    for c in ["u1", "late", "susp"] {
        owners.insert(c, h.token(Role::Customer, Some(c)).await);
    }

    for c in cases {
        let why = c.reason;
        // A fresh server with a reserved VMID, as the controller leaves it.
        let mut spec = if c.dev {
            ServerSpec::dev("node", "22")
        } else {
            paper()
        };
        spec.process = c.process;
        spec.power = c.power;
        let id = h.seed(c.customer, spec).await.id;
        let vmid = h.store.reserve_vmid(id, VMIDS, &[], false).await.unwrap();
        if c.deleting {
            h.store.request_deletion(id).await.unwrap();
        }
        let before = h.get(id).await;

        let named = match c.id {
            Id::Uuid => id.to_string(),
            Id::Vmid => vmid.to_string(),
            Id::UnknownVmid => "4999".into(),
            Id::Garbage => "mc-paper".into(),
        };
        let path = match c.route {
            Route::Native => format!("/api/servers/{named}/power"),
            Route::Game => format!("/api/servers/{named}/game/{}", c.signal),
            Route::Host => format!("/api/servers/{named}/host/{}", c.signal),
        };
        let mut rb = h.http.post(h.url(&path));
        let secret = match c.tok {
            Tok::None => None,
            Tok::Operator => Some(&op),
            Tok::Portal => Some(&portal),
            Tok::Viewer => Some(&viewer),
            Tok::Owner => Some(&owners[c.customer]),
            Tok::Other => Some(&other),
        };
        if let Some(t) = secret {
            rb = rb.bearer_auth(t);
        }
        if c.route == Route::Native {
            let body = c.body.clone().unwrap_or_else(|| {
                let mut b = json!({ "signal": c.signal });
                if let Some(t) = c.target {
                    b["target"] = json!(t);
                }
                b
            });
            rb = rb.json(&body);
        }
        match c.if_match {
            IfMatch::No => {}
            IfMatch::Current => {
                rb = rb.header("if-match", format!("\"{}\"", before.resource_version))
            }
            IfMatch::Stale => rb = rb.header("if-match", "\"999999\""),
            IfMatch::Malformed => rb = rb.header("if-match", "yesterday"),
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let location = res.headers().get("location").cloned();

        let target = match c.route {
            Route::Game => "game",
            Route::Host => "container",
            Route::Native => c.target.unwrap_or(if c.dev { "container" } else { "game" }),
        };
        let after = h.get(id).await;
        let power_events = h
            .store
            .list_events(id, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.reason == POWER_REQUESTED)
            .collect::<Vec<_>>();

        match c.want {
            Want::Changed(process, power, r) => {
                assert_eq!(status, 202, "{why}");
                let body: Value = res.json().await.unwrap();
                if c.route == Route::Native {
                    let acc: Accepted = serde_json::from_value(body).unwrap();
                    assert_eq!(acc.server, after, "{why}: answers the server as recorded");
                    assert_eq!(location.unwrap().to_str().unwrap(), acc.status_url, "{why}");
                    let o = h
                        .store
                        .get_operation(acc.operation_id)
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(
                        (o.kind, o.generation),
                        (OperationKind::Update, after.generation),
                        "{why}"
                    );
                } else {
                    assert_eq!(body, json!({"ok": true}), "{why}");
                }
                assert_eq!(after.generation, before.generation + 1, "{why}");
                let want_spec = ServerSpec {
                    process,
                    power,
                    restarts: r,
                    ..before.spec.clone()
                };
                assert_eq!(after.spec, want_spec, "{why}: only power fields change");
                assert!(after.spec.validate().is_ok(), "{why}");
                assert_eq!(power_events.len(), 1, "{why}: {power_events:?}");
                let who = match c.tok {
                    Tok::Operator => "operator".to_string(),
                    Tok::Portal => "portal".to_string(),
                    Tok::Owner => format!("customer {}", c.customer),
                    _ => unreachable!("{why}: only writers change specs"),
                };
                let m = &power_events[0].message;
                assert!(
                    m.starts_with(&format!("{} {target} requested by {who} (token ", c.signal)),
                    "{why}: {m}"
                );
            }
            Want::Unchanged => {
                assert_eq!(status, 200, "{why}");
                let body: Value = res.json().await.unwrap();
                if c.route == Route::Native {
                    let s: Server = serde_json::from_value(body).unwrap();
                    assert_eq!(s, before, "{why}: answers the server");
                } else {
                    assert_eq!(body, json!({"ok": true}), "{why}");
                }
                assert_eq!(after, before, "{why}: nothing written");
                assert!(power_events.is_empty(), "{why}: no event");
            }
            Want::Problem(want_status, slug, field, detail) => {
                let p = expect_problem(res, want_status, why).await;
                let t = p["type"].as_str().unwrap();
                assert!(t.ends_with(&format!("/{slug}")), "{why}: type {t}");
                if let Some(f) = field {
                    let fields: Vec<&str> = p["errors"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
                        .unwrap_or_default();
                    assert!(fields.contains(&f), "{why}: fields {fields:?} in {p}");
                }
                if let Some(d) = detail {
                    let text = p["detail"].as_str().unwrap_or("");
                    assert!(text.contains(d), "{why}: detail {text:?}");
                }
                if c.route == Route::Native {
                    assert!(p.get("error").is_none(), "{why}: {p}");
                } else {
                    assert!(p["error"].is_string(), "{why}: the old error field: {p}");
                    assert_eq!(p["error"], p["detail"], "{why}");
                }
                assert_eq!(after, before, "{why}: nothing written");
                assert!(power_events.is_empty(), "{why}: no event");
            }
        }
    }
}

#[tokio::test]
async fn the_typed_client_tells_changed_from_unchanged() {
    let h = Harness::start().await;
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let s = h.seed("u1", paper()).await;
    let stop = PowerRequest {
        signal: PowerSignal::Stop,
        target: None,
    };
    let first = u1
        .power(s.id, &stop, Some(s.resource_version))
        .await
        .unwrap();
    let PowerOutcome::Changed(acc) = first else {
        panic!("a stop of a running game changes the spec: {first:?}");
    };
    assert_eq!(acc.server.spec.process, Some(Process::Stopped));
    assert_eq!(acc.server.generation, s.generation + 1);
    let again = u1.power(s.id, &stop, None).await.unwrap();
    assert_eq!(again, PowerOutcome::Unchanged(acc.server.clone()));
    // The version before the stop is stale now.
    let err = u1
        .power(s.id, &stop, Some(s.resource_version))
        .await
        .unwrap_err();
    assert!(matches!(err, api::ClientError::Conflict(_)), "{err}");
    let reboot = PowerRequest {
        signal: PowerSignal::Restart,
        target: Some(PowerTarget::Container),
    };
    for n in 1..=2 {
        let PowerOutcome::Changed(acc) = u1.power(s.id, &reboot, None).await.unwrap() else {
            panic!("a restart always changes the spec");
        };
        assert_eq!(
            acc.server.spec.restarts.container, n,
            "each request counts once"
        );
    }
}

#[tokio::test]
async fn a_patch_never_takes_restart_counters_back() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let s = h.seed("u1", paper()).await;
    let restart = PowerRequest {
        signal: PowerSignal::Restart,
        target: None,
    };
    op.power(s.id, &restart, None).await.unwrap();
    // A spec read before the restart, patched back: the restart stays asked for.
    let mut stale = s.spec.clone();
    stale.resources.memory_mib = 4096;
    let patched = op.patch(s.id, stale, None).await.unwrap();
    assert_eq!(patched.server.spec.restarts.game, 1);
    assert_eq!(patched.server.spec.resources.memory_mib, 4096);
    // Larger counters are taken: a restart may also be asked by PATCH.
    let mut more = patched.server.spec.clone();
    more.restarts.game = 3;
    let patched = op.patch(s.id, more, None).await.unwrap();
    assert_eq!(h.get(s.id).await.spec.restarts.game, 3);
    assert_eq!(patched.server.spec.restarts.game, 3);
}

#[tokio::test]
async fn every_server_route_takes_a_vmid() {
    let h = Harness::start().await;
    let op = h.token(Role::Operator, None).await;
    let u2 = h.token(Role::Customer, Some("u2")).await;
    let s = h.seed("u1", paper()).await;
    let vmid = h.store.reserve_vmid(s.id, VMIDS, &[], false).await.unwrap();
    // Another server merely observed at that VMID (an intruder's leftovers): not it.
    let decoy = h.seed("u1", paper()).await;
    let d = h.get(decoy.id).await;
    let mut st = d.status.clone();
    st.vmid = Some(vmid);
    h.store
        .write_status(decoy.id, &st, d.resource_version, None)
        .await
        .unwrap();

    let send = |method: reqwest::Method, path: String, token: &str| {
        h.http
            .request(method, h.url(&path))
            .bearer_auth(token.to_string())
    };
    let get: Server = send(reqwest::Method::GET, format!("/api/servers/{vmid}"), &op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        get.id, s.id,
        "the reservation, not the observation, names it"
    );
    let res = send(
        reqwest::Method::GET,
        format!("/api/servers/{vmid}/events"),
        &op,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = send(
        reqwest::Method::POST,
        format!("/api/servers/{vmid}/reconcile?retry=true"),
        &op,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    assert!(h.get(s.id).await.retry_requested_at.is_some());
    assert!(h.get(decoy.id).await.retry_requested_at.is_none());
    let res = send(
        reqwest::Method::POST,
        format!("/api/servers/{vmid}/pause"),
        &op,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert!(h.get(s.id).await.paused);
    let res = send(
        reqwest::Method::POST,
        format!("/api/servers/{vmid}/resume"),
        &op,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!h.get(s.id).await.paused);
    let mut bigger = paper();
    bigger.resources.memory_mib = 4096;
    let res = send(reqwest::Method::PATCH, format!("/api/servers/{vmid}"), &op)
        .json(&json!({ "spec": bigger }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(h.get(s.id).await.spec.resources.memory_mib, 4096);
    // Another customer's VMID answers as if it did not exist.
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/servers/{vmid}")),
        (reqwest::Method::GET, format!("/api/servers/{vmid}/events")),
        (reqwest::Method::DELETE, format!("/api/servers/{vmid}")),
    ] {
        let res = send(method.clone(), path.clone(), &u2)
            .send()
            .await
            .unwrap();
        let p = expect_problem(res, 404, &format!("{method} {path} by another customer")).await;
        assert!(!p.to_string().contains(&s.id.to_string()), "{p}");
    }
    let res = send(reqwest::Method::DELETE, format!("/api/servers/{vmid}"), &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(h.get(s.id).await.is_deleting());
    assert!(!h.get(decoy.id).await.is_deleting());
}
