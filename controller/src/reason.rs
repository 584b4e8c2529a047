//! Condition reasons, event reasons and the failure and wait messages the README's runbook
//! quotes: one CamelCase word (or one fixed sentence) each, stable and greppable. Two types,
//! so a condition reason cannot be written where an event reason belongs.

use std::fmt;

/// Why a condition has its status (`Condition.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(&'static str);

/// Why an event was recorded (`Event.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventReason(&'static str);

impl Reason {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl EventReason {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

// Condition reasons. The three the phase derivation reads are the model's own strings.
pub const CONFIGURING: Reason = Reason(model::status::reason::CONFIGURING);
pub const CONFIG_SENT: Reason = Reason(model::status::reason::CONFIG_SENT);
pub const INSTALLING: Reason = Reason(model::status::reason::INSTALLING);
pub const REBOOTING: Reason = Reason(model::status::reason::REBOOTING);
pub const STOPPED_AS_ASKED: Reason = Reason(model::status::reason::STOPPED_AS_ASKED);
pub const GAME_STOPPING: Reason = Reason(model::status::reason::GAME_STOPPING);
pub const RESTARTING: Reason = Reason(model::status::reason::RESTARTING);
pub const RESERVED: Reason = Reason("Reserved");
pub const NOT_RESERVED: Reason = Reason("NotReserved");
pub const CLONING: Reason = Reason("Cloning");
pub const WAITING_FOR_TEMPLATE: Reason = Reason("WaitingForTemplate");
pub const CREATED: Reason = Reason("Created");
/// `ContainerCreated` False while the rootfs is smaller than the spec asks: a resize is
/// pending or running.
pub const RESIZING_DISK: Reason = Reason("ResizingDisk");
pub const LOCKED: Reason = Reason("Locked");
/// `ContainerCreated` False while a claimed warm-pool member still carries the pool's marker.
pub const CLAIMING_MEMBER: Reason = Reason("ClaimingPoolMember");
pub const RUNNING: Reason = Reason("Running");
pub const STOPPED: Reason = Reason("Stopped");
pub const STARTING: Reason = Reason("Starting");
pub const STOPPING: Reason = Reason("Stopping");
pub const WAITING_FOR_IP: Reason = Reason("WaitingForIp");
pub const HAS_IP: Reason = Reason("HasIp");
pub const AGENT_STARTING: Reason = Reason("AgentStarting");
pub const AGENT_RUNNING: Reason = Reason("AgentRunning");
pub const AGENT_ERROR: Reason = Reason("AgentError");
/// `ProcessRunning`: the game stopped (typed `stop`, exited) though the spec says running.
pub const GAME_STOPPED: Reason = Reason("GameStopped");
pub const GAME_CRASHED: Reason = Reason("GameCrashed");
pub const PUBLISHED: Reason = Reason("Published");
pub const NOT_PUBLISHED: Reason = Reason("NotPublished");
pub const REGISTERED: Reason = Reason("Registered");
pub const NOT_REGISTERED: Reason = Reason("NotRegistered");
pub const NOT_CONNECTABLE: Reason = Reason("NotConnectable");
pub const NOT_REQUIRED: Reason = Reason("NotRequired");
pub const READY: Reason = Reason("Ready");
pub const FAILED: Reason = Reason("Failed");
pub const PAUSED: Reason = Reason("Paused");
pub const HEALTHY: Reason = Reason("Healthy");
/// `Degraded`: a reconcile of this server panicked (a bug); it is retried with backoff.
pub const RECONCILE_PANICKED: Reason = Reason("ReconcilePanicked");

// Degraded reasons, one per kind of backend (`Backend::degraded_reason`).
pub const PROXMOX_UNAVAILABLE: Reason = Reason("ProxmoxUnavailable");
pub const AGENT_UNAVAILABLE: Reason = Reason("AgentUnavailable");
pub const DNS_UNAVAILABLE: Reason = Reason("DnsUnavailable");
pub const PROXY_UNAVAILABLE: Reason = Reason("ProxyUnavailable");

// Event reasons.
pub const EV_VMID_RESERVED: EventReason = EventReason("VmidReserved");
pub const EV_VMID_CONFLICT: EventReason = EventReason("VmidConflict");
pub const EV_CLONE_STARTED: EventReason = EventReason("CloneStarted");
pub const EV_CLONE_FAILED: EventReason = EventReason("CloneFailed");
pub const EV_CLONE_CLEANED_UP: EventReason = EventReason("CloneCleanedUp");
pub const EV_ADOPTED: EventReason = EventReason("Adopted");
pub const EV_CONFIGURED: EventReason = EventReason("Configured");
pub const EV_DISK_RESIZED: EventReason = EventReason("DiskResized");
pub const EV_STARTED: EventReason = EventReason("Started");
pub const EV_STOPPED: EventReason = EventReason("Stopped");
pub const EV_AGENT_CONFIG_SENT: EventReason = EventReason("AgentConfigSent");
pub const EV_AGENT_INSTALL_FAILED: EventReason = EventReason("AgentInstallFailed");
pub const EV_DNS_PUBLISHED: EventReason = EventReason("DnsPublished");
pub const EV_PROXY_REGISTERED: EventReason = EventReason("ProxyRegistered");
pub const EV_READY: EventReason = EventReason("Ready");
pub const EV_FAILED: EventReason = EventReason("Failed");
pub const EV_RETRY_REQUESTED: EventReason = EventReason("RetryRequested");
pub const EV_PROXMOX_UNAVAILABLE: EventReason = EventReason("ProxmoxUnavailable");
pub const EV_BACKEND_UNAVAILABLE: EventReason = EventReason("BackendUnavailable");
pub const EV_DRIFT_REPAIRED: EventReason = EventReason("DriftRepaired");
pub const EV_TEARDOWN_STEP: EventReason = EventReason("TeardownStep");
pub const EV_DESTROYED: EventReason = EventReason("Destroyed");
pub const EV_GAME_STARTED: EventReason = EventReason("GameStarted");
pub const EV_GAME_STOPPED: EventReason = EventReason("GameStopped");
pub const EV_GAME_RESTARTED: EventReason = EventReason("GameRestarted");
pub const EV_GAME_CRASHED: EventReason = EventReason("GameCrashed");
pub const EV_CONTAINER_REBOOTED: EventReason = EventReason("ContainerRebooted");
pub const EV_RECONCILE_PANICKED: EventReason = EventReason("ReconcilePanicked");
/// On the server: it took a warm-pool member instead of cloning (docs/pools.md).
pub const EV_POOL_MEMBER_CLAIMED: EventReason = EventReason("PoolMemberClaimed");
/// On the pool: a member is cloned and ready to claim.
pub const EV_POOL_REFILLED: EventReason = EventReason("PoolRefilled");
/// On the pool: a member too old or made from a changed template is destroyed (and refilled).
pub const EV_POOL_MEMBER_REPLACED: EventReason = EventReason("PoolMemberReplaced");
/// On the pool: a surplus member is destroyed (the pool shrank or was drained).
pub const EV_POOL_SHRUNK: EventReason = EventReason("PoolShrunk");
/// On the pool: a member's clone failed; it is cleaned up and cloned again.
pub const EV_POOL_CLONE_FAILED: EventReason = EventReason("PoolCloneFailed");

/// Failure and wait messages the runbook quotes verbatim (those with a variable part are
/// built by the functions next to them, so the fixed part stays greppable).
pub mod msg {
    pub const NO_TEMPLATE: &str = "no template in the catalog builds this spec";
    pub const NO_IP_BEFORE_DEADLINE: &str = "no IPv4 address before the deadline";
    pub const AGENT_INSTALL_DEADLINE: &str = "Agent install did not finish before the deadline";
    pub const AGENT_UNREACHABLE: &str = "Agent unreachable";
    pub const AGENT_REFUSED: &str = "Agent refused";
    pub const PROCESS_CRASHED: &str = "the server process crashed";
    pub const PAUSED: &str = "paused: not acted on until resumed";
    pub const WAITING_FOR_IP: &str = "waiting for an IPv4 address";
    pub const AGENT_INSTALLING: &str = "the Agent is installing";
    pub const WAITING_FOR_AGENT: &str = "waiting for the Agent to answer";
    pub const NO_SLP_ANSWER: &str = "no Server List Ping answer";
    pub const GAME_STARTING: &str = "the game is starting";
    pub const GAME_STOPPING_BEFORE_START: &str = "the game is stopping; it is started once stopped";
    pub const GAME_START_DEADLINE: &str = "the game did not start before the deadline";
    pub const GAME_STOP_DEADLINE: &str = "the game did not stop before the deadline";

    /// `<message> (crash N in a row)`, or just the message when the Agent does not count.
    pub fn crashed(message: &str, count: Option<u32>) -> String {
        match count {
            Some(n) => format!("{message} (crash {n} in a row)"),
            None => message.to_string(),
        }
    }

    /// `Proxmox task UPID (kind) still running after D`: a task past its deadline.
    pub fn task_overdue(
        upid: &str,
        kind: model::TaskKind,
        deadline: std::time::Duration,
    ) -> String {
        let d = humantime::format_duration(deadline);
        format!("Proxmox task {upid} ({kind}) still running after {d}")
    }

    /// `Agent unreachable: <error>` (the Agent deadline passed while it did not answer).
    pub fn agent_unreachable(error: &str) -> String {
        format!("{AGENT_UNREACHABLE}: {error}")
    }
    /// `Agent refused: <error>` (usually a wrong Agent token).
    pub fn agent_refused(error: &str) -> String {
        format!("{AGENT_REFUSED}: {error}")
    }
    /// `template T on NODE is being cloned for another server`.
    pub fn template_busy(template: u32, node: &str) -> String {
        format!("template {template} on {node} is being cloned for another server")
    }
    /// `growing the rootfs from A GiB to B GiB` (the pending resize's condition message).
    pub fn resizing_disk(from_gib: u32, to_gib: u32) -> String {
        format!("growing the rootfs from {from_gib} GiB to {to_gib} GiB")
    }
    /// `rootfs of CT N grown from A GiB to B GiB` (the `DiskResized` event).
    pub fn disk_resized(vmid: u32, from_gib: u32, to_gib: u32) -> String {
        format!("rootfs of CT {vmid} grown from {from_gib} GiB to {to_gib} GiB")
    }
    /// `container N is locked (LOCK)`.
    pub fn container_locked(vmid: u32, lock: &str) -> String {
        format!("container {vmid} is locked ({lock})")
    }
}
