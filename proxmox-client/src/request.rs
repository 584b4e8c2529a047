//! Request builders: every request the client sends is built here, without sending, so the
//! schema-conformance test checks exactly what goes on the wire.

use crate::error::{ErrorKind, PveError};
use crate::types::{CloneRequest, ConfigUpdate, DeleteOptions, TaskFilter, TaskSource};
use crate::upid::Upid;
use model::ErrorClass;

/// Endpoint names: metrics labels, `PveError::endpoint`, and the simulator's fault matching.
pub struct Endpoint;
impl Endpoint {
    pub const VERSION: &'static str = "version";
    pub const CLUSTER_RESOURCES: &'static str = "cluster_resources";
    pub const NEXT_ID: &'static str = "next_id";
    pub const CLONE: &'static str = "clone";
    pub const CONFIG_GET: &'static str = "config_get";
    pub const CONFIG_PUT: &'static str = "config_put";
    pub const STATUS_CURRENT: &'static str = "status_current";
    pub const START: &'static str = "start";
    pub const STOP: &'static str = "stop";
    pub const SHUTDOWN: &'static str = "shutdown";
    pub const REBOOT: &'static str = "reboot";
    pub const DELETE: &'static str = "delete";
    pub const INTERFACES: &'static str = "interfaces";
    pub const TASK_STATUS: &'static str = "task_status";
    pub const TASK_LOG: &'static str = "task_log";
    pub const RESIZE: &'static str = "resize";
    pub const TASKS: &'static str = "task_list";
    pub const CT_LIST: &'static str = "ct_list";
    pub const ALL: [&'static str; 18] = [
        Self::VERSION,
        Self::CLUSTER_RESOURCES,
        Self::NEXT_ID,
        Self::CLONE,
        Self::CONFIG_GET,
        Self::CONFIG_PUT,
        Self::STATUS_CURRENT,
        Self::START,
        Self::STOP,
        Self::SHUTDOWN,
        Self::REBOOT,
        Self::DELETE,
        Self::INTERFACES,
        Self::TASK_STATUS,
        Self::TASK_LOG,
        Self::RESIZE,
        Self::TASKS,
        Self::CT_LIST,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// A request ready to send. `params` go in the form body for POST/PUT and in the query string
/// for GET/DELETE (quirk: a body on GET/DELETE gives `501 Unexpected content`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PveRequest {
    pub endpoint: &'static str,
    pub method: Method,
    /// The schema path, e.g. `/nodes/{node}/lxc/{vmid}/clone`.
    pub schema_path: &'static str,
    /// Values of the path placeholders, e.g. `[("node","pve"),("vmid","900")]`.
    pub path_params: Vec<(&'static str, String)>,
    /// The concrete path below `/api2/json`, segments percent-encoded.
    pub path: String,
    pub params: Vec<(String, String)>,
    /// The node the call concerns (rate-limit key); `None` for cluster-wide calls.
    pub node: Option<String>,
}

fn b01(b: bool) -> String {
    // Quirk: booleans must be 0/1 (or JSON true/false); the string "true" is a 400.
    if b { "1" } else { "0" }.to_string()
}

/// Percent-encode one path segment (UPIDs carry `:`, `@`, `!`, which are legal pchars; anything
/// else outside the unreserved set is encoded).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn req(
    endpoint: &'static str,
    method: Method,
    schema_path: &'static str,
    path_params: Vec<(&'static str, String)>,
    params: Vec<(String, String)>,
) -> PveRequest {
    let mut path = schema_path.to_string();
    for (k, v) in &path_params {
        path = path.replace(&format!("{{{k}}}"), &encode_segment(v));
    }
    let node = path_params
        .iter()
        .find(|(k, _)| *k == "node")
        .map(|(_, v)| v.clone());
    PveRequest {
        endpoint,
        method,
        schema_path,
        path_params,
        path,
        params,
        node,
    }
}

fn ct(node: &str, vmid: u32) -> Vec<(&'static str, String)> {
    vec![("node", node.to_string()), ("vmid", vmid.to_string())]
}

fn invalid(endpoint: &'static str, m: String) -> PveError {
    PveError::other(endpoint, ErrorKind::Request, ErrorClass::Invalid, m)
}

/// PVE tag: `[a-z0-9_][a-z0-9_\-\+\.]*` (case-insensitive).
pub fn is_valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c))
}

/// PVE `dns-name`: labels of `[a-zA-Z0-9-]`, not starting/ending with `-`, dot-separated.
pub fn is_valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const MAX_DESCRIPTION: usize = 8192;
const MIN_VMID: u32 = 100;

fn check_vmid(endpoint: &'static str, vmid: u32) -> Result<(), PveError> {
    if vmid < MIN_VMID {
        return Err(invalid(
            endpoint,
            format!("vmid {vmid} below the minimum of {MIN_VMID}"),
        ));
    }
    Ok(())
}

pub fn build_version() -> PveRequest {
    req(Endpoint::VERSION, Method::Get, "/version", vec![], vec![])
}

pub fn build_cluster_resources() -> PveRequest {
    // Quirk: there is no `lxc` filter; `vm` returns qemu and lxc, filter client-side.
    req(
        Endpoint::CLUSTER_RESOURCES,
        Method::Get,
        "/cluster/resources",
        vec![],
        vec![("type".into(), "vm".into())],
    )
}

/// `GET /nodes/{node}/lxc`: the node's containers, with `status` live (unlike
/// `cluster/resources`, whose `status` lags by pvestatd's 10 s broadcast) and `lock` and
/// `tags` from each config.
pub fn build_ct_list(node: &str) -> PveRequest {
    req(
        Endpoint::CT_LIST,
        Method::Get,
        "/nodes/{node}/lxc",
        vec![("node", node.to_string())],
        vec![],
    )
}

pub fn build_next_id() -> PveRequest {
    req(
        Endpoint::NEXT_ID,
        Method::Get,
        "/cluster/nextid",
        vec![],
        vec![],
    )
}

pub fn build_clone(node: &str, source: u32, r: &CloneRequest) -> Result<PveRequest, PveError> {
    let e = Endpoint::CLONE;
    check_vmid(e, source)?;
    check_vmid(e, r.newid)?;
    let mut p = vec![("newid".to_string(), r.newid.to_string())];
    if let Some(h) = &r.hostname {
        if !is_valid_dns_name(h) {
            return Err(invalid(e, format!("invalid hostname '{h}'")));
        }
        p.push(("hostname".into(), h.clone()));
    }
    if let Some(d) = &r.description {
        p.push(("description".into(), d.clone()));
    }
    if let Some(f) = r.full {
        p.push(("full".into(), b01(f)));
    }
    if let Some(s) = &r.storage {
        p.push(("storage".into(), s.clone()));
    }
    if let Some(pool) = &r.pool {
        p.push(("pool".into(), pool.clone()));
    }
    Ok(req(
        e,
        Method::Post,
        "/nodes/{node}/lxc/{vmid}/clone",
        ct(node, source),
        p,
    ))
}

pub fn build_config_get(node: &str, vmid: u32) -> PveRequest {
    req(
        Endpoint::CONFIG_GET,
        Method::Get,
        "/nodes/{node}/lxc/{vmid}/config",
        ct(node, vmid),
        vec![],
    )
}

pub fn build_config_put(node: &str, vmid: u32, u: &ConfigUpdate) -> Result<PveRequest, PveError> {
    let e = Endpoint::CONFIG_PUT;
    check_vmid(e, vmid)?;
    let mut p: Vec<(String, String)> = Vec::new();
    let mut delete: Vec<String> = u.delete.clone();
    if let Some(c) = u.cores {
        if !(1..=8192).contains(&c) {
            return Err(invalid(e, format!("cores {c} out of range 1-8192")));
        }
        p.push(("cores".into(), c.to_string()));
    }
    if let Some(m) = u.memory {
        if m < 16 {
            return Err(invalid(e, format!("memory {m} below the minimum of 16")));
        }
        p.push(("memory".into(), m.to_string()));
    }
    if let Some(s) = u.swap {
        p.push(("swap".into(), s.to_string()));
    }
    if let Some(tags) = &u.tags {
        if let Some(bad) = tags.iter().find(|t| !is_valid_tag(t)) {
            return Err(invalid(e, format!("invalid tag '{bad}'")));
        }
        if tags.is_empty() {
            delete.push("tags".into());
        } else {
            // PVE lower-cases, sorts and de-duplicates on write; we send `;`-joined.
            p.push(("tags".into(), tags.join(";")));
        }
    }
    if let Some(d) = &u.description {
        if d.len() > MAX_DESCRIPTION {
            return Err(invalid(
                e,
                format!("description longer than {MAX_DESCRIPTION}"),
            ));
        }
        p.push(("description".into(), d.clone()));
    }
    if let Some(h) = &u.hostname {
        if !is_valid_dns_name(h) {
            return Err(invalid(e, format!("invalid hostname '{h}'")));
        }
        p.push(("hostname".into(), h.clone()));
    }
    if let Some(n) = &u.net0 {
        p.push(("net0".into(), n.clone()));
    }
    if let Some(o) = u.onboot {
        p.push(("onboot".into(), b01(o)));
    }
    if let Some(d) = &u.digest {
        if d.len() > 40 {
            return Err(invalid(e, "digest longer than 40 characters".into()));
        }
        p.push(("digest".into(), d.clone()));
    }
    if let Some(bad) = delete.iter().find(|k| {
        k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(invalid(e, format!("invalid key to delete '{bad}'")));
    }
    if !delete.is_empty() {
        p.push(("delete".into(), delete.join(",")));
    }
    Ok(req(
        e,
        Method::Put,
        "/nodes/{node}/lxc/{vmid}/config",
        ct(node, vmid),
        p,
    ))
}

pub fn build_status_current(node: &str, vmid: u32) -> PveRequest {
    req(
        Endpoint::STATUS_CURRENT,
        Method::Get,
        "/nodes/{node}/lxc/{vmid}/status/current",
        ct(node, vmid),
        vec![],
    )
}

pub fn build_start(node: &str, vmid: u32) -> PveRequest {
    req(
        Endpoint::START,
        Method::Post,
        "/nodes/{node}/lxc/{vmid}/status/start",
        ct(node, vmid),
        vec![],
    )
}

pub fn build_stop(node: &str, vmid: u32) -> PveRequest {
    req(
        Endpoint::STOP,
        Method::Post,
        "/nodes/{node}/lxc/{vmid}/status/stop",
        ct(node, vmid),
        vec![],
    )
}

pub fn build_shutdown(
    node: &str,
    vmid: u32,
    timeout_s: Option<u32>,
    force_stop: bool,
) -> PveRequest {
    let mut p = Vec::new();
    if let Some(t) = timeout_s {
        p.push(("timeout".to_string(), t.to_string()));
    }
    if force_stop {
        p.push(("forceStop".to_string(), b01(true)));
    }
    req(
        Endpoint::SHUTDOWN,
        Method::Post,
        "/nodes/{node}/lxc/{vmid}/status/shutdown",
        ct(node, vmid),
        p,
    )
}

/// `timeout` bounds the shutdown half; past it PVE kills the CT, hence no `forceStop`
/// (docs/proxmox-api.md §2). Unset, `lxc-stop`'s own default applies.
pub fn build_reboot(node: &str, vmid: u32, timeout_s: Option<u32>) -> PveRequest {
    let mut p = Vec::new();
    if let Some(t) = timeout_s {
        p.push(("timeout".to_string(), t.to_string()));
    }
    req(
        Endpoint::REBOOT,
        Method::Post,
        "/nodes/{node}/lxc/{vmid}/status/reboot",
        ct(node, vmid),
        p,
    )
}

pub fn build_delete(node: &str, vmid: u32, o: &DeleteOptions) -> PveRequest {
    let mut p = Vec::new();
    if o.purge {
        p.push(("purge".to_string(), b01(true)));
    }
    if o.force {
        p.push(("force".to_string(), b01(true)));
    }
    if o.destroy_unreferenced_disks {
        p.push(("destroy-unreferenced-disks".to_string(), b01(true)));
    }
    req(
        Endpoint::DELETE,
        Method::Delete,
        "/nodes/{node}/lxc/{vmid}",
        ct(node, vmid),
        p,
    )
}

pub fn build_interfaces(node: &str, vmid: u32) -> PveRequest {
    req(
        Endpoint::INTERFACES,
        Method::Get,
        "/nodes/{node}/lxc/{vmid}/interfaces",
        ct(node, vmid),
        vec![],
    )
}

/// Quirk: the status call goes to the UPID's node, whatever node the task was started through.
pub fn build_task_status(upid: &Upid) -> PveRequest {
    req(
        Endpoint::TASK_STATUS,
        Method::Get,
        "/nodes/{node}/tasks/{upid}/status",
        vec![("node", upid.node.clone()), ("upid", upid.to_string())],
        vec![],
    )
}

pub fn build_task_log(upid: &Upid, start: u32, limit: u32) -> PveRequest {
    req(
        Endpoint::TASK_LOG,
        Method::Get,
        "/nodes/{node}/tasks/{upid}/log",
        vec![("node", upid.node.clone()), ("upid", upid.to_string())],
        vec![
            ("start".into(), start.to_string()),
            ("limit".into(), limit.to_string()),
        ],
    )
}

/// `PUT /nodes/{node}/lxc/{vmid}/resize` of the rootfs to an absolute size in GiB. Quirk: PVE
/// cannot shrink a volume (`unable to shrink disk size`); the caller only ever grows.
pub fn build_resize(node: &str, vmid: u32, size_gib: u32) -> Result<PveRequest, PveError> {
    let e = Endpoint::RESIZE;
    check_vmid(e, vmid)?;
    if size_gib == 0 {
        return Err(invalid(e, "size 0G is not a disk size".into()));
    }
    Ok(req(
        e,
        Method::Put,
        "/nodes/{node}/lxc/{vmid}/resize",
        ct(node, vmid),
        vec![
            ("disk".into(), "rootfs".into()),
            ("size".into(), format!("{size_gib}G")),
        ],
    ))
}

/// `GET /nodes/{node}/tasks` with the schema's filters (`source`, `typefilter`, `vmid`,
/// `since`). Quirk: the default `source` is `archive` (finished tasks only); `limit`
/// defaults to 50, so a listing of active tasks sends a limit large enough for every task
/// a node may be running.
pub fn build_tasks(node: &str, f: &TaskFilter) -> Result<PveRequest, PveError> {
    let e = Endpoint::TASKS;
    let mut p: Vec<(String, String)> = vec![(
        "source".into(),
        match f.source {
            TaskSource::Active => "active",
            TaskSource::Archive => "archive",
            TaskSource::All => "all",
        }
        .into(),
    )];
    if let Some(t) = &f.typefilter {
        p.push(("typefilter".into(), t.clone()));
    }
    if let Some(v) = f.vmid {
        check_vmid(e, v)?;
        p.push(("vmid".into(), v.to_string()));
    }
    if let Some(s) = f.since {
        p.push(("since".into(), s.to_string()));
    }
    if let Some(l) = f.limit {
        p.push(("limit".into(), l.to_string()));
    }
    Ok(req(
        e,
        Method::Get,
        "/nodes/{node}/tasks",
        vec![("node", node.to_string())],
        p,
    ))
}
