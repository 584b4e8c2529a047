//! A stateful Proxmox VE simulator (axum), bound to 127.0.0.1 only, with fault injection and a
//! time scale. It answers as PVE does for everything `PveClient` uses (docs/proxmox-api.md).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use proxmox_client::sim::{PveSim, SimConfig};
//! let sim = PveSim::start(SimConfig::fast()).await?;
//! let client = proxmox_client::PveClient::new(sim.client_config()).unwrap();
//! # Ok(()) }
//! ```
//! Task progress is evaluated lazily on every request (and by a 5 ms ticker, so `CtEvent`s
//! arrive without polling).

mod cluster;
mod faults;
mod http;
mod lxc;
mod params;
mod rate;
mod response;
mod storage;
mod tasks;
mod wording;

pub use faults::{FaultAction, FaultRule, FaultSpec, Outage, TaskErrorSpec, Trigger};
pub use rate::SimApiRate;
pub use storage::{SimStorage, StorageKind};

use crate::client::PveConfig;
use crate::types::CtState;
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Names of the routes the simulator serves beyond `crate::request::Endpoint`'s (which the
/// client uses), for `PveSimHandle::requests_for` and fault rules.
pub struct SimEndpoint;
impl SimEndpoint {
    /// `GET /nodes/{node}/tasks`.
    pub const TASK_LIST: &'static str = "task_list";
    /// `PUT /nodes/{node}/lxc/{vmid}/resize`.
    pub const RESIZE: &'static str = "resize";
    /// `GET /nodes`.
    pub const NODE_LIST: &'static str = "node_list";
    /// `GET /nodes/{node}/lxc` (the client's `Endpoint::CT_LIST`).
    pub const CT_LIST: &'static str = crate::request::Endpoint::CT_LIST;
}

/// A template container present at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTemplate {
    pub node: String,
    pub vmid: u32,
    pub hostname: String,
}

/// Durations of the simulated operations, before scaling by `SimConfig::time_scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTimings {
    /// A full clone: the template's disk is copied, its `disk` lock held throughout.
    pub clone: Duration,
    /// A linked clone: a thin snapshot clone, the template's `disk` lock held for it.
    pub linked_clone: Duration,
    pub start: Duration,
    pub stop: Duration,
    /// Also the shutdown half of a reboot (capped by its `timeout`), whose start half takes
    /// `start`.
    pub shutdown: Duration,
    pub destroy: Duration,
    /// A resize task (`lvextend` and `resize2fs`).
    pub resize: Duration,
    /// After a start task ends, how long until `interfaces` shows the IPv4 address.
    pub ip_delay: Duration,
    /// How long a fresh CT shows `status: unknown` and no `name` in cluster/resources.
    pub resources_lag: Duration,
    /// How long after dispatch task status answers 400 `no such task`.
    pub task_visible_after: Duration,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: Vec<String>,
    pub templates: Vec<SimTemplate>,
    /// `user@realm!tokenid`.
    pub token_id: String,
    pub token_secret: String,
    pub timings: SimTimings,
    /// Multiplies every timing (1.0 = as configured; 0.001 turns seconds into ms).
    pub time_scale: f64,
    /// Second octet of container IPs (`127.<base>.<vmid/256>.<vmid%256>`); `None` = random in
    /// 16..=250, chosen at start, so parallel sims do not collide.
    pub ip_base: Option<u8>,
    /// What `/version` reports.
    pub version: String,
    /// The node's storages (each on every node; none shared).
    pub storages: Vec<SimStorage>,
    /// Where the templates' root volumes live: one of `storages`.
    pub template_storage: String,
    /// Size of a template's root volume (and so of a fresh clone's).
    pub template_disk_bytes: u64,
    /// A per-node API budget beyond which requests answer `596 Connection timed out`, as an
    /// overloaded pveproxy's proxy hop does; `None` = unlimited. Rates are always measured.
    pub api_rate: Option<SimApiRate>,
}

impl Default for SimConfig {
    /// Node `pve`; templates 900, 901, 910, 911 (as `model::Catalog::example()`); realistic
    /// timings (clone 20 s, start 3 s, ...), time scale 1.
    fn default() -> Self {
        SimConfig {
            nodes: vec!["pve".into()],
            templates: [
                (900, "tpl-mc-vanilla"),
                (901, "tpl-mc-modded"),
                (910, "tpl-dev-node"),
                (911, "tpl-dev-python"),
            ]
            .into_iter()
            .map(|(vmid, h)| SimTemplate {
                node: "pve".into(),
                vmid,
                hostname: h.into(),
            })
            .collect(),
            token_id: "root@pam!zlh".into(),
            token_secret: "5f1c7a52-sim0-4c5e-9d1b-0123456789ab".into(),
            timings: SimTimings {
                // The previous system's measured full clone.
                clone: Duration::from_secs(20),
                // A thin snapshot on LVM-thin/ZFS takes seconds.
                linked_clone: Duration::from_secs(2),
                start: Duration::from_secs(3),
                stop: Duration::from_secs(2),
                shutdown: Duration::from_secs(5),
                destroy: Duration::from_secs(2),
                resize: Duration::from_secs(1),
                ip_delay: Duration::from_secs(5),
                resources_lag: Duration::from_secs(10),
                task_visible_after: Duration::ZERO,
            },
            time_scale: 1.0,
            ip_base: None,
            version: "9.1.9".into(),
            // A default PVE install: `local` (a directory) and `local-lvm` (LVM-thin), with
            // the templates on `local-lvm` so that both clone modes work.
            storages: vec![
                SimStorage::new("local", StorageKind::Dir),
                SimStorage::new("local-lvm", StorageKind::LvmThin),
            ],
            template_storage: "local-lvm".into(),
            // PVE's CT wizard default.
            template_disk_bytes: 8 << 30,
            // Real PVE has no rate limit; a benchmark turns the model on.
            api_rate: None,
        }
    }
}

impl SimConfig {
    /// `default()` with millisecond timings for tests (clone 30 ms, start 10 ms, ...).
    pub fn fast() -> Self {
        SimConfig {
            timings: SimTimings {
                clone: Duration::from_millis(30),
                linked_clone: Duration::from_millis(10),
                start: Duration::from_millis(10),
                stop: Duration::from_millis(10),
                shutdown: Duration::from_millis(10),
                destroy: Duration::from_millis(10),
                resize: Duration::from_millis(10),
                ip_delay: Duration::from_millis(20),
                resources_lag: Duration::from_millis(50),
                task_visible_after: Duration::ZERO,
            },
            ..SimConfig::default()
        }
    }
}

/// Container lifecycle events, for the Agent simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtEvent {
    /// A start (or the start half of a reboot) completed; the CT will answer on `ip`
    /// (interfaces shows it after `ip_delay`).
    Started {
        vmid: u32,
        ip: Ipv4Addr,
    },
    Stopped {
        vmid: u32,
    },
    Destroyed {
        vmid: u32,
    },
}

/// A snapshot of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtSnapshot {
    pub vmid: u32,
    pub node: String,
    pub hostname: String,
    /// Without PVE's trailing newline.
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub status: CtState,
    pub lock: Option<String>,
    /// The address the CT has (or will have once running).
    pub ip: Ipv4Addr,
    pub template: bool,
    pub cores: u32,
    pub memory: u64,
    pub swap: u64,
    pub onboot: bool,
    pub net0: String,
    /// The `rootfs` config line (`<volid>,size=8G`).
    pub rootfs: String,
    /// The root volume's size.
    pub rootfs_bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Ct {
    pub vmid: u32,
    pub node: String,
    pub hostname: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub running: bool,
    pub lock: Option<String>,
    pub template: bool,
    pub cores: u32,
    pub memory: u64,
    pub swap: u64,
    pub onboot: bool,
    pub net0: String,
    pub rootfs: storage::Rootfs,
    pub digest: String,
    pub created: Instant,
    /// Pre-existing CTs (templates, foreign ones) show no RRD lag in cluster/resources.
    pub preexisting: bool,
    pub started_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Clone {
        source: u32,
        newid: u32,
        mode: CloneMode,
        /// The source's root volume, for the task log.
        volid: String,
    },
    Start {
        vmid: u32,
    },
    Stop {
        vmid: u32,
    },
    Destroy {
        vmid: u32,
    },
    /// The worker writes the new size into the config when it ends.
    Resize {
        vmid: u32,
        bytes: u64,
    },
    Reboot(Reboot),
}

/// How a clone copies the disk (`full` parameter; a template's default is linked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloneMode {
    Full,
    Linked,
}

/// A shutdown then a start, in one task: the CT goes down at `down_at` (`was_up` records
/// whether it was running then) and comes back up when the task ends OK.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reboot {
    pub vmid: u32,
    pub down_at: Instant,
    pub was_up: Option<bool>,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub upid: crate::Upid,
    pub visible_at: Instant,
    pub ends_at: Instant,
    pub effect: Effect,
    /// Failure decided at dispatch (`TASK ERROR: <text>`).
    pub error: Option<String>,
    pub exit: Option<String>,
    pub log: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub cts: BTreeMap<u32, Ct>,
    pub tasks: Vec<Task>,
    pub pid: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_total: u64,
    pub per_endpoint: HashMap<String, u64>,
    pub clone_calls: HashMap<u32, u64>,
    pub destroy_calls: u64,
    pub start_calls: u64,
    pub lock_errors: u64,
}

pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub ip_base: u8,
    pub state: Mutex<State>,
    pub faults: Mutex<faults::Faults>,
    pub counters: Mutex<Counters>,
    pub rates: Mutex<rate::Rates>,
    pub events: broadcast::Sender<CtEvent>,
    pub start_unix: i64,
    pub epoch: Instant,
}

impl Shared {
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.cfg.time_scale.max(0.0))
    }

    pub fn ip_for(&self, vmid: u32) -> Ipv4Addr {
        Ipv4Addr::new(
            127,
            self.ip_base,
            ((vmid / 256) % 256) as u8,
            (vmid % 256) as u8,
        )
    }

    pub fn storage(&self, id: &str) -> Option<&SimStorage> {
        self.cfg.storages.iter().find(|s| s.id == id)
    }

    pub fn emit(&self, e: CtEvent) {
        let _ = self.events.send(e);
    }
}

/// Entry point.
pub struct PveSim;

impl PveSim {
    /// Bind 127.0.0.1 on a free port and serve until the last handle clone is dropped.
    pub async fn start(cfg: SimConfig) -> std::io::Result<PveSimHandle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let ip_base = cfg.ip_base.unwrap_or_else(|| rand::random_range(16..=250));
        let (events, _) = broadcast::channel(1024);
        let now = Instant::now();
        let mut state = State {
            pid: rand::random_range(0x1000..0x00F0_0000),
            ..State::default()
        };
        for t in &cfg.templates {
            let mut ct = lxc::new_ct(t.vmid, &t.node, &t.hostname, now);
            ct.template = true;
            ct.preexisting = true;
            let kind = cfg
                .storages
                .iter()
                .find(|s| s.id == cfg.template_storage)
                .map_or(StorageKind::LvmThin, |s| s.kind);
            ct.rootfs = storage::Rootfs {
                volid: kind.volid(&cfg.template_storage, t.vmid, true),
                bytes: cfg.template_disk_bytes,
            };
            state.cts.insert(t.vmid, ct);
        }
        let shared = Arc::new(Shared {
            cfg,
            ip_base,
            state: Mutex::new(state),
            faults: Mutex::new(faults::Faults::default()),
            counters: Mutex::new(Counters::default()),
            rates: Mutex::new(rate::Rates::default()),
            events,
            start_unix: chrono::Utc::now().timestamp(),
            epoch: now,
        });
        let server = tokio::spawn(http::serve(listener, shared.clone()));
        let weak = Arc::downgrade(&shared);
        let ticker = tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(5));
            loop {
                iv.tick().await;
                let Some(s) = weak.upgrade() else { break };
                tasks::advance(&s, Instant::now());
            }
        });
        Ok(PveSimHandle {
            shared,
            addr,
            _guard: Arc::new(TaskGuard(vec![
                server.abort_handle(),
                ticker.abort_handle(),
            ])),
        })
    }
}

struct TaskGuard(Vec<tokio::task::AbortHandle>);
impl Drop for TaskGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Handle to a running simulator. Clones share it; the server stops when the last clone drops.
#[derive(Clone)]
pub struct PveSimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _guard: Arc<TaskGuard>,
}

impl std::fmt::Debug for PveSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveSimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PveSimHandle {
    /// `http://127.0.0.1:PORT` (the client appends `/api2/json`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn token_id(&self) -> &str {
        &self.shared.cfg.token_id
    }
    pub fn token_secret(&self) -> &str {
        &self.shared.cfg.token_secret
    }
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }
    /// The second octet of every container IP: `127.<ip_base>.<vmid/256>.<vmid%256>`.
    pub fn ip_base(&self) -> u8 {
        self.shared.ip_base
    }
    /// The IP a CT with this vmid gets.
    pub fn ip_for(&self, vmid: u32) -> Ipv4Addr {
        self.shared.ip_for(vmid)
    }
    /// A client config pointing at this simulator (short timeouts, generous rate limit).
    pub fn client_config(&self) -> PveConfig {
        let mut c = PveConfig::new(
            self.url(),
            self.token_id(),
            SecretString::from(self.token_secret().to_string()),
        );
        c.connect_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(5);
        c.rate_per_node_per_sec = 1000;
        c
    }

    // ----- inspection -----

    /// All containers (templates included), by vmid.
    pub fn containers(&self) -> Vec<CtSnapshot> {
        tasks::advance(&self.shared, Instant::now());
        let st = self.shared.state.lock().unwrap();
        st.cts.values().map(|c| self.snapshot(c)).collect()
    }

    pub fn container(&self, vmid: u32) -> Option<CtSnapshot> {
        self.containers().into_iter().find(|c| c.vmid == vmid)
    }

    fn snapshot(&self, c: &Ct) -> CtSnapshot {
        CtSnapshot {
            vmid: c.vmid,
            node: c.node.clone(),
            hostname: c.hostname.clone(),
            description: c.description.clone(),
            tags: c.tags.clone(),
            status: if c.running {
                CtState::Running
            } else {
                CtState::Stopped
            },
            lock: c.lock.clone(),
            ip: self.shared.ip_for(c.vmid),
            template: c.template,
            cores: c.cores,
            memory: c.memory,
            swap: c.swap,
            onboot: c.onboot,
            net0: c.net0.clone(),
            rootfs: c.rootfs.line(),
            rootfs_bytes: c.rootfs.bytes,
        }
    }

    /// Clone requests that reached the clone logic (after auth, validation and faults).
    pub fn clone_calls(&self) -> u64 {
        self.shared
            .counters
            .lock()
            .unwrap()
            .clone_calls
            .values()
            .sum()
    }
    pub fn clone_calls_for(&self, newid: u32) -> u64 {
        self.shared
            .counters
            .lock()
            .unwrap()
            .clone_calls
            .get(&newid)
            .copied()
            .unwrap_or(0)
    }
    /// DELETE requests that reached the delete logic.
    pub fn destroy_calls(&self) -> u64 {
        self.shared.counters.lock().unwrap().destroy_calls
    }
    /// Start requests that reached the start logic.
    pub fn start_calls(&self) -> u64 {
        self.shared.counters.lock().unwrap().start_calls
    }
    /// Every API request received (including refused and faulted ones; not `/_sim`).
    pub fn requests_total(&self) -> u64 {
        self.shared.counters.lock().unwrap().requests_total
    }
    /// Requests received for an endpoint name (`clone`, `config_put`, ...), counted before
    /// faults are applied.
    pub fn requests_for(&self, endpoint: &str) -> u64 {
        self.shared
            .counters
            .lock()
            .unwrap()
            .per_endpoint
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }
    /// How many Locked answers were given (sync `CT is locked (...)`, `can't lock file`, and
    /// task exits), including injected ones.
    pub fn lock_errors(&self) -> u64 {
        self.shared.counters.lock().unwrap().lock_errors
    }
    /// Requests routed to `node` (cluster-wide ones count for the first node, the one the
    /// client talks to), refused or not.
    pub fn requests_per_node(&self, node: &str) -> u64 {
        self.shared.rates.lock().unwrap().requests(node)
    }
    /// The most requests `node` received within one simulated second.
    pub fn peak_requests_per_sec(&self, node: &str) -> usize {
        self.shared.rates.lock().unwrap().peak(node)
    }
    /// Requests the rate model answered `596` (always 0 without `SimConfig::api_rate`).
    pub fn rate_refused(&self) -> u64 {
        self.shared.rates.lock().unwrap().refused()
    }
    /// Tasks dispatched and not finished yet.
    pub fn running_tasks(&self) -> usize {
        tasks::advance(&self.shared, Instant::now());
        self.shared
            .state
            .lock()
            .unwrap()
            .tasks
            .iter()
            .filter(|t| t.exit.is_none())
            .count()
    }

    /// Lifecycle events (start completed with its IP, stopped, destroyed).
    pub fn subscribe(&self) -> broadcast::Receiver<CtEvent> {
        self.shared.events.subscribe()
    }

    // ----- faults -----

    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults.lock().unwrap().rules.push(rule);
    }
    /// The next `n` requests to `endpoint` fail with `code` + `message`.
    pub fn fail_next(&self, endpoint: &str, n: u32, code: u16, message: &str) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Next(n),
            action: FaultAction::Error {
                code,
                message: message.into(),
            },
        });
    }
    /// Requests to `endpoint` fail with probability `rate`.
    pub fn fail_rate(&self, endpoint: &str, rate: f64, code: u16, message: &str) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Rate(rate),
            action: FaultAction::Error {
                code,
                message: message.into(),
            },
        });
    }
    /// Every request to `endpoint` is delayed by `d`.
    pub fn add_latency(&self, endpoint: &str, d: Duration) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Rate(1.0),
            action: FaultAction::Latency {
                ms: d.as_millis() as u64,
            },
        });
    }
    /// The next `n` requests to `endpoint` never get an answer.
    pub fn hang_next(&self, endpoint: &str, n: u32) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Next(n),
            action: FaultAction::Hang,
        });
    }
    /// The next `n` requests to `endpoint` have their connection dropped.
    pub fn reset_next(&self, endpoint: &str, n: u32) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Next(n),
            action: FaultAction::Reset,
        });
    }
    /// The next `n` requests to `endpoint` are carried out, but their answer is lost.
    pub fn lose_response_next(&self, endpoint: &str, n: u32) {
        self.add_fault(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Next(n),
            action: FaultAction::LoseResponse,
        });
    }
    /// Start (`Some`) or end (`None`) a full outage.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.shared.faults.lock().unwrap().outage = outage;
    }
    /// The next task dispatched by `endpoint` (`clone`, `start`, `stop`, `shutdown`, `reboot`,
    /// `delete`) ends with `TASK ERROR: <message>`. A failed clone removes the half-made CT, as
    /// PVE does; a failed reboot leaves the CT stopped (its start half is what fails).
    pub fn task_error(&self, endpoint: &str, message: &str) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .task_errors
            .push(TaskErrorSpec {
                endpoint: endpoint.into(),
                message: message.into(),
            });
    }
    /// Apply a spec as `POST /_sim/faults` does.
    pub fn apply_faults(&self, spec: FaultSpec) {
        http::apply_spec(&self.shared, spec);
    }
    /// Remove every rule, task error and the outage.
    pub fn clear_faults(&self) {
        self.set_outage(None);
        let mut f = self.shared.faults.lock().unwrap();
        f.rules.clear();
        f.task_errors.clear();
    }

    // ----- drift (things happening behind the controller's back) -----

    /// The CT stops (as if shut down from inside). Returns false if it does not exist.
    pub fn stop_behind_back(&self, vmid: u32) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        let Some(ct) = st.cts.get_mut(&vmid) else {
            return false;
        };
        if ct.running {
            ct.running = false;
            ct.started_at = None;
            drop(st);
            self.shared.emit(CtEvent::Stopped { vmid });
        }
        true
    }

    /// The CT disappears (as if an operator ran `pct destroy`).
    pub fn destroy_behind_back(&self, vmid: u32) -> bool {
        let removed = self
            .shared
            .state
            .lock()
            .unwrap()
            .cts
            .remove(&vmid)
            .is_some();
        if removed {
            self.shared.emit(CtEvent::Destroyed { vmid });
        }
        removed
    }

    /// An intruder: a stopped CT without our marker (no description, no tags).
    pub fn add_foreign_ct(&self, node: &str, vmid: u32, hostname: &str) {
        let mut ct = lxc::new_ct(vmid, node, hostname, Instant::now());
        ct.preexisting = true;
        self.shared.state.lock().unwrap().cts.insert(vmid, ct);
    }

    /// A stopped CT with this description and no tags (e.g. a clone that failed before its
    /// first config write, its marker only in the description).
    pub fn add_described_ct(&self, node: &str, vmid: u32, hostname: &str, description: &str) {
        let mut ct = lxc::new_ct(vmid, node, hostname, Instant::now());
        ct.description = Some(description.to_string());
        self.shared.state.lock().unwrap().cts.insert(vmid, ct);
    }

    /// Set or clear a CT's lock (e.g. simulate a backup: `Some("backup")`).
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        let Some(ct) = st.cts.get_mut(&vmid) else {
            return false;
        };
        ct.lock = lock.map(str::to_string);
        true
    }
}
