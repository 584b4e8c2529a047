//! What observations report: facts about one layer of the world, the same whether the
//! server is being provisioned or torn down; `decide` and `decide_teardown` interpret them.

use crate::backends::Backend;
use model::ErrorClass;

/// A backend that did not answer usefully: *unknown*, never absent
/// (docs/reconcile-contract.md, rule 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub backend: Backend,
    pub class: ErrorClass,
    pub message: String,
}

/// An observation: the fact, or why the backend could not tell.
pub type Seen<T> = Result<T, Unavailable>;

/// The container's config as Proxmox reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerObs {
    pub hostname: Option<String>,
    pub description: String,
    pub tags: Vec<String>,
    pub lock: Option<String>,
    pub cores: Option<u32>,
    pub memory_mib: Option<u32>,
    pub swap_mib: Option<u32>,
    pub bridge: Option<String>,
    /// Parsed from net0 as is, so a config write can keep the MAC.
    pub net0: Option<String>,
    /// The rootfs size in GiB (`None`: the config did not say).
    pub rootfs_gib: Option<u32>,
}

impl ContainerObs {
    /// The container after a config write of `change` (and `net0` and `description`, where
    /// sent) answered OK.
    pub fn apply(
        &mut self,
        change: &super::ConfigChange,
        net0: Option<String>,
        description: Option<String>,
    ) {
        if let Some(d) = description {
            self.description = d;
        }
        let c = change.clone();
        self.cores = c.cores.or(self.cores);
        self.memory_mib = c.memory_mib.or(self.memory_mib);
        self.swap_mib = c.swap_mib.or(self.swap_mib);
        self.bridge = c.bridge.or(self.bridge.take());
        if let Some(tags) = c.tags {
            self.tags = tags;
        }
        if net0.is_some() {
            self.net0 = net0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerObs {
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskObs {
    Running,
    Succeeded,
    Failed(String),
}

/// The Agent and, once it is installed, the game process it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentObs {
    /// No config since the container (or the Agent) started.
    Idle,
    Installing,
    /// The install failed.
    Error(String),
    /// Installed: the game process.
    Process(ProcessObs),
}

impl AgentObs {
    pub const RUNNING: AgentObs = AgentObs::Process(ProcessObs::Running);
}

/// The game process, as the Agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessObs {
    Running,
    Starting,
    Stopping,
    Stopped,
    Crashed {
        /// Crashes in a row, as the Agent counts them (older Agents do not say).
        count: Option<u32>,
        message: Option<String>,
    },
}

/// What the edge (every DNS provider together, or the proxy) holds for this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeObs {
    /// Exactly what the server needs is published (trivially, when nothing is needed).
    pub desired_present: bool,
    /// Anything of this server's is published, desired or stale.
    pub any_ours_present: bool,
}

impl EdgeObs {
    /// A backend that is not configured, or a server that is not published (dev): nothing to
    /// publish and nothing to remove.
    pub const NOT_REQUIRED: EdgeObs = EdgeObs {
        desired_present: true,
        any_ours_present: false,
    };
    /// Exactly what the server needs, and nothing else of its, is published.
    pub const PUBLISHED: EdgeObs = EdgeObs {
        desired_present: true,
        any_ours_present: true,
    };
    /// Nothing of the server's is published.
    pub const ABSENT: EdgeObs = EdgeObs {
        desired_present: false,
        any_ours_present: false,
    };
}

/// What has been observed so far in this reconcile; `None` = not asked yet.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub task: Option<Seen<TaskObs>>,
    /// `Ok(None)`: confirmed absent.
    pub container: Option<Seen<Option<ContainerObs>>>,
    pub power: Option<Seen<PowerObs>>,
    pub ip: Option<Seen<Option<String>>>,
    pub agent: Option<Seen<AgentObs>>,
    pub dns: Option<Seen<EdgeObs>>,
    pub proxy: Option<Seen<EdgeObs>>,
    /// The game answers a Server List Ping.
    pub slp: Option<Seen<bool>>,
    /// Is the template free for us to clone (the per-template clone slot)?
    pub clone_slot: Option<bool>,
    /// What the Agent's answer shows a server card (live detail, not decided on): taken by
    /// the reconcile into the stats table.
    pub agent_detail: Option<model::AgentDetail>,
    /// Layers filled from a listing or the recorded status instead of a read of their own:
    /// possibly stale, so a decision may only wait on them. Anything else is confirmed first
    /// ([`Observed::confirm`]).
    pub tentative: Vec<Layer>,
    /// When a look at the in-flight task could tell more (its expected end).
    pub task_recheck: Option<std::time::Duration>,
    /// When a look at the address could tell more (the IP schedule).
    pub ip_recheck: Option<std::time::Duration>,
}

impl Observed {
    /// The IP observed in this reconcile, if any.
    pub fn ip(&self) -> Option<&str> {
        match &self.ip {
            Some(Ok(Some(ip))) => Some(ip),
            _ => None,
        }
    }

    /// The container observed in this reconcile, if it exists.
    pub fn container(&self) -> Option<&ContainerObs> {
        match &self.container {
            Some(Ok(Some(c))) => Some(c),
            _ => None,
        }
    }

    /// After a synchronous change: the layers it touched are observed again (the others
    /// were observed in this reconcile and the change did not touch them).
    pub fn after_change(&mut self, touched: &[Layer]) {
        for l in touched {
            self.forget(*l);
        }
    }

    /// Every DNS provider answered its write OK: the records are as written, without a
    /// look back (each provider's write converges to exactly the desired records itself).
    pub fn dns_published(&mut self) {
        self.tentative.retain(|l| *l != Layer::Dns);
        self.dns = Some(Ok(EdgeObs::PUBLISHED));
    }

    /// The proxy answered its registration OK: registered as written.
    pub fn proxy_registered(&mut self) {
        self.tentative.retain(|l| *l != Layer::Proxy);
        self.proxy = Some(Ok(EdgeObs::PUBLISHED));
    }

    /// Some layer was filled without a read of its own.
    pub fn has_tentative(&self) -> bool {
        !self.tentative.is_empty()
    }

    /// Before acting on them: drop the tentative layers, so they are read directly.
    pub fn confirm(&mut self) {
        for l in std::mem::take(&mut self.tentative) {
            self.forget(l);
        }
    }

    /// Whether `layer` was filled without a read of its own.
    pub fn is_tentative(&self, layer: Layer) -> bool {
        self.tentative.contains(&layer)
    }

    /// Mark `layer` as filled without a read of its own.
    pub fn mark_tentative(&mut self, layer: Layer) {
        if !self.tentative.contains(&layer) {
            self.tentative.push(layer);
        }
    }

    fn forget(&mut self, layer: Layer) {
        self.tentative.retain(|l| *l != layer);
        match layer {
            Layer::Task => {
                self.task = None;
                self.task_recheck = None;
            }
            Layer::Container => self.container = None,
            Layer::Power => self.power = None,
            Layer::Ip => {
                self.ip = None;
                self.ip_recheck = None;
            }
            Layer::Agent => self.agent = None,
            Layer::Dns => self.dns = None,
            Layer::Proxy => self.proxy = None,
            Layer::Slp => self.slp = None,
            Layer::CloneSlot => self.clone_slot = None,
        }
    }
}

/// The layers `decide` asks for, in the order it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Task,
    Container,
    Power,
    Ip,
    Agent,
    Dns,
    Proxy,
    Slp,
    CloneSlot,
}

impl Layer {
    /// Every layer but the in-flight task and the clone slot: what a change to the container
    /// may have changed (the container first: `WORLD[1..]` is what lies behind it).
    pub const WORLD: [Layer; 7] = [
        Layer::Container,
        Layer::Power,
        Layer::Ip,
        Layer::Agent,
        Layer::Dns,
        Layer::Proxy,
        Layer::Slp,
    ];

    /// The layers a fleet snapshot may confirm, in the order `decide` asks for them.
    pub const FROM_SNAPSHOT: [Layer; 8] = [
        Layer::Task,
        Layer::Container,
        Layer::Power,
        Layer::Ip,
        Layer::Agent,
        Layer::Dns,
        Layer::Proxy,
        Layer::Slp,
    ];
}
