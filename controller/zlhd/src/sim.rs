//! Every simulator on loopback, wired together: the Agent simulator comes up on a container's
//! address when the Proxmox simulator starts it. Used by `zlhd dev`, `zlhd sim` and tests.

use controller::backends::{self, Backends};
use controller::config::{
    CloudflareSection, Config, ConfigError, TechnitiumSection, VelocitySection,
};
use edge_client::sim::{
    AgentSim, AgentSimConfig, CloudflareSim, CloudflareSimConfig, TechnitiumSim,
    TechnitiumSimConfig, VelocitySim, VelocitySimConfig,
};
use proxmox_client::sim::{CtEvent, PveSim, PveSimHandle, SimConfig};
use secrecy::SecretString;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Which simulators to run (`zlhd sim --without ...`).
#[derive(Debug, Clone, Copy)]
pub struct SimSet {
    pub proxmox: bool,
    pub agent: bool,
    pub technitium: bool,
    pub cloudflare: bool,
    pub velocity: bool,
}

impl Default for SimSet {
    fn default() -> Self {
        SimSet {
            proxmox: true,
            agent: true,
            technitium: true,
            cloudflare: true,
            velocity: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub set: SimSet,
    /// Simulated seconds per real second: 10 makes a 20 s clone take 2 s.
    pub time_scale: f64,
    /// Realistic Proxmox and Agent timings (before scaling).
    pub clone: Duration,
    pub start: Duration,
    pub ip_delay: Duration,
    pub install: Duration,
    pub zone: String,
    /// One listening socket per simulated container (SLP on the Agent's port) instead of
    /// two: for fleets that would not fit in the open-file limit otherwise.
    pub share_agent_port: bool,
    /// Anything else of the Proxmox simulator's settings (templates, storages, the linked
    /// clone's time), applied last.
    pub tune_pve: Option<fn(&mut SimConfig)>,
    /// Pace Proxmox calls at `proxmox.rate_per_node` (scaled like every timing), as against
    /// a real cluster; off, the client's limit is out of the way (tests measure the engine).
    pub pace_proxmox: bool,
}

impl Default for SimOptions {
    /// A real full clone and install: clone 20 s (template locked throughout), start 3 s,
    /// IP 5 s after start, Agent install 60 s.
    fn default() -> Self {
        SimOptions {
            set: SimSet::default(),
            time_scale: 10.0,
            clone: Duration::from_secs(20),
            start: Duration::from_secs(3),
            ip_delay: Duration::from_secs(5),
            install: Duration::from_secs(60),
            zone: "zlh.test".into(),
            share_agent_port: false,
            tune_pve: None,
            pace_proxmox: false,
        }
    }
}

pub struct SimStack {
    pub pve: Option<PveSimHandle>,
    pub agent: Option<Arc<AgentSim>>,
    pub technitium: Option<TechnitiumSim>,
    pub cloudflare: Option<CloudflareSim>,
    pub velocity: Option<VelocitySim>,
    pub options: SimOptions,
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

/// URLs and credentials of the running simulators (printed and written by `zlhd sim/dev`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimEndpoints {
    pub proxmox_url: Option<String>,
    pub proxmox_token_id: Option<String>,
    pub proxmox_token_secret: Option<String>,
    pub agent_port: Option<u16>,
    pub game_port: Option<u16>,
    pub technitium_url: Option<String>,
    pub technitium_token: Option<String>,
    pub cloudflare_url: Option<String>,
    pub cloudflare_zone_id: Option<String>,
    pub cloudflare_token: Option<String>,
    pub velocity_url: Option<String>,
    pub velocity_secret: Option<String>,
    pub zone: String,
}

impl SimStack {
    pub async fn start(options: SimOptions) -> std::io::Result<SimStack> {
        let scale = options.time_scale;
        let set = options.set;
        let pve = if set.proxmox {
            let mut c = SimConfig::default();
            c.timings.clone = options.clone;
            c.timings.start = options.start;
            c.timings.ip_delay = options.ip_delay;
            // The sim multiplies its timings by this (ours: simulated seconds per second).
            c.time_scale = 1.0 / scale;
            if let Some(tune) = options.tune_pve {
                tune(&mut c);
            }
            Some(PveSim::start(c).await?)
        } else {
            None
        };
        let agent = if set.agent {
            Some(Arc::new(
                AgentSim::start(AgentSimConfig {
                    install_time: options.install,
                    time_scale: scale,
                    share_port: options.share_agent_port,
                    ..AgentSimConfig::default()
                })
                .await?,
            ))
        } else {
            None
        };
        let technitium = if set.technitium {
            Some(
                TechnitiumSim::start(TechnitiumSimConfig {
                    zone: options.zone.clone(),
                    ..Default::default()
                })
                .await?,
            )
        } else {
            None
        };
        let cloudflare = if set.cloudflare {
            Some(
                CloudflareSim::start(CloudflareSimConfig {
                    zone_name: options.zone.clone(),
                    time_scale: scale,
                    ..Default::default()
                })
                .await?,
            )
        } else {
            None
        };
        let velocity = if set.velocity {
            Some(VelocitySim::start(VelocitySimConfig::default()).await?)
        } else {
            None
        };
        // Containers' agents live and die with the containers.
        let forwarder = match (&pve, &agent) {
            (Some(p), Some(a)) => {
                let mut rx = p.subscribe();
                let a = a.clone();
                let p = p.clone();
                Some(tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(CtEvent::Started { ip, .. }) => {
                                if let Err(e) = a.container_started(ip).await {
                                    tracing::warn!(%ip, error = %e, "agent simulator could not bind");
                                }
                            }
                            Ok(CtEvent::Stopped { vmid }) | Ok(CtEvent::Destroyed { vmid }) => {
                                a.container_stopped(p.ip_for(vmid)).await;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                // Events were lost: bring the Agents in line with the
                                // containers instead (starting is idempotent).
                                for c in p.containers().into_iter().filter(|c| !c.template) {
                                    if c.status == proxmox_client::CtState::Running {
                                        let _ = a.container_started(c.ip).await;
                                    } else {
                                        a.container_stopped(c.ip).await;
                                    }
                                }
                            }
                            Err(_) => return,
                        }
                    }
                }))
            }
            _ => None,
        };
        Ok(SimStack {
            pve,
            agent,
            technitium,
            cloudflare,
            velocity,
            options,
            forwarder,
        })
    }

    pub fn endpoints(&self) -> SimEndpoints {
        SimEndpoints {
            proxmox_url: self.pve.as_ref().map(|p| p.url()),
            proxmox_token_id: self.pve.as_ref().map(|p| p.token_id().to_string()),
            proxmox_token_secret: self.pve.as_ref().map(|p| p.token_secret().to_string()),
            agent_port: self.agent.as_ref().map(|a| a.agent_port()),
            game_port: self.agent.as_ref().map(|a| a.game_port()),
            technitium_url: self.technitium.as_ref().map(|t| t.url()),
            technitium_token: self.technitium.as_ref().map(|t| t.token().to_string()),
            cloudflare_url: self.cloudflare.as_ref().map(|c| c.url()),
            cloudflare_zone_id: self.cloudflare.as_ref().map(|c| c.zone_id().to_string()),
            cloudflare_token: self.cloudflare.as_ref().map(|c| c.token().to_string()),
            velocity_url: self.velocity.as_ref().map(|v| v.url()),
            velocity_secret: self.velocity.as_ref().map(|v| v.secret().to_string()),
            zone: self.options.zone.clone(),
        }
    }

    /// Point `cfg` at the simulators: the zone (unless a real DNS server is configured), the
    /// Agent ports, and engine timings scaled like the simulated Proxmox's clock.
    pub fn configure(&self, cfg: &mut Config) {
        if cfg.technitium.is_none() && cfg.cloudflare.is_none() {
            cfg.edge.zone = self.options.zone.clone();
        }
        if let Some(a) = &self.agent {
            cfg.agent.port = a.agent_port();
            cfg.agent.game_port = a.game_port();
            cfg.agent.timeout = Duration::from_secs(2);
        }
        if self.pve.is_some() {
            cfg.controller = cfg.controller.scaled(1.0 / self.options.time_scale);
        }
    }

    /// Clients for the simulators, and for every backend not simulated, the real system the
    /// config names (e.g. a third-party Proxmox with simulated edges).
    pub fn backends(&self, cfg: &Config) -> Result<Backends, ConfigError> {
        // Pacing follows the simulators' clock, like every other timing.
        let scaled = |per_sec: u32| (f64::from(per_sec) * self.options.time_scale.max(1.0)) as u32;
        let pve = match &self.pve {
            Some(p) => proxmox_client::PveClient::new(proxmox_client::PveConfig {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(10),
                rate_per_node_per_sec: if self.options.pace_proxmox {
                    scaled(cfg.proxmox.rate_per_node)
                } else {
                    10_000
                },
                ..p.client_config()
            })
            .map_err(|e| ConfigError::Invalid(format!("proxmox: {e}")))?,
            None => backends::pve_from_config(cfg)?,
        };
        let agent = match &self.agent {
            Some(a) => backends::agent_client(cfg, a.token().map(SecretString::from))?
                .with_rate_limit(scaled(cfg.agent.requests_per_sec)),
            None => backends::agent_from_config(cfg)?,
        };
        let technitium = match &self.technitium {
            Some(t) => Some(
                backends::technitium_client(
                    cfg,
                    &t.url(),
                    SecretString::from(t.token().to_string()),
                    TechnitiumSection::DEFAULT_TIMEOUT,
                )?
                .with_rate_limit(scaled(TechnitiumSection::DEFAULT_REQUESTS_PER_SEC)),
            ),
            None => backends::technitium_from_config(cfg)?,
        };
        let cloudflare = match &self.cloudflare {
            Some(c) => Some(backends::cloudflare_client(
                cfg,
                &c.url(),
                c.zone_id(),
                SecretString::from(c.token().to_string()),
                // The simulator's 5-minute window is shorter by the time scale; so is ours.
                scaled(CloudflareSection::DEFAULT_REQUESTS_PER_5MIN),
                CloudflareSection::DEFAULT_TIMEOUT,
            )?),
            None => backends::cloudflare_from_config(cfg)?,
        };
        let velocity = match &self.velocity {
            Some(v) => Some(
                backends::velocity_client(
                    &v.url(),
                    SecretString::from(v.secret().to_string()),
                    VelocitySection::DEFAULT_TIMEOUT,
                )?
                .with_rate_limit(scaled(VelocitySection::DEFAULT_REQUESTS_PER_SEC)),
            ),
            None => backends::velocity_from_config(cfg)?,
        };
        let admin_secret = match cfg.agent.admin_secret_file {
            Some(_) => backends::admin_secret_from_config(cfg)?,
            None => SecretString::from("zlh-dev-admin-secret".to_string()),
        };
        Ok(Backends {
            pve,
            agent,
            technitium,
            cloudflare,
            velocity,
            admin_secret,
        })
    }
}

impl SimOptions {
    /// What `zlhd dev` simulates for `cfg`: every backend the config does not point at a real
    /// system (Agents live in the containers, so a real Proxmox means real Agents), in the
    /// configured zone when a real DNS server is configured.
    pub fn for_config(cfg: &Config, time_scale: f64) -> SimOptions {
        let real_pve = !cfg.proxmox.url.is_empty();
        let real_dns = cfg.technitium.is_some() || cfg.cloudflare.is_some();
        let defaults = SimOptions::default();
        SimOptions {
            set: SimSet {
                proxmox: !real_pve,
                agent: !real_pve,
                technitium: cfg.technitium.is_none(),
                cloudflare: cfg.cloudflare.is_none(),
                velocity: cfg.velocity.is_none(),
            },
            time_scale,
            zone: if real_dns {
                cfg.edge.zone.clone()
            } else {
                defaults.zone.clone()
            },
            ..defaults
        }
    }
}

impl Drop for SimStack {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
    }
}
