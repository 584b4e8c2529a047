//! Condition reasons and event reasons: one CamelCase word each, stable and greppable.

pub use model::status::reason::{CONFIG_SENT, CONFIGURING, INSTALLING};

// Condition reasons.
pub const RESERVED: &str = "Reserved";
pub const NOT_RESERVED: &str = "NotReserved";
pub const CLONING: &str = "Cloning";
pub const WAITING_FOR_TEMPLATE: &str = "WaitingForTemplate";
pub const CREATED: &str = "Created";
pub const ABSENT: &str = "Absent";
pub const LOCKED: &str = "Locked";
pub const RUNNING: &str = "Running";
pub const STOPPED: &str = "Stopped";
pub const STARTING: &str = "Starting";
pub const STOPPING: &str = "Stopping";
pub const WAITING_FOR_IP: &str = "WaitingForIp";
pub const HAS_IP: &str = "HasIp";
pub const AGENT_STARTING: &str = "AgentStarting";
pub const AGENT_RUNNING: &str = "AgentRunning";
pub const AGENT_ERROR: &str = "AgentError";
pub const PUBLISHED: &str = "Published";
pub const NOT_PUBLISHED: &str = "NotPublished";
pub const REGISTERED: &str = "Registered";
pub const NOT_REGISTERED: &str = "NotRegistered";
pub const NOT_CONNECTABLE: &str = "NotConnectable";
pub const NOT_REQUIRED: &str = "NotRequired";
pub const READY: &str = "Ready";
pub const PROVISIONING: &str = "Provisioning";
pub const FAILED: &str = "Failed";
pub const PAUSED: &str = "Paused";
pub const HEALTHY: &str = "Healthy";
pub const DELETING: &str = "Deleting";

// Degraded reasons, one per backend.
pub const PROXMOX_UNAVAILABLE: &str = "ProxmoxUnavailable";
pub const AGENT_UNAVAILABLE: &str = "AgentUnavailable";
pub const DNS_UNAVAILABLE: &str = "DnsUnavailable";
pub const PROXY_UNAVAILABLE: &str = "ProxyUnavailable";

// Event reasons.
pub const EV_VMID_RESERVED: &str = "VmidReserved";
pub const EV_VMID_CONFLICT: &str = "VmidConflict";
pub const EV_CLONE_STARTED: &str = "CloneStarted";
pub const EV_CLONE_FAILED: &str = "CloneFailed";
pub const EV_CLONE_CLEANED_UP: &str = "CloneCleanedUp";
pub const EV_ADOPTED: &str = "Adopted";
pub const EV_CONFIGURED: &str = "Configured";
pub const EV_STARTED: &str = "Started";
pub const EV_STOPPED: &str = "Stopped";
pub const EV_AGENT_CONFIG_SENT: &str = "AgentConfigSent";
pub const EV_AGENT_INSTALL_FAILED: &str = "AgentInstallFailed";
pub const EV_DNS_PUBLISHED: &str = "DnsPublished";
pub const EV_PROXY_REGISTERED: &str = "ProxyRegistered";
pub const EV_READY: &str = "Ready";
pub const EV_FAILED: &str = "Failed";
pub const EV_RETRY_REQUESTED: &str = "RetryRequested";
pub const EV_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const EV_PROXMOX_UNAVAILABLE: &str = "ProxmoxUnavailable";
pub const EV_BACKEND_UNAVAILABLE: &str = "BackendUnavailable";
pub const EV_DRIFT_REPAIRED: &str = "DriftRepaired";
pub const EV_TEARDOWN_STEP: &str = "TeardownStep";
pub const EV_DESTROYED: &str = "Destroyed";
pub const EV_ORPHAN_FOUND: &str = "OrphanFound";
pub const EV_INVALID: &str = "InvalidRequest";
