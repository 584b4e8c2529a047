//! `PveError` and the classification of Proxmox answers into [`ErrorClass`]
//! (docs/errors.md; message table in docs/proxmox-api.md §4).

use model::ErrorClass;

/// Message fragments Proxmox uses. Matching is on fragments because the messages embed vmids,
/// node names, lock names and errno texts.
pub mod msg {
    /// `Configuration file 'nodes/pve/lxc/123.conf' does not exist`: confirmed absence. Also what
    /// PVE says when the CT lives on another node than the `{node}` in the path.
    pub const CONFIG_FILE: &str = "Configuration file '";
    pub const DOES_NOT_EXIST: &str = "does not exist";
    /// `CT is locked (disk)` / `(create)` / `(backup)`...: no vmid in this message.
    pub const CT_LOCKED: &str = "CT is locked (";
    pub const VM_LOCKED: &str = "VM is locked (";
    /// `can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout` (10 s flock).
    pub const CANT_LOCK_FILE: &str = "can't lock file";
    pub const GOT_TIMEOUT: &str = "got timeout";
    /// `clone failed: cfs-lock 'storage-x' error: got lock request timeout`: cluster FS lock,
    /// transient (not a lock on our CT).
    pub const CFS_LOCK: &str = "cfs-lock";
    pub const GOT_LOCK_REQUEST_TIMEOUT: &str = "got lock request timeout";
    pub const COMMAND_SOCKET: &str = "failed to read from command socket";
    pub const NO_WORKER_UPID: &str = "got no worker upid";
    pub const STARTING_WORKER_FAILED: &str = "starting worker failed";
    pub const NO_QUORUM: &str = "cluster not ready - no quorum?";
    /// `CT 123 already exists on node 'pve'`; nextid's 400 `VM 123 already exists`.
    pub const ALREADY_EXISTS: &str = "already exists";
    /// `CT 123 already running`.
    pub const ALREADY_RUNNING: &str = "already running";
    /// `CT 123 not running`.
    pub const NOT_RUNNING: &str = "not running";
    /// `unable to destroy CT 123 - container is running` (DELETE without `force`).
    pub const CONTAINER_IS_RUNNING: &str = "container is running";
    /// Digest mismatch on PUT config.
    pub const MODIFIED_CONFIG: &str = "detected modified configuration";
    /// 400 on task status right after dispatch: the task log does not exist yet.
    pub const NO_SUCH_TASK: &str = "no such task";
    pub const STORAGE_LINKED: &str = "not allowed for linked clones";
    pub const LINKED_CLONE_FEATURE: &str = "Linked clone feature";
    pub const CANT_CLONE_TO_NODE: &str = "can't clone CT to node";
    pub const PROTECTION: &str = "protection mode enabled";
    pub const HA_PURGE: &str = "purge parameter not set";
    pub const TEMPLATE_START: &str = "you can't start a CT if it's a template";
    pub const READ_ONLY_OPTION: &str = "unable to modify read-only option";
    pub const NO_OPTIONS: &str = "no options specified";
    pub const HOSTNAME_LOOKUP: &str = "hostname lookup '";
    pub const PARAM_VERIFICATION: &str = "Parameter verification failed.";
    pub const NOT_IMPLEMENTED: &str = "not implemented";
    pub const CONTAINER_DID_NOT_STOP: &str = "container did not stop";
    pub const PERMISSION_CHECK: &str = "Permission check failed";
    /// `PUT .../resize` to a smaller size (pve-container: volumes only grow).
    pub const SHRINK: &str = "unable to shrink disk size";
}

/// What went wrong at the transport level (or whether PVE answered at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// PVE answered with an HTTP error status.
    Http,
    /// A task ended with a failed exit status (the message is the task's error text).
    Task,
    /// TCP connect failed (refused, unreachable, connect timeout).
    Connect,
    /// The request or response timed out.
    Timeout,
    /// The connection broke (reset, closed early, body read failed).
    Io,
    /// TLS: the server certificate is not the one we trust (wrong fingerprint / CA).
    Tls,
    /// The answer did not have the expected shape.
    Decode,
    /// A request we refuse to build (bad input), or bad client configuration.
    Request,
}

/// A failed Proxmox call. `Display` never contains the API token (it never appears in URLs,
/// headers we log, or messages).
#[derive(Debug, Clone, thiserror::Error)]
#[error("proxmox {endpoint}: {}{message} [{class}]", status.map(|s| format!("{s} ")).unwrap_or_default())]
pub struct PveError {
    pub class: ErrorClass,
    /// HTTP status code, if PVE (or pveproxy) answered.
    pub status: Option<u16>,
    /// PVE's message (status-line reason, or body `message`), for 400 followed by the
    /// per-parameter `errors` (`name: text; ...`); for tasks the exit status text.
    pub message: String,
    /// Endpoint name (`clone`, `config_put`, `task_status`, ...; see [`crate::Endpoint`]).
    pub endpoint: &'static str,
    pub kind: ErrorKind,
}

impl PveError {
    /// An HTTP error answer, classified.
    pub fn http(endpoint: &'static str, status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        PveError {
            class: classify(Some(status), &message),
            status: Some(status),
            message,
            endpoint,
            kind: ErrorKind::Http,
        }
    }

    /// A failed task, classified by its exit status text.
    pub fn task(endpoint: &'static str, exit: impl Into<String>) -> Self {
        let message = exit.into();
        PveError {
            class: classify(None, &message),
            status: None,
            message,
            endpoint,
            kind: ErrorKind::Task,
        }
    }

    pub(crate) fn other(
        endpoint: &'static str,
        kind: ErrorKind,
        class: ErrorClass,
        message: impl Into<String>,
    ) -> Self {
        PveError {
            class,
            status: None,
            message: message.into(),
            endpoint,
            kind,
        }
    }

    /// Confirmed absence (`Configuration file ... does not exist`, 404).
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// `CT N already running`: a start found the CT already in the desired state.
    pub fn is_already_running(&self) -> bool {
        self.class == ErrorClass::Conflict && self.message.contains(msg::ALREADY_RUNNING)
    }

    /// `CT N not running`: a stop/shutdown found the CT already stopped.
    pub fn is_not_running(&self) -> bool {
        self.class == ErrorClass::Conflict && self.message.contains(msg::NOT_RUNNING)
    }

    /// `CT N already exists on node 'x'` (clone with a taken newid) or nextid's `VM N already
    /// exists`.
    pub fn is_already_exists(&self) -> bool {
        self.class == ErrorClass::Conflict && self.message.contains(msg::ALREADY_EXISTS)
    }

    /// `unable to destroy CT N - container is running` (DELETE without force).
    pub fn is_container_running(&self) -> bool {
        self.class == ErrorClass::Conflict && self.message.contains(msg::CONTAINER_IS_RUNNING)
    }

    /// Digest mismatch on PUT config: re-read and retry.
    pub fn is_digest_mismatch(&self) -> bool {
        self.message.contains(msg::MODIFIED_CONFIG)
    }

    /// The lock name from `CT is locked (<lock>)`, if that is the message.
    pub fn lock_name(&self) -> Option<&str> {
        let i = self
            .message
            .find(msg::CT_LOCKED)
            .map(|i| i + msg::CT_LOCKED.len())
            .or_else(|| {
                self.message
                    .find(msg::VM_LOCKED)
                    .map(|i| i + msg::VM_LOCKED.len())
            })?;
        let rest = &self.message[i..];
        rest.find(')').map(|j| &rest[..j])
    }
}

/// Classify an answer. `status` is the HTTP code, or `None` for a task's exit status text.
///
/// Order matters: specific messages first, then the status code, and an unrecognised 500 (or
/// task error) is `Transient` (it only delays), never `NotFound`.
pub fn classify(status: Option<u16>, message: &str) -> ErrorClass {
    use ErrorClass::*;
    match status {
        Some(401 | 403) => return Unauthorized,
        // 400 is parameter verification. nextid?vmid=N answers a taken id with 400
        // `{"vmid":"VM N already exists"}`; task status right after dispatch answers
        // `{"upid":"no such task"}` (not visible yet — unknown, not absent).
        Some(400) if message.contains(msg::NO_SUCH_TASK) => return Transient,
        Some(400) if message.contains(msg::ALREADY_EXISTS) => return Conflict,
        Some(400) => return Invalid,
        Some(404) => return NotFound,
        Some(429) => return Transient,
        // 501: unknown method/path (`Method '...' not implemented`), or a body on GET/DELETE.
        Some(501) => return Invalid,
        // 502/503/504 and pveproxy's AnyEvent::HTTP codes 595/596/597/599 (empty body, errno
        // text as the reason): node down, daemon busy, stale keep-alive connection.
        Some(502 | 503 | 504 | 595 | 596 | 597 | 599) => return Transient,
        Some(s) if (400..500).contains(&s) => return Invalid,
        _ => {}
    }
    // 500 (any `die` in a handler) and task exit texts: classify by message.
    let m = message;
    // Transient first: `cfs-lock ... got lock request timeout` must not be read as a CT lock.
    if m.contains(msg::CFS_LOCK)
        || m.contains(msg::GOT_LOCK_REQUEST_TIMEOUT)
        || m.contains(msg::COMMAND_SOCKET)
        || m.contains(msg::NO_WORKER_UPID)
        || m.contains(msg::STARTING_WORKER_FAILED)
        || m.contains(msg::NO_QUORUM)
    {
        return Transient;
    }
    if m.contains(msg::CT_LOCKED)
        || m.contains(msg::VM_LOCKED)
        || (m.contains(msg::CANT_LOCK_FILE) && m.contains(msg::GOT_TIMEOUT))
    {
        return Locked;
    }
    if m.contains(msg::GOT_TIMEOUT) {
        return Transient;
    }
    // Only the missing conf file is a confirmed absence (`storage 'x' does not exist` is not).
    if m.contains(msg::CONFIG_FILE) && m.contains(msg::DOES_NOT_EXIST) {
        return NotFound;
    }
    if m.contains(msg::ALREADY_EXISTS)
        || m.contains(msg::ALREADY_RUNNING)
        || m.contains(msg::NOT_RUNNING)
        || m.contains(msg::CONTAINER_IS_RUNNING)
        || m.contains(msg::MODIFIED_CONFIG)
    {
        return Conflict;
    }
    if m.contains(msg::STORAGE_LINKED)
        || m.contains(msg::LINKED_CLONE_FEATURE)
        || m.contains(msg::CANT_CLONE_TO_NODE)
        || m.contains(msg::PROTECTION)
        || m.contains(msg::HA_PURGE)
        || m.contains(msg::TEMPLATE_START)
        || m.contains(msg::READ_ONLY_OPTION)
        || m.contains(msg::NO_OPTIONS)
        || m.contains(msg::HOSTNAME_LOOKUP)
        || m.contains(msg::PARAM_VERIFICATION)
        || m.contains(msg::SHRINK)
    {
        return Invalid;
    }
    if m.contains(msg::PERMISSION_CHECK) {
        return Unauthorized;
    }
    Transient
}
