//! The zpack Agent inside each container: `POST /config`, `GET /status`, `GET /health`, and
//! the game process's power (`POST /start`, `/stop`, `/restart`) at `http://{ip}:{port}`
//! (default 18888), optional `Authorization: Bearer` token (docs/edge-apis.md §6).

use crate::error::{Backend, EdgeError};
use crate::http;
use model::spec::{Kind, ServerSpec, Variant, minecraft_minor};
use model::{ErrorClass, spec};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

pub const DEFAULT_AGENT_PORT: u16 = 18888;
const BACKEND: Backend = Backend::Agent;

pub const JAVA_21: &str = "java/21/OpenJDK21.tar.gz";
pub const JAVA_17: &str = "java/17/OpenJDK17.tar.gz";

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub port: u16,
    pub token: Option<SecretString>,
    pub timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            port: DEFAULT_AGENT_PORT,
            token: None,
            // The previous poller used 2 s for /health; /config may take a little longer.
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the Agent is told to install. Serialized exactly as the Agent reads it:
/// `{"vmid":..,"container_type":"game"|"dev",...}`; `admin_pass` is in the body (the Agent needs
/// it) but redacted in `Debug`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "container_type", rename_all = "lowercase")]
pub enum AgentPayload {
    Game {
        vmid: u32,
        game: String,
        variant: String,
        version: String,
        world: String,
        ports: Vec<u16>,
        artifact_path: String,
        java_path: String,
        memory_mb: u32,
        admin_user: String,
        #[serde(serialize_with = "expose")]
        admin_pass: SecretString,
    },
    Dev {
        vmid: u32,
        runtime: String,
        version: String,
        memory_mb: u32,
    },
}

fn expose<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

/// Artifact path of a Minecraft variant/version in the artifact store (same layout as the
/// previous provisioner: forge/neoforge ship installer jars, fabric its server launcher).
pub fn artifact_path(variant: Variant, version: &str) -> String {
    match variant {
        Variant::Vanilla | Variant::Paper | Variant::Purpur => {
            format!("minecraft/{variant}/{version}/server.jar")
        }
        Variant::Fabric => format!("minecraft/fabric/{version}/fabric-server.jar"),
        Variant::Forge => format!("minecraft/forge/{version}/forge-installer.jar"),
        Variant::Neoforge => format!("minecraft/neoforge/{version}/neoforge-installer.jar"),
    }
}

/// Java runtime archive for a Minecraft version: Java 21 from 1.21 on, and also for 1.20.5+
/// (Mojang moved to Java 21 in 1.20.5; the previous provisioner did the same), else Java 17.
pub fn java_path(version: &str) -> &'static str {
    let patch: u32 = version
        .split('.')
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    match minecraft_minor(version) {
        Some(m) if m >= 21 => JAVA_21,
        Some(20) if patch >= 5 => JAVA_21,
        _ => JAVA_17,
    }
}

impl AgentPayload {
    /// Build the payload for a validated spec. `game_port` is the backend port the server
    /// listens on (25565); `admin_user`/`admin_pass` are generated once by the caller and kept.
    pub fn for_spec(
        vmid: u32,
        spec: &ServerSpec,
        game_port: u16,
        admin_user: &str,
        admin_pass: SecretString,
    ) -> Result<AgentPayload, EdgeError> {
        let invalid = |m: &str| EdgeError::new(BACKEND, ErrorClass::Invalid, None, m);
        match spec.kind {
            Kind::Game => {
                let variant = spec
                    .variant
                    .ok_or_else(|| invalid("game spec without variant"))?;
                Ok(AgentPayload::Game {
                    vmid,
                    game: spec
                        .game
                        .clone()
                        .unwrap_or_else(|| spec::GAME_MINECRAFT.into()),
                    variant: variant.as_str().into(),
                    version: spec.version.clone(),
                    world: spec.world_or_default().into(),
                    ports: vec![game_port],
                    artifact_path: artifact_path(variant, &spec.version),
                    java_path: java_path(&spec.version).into(),
                    memory_mb: spec.resources.memory_mib,
                    admin_user: admin_user.into(),
                    admin_pass,
                })
            }
            Kind::Dev => Ok(AgentPayload::Dev {
                vmid,
                runtime: spec
                    .runtime
                    .clone()
                    .ok_or_else(|| invalid("dev spec without runtime"))?,
                version: spec.version.clone(),
                memory_mb: spec.resources.memory_mib,
            }),
        }
    }

    pub fn vmid(&self) -> u32 {
        match self {
            AgentPayload::Game { vmid, .. } | AgentPayload::Dev { vmid, .. } => *vmid,
        }
    }
}

/// The Agent's lifecycle (`GET /status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// No config received since the container (or the Agent) started.
    Idle,
    Installing {
        step: Option<String>,
        progress: Option<u8>,
    },
    /// The install failed (the Agent's message).
    Error {
        message: String,
    },
    // The game process, once installed.
    Running,
    Starting,
    Stopping,
    /// Stopped: asked to (`POST /stop`, a `stop` typed at the console) or exited.
    Stopped,
    Crashed {
        /// Crashes in a row (`crashCount`), when the Agent reports it.
        count: Option<u32>,
        message: Option<String>,
    },
}

impl AgentState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentState::Idle => "idle",
            AgentState::Installing { .. } => "installing",
            AgentState::Error { .. } => "error",
            AgentState::Running => "running",
            AgentState::Starting => "starting",
            AgentState::Stopping => "stopping",
            AgentState::Stopped => "stopped",
            AgentState::Crashed { .. } => "crashed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    pub state: AgentState,
}

/// Wire shape of `GET /status`: `{"state":"installing","step":"..","progress":40}`,
/// `{"state":"error","error":"..."}`, `{"state":"crashed","crashCount":2}`. Shared with the
/// simulator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusWire {
    pub state: String,
    /// Some Agent builds say `installStep`.
    #[serde(
        default,
        alias = "installStep",
        skip_serializing_if = "Option::is_none"
    )]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Some Agent builds say `message` instead of `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_count: Option<u32>,
}

pub(crate) const DEFAULT_AGENT_ERROR: &str = "agent error";

impl StatusWire {
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn from_state(s: &AgentState) -> Self {
        let mut w = StatusWire {
            state: s.as_str().into(),
            ..Default::default()
        };
        match s {
            AgentState::Installing { step, progress } => {
                w.step = step.clone();
                w.progress = progress.map(f64::from);
            }
            AgentState::Error { message } => w.error = Some(message.clone()),
            AgentState::Crashed { count, message } => {
                w.crash_count = *count;
                w.error = message.clone();
            }
            _ => {}
        }
        w
    }

    pub(crate) fn into_state(self) -> Result<AgentState, String> {
        // The previous poller lower-cased the state; do the same.
        Ok(match self.state.to_ascii_lowercase().as_str() {
            "idle" => AgentState::Idle,
            "installing" => AgentState::Installing {
                step: self.step,
                progress: self.progress.map(|p| p.clamp(0.0, 100.0) as u8),
            },
            "running" => AgentState::Running,
            "starting" => AgentState::Starting,
            "stopping" => AgentState::Stopping,
            "stopped" => AgentState::Stopped,
            "crashed" => AgentState::Crashed {
                count: self.crash_count,
                message: self.error.or(self.message),
            },
            "error" => AgentState::Error {
                message: self
                    .error
                    .or(self.message)
                    .unwrap_or_else(|| DEFAULT_AGENT_ERROR.into()),
            },
            other => return Err(format!("unknown agent state '{other}'")),
        })
    }
}

#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    pace: crate::pace::Pace,
    port: u16,
    token: Option<SecretString>,
}

impl AgentClient {
    pub fn new(cfg: AgentConfig) -> Result<Self, EdgeError> {
        Ok(AgentClient {
            http: http::client(BACKEND, cfg.timeout, false)?,
            pace: crate::pace::Pace::default(),
            port: cfg.port,
            token: cfg.token,
        })
    }

    /// Pace outgoing requests to at most `per_second` (0 = unpaced).
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.pace = crate::pace::Pace::per_second(per_second);
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://{ip}:{port}`.
    pub fn base_url(&self, ip: &str) -> String {
        format!("http://{ip}:{}", self.port)
    }

    fn req(&self, m: reqwest::Method, ip: &str, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(m, format!("{}{path}", self.base_url(ip)));
        match &self.token {
            Some(t) => r.header(reqwest::header::AUTHORIZATION, http::bearer(t)),
            None => r,
        }
    }

    fn scrub(&self, e: EdgeError) -> EdgeError {
        match &self.token {
            Some(t) => e.scrub(t.expose_secret()),
            None => e,
        }
    }

    async fn call(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<http::Response, EdgeError> {
        self.pace.wait().await;
        let r = http::send(BACKEND, what, req)
            .await
            .map_err(|e| self.scrub(e))?;
        let out = if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(self.scrub(EdgeError::from_status(BACKEND, r.status, &r.body)))
        };
        http::finish(BACKEND, what, out)
    }

    /// `POST /config`. Any 2xx is acceptance; the install then runs asynchronously (poll
    /// `status`).
    pub async fn send_config(&self, ip: &str, payload: &AgentPayload) -> Result<(), EdgeError> {
        let req = self.req(reqwest::Method::POST, ip, "/config").json(payload);
        self.call("POST /config", req).await.map(|_| ())
    }

    /// `GET /status`.
    pub async fn status(&self, ip: &str) -> Result<AgentStatus, EdgeError> {
        let r = self
            .call("GET /status", self.req(reqwest::Method::GET, ip, "/status"))
            .await?;
        let wire: StatusWire = serde_json::from_str(&r.body).map_err(|e| {
            // A half-started Agent may answer garbage: retry later, do not fail the server.
            EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(r.status),
                format!("malformed /status body: {e}"),
            )
        })?;
        // A state never seen before is most likely a newer Agent: transient (retried, the
        // server Degraded), never a terminal failure, so an Agent upgrade cannot fail the fleet.
        let state = wire
            .into_state()
            .map_err(|m| EdgeError::new(BACKEND, ErrorClass::Transient, Some(r.status), m))?;
        Ok(AgentStatus { state })
    }

    /// `GET /health`: Ok when the Agent answers 2xx.
    pub async fn health(&self, ip: &str) -> Result<(), EdgeError> {
        self.call("GET /health", self.req(reqwest::Method::GET, ip, "/health"))
            .await
            .map(|_| ())
    }

    /// `POST /start`: start the game process. Any 2xx is acceptance; the outcome shows in
    /// `status`.
    pub async fn start(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(ip, "POST /start", "/start").await
    }

    /// `POST /stop`: stop the game process (the container keeps running).
    pub async fn stop(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(ip, "POST /stop", "/stop").await
    }

    /// `POST /restart`: restart the game process (not the container).
    pub async fn restart(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(ip, "POST /restart", "/restart").await
    }

    /// The power routes take no body (the previous system sent none).
    async fn power(&self, ip: &str, what: &str, path: &str) -> Result<(), EdgeError> {
        let req = self.req(reqwest::Method::POST, ip, path);
        self.call(what, req).await.map(|_| ())
    }
}

/// What zlh asks of the in-container Agent: its lifecycle state, (once) the config to
/// install, and the game process's power. The engine depends on this rather than on
/// `AgentClient`, so its glue can be tested against an in-memory Agent (feature `fake`).
pub trait Agent: Send + Sync {
    /// `GET /status`.
    fn status(&self, ip: &str) -> impl Future<Output = Result<AgentStatus, EdgeError>> + Send;
    /// `POST /config`; the install then runs asynchronously (poll `status`).
    fn send_config(
        &self,
        ip: &str,
        payload: &AgentPayload,
    ) -> impl Future<Output = Result<(), EdgeError>> + Send;
    /// `POST /start` (the game process); a 2xx is acceptance, the outcome shows in `status`.
    fn start(&self, ip: &str) -> impl Future<Output = Result<(), EdgeError>> + Send;
    /// `POST /stop` (the game process; the container keeps running).
    fn stop(&self, ip: &str) -> impl Future<Output = Result<(), EdgeError>> + Send;
    /// `POST /restart` (the game process, not the container).
    fn restart(&self, ip: &str) -> impl Future<Output = Result<(), EdgeError>> + Send;
}

impl Agent for AgentClient {
    async fn status(&self, ip: &str) -> Result<AgentStatus, EdgeError> {
        AgentClient::status(self, ip).await
    }

    async fn send_config(&self, ip: &str, payload: &AgentPayload) -> Result<(), EdgeError> {
        AgentClient::send_config(self, ip, payload).await
    }

    async fn start(&self, ip: &str) -> Result<(), EdgeError> {
        AgentClient::start(self, ip).await
    }

    async fn stop(&self, ip: &str) -> Result<(), EdgeError> {
        AgentClient::stop(self, ip).await
    }

    async fn restart(&self, ip: &str) -> Result<(), EdgeError> {
        AgentClient::restart(self, ip).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_table() {
        let cases = [
            ("1.21.7", JAVA_21, "1.21 needs Java 21"),
            ("1.21", JAVA_21, "no patch"),
            ("1.20.6", JAVA_21, "1.20.5+ needs Java 21"),
            ("1.20.4", JAVA_17, "before 1.20.5 Java 17"),
            ("1.18.2", JAVA_17, "old versions Java 17"),
        ];
        for (v, want, reason) in cases {
            assert_eq!(java_path(v), want, "{v}: {reason}");
        }
    }

    #[test]
    fn artifact_table() {
        let cases = [
            (Variant::Paper, "minecraft/paper/1.21.7/server.jar"),
            (Variant::Vanilla, "minecraft/vanilla/1.21.7/server.jar"),
            (Variant::Purpur, "minecraft/purpur/1.21.7/server.jar"),
            (Variant::Fabric, "minecraft/fabric/1.21.7/fabric-server.jar"),
            (Variant::Forge, "minecraft/forge/1.21.7/forge-installer.jar"),
            (
                Variant::Neoforge,
                "minecraft/neoforge/1.21.7/neoforge-installer.jar",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(artifact_path(v, "1.21.7"), want);
        }
    }

    #[test]
    fn payload_serialization() {
        let spec = ServerSpec::minecraft(Variant::Forge, "1.20.1");
        let p = AgentPayload::for_spec(
            105,
            &spec,
            25565,
            "admin",
            SecretString::from("s3cr3t-pass"),
        )
        .unwrap();
        assert!(!format!("{p:?}").contains("s3cr3t-pass"), "Debug redacts");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["container_type"], "game");
        assert_eq!(v["vmid"], 105);
        assert_eq!(v["variant"], "forge");
        assert_eq!(v["world"], "world");
        assert_eq!(v["ports"], serde_json::json!([25565]));
        assert_eq!(
            v["artifact_path"],
            "minecraft/forge/1.20.1/forge-installer.jar"
        );
        assert_eq!(v["java_path"], JAVA_17);
        assert_eq!(v["memory_mb"], 2048);
        assert_eq!(v["admin_pass"], "s3cr3t-pass");

        let d =
            AgentPayload::for_spec(7, &ServerSpec::dev("node", "22"), 0, "", "x".into()).unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"container_type":"dev","vmid":7,"runtime":"node","version":"22","memory_mb":2048})
        );
    }

    #[test]
    fn status_wire_table() {
        let cases = [
            (r#"{"state":"idle"}"#, Ok(AgentState::Idle)),
            (r#"{"state":"RUNNING"}"#, Ok(AgentState::Running)),
            (
                r#"{"state":"installing","step":"java","progress":42.5}"#,
                Ok(AgentState::Installing {
                    step: Some("java".into()),
                    progress: Some(42),
                }),
            ),
            (
                r#"{"state":"error","error":"boom"}"#,
                Ok(AgentState::Error {
                    message: "boom".into(),
                }),
            ),
            (
                r#"{"state":"error"}"#,
                Ok(AgentState::Error {
                    message: DEFAULT_AGENT_ERROR.into(),
                }),
            ),
            (
                r#"{"state":"crashed"}"#,
                Ok(AgentState::Crashed {
                    count: None,
                    message: None,
                }),
            ),
            (
                r#"{"state":"crashed","crashCount":3,"error":"OutOfMemoryError"}"#,
                Ok(AgentState::Crashed {
                    count: Some(3),
                    message: Some("OutOfMemoryError".into()),
                }),
            ),
            (r#"{"state":"Stopped"}"#, Ok(AgentState::Stopped)),
            (r#"{"state":"STARTING"}"#, Ok(AgentState::Starting)),
            (r#"{"state":"stopping"}"#, Ok(AgentState::Stopping)),
            (
                r#"{"state":"installing","installStep":"java"}"#,
                Ok(AgentState::Installing {
                    step: Some("java".into()),
                    progress: None,
                }),
            ),
            (r#"{"state":"weird"}"#, Err(())),
        ];
        for (body, want) in cases {
            let got = serde_json::from_str::<StatusWire>(body)
                .unwrap()
                .into_state()
                .map_err(|_| ());
            assert_eq!(got, want, "{body}");
        }
    }
}
