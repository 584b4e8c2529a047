//! An in-memory [`Proxmox`] for unit tests of the code that drives it (feature `fake`): no
//! HTTP, no clock, every answer at once. It keeps PVE's semantics where the engine depends on
//! them: the same error messages and classes (`already exists`, `CT is locked (...)`,
//! `Configuration file ... does not exist`, `already running`, ...), locks during clone and
//! destroy, tasks that end later, and the client-side request checks of [`crate::request`].
//!
//! Tasks stay running until [`FakeProxmox::finish_task`] (or at once after
//! [`FakeProxmox::set_tasks_finish_immediately`]); their effect (clone unlocked, CT running,
//! stopped, rebooted, gone) happens when they end OK. Every call is logged in order
//! ([`PveCall`]), and each method can be made to fail: [`FakeProxmox::fail_next`] (no effect),
//! [`FakeProxmox::lose_answer_next`] (effect, then the error: a timeout after PVE did the
//! work) and [`FakeProxmox::fail_always`].
//!
//! Deliberate differences from PVE: `cluster/resources` has no RRD lag (name and status are
//! there at once), any node name is accepted, and a failed clone leaves its CT behind
//! (unlocked) so the caller's cleanup can be tested; [`FakeProxmox::remove_container`] gives
//! PVE's own cleanup.

use crate::api::Proxmox;
use crate::error::{ErrorKind, PveError, msg};
use crate::request::{self, Endpoint};
use crate::types::*;
use crate::upid::Upid;
use model::ErrorClass;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

/// The token every fake task runs as.
pub const FAKE_USER: &str = "root@pam!zlh";
const STARTTIME: i64 = 0x6800_0000;

/// One per [`Proxmox`] method: the key for error injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PveMethod {
    Version,
    ClusterResources,
    NextId,
    CloneCt,
    CtConfig,
    UpdateCtConfig,
    CtStatus,
    StartCt,
    StopCt,
    ShutdownCt,
    DeleteCt,
    CtInterfaces,
    TaskStatus,
    TaskLog,
    RebootCt,
    ResizeCt,
    NodeTasks,
    NodeCts,
}

impl PveMethod {
    /// The endpoint name the real client puts in `PveError::endpoint`.
    pub fn endpoint(self) -> &'static str {
        match self {
            PveMethod::Version => Endpoint::VERSION,
            PveMethod::ClusterResources => Endpoint::CLUSTER_RESOURCES,
            PveMethod::NextId => Endpoint::NEXT_ID,
            PveMethod::CloneCt => Endpoint::CLONE,
            PveMethod::CtConfig => Endpoint::CONFIG_GET,
            PveMethod::UpdateCtConfig => Endpoint::CONFIG_PUT,
            PveMethod::CtStatus => Endpoint::STATUS_CURRENT,
            PveMethod::StartCt => Endpoint::START,
            PveMethod::StopCt => Endpoint::STOP,
            PveMethod::ShutdownCt => Endpoint::SHUTDOWN,
            PveMethod::DeleteCt => Endpoint::DELETE,
            PveMethod::CtInterfaces => Endpoint::INTERFACES,
            PveMethod::TaskStatus => Endpoint::TASK_STATUS,
            PveMethod::TaskLog => Endpoint::TASK_LOG,
            PveMethod::RebootCt => Endpoint::REBOOT,
            PveMethod::ResizeCt => Endpoint::RESIZE,
            PveMethod::NodeTasks => Endpoint::TASKS,
            PveMethod::NodeCts => Endpoint::CT_LIST,
        }
    }
}

/// One call, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PveCall {
    Version,
    ClusterResources,
    NextId,
    CloneCt {
        node: String,
        source_vmid: u32,
        req: CloneRequest,
    },
    CtConfig {
        node: String,
        vmid: u32,
    },
    UpdateCtConfig {
        node: String,
        vmid: u32,
        update: ConfigUpdate,
    },
    CtStatus {
        node: String,
        vmid: u32,
    },
    StartCt {
        node: String,
        vmid: u32,
    },
    StopCt {
        node: String,
        vmid: u32,
    },
    ShutdownCt {
        node: String,
        vmid: u32,
        timeout_s: Option<u32>,
        force_stop: bool,
    },
    DeleteCt {
        node: String,
        vmid: u32,
        opts: DeleteOptions,
    },
    CtInterfaces {
        node: String,
        vmid: u32,
    },
    TaskStatus {
        upid: Upid,
    },
    TaskLog {
        upid: Upid,
        start: u32,
        limit: u32,
    },
    RebootCt {
        node: String,
        vmid: u32,
        timeout_s: Option<u32>,
    },
    ResizeCt {
        node: String,
        vmid: u32,
        size_gib: u32,
    },
    NodeTasks {
        node: String,
        filter: TaskFilter,
    },
    NodeCts {
        node: String,
    },
}

impl PveCall {
    pub fn method(&self) -> PveMethod {
        match self {
            PveCall::Version => PveMethod::Version,
            PveCall::ClusterResources => PveMethod::ClusterResources,
            PveCall::NextId => PveMethod::NextId,
            PveCall::CloneCt { .. } => PveMethod::CloneCt,
            PveCall::CtConfig { .. } => PveMethod::CtConfig,
            PveCall::UpdateCtConfig { .. } => PveMethod::UpdateCtConfig,
            PveCall::CtStatus { .. } => PveMethod::CtStatus,
            PveCall::StartCt { .. } => PveMethod::StartCt,
            PveCall::StopCt { .. } => PveMethod::StopCt,
            PveCall::ShutdownCt { .. } => PveMethod::ShutdownCt,
            PveCall::DeleteCt { .. } => PveMethod::DeleteCt,
            PveCall::CtInterfaces { .. } => PveMethod::CtInterfaces,
            PveCall::TaskStatus { .. } => PveMethod::TaskStatus,
            PveCall::TaskLog { .. } => PveMethod::TaskLog,
            PveCall::RebootCt { .. } => PveMethod::RebootCt,
            PveCall::ResizeCt { .. } => PveMethod::ResizeCt,
            PveCall::NodeTasks { .. } => PveMethod::NodeTasks,
            PveCall::NodeCts { .. } => PveMethod::NodeCts,
        }
    }
}

/// A container as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContainer {
    pub vmid: u32,
    pub node: String,
    /// As `ct_config` returns it (the lock is `config.lock`).
    pub config: LxcConfig,
    pub running: bool,
    /// What `ct_interfaces` answers while the CT runs (`None` while it is stopped).
    pub interfaces: Option<Vec<Interface>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeTaskState {
    Running,
    Ok,
    Error(String),
}

/// A transport timeout on `method` (`Transient`): the usual error for
/// [`FakeProxmox::lose_answer_next`].
pub fn timeout(method: PveMethod) -> PveError {
    PveError::other(
        method.endpoint(),
        ErrorKind::Timeout,
        ErrorClass::Transient,
        "operation timed out",
    )
}

/// A plain stopped-CT config: 1 core, 512 MiB, DHCP on `vmbr0`.
pub fn lxc_config(hostname: &str) -> LxcConfig {
    let v = json!({
        "hostname": hostname, "cores": 1, "memory": 512, "swap": 512,
        "rootfs": "local-lvm:vm-100-disk-0,size=8G",
        "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:00,ip=dhcp,type=veth",
        "ostype": "debian", "arch": "amd64", "unprivileged": 1, "digest": "",
    });
    LxcConfig::from_value(&v).expect("an object")
}

/// What a running CT with `ip` on `eth0` reports (both the PVE 8.1+ `inet` and the 8.4+
/// `ip-addresses` shapes).
pub fn interfaces_with_ipv4(ip: Ipv4Addr, hwaddr: Option<&str>) -> Vec<Interface> {
    let addr = |ip: &str, prefix: u8| IpAddress {
        ip_address: ip.into(),
        ip_address_type: "inet".into(),
        prefix: Some(prefix),
    };
    vec![
        Interface {
            name: "lo".into(),
            hwaddr: Some("00:00:00:00:00:00".into()),
            inet: Some("127.0.0.1/8".into()),
            ip_addresses: vec![addr("127.0.0.1", 8)],
        },
        Interface {
            name: "eth0".into(),
            hwaddr: hwaddr.map(str::to_ascii_lowercase),
            inet: Some(format!("{ip}/24")),
            ip_addresses: vec![addr(&ip.to_string(), 24)],
        },
    ]
}

// ---------- PVE's messages, from the crate's fragments ----------

fn e_config_missing(node: &str, vmid: u32) -> String {
    format!(
        "{}nodes/{node}/lxc/{vmid}.conf' {}",
        msg::CONFIG_FILE,
        msg::DOES_NOT_EXIST
    )
}

fn e_locked(lock: &str) -> String {
    format!("{}{lock})", msg::CT_LOCKED)
}

/// A synchronous error: PVE `die`s in the handler, pveproxy answers 500 with the message.
fn die(endpoint: &'static str, message: String) -> PveError {
    PveError::http(endpoint, 500, message)
}

// ---------- state ----------

#[derive(Debug, Clone)]
struct Ct {
    node: String,
    /// The config as PVE sends it; `LxcConfig::from_value` reads it as the client does.
    conf: Map<String, Value>,
    running: bool,
    interfaces: Option<Vec<Interface>>,
}

impl Ct {
    fn config(&self) -> LxcConfig {
        LxcConfig::from_value(&Value::Object(self.conf.clone())).expect("an object")
    }

    fn lock(&self) -> Option<&str> {
        self.conf
            .get("lock")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
    }

    fn set_lock(&mut self, lock: Option<&str>) {
        match lock {
            Some(l) => self.conf.insert("lock".into(), l.into()),
            None => self.conf.remove("lock"),
        };
    }
}

/// `LxcConfig` → the wire map: its typed fields over `raw` (so extra keys survive).
fn conf_of(c: &LxcConfig) -> Map<String, Value> {
    let mut m = c.raw.clone();
    let mut put = |k: &str, v: Option<Value>| match v {
        Some(v) => m.insert(k.into(), v),
        None => m.remove(k),
    };
    put("hostname", c.hostname.clone().map(Value::from));
    // Quirk: PVE reads the description back with a trailing newline.
    put(
        "description",
        c.description.as_ref().map(|d| format!("{d}\n").into()),
    );
    put(
        "tags",
        (!c.tags.is_empty()).then(|| c.tags.join(";").into()),
    );
    put("lock", c.lock.clone().map(Value::from));
    put("cores", c.cores.map(Value::from));
    put("memory", c.memory.map(Value::from));
    put("swap", c.swap.map(Value::from));
    put("onboot", c.onboot.then(|| 1.into()));
    put("net0", c.net0.clone().map(Value::from));
    put("template", c.template.then(|| 1.into()));
    m
}

/// `net0` with its MAC replaced (a clone gets a new one).
fn with_hwaddr(net0: &str, mac: &str) -> String {
    let mut parts: Vec<String> = net0
        .split(',')
        .filter(|p| !p.is_empty() && !p.starts_with("hwaddr="))
        .map(str::to_string)
        .collect();
    parts.insert(parts.len().min(1), format!("hwaddr={mac}"));
    parts.join(",")
}

/// A PUT's wire parameters applied as PVE does: deletions first, tags lower-cased, sorted and
/// de-duplicated, numbers stored as numbers.
fn apply_params(conf: &mut Map<String, Value>, params: &[(String, String)]) {
    for (_, v) in params.iter().filter(|(k, _)| k == "delete") {
        for k in v.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            conf.remove(k);
        }
    }
    for (k, v) in params {
        let value: Value = match k.as_str() {
            "delete" | "digest" => continue,
            "tags" => {
                let mut t: Vec<String> = split_tags(v).iter().map(|t| t.to_lowercase()).collect();
                t.sort();
                t.dedup();
                t.join(";").into()
            }
            "description" => format!("{}\n", v.trim_end_matches('\n')).into(),
            "cores" | "memory" | "swap" | "onboot" => v
                .parse::<u64>()
                .map_or_else(|_| v.clone().into(), Value::from),
            _ => v.clone().into(),
        };
        conf.insert(k.clone(), value);
    }
}

#[derive(Debug, Clone)]
enum Effect {
    Clone { source: u32, newid: u32 },
    Start(u32),
    Stop(u32),
    Destroy(u32),
    Reboot(u32),
    Resize { vmid: u32, gib: u32 },
}

/// A container as a listing shows it: `cluster/resources` carries no `maxdisk` here, the
/// node's list does (`with_disk`).
fn listed(vmid: u32, ct: &Ct, with_disk: bool) -> ClusterResource {
    let c = ct.config();
    let maxdisk = match with_disk {
        true => c.rootfs_gib.map_or(0, |g| u64::from(g) << 30),
        false => 0,
    };
    ClusterResource {
        vmid,
        node: ct.node.clone(),
        kind: GuestType::Lxc,
        status: if ct.running { "running" } else { "stopped" }.into(),
        name: c.hostname,
        tags: c.tags,
        lock: c.lock,
        template: c.template,
        usage: Usage {
            maxdisk,
            ..Usage::default()
        },
    }
}

#[derive(Debug)]
struct Task {
    upid: Upid,
    effect: Effect,
    state: FakeTaskState,
    /// Set by `fail_next_task`: the error this task ends with.
    doomed: Option<String>,
    log: Vec<String>,
}

#[derive(Debug)]
enum Fault {
    Fail(PveError),
    Lose(PveError),
}

#[derive(Debug, Default)]
struct State {
    cts: BTreeMap<u32, Ct>,
    /// In dispatch order.
    tasks: Vec<Task>,
    /// Source of pids and digests, so both are unique and reproducible.
    seq: u64,
    immediate: bool,
    calls: Vec<PveCall>,
    next: HashMap<PveMethod, VecDeque<Fault>>,
    always: HashMap<PveMethod, PveError>,
    task_errors: HashMap<PveMethod, VecDeque<String>>,
}

impl State {
    /// The CT `vmid` on `node`: PVE says "does not exist" also when it lives on another node.
    fn ct(&mut self, endpoint: &'static str, node: &str, vmid: u32) -> Result<&mut Ct, PveError> {
        self.cts
            .get_mut(&vmid)
            .filter(|c| c.node == node)
            .ok_or_else(|| die(endpoint, e_config_missing(node, vmid)))
    }

    /// The digest changes on every write.
    fn touch(&mut self, vmid: u32) {
        self.seq += 1;
        let digest = format!("{:040x}", self.seq);
        if let Some(ct) = self.cts.get_mut(&vmid) {
            ct.conf.insert("digest".into(), digest.into());
        }
    }

    fn dispatch(&mut self, m: PveMethod, node: &str, ty: &str, id: u32, effect: Effect) -> Upid {
        self.seq += 1;
        let upid = Upid::new(
            node,
            0x1000 + self.seq as u32,
            0x0123_4567,
            STARTTIME + self.seq as i64,
            ty,
            &id.to_string(),
            FAKE_USER,
        );
        let doomed = self.task_errors.get_mut(&m).and_then(VecDeque::pop_front);
        self.tasks.push(Task {
            upid: upid.clone(),
            effect,
            state: FakeTaskState::Running,
            doomed,
            log: vec![],
        });
        if self.immediate {
            self.finish(&upid, Ok(()));
        }
        upid
    }

    fn finish(&mut self, upid: &Upid, result: Result<(), String>) -> bool {
        let Some(i) = self
            .tasks
            .iter()
            .position(|t| t.upid == *upid && t.state == FakeTaskState::Running)
        else {
            return false;
        };
        let doomed = self.tasks[i].doomed.take();
        let result = result.and_then(|()| doomed.map_or(Ok(()), Err));
        let effect = self.tasks[i].effect.clone();
        let result = self.apply(effect, &upid.node, result);
        let t = &mut self.tasks[i];
        match result {
            Ok(()) => {
                t.log = vec!["TASK OK".into()];
                t.state = FakeTaskState::Ok;
            }
            Err(e) => {
                t.log = vec![format!("TASK ERROR: {e}")];
                t.state = FakeTaskState::Error(e);
            }
        }
        true
    }

    /// A task's end. The worker runs its own checks (lock, template), as PVE's do.
    fn apply(
        &mut self,
        effect: Effect,
        node: &str,
        result: Result<(), String>,
    ) -> Result<(), String> {
        let checked = |st: &State, vmid: u32| -> Result<(), String> {
            let ct = st
                .cts
                .get(&vmid)
                .ok_or_else(|| e_config_missing(node, vmid))?;
            match ct.lock() {
                Some(l) => Err(e_locked(l)),
                None => Ok(()),
            }
        };
        match effect {
            Effect::Clone { source, newid } => {
                // Either way both locks go; see the module doc for why the CT stays on error.
                for (vmid, lock) in [(source, "disk"), (newid, "create")] {
                    if let Some(ct) = self.cts.get_mut(&vmid)
                        && ct.lock() == Some(lock)
                    {
                        ct.set_lock(None);
                        self.touch(vmid);
                    }
                }
                result
            }
            Effect::Start(vmid) => {
                result?;
                checked(self, vmid)?;
                let ct = self.cts.get_mut(&vmid).expect("checked");
                if ct.config().template {
                    return Err(msg::TEMPLATE_START.into());
                }
                ct.running = true;
                Ok(())
            }
            Effect::Stop(vmid) => {
                result?;
                checked(self, vmid)?;
                self.cts.get_mut(&vmid).expect("checked").running = false;
                Ok(())
            }
            Effect::Reboot(vmid) => {
                let ct = self
                    .cts
                    .get_mut(&vmid)
                    .ok_or_else(|| e_config_missing(node, vmid))?;
                // PVE's worker does nothing for a CT that is no longer running.
                if !ct.running {
                    return result;
                }
                // The shutdown half always succeeds (the CT is killed after `timeout`), so a
                // failure is the start half's and leaves the CT stopped, as in the simulator.
                ct.running = false;
                result?;
                checked(self, vmid)?;
                self.cts.get_mut(&vmid).expect("checked").running = true;
                Ok(())
            }
            Effect::Resize { vmid, gib } => {
                result?;
                let ct = self
                    .cts
                    .get_mut(&vmid)
                    .ok_or_else(|| e_config_missing(node, vmid))?;
                let rootfs = ct.conf.get("rootfs").and_then(Value::as_str).unwrap_or("");
                let volume = rootfs.split(',').next().unwrap_or("local-lvm:disk");
                let resized = format!("{volume},size={gib}G");
                ct.conf.insert("rootfs".into(), resized.into());
                self.touch(vmid);
                Ok(())
            }
            Effect::Destroy(vmid) => {
                if result.is_ok() {
                    self.cts.remove(&vmid);
                } else if let Some(ct) = self.cts.get_mut(&vmid)
                    && ct.lock() == Some("destroyed")
                {
                    ct.set_lock(None);
                }
                result
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its own failure behind ours.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake. Cheap to build; share it by reference or in an `Arc`.
#[derive(Debug, Default)]
pub struct FakeProxmox {
    state: Mutex<State>,
}

impl FakeProxmox {
    /// No containers, tasks that wait for [`FakeProxmox::finish_task`].
    pub fn new() -> Self {
        Self::default()
    }

    // ----- containers -----

    /// Put (or replace) a container. Its digest is renewed.
    pub fn put_container(&self, node: &str, vmid: u32, config: LxcConfig, running: bool) {
        let mut st = lock(&self.state);
        let ct = Ct {
            node: node.into(),
            conf: conf_of(&config),
            running,
            interfaces: None,
        };
        st.cts.insert(vmid, ct);
        st.touch(vmid);
    }

    /// A stopped template CT (what `clone_ct` copies from).
    pub fn put_template(&self, node: &str, vmid: u32, hostname: &str) {
        let mut c = lxc_config(hostname);
        c.template = true;
        self.put_container(node, vmid, c, false);
    }

    pub fn container(&self, vmid: u32) -> Option<FakeContainer> {
        let st = lock(&self.state);
        st.cts.get(&vmid).map(|c| FakeContainer {
            vmid,
            node: c.node.clone(),
            config: c.config(),
            running: c.running,
            interfaces: c.interfaces.clone(),
        })
    }

    /// Every container, by vmid.
    pub fn containers(&self) -> Vec<FakeContainer> {
        let vmids: Vec<u32> = lock(&self.state).cts.keys().copied().collect();
        vmids
            .into_iter()
            .filter_map(|v| self.container(v))
            .collect()
    }

    /// The CT disappears (an operator ran `pct destroy`, or PVE cleaned up a failed clone).
    pub fn remove_container(&self, vmid: u32) -> bool {
        lock(&self.state).cts.remove(&vmid).is_some()
    }

    /// Set or clear a lock (`backup`, `create`, ...). False if there is no such CT.
    pub fn set_lock(&self, vmid: u32, lock_name: Option<String>) -> bool {
        let mut st = lock(&self.state);
        let Some(ct) = st.cts.get_mut(&vmid) else {
            return false;
        };
        ct.set_lock(lock_name.as_deref());
        st.touch(vmid);
        true
    }

    /// The CT starts or stops behind the caller's back.
    pub fn set_running(&self, vmid: u32, running: bool) -> bool {
        let mut st = lock(&self.state);
        st.cts.get_mut(&vmid).map(|c| c.running = running).is_some()
    }

    /// What `ct_interfaces` answers while the CT runs.
    pub fn set_interfaces(&self, vmid: u32, interfaces: Option<Vec<Interface>>) -> bool {
        let mut st = lock(&self.state);
        st.cts
            .get_mut(&vmid)
            .map(|c| c.interfaces = interfaces)
            .is_some()
    }

    /// The CT has `ip` on `eth0` (with the MAC of its `net0`), as a DHCP lease gives.
    pub fn set_ipv4(&self, vmid: u32, ip: Ipv4Addr) -> bool {
        let Some(c) = self.container(vmid) else {
            return false;
        };
        let hw = c.config.net0_parsed.and_then(|n| n.hwaddr);
        self.set_interfaces(vmid, Some(interfaces_with_ipv4(ip, hw.as_deref())))
    }

    // ----- tasks -----

    /// New tasks end OK as soon as they are dispatched (default false: they wait).
    pub fn set_tasks_finish_immediately(&self, yes: bool) {
        lock(&self.state).immediate = yes;
    }

    /// End a running task: `Ok` applies its effect (the worker's own lock checks may still
    /// fail it), `Err(message)` ends it with `TASK ERROR: message`. False if the task is
    /// unknown or already ended.
    pub fn finish_task(&self, upid: &Upid, result: Result<(), String>) -> bool {
        lock(&self.state).finish(upid, result)
    }

    /// End every running task OK, in dispatch order. Returns how many.
    pub fn finish_running_tasks(&self) -> usize {
        let mut st = lock(&self.state);
        let running: Vec<Upid> = st
            .tasks
            .iter()
            .filter(|t| t.state == FakeTaskState::Running)
            .map(|t| t.upid.clone())
            .collect();
        for u in &running {
            st.finish(u, Ok(()));
        }
        running.len()
    }

    /// The next task dispatched by `method` (`CloneCt`, `StartCt`, `StopCt`, `ShutdownCt`,
    /// `RebootCt`, `DeleteCt`) ends with `message` when it ends, even when told `Ok`.
    pub fn fail_next_task(&self, method: PveMethod, message: &str) {
        let mut st = lock(&self.state);
        st.task_errors
            .entry(method)
            .or_default()
            .push_back(message.into());
    }

    pub fn task(&self, upid: &Upid) -> Option<FakeTaskState> {
        let st = lock(&self.state);
        st.tasks
            .iter()
            .find(|t| t.upid == *upid)
            .map(|t| t.state.clone())
    }

    /// Running tasks, in dispatch order.
    pub fn running_tasks(&self) -> Vec<Upid> {
        let st = lock(&self.state);
        st.tasks
            .iter()
            .filter(|t| t.state == FakeTaskState::Running)
            .map(|t| t.upid.clone())
            .collect()
    }

    // ----- calls and faults -----

    /// Every call so far, in order, including failed ones.
    pub fn calls(&self) -> Vec<PveCall> {
        lock(&self.state).calls.clone()
    }

    pub fn clear_calls(&self) {
        lock(&self.state).calls.clear();
    }

    /// The next call of `method` returns `err` and has no effect. Calls queue up.
    pub fn fail_next(&self, method: PveMethod, err: PveError) {
        let mut st = lock(&self.state);
        st.next
            .entry(method)
            .or_default()
            .push_back(Fault::Fail(err));
    }

    /// The next call of `method` takes effect, but the caller gets `err` (see [`timeout`]).
    pub fn lose_answer_next(&self, method: PveMethod, err: PveError) {
        let mut st = lock(&self.state);
        st.next
            .entry(method)
            .or_default()
            .push_back(Fault::Lose(err));
    }

    /// Every call of `method` fails with `err` (no effect) until called with `None`. Queued
    /// `fail_next`/`lose_answer_next` faults come first.
    pub fn fail_always(&self, method: PveMethod, err: Option<PveError>) {
        let mut st = lock(&self.state);
        match err {
            Some(e) => st.always.insert(method, e),
            None => st.always.remove(&method),
        };
    }

    /// Log the call, apply any injected fault, run `f`.
    fn call<T>(
        &self,
        call: PveCall,
        f: impl FnOnce(&mut State) -> Result<T, PveError>,
    ) -> Result<T, PveError> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let m = call.method();
        st.calls.push(call);
        let fault = st
            .next
            .get_mut(&m)
            .and_then(VecDeque::pop_front)
            .or_else(|| st.always.get(&m).cloned().map(Fault::Fail));
        match fault {
            None => f(st),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Lose(e)) => {
                let _ = f(st);
                Err(e)
            }
        }
    }

    fn stop_like(&self, call: PveCall, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let m = call.method();
        let ty = if m == PveMethod::StopCt {
            "vzstop"
        } else {
            "vzshutdown"
        };
        self.call(call, |st| {
            if !st.ct(m.endpoint(), node, vmid)?.running {
                return Err(die(m.endpoint(), format!("CT {vmid} {}", msg::NOT_RUNNING)));
            }
            Ok(st.dispatch(m, node, ty, vmid, Effect::Stop(vmid)))
        })
    }
}

impl Proxmox for FakeProxmox {
    async fn version(&self) -> Result<Version, PveError> {
        self.call(PveCall::Version, |_| {
            Ok(Version {
                version: "9.1.9".into(),
                release: "9.1".into(),
                repoid: "0123abcd".into(),
            })
        })
    }

    async fn cluster_resources(&self) -> Result<Vec<ClusterResource>, PveError> {
        self.call(PveCall::ClusterResources, |st| {
            Ok(st
                .cts
                .iter()
                .map(|(&vmid, ct)| listed(vmid, ct, false))
                .collect())
        })
    }

    async fn node_cts(&self, node: &str) -> Result<Vec<ClusterResource>, PveError> {
        self.call(PveCall::NodeCts { node: node.into() }, |st| {
            Ok(st
                .cts
                .iter()
                .filter(|(_, ct)| ct.node == node)
                .map(|(&vmid, ct)| listed(vmid, ct, true))
                .collect())
        })
    }

    async fn next_id(&self) -> Result<u32, PveError> {
        self.call(PveCall::NextId, |st| {
            Ok((100..)
                .find(|v| !st.cts.contains_key(v))
                .expect("a free vmid"))
        })
    }

    async fn clone_ct(
        &self,
        node: &str,
        source_vmid: u32,
        req: &CloneRequest,
    ) -> Result<Upid, PveError> {
        let call = PveCall::CloneCt {
            node: node.into(),
            source_vmid,
            req: req.clone(),
        };
        let e = Endpoint::CLONE;
        self.call(call, |st| {
            request::build_clone(node, source_vmid, req)?;
            let src = st.ct(e, node, source_vmid)?;
            let src_cfg = src.config();
            if req.storage.is_some() && !req.full.unwrap_or(!src_cfg.template) {
                return Err(die(
                    e,
                    format!("parameter 'storage' {}", msg::STORAGE_LINKED),
                ));
            }
            // PVE order: lock the source (`disk`), then require the new id to be free.
            if let Some(l) = src.lock() {
                return Err(die(e, e_locked(l)));
            }
            let newid = req.newid;
            if let Some(other) = st.cts.get(&newid) {
                let m = format!(
                    "CT {newid} {} on node '{}'",
                    msg::ALREADY_EXISTS,
                    other.node
                );
                return Err(die(e, m));
            }
            let src = st.ct(e, node, source_vmid)?;
            src.set_lock(Some("disk"));
            let mut conf = src.conf.clone();
            for k in ["template", "lock", "digest", "description"] {
                conf.remove(k);
            }
            let mut cfg = LxcConfig::from_value(&Value::Object(conf.clone())).expect("an object");
            cfg.hostname = req.hostname.clone().or(src_cfg.hostname);
            cfg.description = req
                .description
                .as_ref()
                .map(|d| d.trim_end_matches('\n').to_string())
                .or(src_cfg.description);
            cfg.lock = Some("create".into());
            let mac = format!(
                "BC:24:11:{:02X}:{:02X}:{:02X}",
                (newid >> 16) as u8,
                (newid >> 8) as u8,
                newid as u8
            );
            cfg.net0 = cfg.net0.as_deref().map(|n| with_hwaddr(n, &mac));
            let ct = Ct {
                node: node.into(),
                conf: conf_of(&cfg),
                running: false,
                interfaces: None,
            };
            st.cts.insert(newid, ct);
            st.touch(newid);
            st.touch(source_vmid);
            // Quirk: the clone task's UPID names the SOURCE vmid.
            let effect = Effect::Clone {
                source: source_vmid,
                newid,
            };
            Ok(st.dispatch(PveMethod::CloneCt, node, "vzclone", source_vmid, effect))
        })
    }

    async fn ct_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, PveError> {
        let call = PveCall::CtConfig {
            node: node.into(),
            vmid,
        };
        self.call(call, |st| {
            Ok(st.ct(Endpoint::CONFIG_GET, node, vmid)?.config())
        })
    }

    async fn update_ct_config(
        &self,
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<(), PveError> {
        let call = PveCall::UpdateCtConfig {
            node: node.into(),
            vmid,
            update: update.clone(),
        };
        let e = Endpoint::CONFIG_PUT;
        self.call(call, |st| {
            // The client's own checks, then PVE's order: load, check_lock, digest, options.
            let r = request::build_config_put(node, vmid, update)?;
            let ct = st.ct(e, node, vmid)?;
            if let Some(l) = ct.lock() {
                return Err(die(e, e_locked(l)));
            }
            let digest = ct.conf.get("digest").and_then(Value::as_str).unwrap_or("");
            if update.digest.as_deref().is_some_and(|d| d != digest) {
                let m = format!(
                    "{} - file changed by other user? Try again.",
                    msg::MODIFIED_CONFIG
                );
                return Err(die(e, m));
            }
            if r.params.iter().all(|(k, _)| k == "digest") {
                return Err(die(e, msg::NO_OPTIONS.into()));
            }
            apply_params(&mut ct.conf, &r.params);
            st.touch(vmid);
            Ok(())
        })
    }

    async fn ct_status(&self, node: &str, vmid: u32) -> Result<CtStatus, PveError> {
        let call = PveCall::CtStatus {
            node: node.into(),
            vmid,
        };
        self.call(call, |st| {
            let ct = st.ct(Endpoint::STATUS_CURRENT, node, vmid)?;
            let c = ct.config();
            Ok(CtStatus {
                status: if ct.running {
                    CtState::Running
                } else {
                    CtState::Stopped
                },
                name: Some(c.hostname.unwrap_or_else(|| format!("CT{vmid}"))),
                lock: c.lock,
                tags: c.tags,
                uptime: 0,
                template: c.template,
                maxdisk: c.rootfs_gib.map(|g| u64::from(g) << 30),
            })
        })
    }

    async fn start_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let call = PveCall::StartCt {
            node: node.into(),
            vmid,
        };
        let e = Endpoint::START;
        self.call(call, |st| {
            // Only this is checked at once; lock and template are the worker's (task errors).
            if st.ct(e, node, vmid)?.running {
                return Err(die(e, format!("CT {vmid} {}", msg::ALREADY_RUNNING)));
            }
            Ok(st.dispatch(
                PveMethod::StartCt,
                node,
                "vzstart",
                vmid,
                Effect::Start(vmid),
            ))
        })
    }

    async fn stop_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let call = PveCall::StopCt {
            node: node.into(),
            vmid,
        };
        self.stop_like(call, node, vmid)
    }

    async fn shutdown_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid, PveError> {
        let call = PveCall::ShutdownCt {
            node: node.into(),
            vmid,
            timeout_s,
            force_stop,
        };
        self.stop_like(call, node, vmid)
    }

    async fn reboot_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
    ) -> Result<Upid, PveError> {
        let call = PveCall::RebootCt {
            node: node.into(),
            vmid,
            timeout_s,
        };
        let e = Endpoint::REBOOT;
        self.call(call, |st| {
            // Only this is checked at once, and PVE words it `VM`, not `CT`.
            if !st.ct(e, node, vmid)?.running {
                return Err(die(e, format!("VM {vmid} {}", msg::NOT_RUNNING)));
            }
            Ok(st.dispatch(
                PveMethod::RebootCt,
                node,
                "vzreboot",
                vmid,
                Effect::Reboot(vmid),
            ))
        })
    }

    async fn delete_ct(
        &self,
        node: &str,
        vmid: u32,
        opts: &DeleteOptions,
    ) -> Result<Upid, PveError> {
        let call = PveCall::DeleteCt {
            node: node.into(),
            vmid,
            opts: *opts,
        };
        let e = Endpoint::DELETE;
        self.call(call, |st| {
            let ct = st.ct(e, node, vmid)?;
            if let Some(l) = ct.lock() {
                return Err(die(e, e_locked(l)));
            }
            if ct.running && !opts.force {
                let m = format!(
                    "unable to destroy CT {vmid} - {}",
                    msg::CONTAINER_IS_RUNNING
                );
                return Err(die(e, m));
            }
            ct.set_lock(Some("destroyed"));
            Ok(st.dispatch(
                PveMethod::DeleteCt,
                node,
                "vzdestroy",
                vmid,
                Effect::Destroy(vmid),
            ))
        })
    }

    async fn ct_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<Vec<Interface>>, PveError> {
        let call = PveCall::CtInterfaces {
            node: node.into(),
            vmid,
        };
        self.call(call, |st| {
            let ct = st.ct(Endpoint::INTERFACES, node, vmid)?;
            // Quirk: null while the CT is not running.
            Ok(ct.interfaces.clone().filter(|_| ct.running))
        })
    }

    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        let call = PveCall::TaskStatus { upid: upid.clone() };
        self.call(call, |st| {
            // An unknown UPID is what PveClient reports for PVE's 400 `no such task`.
            let Some(t) = st.tasks.iter().find(|t| t.upid == *upid) else {
                return Ok(TaskStatus {
                    running: true,
                    exit: None,
                    not_visible_yet: true,
                });
            };
            let exit = match &t.state {
                FakeTaskState::Running => None,
                FakeTaskState::Ok => Some(TaskExit::Ok),
                FakeTaskState::Error(m) => Some(TaskExit::Error(m.clone())),
            };
            Ok(TaskStatus {
                running: exit.is_none(),
                exit,
                not_visible_yet: false,
            })
        })
    }

    async fn resize_ct(&self, node: &str, vmid: u32, size_gib: u32) -> Result<Upid, PveError> {
        let call = PveCall::ResizeCt {
            node: node.into(),
            vmid,
            size_gib,
        };
        let e = Endpoint::RESIZE;
        self.call(call, |st| {
            request::build_resize(node, vmid, size_gib)?;
            let ct = st.ct(e, node, vmid)?;
            if let Some(l) = ct.lock() {
                return Err(die(e, e_locked(l)));
            }
            let current = ct.config().rootfs_gib.unwrap_or(0);
            if size_gib < current {
                return Err(die(e, msg::SHRINK.into()));
            }
            // PVE's worker type for a container resize is `resize`.
            let effect = Effect::Resize {
                vmid,
                gib: size_gib,
            };
            Ok(st.dispatch(PveMethod::ResizeCt, node, "resize", vmid, effect))
        })
    }

    async fn node_tasks(
        &self,
        node: &str,
        filter: &TaskFilter,
    ) -> Result<Vec<TaskEntry>, PveError> {
        let call = PveCall::NodeTasks {
            node: node.into(),
            filter: filter.clone(),
        };
        self.call(call, |st| {
            request::build_tasks(node, filter)?;
            Ok(st
                .tasks
                .iter()
                .filter(|t| t.upid.node == node)
                .filter(|t| match filter.source {
                    TaskSource::Active => t.state == FakeTaskState::Running,
                    TaskSource::Archive => t.state != FakeTaskState::Running,
                    TaskSource::All => true,
                })
                .filter(|t| {
                    filter
                        .typefilter
                        .as_ref()
                        .is_none_or(|ty| *ty == t.upid.task_type)
                })
                .filter(|t| filter.vmid.is_none_or(|v| t.upid.id == v.to_string()))
                .filter(|t| filter.since.is_none_or(|s| t.upid.starttime >= s))
                .map(|t| {
                    let status = match &t.state {
                        FakeTaskState::Running => None,
                        FakeTaskState::Ok => Some("OK".to_string()),
                        FakeTaskState::Error(m) => Some(m.clone()),
                    };
                    TaskEntry {
                        upid: t.upid.to_string(),
                        kind: t.upid.task_type.clone(),
                        id: t.upid.id.clone(),
                        endtime: status.as_ref().map(|_| 1),
                        status,
                    }
                })
                .collect())
        })
    }

    async fn task_log(&self, upid: &Upid, start: u32, limit: u32) -> Result<Vec<String>, PveError> {
        let call = PveCall::TaskLog {
            upid: upid.clone(),
            start,
            limit,
        };
        self.call(call, |st| {
            let t = st.tasks.iter().find(|t| t.upid == *upid).ok_or_else(|| {
                // As the client renders PVE's 400 with its per-parameter `errors`.
                let m = format!("{} (upid: {})", msg::PARAM_VERIFICATION, msg::NO_SUCH_TASK);
                PveError::http(Endpoint::TASK_LOG, 400, m)
            })?;
            Ok(t.log
                .iter()
                .skip(start as usize)
                .take(limit as usize)
                .cloned()
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn clone_req(newid: u32) -> CloneRequest {
        CloneRequest {
            newid,
            hostname: Some("mc-a".into()),
            description: Some("zlh:abc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn clone_then_finish_unlocks() {
        block_on(async {
            let pve = FakeProxmox::new();
            pve.put_template("pve", 900, "tpl");
            let upid = pve.clone_ct("pve", 900, &clone_req(105)).await.unwrap();
            let parsed: Upid = upid.to_string().parse().unwrap();
            assert_eq!((&*parsed.task_type, &*parsed.id), ("vzclone", "900"));

            let cfg = pve.ct_config("pve", 105).await.unwrap();
            assert_eq!(cfg.lock.as_deref(), Some("create"));
            assert_eq!(cfg.hostname.as_deref(), Some("mc-a"));
            assert_eq!(cfg.description.as_deref(), Some("zlh:abc"));
            assert!(!cfg.template);
            let e = pve.clone_ct("pve", 900, &clone_req(106)).await.unwrap_err();
            assert_eq!(
                e.lock_name(),
                Some("disk"),
                "the source is locked while cloning"
            );
            assert!(pve.task_status(&upid).await.unwrap().running);

            assert!(pve.finish_task(&upid, Ok(())));
            let st = pve.task_status(&upid).await.unwrap();
            assert_eq!(st.exit, Some(TaskExit::Ok));
            assert_eq!(pve.ct_config("pve", 105).await.unwrap().lock, None);
            assert_eq!(pve.container(900).unwrap().config.lock, None);

            let e = pve.clone_ct("pve", 900, &clone_req(105)).await.unwrap_err();
            assert!(e.is_already_exists(), "{e}");
            assert_eq!(e.message, "CT 105 already exists on node 'pve'");
        });
    }

    #[test]
    fn lost_answer_takes_effect_but_errors() {
        block_on(async {
            let pve = FakeProxmox::new();
            pve.set_tasks_finish_immediately(true);
            pve.put_template("pve", 900, "tpl");
            pve.lose_answer_next(PveMethod::CloneCt, timeout(PveMethod::CloneCt));
            let e = pve.clone_ct("pve", 900, &clone_req(105)).await.unwrap_err();
            assert_eq!(e.class, ErrorClass::Transient);
            let ct = pve.container(105).expect("the clone happened");
            assert_eq!(ct.config.lock, None, "finished at once");

            let boom = PveError::http(Endpoint::START, 500, "got no worker upid");
            pve.fail_next(PveMethod::StartCt, boom);
            assert!(pve.start_ct("pve", 105).await.is_err());
            assert!(
                !pve.container(105).unwrap().running,
                "fail_next has no effect"
            );
            pve.start_ct("pve", 105).await.unwrap();
            assert!(pve.container(105).unwrap().running);
            let e = pve.start_ct("pve", 105).await.unwrap_err();
            assert!(e.is_already_running(), "{e}");
            assert_eq!(
                pve.calls()
                    .iter()
                    .filter(|c| c.method() == PveMethod::StartCt)
                    .count(),
                3
            );
        });
    }

    #[test]
    fn absent_is_not_found() {
        block_on(async {
            let pve = FakeProxmox::new();
            pve.put_container("pve", 105, lxc_config("mc-a"), false);
            let e = pve.ct_config("pve", 104).await.unwrap_err();
            assert!(e.is_not_found(), "{e}");
            assert_eq!(
                e.message,
                "Configuration file 'nodes/pve/lxc/104.conf' does not exist"
            );
            assert!(pve.ct_status("pve", 104).await.unwrap_err().is_not_found());
            assert!(
                pve.ct_interfaces("pve", 104)
                    .await
                    .unwrap_err()
                    .is_not_found()
            );
            // PVE says the same when the CT lives on another node.
            assert!(pve.ct_config("pve2", 105).await.unwrap_err().is_not_found());
        });
    }

    /// Same semantics as the simulator: running → one `vzreboot` task → running; stopped →
    /// PVE's `VM N not running` (Conflict); a failed reboot leaves the CT stopped.
    #[test]
    fn reboot_running_and_stopped() {
        block_on(async {
            let pve = FakeProxmox::new();
            pve.put_container("pve", 105, lxc_config("mc-a"), false);
            let e = pve.reboot_ct("pve", 105, None).await.unwrap_err();
            assert!(e.is_not_running(), "{e}");
            assert_eq!(
                (e.message.as_str(), e.status),
                ("VM 105 not running", Some(500))
            );
            assert!(
                pve.reboot_ct("pve", 104, None)
                    .await
                    .unwrap_err()
                    .is_not_found()
            );

            pve.set_running(105, true);
            let up = pve.reboot_ct("pve", 105, Some(30)).await.unwrap();
            assert_eq!((&*up.task_type, &*up.id), ("vzreboot", "105"));
            assert_eq!(
                pve.calls().last(),
                Some(&PveCall::RebootCt {
                    node: "pve".into(),
                    vmid: 105,
                    timeout_s: Some(30)
                })
            );
            assert!(pve.finish_task(&up, Ok(())));
            assert_eq!(pve.task(&up), Some(FakeTaskState::Ok));
            assert!(pve.container(105).unwrap().running);

            pve.fail_next_task(PveMethod::RebootCt, "startup for container '105' failed");
            let up = pve.reboot_ct("pve", 105, None).await.unwrap();
            pve.finish_task(&up, Ok(()));
            assert!(matches!(pve.task(&up), Some(FakeTaskState::Error(_))));
            assert!(!pve.container(105).unwrap().running, "start half failed");

            pve.set_running(105, true);
            pve.set_lock(105, Some("backup".into()));
            let up = pve.reboot_ct("pve", 105, None).await.unwrap();
            pve.finish_task(&up, Ok(()));
            assert_eq!(
                pve.task(&up),
                Some(FakeTaskState::Error("CT is locked (backup)".into()))
            );
            assert!(!pve.container(105).unwrap().running, "locked: not started");
        });
    }

    #[test]
    fn lifecycle_config_and_delete() {
        block_on(async {
            let pve = FakeProxmox::new();
            pve.put_container("pve", 105, lxc_config("mc-a"), false);
            let digest = pve.ct_config("pve", 105).await.unwrap().digest;
            let up = ConfigUpdate {
                cores: Some(2),
                tags: Some(vec!["zlh-x".into(), "ZLH".into()]),
                onboot: Some(true),
                digest: Some(digest.clone()),
                ..Default::default()
            };
            pve.update_ct_config("pve", 105, &up).await.unwrap();
            let cfg = pve.ct_config("pve", 105).await.unwrap();
            assert_eq!(cfg.cores, Some(2));
            assert_eq!(cfg.tags, vec!["zlh", "zlh-x"], "lower-cased and sorted");
            assert!(cfg.onboot);
            let e = pve.update_ct_config("pve", 105, &up).await.unwrap_err();
            assert!(e.is_digest_mismatch(), "{e}");
            let clear = ConfigUpdate {
                tags: Some(vec![]),
                ..Default::default()
            };
            pve.update_ct_config("pve", 105, &clear).await.unwrap();
            assert!(pve.ct_config("pve", 105).await.unwrap().tags.is_empty());

            assert!(pve.stop_ct("pve", 105).await.unwrap_err().is_not_running());
            let start = pve.start_ct("pve", 105).await.unwrap();
            pve.set_ipv4(105, Ipv4Addr::new(10, 0, 0, 5));
            assert_eq!(
                pve.ct_interfaces("pve", 105).await.unwrap(),
                None,
                "not yet"
            );
            pve.finish_task(&start, Ok(()));
            let ifaces = pve.ct_interfaces("pve", 105).await.unwrap().unwrap();
            assert_eq!(
                primary_ipv4(&ifaces, None),
                Some(Ipv4Addr::new(10, 0, 0, 5))
            );
            let e = pve
                .delete_ct("pve", 105, &DeleteOptions::default())
                .await
                .unwrap_err();
            assert!(e.is_container_running(), "{e}");

            pve.set_lock(105, Some("backup".into()));
            let stop = pve.shutdown_ct("pve", 105, Some(30), true).await.unwrap();
            pve.finish_task(&stop, Ok(()));
            assert_eq!(
                pve.task(&stop),
                Some(FakeTaskState::Error("CT is locked (backup)".into()))
            );
            assert_eq!(
                pve.task_log(&stop, 0, 50).await.unwrap(),
                vec!["TASK ERROR: CT is locked (backup)"]
            );
            assert!(pve.container(105).unwrap().running);
            pve.set_lock(105, None);

            pve.set_tasks_finish_immediately(true);
            let opts = DeleteOptions {
                purge: true,
                force: true,
                destroy_unreferenced_disks: true,
            };
            pve.fail_next_task(PveMethod::DeleteCt, "unable to remove disk");
            let del = pve.delete_ct("pve", 105, &opts).await.unwrap();
            assert!(matches!(pve.task(&del), Some(FakeTaskState::Error(_))));
            assert_eq!(pve.container(105).unwrap().config.lock, None);
            pve.delete_ct("pve", 105, &opts).await.unwrap();
            assert!(pve.container(105).is_none());
            assert!(pve.cluster_resources().await.unwrap().is_empty());
        });
    }
}
