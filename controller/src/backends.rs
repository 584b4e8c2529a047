//! The external systems the engine drives, each behind a narrow trait: `Proxmox`
//! (proxmox-client), `Agent`, `DnsProvider` and `Proxy` (edge-client). A [`Stack`] names one
//! implementation of each: [`Live`] is the HTTP clients, built from config (real systems) or
//! from the simulators' handles (`zlhd dev`, tests); unit tests use the in-memory fakes.

use crate::config::{Config, ConfigError, read_secret};
use crate::decide::Unavailable;
use crate::reason::{self as r, Reason};
use edge_client::dns::DnsProvider;
use edge_client::{
    Agent, AgentClient, CloudflareClient, EdgeError, Proxy, TechnitiumClient, VelocityClient,
};
use proxmox_client::{Proxmox, PveClient, PveError};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

/// One implementation of every backend.
pub trait Stack: Send + Sync + 'static {
    type Pve: Proxmox + 'static;
    type Agent: Agent + 'static;
    type Technitium: DnsProvider + 'static;
    type Cloudflare: DnsProvider + 'static;
    type Proxy: Proxy + 'static;
}

/// The HTTP clients.
pub struct Live;

impl Stack for Live {
    type Pve = PveClient;
    type Agent = AgentClient;
    type Technitium = TechnitiumClient;
    type Cloudflare = CloudflareClient;
    type Proxy = VelocityClient;
}

pub struct Backends<S: Stack = Live> {
    pub pve: S::Pve,
    pub agent: S::Agent,
    pub technitium: Option<S::Technitium>,
    pub cloudflare: Option<S::Cloudflare>,
    pub velocity: Option<S::Proxy>,
    /// Key for deriving per-server admin passwords.
    pub admin_secret: SecretString,
}

/// Which backend an answer came from: in Degraded reasons, events, `last_error` messages and
/// metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Proxmox,
    Agent,
    Technitium,
    Cloudflare,
    Velocity,
}

impl Backend {
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Proxmox => "proxmox",
            Backend::Agent => "agent",
            Backend::Technitium => "technitium",
            Backend::Cloudflare => "cloudflare",
            Backend::Velocity => "velocity",
        }
    }

    /// The `Degraded` condition's reason while this backend fails.
    pub const fn degraded_reason(self) -> Reason {
        match self {
            Backend::Proxmox => r::PROXMOX_UNAVAILABLE,
            Backend::Agent => r::AGENT_UNAVAILABLE,
            Backend::Technitium | Backend::Cloudflare => r::DNS_UNAVAILABLE,
            Backend::Velocity => r::PROXY_UNAVAILABLE,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<edge_client::Backend> for Backend {
    fn from(b: edge_client::Backend) -> Self {
        match b {
            // The game's Server List Ping answers from inside the container, as the Agent does.
            edge_client::Backend::Agent | edge_client::Backend::Slp => Backend::Agent,
            edge_client::Backend::Technitium => Backend::Technitium,
            edge_client::Backend::Cloudflare => Backend::Cloudflare,
            edge_client::Backend::Velocity => Backend::Velocity,
        }
    }
}

impl From<&PveError> for Unavailable {
    fn from(e: &PveError) -> Self {
        Unavailable {
            backend: Backend::Proxmox,
            class: e.class,
            message: e.message.clone(),
        }
    }
}

impl From<&EdgeError> for Unavailable {
    fn from(e: &EdgeError) -> Self {
        Unavailable {
            backend: e.backend.into(),
            class: e.class,
            message: e.message.clone(),
        }
    }
}

impl<S: Stack> Backends<S> {
    /// A stable admin password per server: derived, so nothing secret is stored and a
    /// re-sent config carries the same credentials.
    pub fn admin_password(&self, id: model::ServerId) -> SecretString {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.admin_secret.expose_secret().as_bytes());
        h.update(b"/admin/");
        h.update(id.0.as_bytes());
        SecretString::from(hex::encode(h.finalize())[..24].to_string())
    }
}

impl Backends<Live> {
    /// Clients for the real systems named in the config.
    pub fn from_config(cfg: &Config) -> Result<Backends, ConfigError> {
        Ok(Backends::<Live> {
            pve: pve_from_config(cfg)?,
            agent: agent_from_config(cfg)?,
            technitium: technitium_from_config(cfg)?,
            cloudflare: cloudflare_from_config(cfg)?,
            velocity: velocity_from_config(cfg)?,
            admin_secret: admin_secret_from_config(cfg)?,
        })
    }
}

pub fn pve_from_config(cfg: &Config) -> Result<PveClient, ConfigError> {
    let p = &cfg.proxmox;
    if p.url.is_empty() {
        return Err(ConfigError::Invalid(
            "proxmox.url: is empty (only `zlhd dev` runs without a Proxmox)".into(),
        ));
    }
    let Some(secret_file) = &p.token_secret_file else {
        return Err(ConfigError::Invalid(
            "proxmox.token_secret_file: is required".into(),
        ));
    };
    let tls = if p.insecure {
        proxmox_client::TlsMode::Insecure
    } else if let Some(fp) = &p.fingerprint {
        proxmox_client::TlsMode::Fingerprint(fp.clone())
    } else if let Some(ca) = &p.ca_file {
        proxmox_client::TlsMode::CaFile(ca.clone())
    } else {
        proxmox_client::TlsMode::System
    };
    PveClient::new(proxmox_client::PveConfig {
        base_url: p.url.clone(),
        token_id: p.token_id.clone(),
        token_secret: read_secret("proxmox.token_secret_file", secret_file)?,
        tls,
        connect_timeout: p.connect_timeout,
        request_timeout: p.request_timeout,
        rate_per_node_per_sec: p.rate_per_node,
    })
    .map_err(|e| ConfigError::Invalid(format!("proxmox: {e}")))
}

pub fn agent_from_config(cfg: &Config) -> Result<AgentClient, ConfigError> {
    let token = cfg
        .agent
        .token_file
        .as_ref()
        .map(|f| read_secret("agent.token_file", f))
        .transpose()?;
    Ok(agent_client(cfg, token)?.with_rate_limit(cfg.agent.requests_per_sec))
}

pub fn admin_secret_from_config(cfg: &Config) -> Result<SecretString, ConfigError> {
    match &cfg.agent.admin_secret_file {
        Some(f) => read_secret("agent.admin_secret_file", f),
        None => Err(ConfigError::Invalid(
            "agent.admin_secret_file: is required (admin passwords derive from it)".into(),
        )),
    }
}

pub fn technitium_from_config(cfg: &Config) -> Result<Option<TechnitiumClient>, ConfigError> {
    cfg.technitium
        .as_ref()
        .map(|t| {
            Ok(technitium_client(
                cfg,
                &t.url,
                read_secret("technitium.token_file", &t.token_file)?,
                t.timeout,
            )?
            .with_rate_limit(t.requests_per_sec))
        })
        .transpose()
}

pub fn cloudflare_from_config(cfg: &Config) -> Result<Option<CloudflareClient>, ConfigError> {
    cfg.cloudflare
        .as_ref()
        .map(|c| {
            cloudflare_client(
                cfg,
                &c.url,
                &c.zone_id,
                read_secret("cloudflare.token_file", &c.token_file)?,
                c.requests_per_5min,
                c.timeout,
            )
        })
        .transpose()
}

pub fn velocity_from_config(cfg: &Config) -> Result<Option<VelocityClient>, ConfigError> {
    cfg.velocity
        .as_ref()
        .map(|v| {
            Ok(velocity_client(
                &v.url,
                read_secret("velocity.secret_file", &v.secret_file)?,
                v.timeout,
            )?
            .with_rate_limit(v.requests_per_sec))
        })
        .transpose()
}

fn edge_err(what: &str, e: EdgeError) -> ConfigError {
    ConfigError::Invalid(format!("{what}: {e}"))
}

pub fn agent_client(cfg: &Config, token: Option<SecretString>) -> Result<AgentClient, ConfigError> {
    AgentClient::new(edge_client::AgentConfig {
        port: cfg.agent.port,
        token,
        timeout: cfg.agent.timeout,
    })
    .map_err(|e| edge_err("agent", e))
}

pub fn technitium_client(
    cfg: &Config,
    url: &str,
    token: SecretString,
    timeout: Duration,
) -> Result<TechnitiumClient, ConfigError> {
    TechnitiumClient::new(edge_client::TechnitiumConfig {
        base_url: url.into(),
        zone: cfg.edge.zone.clone(),
        token,
        timeout,
    })
    .map_err(|e| edge_err("technitium", e))
}

pub fn cloudflare_client(
    cfg: &Config,
    url: &str,
    zone_id: &str,
    token: SecretString,
    requests_per_5min: u32,
    timeout: Duration,
) -> Result<CloudflareClient, ConfigError> {
    let mut c = edge_client::CloudflareConfig::new(zone_id, &cfg.edge.zone, token);
    c.base_url = url.into();
    c.requests_per_5min = requests_per_5min;
    // A reconcile waits for the budget no longer than for anything else it polls.
    c.max_budget_wait = cfg.controller.wait_poll;
    c.timeout = timeout;
    CloudflareClient::new(c).map_err(|e| edge_err("cloudflare", e))
}

pub fn velocity_client(
    url: &str,
    secret: SecretString,
    timeout: Duration,
) -> Result<VelocityClient, ConfigError> {
    VelocityClient::new(edge_client::VelocityConfig {
        base_url: url.into(),
        secret,
        timeout,
    })
    .map_err(|e| edge_err("velocity", e))
}
