//! Request and response bodies, shared by the server and the typed client. JSON is camelCase.

use chrono::{DateTime, Utc};
use model::store::{Orphan, ReplicaInfo};
use model::{
    Event, Kind, Operation, OperationId, OperationKind, Phase, Quota, Server, ServerId, ServerSpec,
    Standing, Step,
};
use serde::{Deserialize, Serialize};

/// `POST /api/servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServerRequest {
    /// Required for portal and operator tokens; customer tokens may omit it (their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub spec: ServerSpec,
}

/// `PATCH /api/servers/{id}`: the new spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchServerRequest {
    pub spec: ServerSpec,
    /// Optimistic concurrency: refuse (409) unless the server is still at this version.
    /// Same as an `If-Match: "<resourceVersion>"` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<i64>,
}

/// What a power request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PowerSignal {
    Start,
    Stop,
    Restart,
}

/// Error texts of power requests.
pub mod power_msg {
    /// `kill` (Pterodactyl's) is refused: the spec declares states, and a killed game loses
    /// what it had not saved.
    pub const KILL_UNSUPPORTED: &str =
        "'kill' is not supported: stop lets the game save its world (or restart it)";
    pub const UNKNOWN_SIGNAL: &str = "unknown signal (expected start, stop or restart)";
    pub const DEV_HAS_NO_GAME: &str =
        "a dev container has no game process; its target is container";
}

impl PowerSignal {
    pub const ALL: [PowerSignal; 3] = [PowerSignal::Start, PowerSignal::Stop, PowerSignal::Restart];

    pub fn as_str(self) -> &'static str {
        match self {
            PowerSignal::Start => "start",
            PowerSignal::Stop => "stop",
            PowerSignal::Restart => "restart",
        }
    }
}

impl std::fmt::Display for PowerSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PowerSignal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(sig) = PowerSignal::ALL.into_iter().find(|x| x.as_str() == s) {
            return Ok(sig);
        }
        let shown: String = s.chars().take(40).collect();
        Err(if s == "kill" {
            power_msg::KILL_UNSUPPORTED.to_string()
        } else {
            format!("'{shown}': {}", power_msg::UNKNOWN_SIGNAL)
        })
    }
}

impl TryFrom<String> for PowerSignal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What a power request acts on: the game process inside the container, or the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerTarget {
    Game,
    Container,
}

impl PowerTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerTarget::Game => "game",
            PowerTarget::Container => "container",
        }
    }

    /// The target when a request names none: the game of a game server, a dev's container.
    pub fn default_for(kind: Kind) -> Self {
        match kind {
            Kind::Game => PowerTarget::Game,
            Kind::Dev => PowerTarget::Container,
        }
    }
}

impl std::fmt::Display for PowerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/servers/{id}/power`: a change of the spec's `process`, `power` or `restarts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PowerRequest {
    pub signal: PowerSignal,
    /// Default: `game` for game servers, `container` for dev containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PowerTarget>,
}

/// The previous system's success body, kept for the Portal's power buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LegacyOk {
    pub ok: bool,
}

/// 202 answer to create, patch, delete and power: the server as recorded, and the operation to poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub server: Server,
    pub operation_id: OperationId,
    /// `/api/operations/{operationId}`.
    pub status_url: String,
}

/// One page of `GET /api/servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerList {
    pub items: Vec<Server>,
    /// Pass as `after` to get the next page; null at the end.
    pub next: Option<ServerId>,
    /// What a server card shows, one per item in the same order (read for the whole page at
    /// once; the full sample is `GET /api/servers/{id}/stats`).
    #[serde(default)]
    pub cards: Vec<ServerCard>,
}

/// A server card: the phase and step from the status, the rest from the latest live detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerCard {
    pub id: ServerId,
    pub phase: Phase,
    /// The current provisioning step, while one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// The Agent's last answer (its install step, its crash count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<model::AgentDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<model::Players>,
    /// When any live detail of this server was last seen; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
}

impl ServerCard {
    /// The card of `server` given its latest sample, if any.
    pub fn of(server: &Server, stats: Option<&model::ServerStats>) -> Self {
        let (phase, step) = server.phase();
        ServerCard {
            id: server.id,
            phase,
            step,
            agent: stats.and_then(|s| s.agent.clone()),
            players: stats.and_then(|s| s.players.clone()),
            last_seen: stats.and_then(model::ServerStats::last_seen),
        }
    }
}

/// Query of `GET /api/servers`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this customer's servers (customer tokens always see only their own).
    pub customer: Option<String>,
    pub phase: Option<Phase>,
    pub kind: Option<Kind>,
    pub hostname: Option<String>,
    pub vmid: Option<u32>,
    /// Page size (default 50, at most 500).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub after: Option<ServerId>,
    /// Stream changes as Server-Sent Events instead of answering one page.
    pub watch: Option<bool>,
    /// Watch: resume after this change-feed sequence (same as `Last-Event-ID`).
    pub resource_version: Option<i64>,
}

impl ListQuery {
    pub(crate) fn filter(&self) -> ListFilter {
        ListFilter {
            customer: self.customer.clone(),
            phase: self.phase,
            kind: self.kind,
            hostname: self.hostname.clone(),
            vmid: self.vmid,
        }
    }
}

/// Query of `POST /api/servers:reconcile`: the list's filters, and `retry`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BulkReconcileQuery {
    /// Only this customer's servers (customer tokens always reach only their own).
    pub customer: Option<String>,
    pub phase: Option<Phase>,
    pub kind: Option<Kind>,
    pub hostname: Option<String>,
    pub vmid: Option<u32>,
    /// Also clear terminal failures, so the controller tries them again.
    pub retry: Option<bool>,
}

impl BulkReconcileQuery {
    pub(crate) fn filter(&self) -> ListFilter {
        ListFilter {
            customer: self.customer.clone(),
            phase: self.phase,
            kind: self.kind,
            hostname: self.hostname.clone(),
            vmid: self.vmid,
        }
    }
}

/// `POST /api/servers:reconcile`: what was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkReconciled {
    /// How many servers were asked to reconcile (those deleted meanwhile are not counted).
    pub queued: u64,
    /// Their ids, in id order.
    pub ids: Vec<ServerId>,
}

/// Filters of `GET /api/servers` (also used by the watch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFilter {
    pub customer: Option<String>,
    pub phase: Option<Phase>,
    pub kind: Option<Kind>,
    pub hostname: Option<String>,
    pub vmid: Option<u32>,
}

/// `GET /api/servers/{id}/events`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub items: Vec<Event>,
}

/// How an operation is doing, derived from its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationState {
    /// Accepted, the controller has not started yet.
    Pending,
    /// The controller is working on it (including transient trouble: `Degraded`).
    Running,
    /// Create/update: the server is Ready at (at least) this generation. Delete: archived.
    Succeeded,
    /// The server failed terminally at this generation (see `server.failure`).
    Failed,
    /// A newer spec replaced this one before it was done.
    Superseded,
    /// The server was deleted (create/update operations of a deleted server).
    Deleted,
}

/// A short view of the server an operation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSummary {
    pub id: ServerId,
    pub customer_id: String,
    pub phase: Phase,
    /// The current provisioning step, while one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    pub ready: bool,
    pub generation: i64,
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<model::status::Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<model::LastError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The server was deleted and archived; this is its last recorded state.
    pub archived: bool,
}

/// `GET /api/operations/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub operation: Operation,
    pub state: OperationState,
    /// Absent only if the server row and its archive are both gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSummary>,
}

impl ServerSummary {
    pub fn of(server: &Server, archived: bool) -> Self {
        let (phase, step) = server.phase();
        ServerSummary {
            id: server.id,
            customer_id: server.customer_id.clone(),
            phase,
            step,
            ready: phase == Phase::Ready,
            generation: server.generation,
            observed_generation: server.status.observed_generation,
            failure: server.status.failure.clone(),
            last_error: server.status.last_error.clone(),
            vmid: server.status.vmid.or(server.reserved_vmid),
            hostname: server.status.hostname.clone(),
            fqdn: server.status.fqdn.clone(),
            archived,
        }
    }
}

impl OperationState {
    /// The state of `op` given its server (live or archived).
    pub fn of(op: &Operation, server: Option<&Server>, archived: bool) -> Self {
        let Some(server) = server else {
            return match op.kind {
                OperationKind::Delete => OperationState::Succeeded,
                _ => OperationState::Deleted,
            };
        };
        if op.kind == OperationKind::Delete {
            return if archived {
                OperationState::Succeeded
            } else {
                OperationState::Running
            };
        }
        if archived {
            return OperationState::Deleted;
        }
        let (phase, _) = server.phase();
        if server.generation > op.generation && phase != Phase::Ready {
            return OperationState::Superseded;
        }
        match phase {
            Phase::Ready => OperationState::Succeeded,
            Phase::Failed => OperationState::Failed,
            Phase::Queued => OperationState::Pending,
            Phase::Provisioning | Phase::Degraded => OperationState::Running,
            Phase::Deleting => OperationState::Deleted,
        }
    }
}

/// `GET /api/controller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerStatus {
    /// Replicas whose heartbeat is recent.
    pub replicas: Vec<ReplicaInfo>,
    /// Sum of `leasesHeld` over alive replicas.
    pub leases_held: i64,
    /// Sum of `queueDepth` over alive replicas.
    pub queue_depth: i64,
}

/// `GET /api/orphans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrphanList {
    pub items: Vec<Orphan>,
}

/// One warm pool (docs/pools.md): a template's declared size and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The template's VMID (the pool's name).
    pub template: u32,
    pub node: String,
    /// `[[templates]] pool` (0: not declared, or removed: the pool drains).
    pub desired: u32,
    pub free: u32,
    pub cloning: u32,
    pub retiring: u32,
    /// The oldest free member's age in seconds (how stale the next claim is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_free_age_secs: Option<u64>,
    pub members: Vec<model::PoolMember>,
    /// The pool's latest events (`PoolRefilled`, `PoolMemberReplaced`, ...), newest first.
    pub events: Vec<model::Event>,
}

/// `GET /api/pools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolList {
    pub items: Vec<PoolStatus>,
}

/// `PUT /api/customers/{id}`: fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<Standing>,
}

/// `GET /api/catalog/game`, exactly as the Portal reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GameCatalog {
    pub games: Vec<CatalogGame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogGame {
    pub id: String,
    pub variants: Vec<CatalogEntry>,
}

/// A variant or runtime with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    pub id: String,
    pub versions: Vec<String>,
}

/// `GET /api/catalog/dev`, exactly as the Portal reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevCatalog {
    pub runtimes: Vec<CatalogEntry>,
}

/// `POST /api/instances`: the Portal's create body, unchanged. Fields the Portal may add later
/// are ignored (this client is not ours to change in lockstep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRequest {
    pub customer_id: Option<String>,
    /// `game` or `dev`.
    pub ctype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub version: String,
    #[serde(rename = "memoryMiB", default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// Portal status names.
pub mod portal_status {
    pub const QUEUED: &str = "provisioning_queued";
    pub const RUNNING: &str = "provisioning_running";
    pub const FAILED: &str = "provisioning_failed";
    /// The final success state; its phase is [`PHASE_COMPLETE`].
    pub const READY: &str = "ready";
    pub const PHASE_QUEUED: &str = "queued";
    pub const PHASE_COMPLETE: &str = "complete";
}

/// 202 answer of `POST /api/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceAccepted {
    pub operation_id: OperationId,
    /// The `x-request-id` of this request.
    pub request_id: String,
    /// `/api/instances/operations/{operationId}`.
    pub status_url: String,
    pub status: String,
    pub phase: String,
    pub server_id: ServerId,
}

/// `GET /api/instances/operations/{operationId}`, as the Portal polls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceOperation {
    pub operation_id: OperationId,
    /// `provisioning_queued`, `provisioning_running`, `provisioning_failed` or `ready`.
    pub status: String,
    /// `queued`, a step name (`clone-container`, ...), or `complete`.
    pub phase: String,
    pub server_id: ServerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
}

/// The `data` of a watch `delete` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedRef {
    pub id: ServerId,
}

/// The `data` of a watch `bookmark` event: the stream is caught up to `resourceVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    pub resource_version: i64,
}

/// One event of the watch stream, as the OpenAPI document describes it. On the wire each is a
/// Server-Sent Event: `event:` is the variant's name, `data:` its JSON, and `id:` the sequence to
/// resume from (absent on the initial listing's upserts). `error` ends the stream.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "lowercase")]
pub enum WatchStreamEvent {
    /// A server was created or changed: its whole current state.
    Upsert(Box<Server>),
    /// A server was deleted (archived).
    Delete(DeletedRef),
    /// The initial listing is complete; resume from `resourceVersion`.
    Bookmark(Bookmark),
    /// The stream ends because of this problem (e.g. the store became unavailable).
    Error(crate::problem::Problem),
}

/// A decoded watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A server was created or changed. `seq` is absent for the initial listing.
    Upsert {
        seq: Option<i64>,
        server: Box<Server>,
    },
    /// A server was deleted (archived).
    Delete { seq: i64, id: ServerId },
    /// The initial listing is complete; resume from `seq`.
    Bookmark { seq: i64 },
}

impl WatchEvent {
    /// The id to resume from after this event, if it carries one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            WatchEvent::Upsert { seq, .. } => *seq,
            WatchEvent::Delete { seq, .. } | WatchEvent::Bookmark { seq } => Some(*seq),
        }
    }
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

/// One target group of Prometheus HTTP service discovery (`GET /api/sd/targets`): the format
/// Prometheus's `http_sd_configs` reads, so its field names are Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// `host:port` of the exporter (one per group).
    pub targets: Vec<String>,
    /// Every value a string: `__meta_zlh_*` (for relabelling), the plain labels attached to
    /// every series scraped from the target, and `__metrics_path__` / `__scheme__` where the
    /// exporter needs them.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Canonical JSON (object keys sorted at every level): the input of request hashes, so that
/// the same request always hashes the same however the client ordered its keys.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// SHA-256 (hex) of the canonical JSON of `{customerId, spec}`: what an `Idempotency-Key` is
/// bound to.
pub fn request_hash(customer_id: &str, spec: &ServerSpec) -> String {
    use sha2::Digest;
    let v = serde_json::json!({ "customerId": customer_id, "spec": spec });
    hex::encode(sha2::Sha256::digest(canonical_json(&v).as_bytes()))
}

/// Timestamps in bodies are RFC 3339 UTC.
pub type Timestamp = DateTime<Utc>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_bodies_table() {
        type Case = (
            &'static str,
            &'static str,
            Result<PowerRequest, &'static str>,
        );
        let cases: &[Case] = &[
            (
                "a signal alone",
                r#"{"signal":"stop"}"#,
                Ok(PowerRequest {
                    signal: PowerSignal::Stop,
                    target: None,
                }),
            ),
            (
                "with a target",
                r#"{"signal":"restart","target":"container"}"#,
                Ok(PowerRequest {
                    signal: PowerSignal::Restart,
                    target: Some(PowerTarget::Container),
                }),
            ),
            (
                "kill says it is unsupported",
                r#"{"signal":"kill"}"#,
                Err("not supported"),
            ),
            (
                "an unknown signal",
                r#"{"signal":"jump"}"#,
                Err("unknown signal"),
            ),
            (
                "signals are lowercase",
                r#"{"signal":"Start"}"#,
                Err("unknown signal"),
            ),
            (
                "an unknown target",
                r#"{"signal":"stop","target":"vm"}"#,
                Err("unknown variant"),
            ),
            (
                "unknown fields are refused",
                r#"{"signal":"stop","force":true}"#,
                Err("unknown field"),
            ),
        ];
        for (reason, body, want) in cases {
            let got = serde_json::from_str::<PowerRequest>(body).map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{reason}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{reason}: {e}"),
                (g, w) => panic!("{reason}: got {g:?}, want {w:?}"),
            }
        }
        let back = serde_json::to_value(PowerRequest {
            signal: PowerSignal::Restart,
            target: Some(PowerTarget::Game),
        })
        .unwrap();
        assert_eq!(
            back,
            serde_json::json!({"signal": "restart", "target": "game"})
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn request_hash_depends_on_customer_and_spec() {
        let s = ServerSpec::minecraft(model::Variant::Paper, "1.21.7");
        let h = request_hash("u1", &s);
        assert_eq!(h, request_hash("u1", &s.clone()));
        assert_ne!(h, request_hash("u2", &s));
        assert_ne!(
            h,
            request_hash(
                "u1",
                &ServerSpec::minecraft(model::Variant::Paper, "1.21.1")
            )
        );
        assert_eq!(h.len(), 64);
    }
}

// --- tokens and audit (operators) ------------------------------------------------------------

/// A token as listed: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: model::Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Recorded at most once a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`, as of the answer.
    pub state: String,
}

impl TokenInfo {
    pub fn of(t: &model::ApiToken, now: DateTime<Utc>) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name.clone(),
            role: t.role,
            customer_id: t.customer_id.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            state: t.state(now).as_str().into(),
        }
    }
}

/// `GET /api/tokens`: every token, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

/// `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// 1-64 characters; how the audit log and events name its requests.
    pub name: String,
    pub role: model::Role,
    /// Required with role `customer`, and only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Refused after this long, e.g. `30d`, `12h` (absent: never expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// `POST /api/tokens`: the secret, shown only in this answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// The bearer secret. Only its hash is stored: it cannot be shown again.
    pub secret: String,
}

/// Query of `GET /api/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this server (its id).
    #[param(value_type = Option<String>, format = Uuid)]
    pub server: Option<ServerId>,
    /// Only this actor's (a token name, or `jwt:<subject>`).
    pub actor: Option<String>,
    /// Only this action (e.g. `server.delete`).
    pub action: Option<String>,
    /// The `next` of the previous page: older entries.
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<u32>,
}

/// `GET /api/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub items: Vec<model::AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}
