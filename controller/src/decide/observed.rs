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

    /// After a synchronous change: everything is observed again, except the in-flight task
    /// (the change did not touch it).
    pub fn after_change(&mut self) {
        *self = Observed {
            task: self.task.take(),
            ..Observed::default()
        };
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
