//! Typed requests and responses. Responses are read from `serde_json::Value` with lenient
//! helpers because Perl may encode numbers and booleans as strings (`"100"`, `"1"`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::Ipv4Addr;

// ---------- lenient readers (Perl numbers-as-strings) ----------

pub(crate) fn v_str(v: &Value, k: &str) -> Option<String> {
    Scalar::from(v.get(k)?).string()
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    Scalar::from(v).u64()
}

pub(crate) fn v_u64(v: &Value, k: &str) -> Option<u64> {
    as_u64(v.get(k)?)
}

pub(crate) fn v_bool(v: &Value, k: &str) -> bool {
    v_u64(v, k).map(|n| n != 0).unwrap_or(false)
}

/// Split a PVE tag list (`a;b`, also `,` and ` ` separated) into tags.
pub fn split_tags(s: &str) -> Vec<String> {
    s.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

// ---------- responses ----------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub release: String,
    pub repoid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    Lxc,
    Qemu,
    Other,
}

/// One `GET /cluster/resources?type=vm` entry (both LXC and QEMU; filter on `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterResource {
    pub vmid: u32,
    pub node: String,
    pub kind: GuestType,
    /// `running`, `stopped`, or `unknown` for a just-created CT (RRD lag, ~10 s).
    pub status: String,
    /// Absent for a just-created CT (RRD lag).
    pub name: Option<String>,
    /// Read from the config, so fresh (unlike name/status).
    pub tags: Vec<String>,
    pub lock: Option<String>,
    pub template: bool,
    /// The guest's metrics (0 where PVE sends none: a stopped or just-created guest).
    pub usage: Usage,
}

/// The metrics of a `cluster/resources` entry (PVE's field names; bytes and seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Cores busy (1.0 is one core).
    pub cpu: f64,
    pub mem: u64,
    pub maxmem: u64,
    pub disk: u64,
    pub maxdisk: u64,
    pub netin: u64,
    pub netout: u64,
    pub uptime: u64,
}

/// A JSON scalar read leniently (Perl may render a number as a string and a boolean as 0/1):
/// the one set of rules behind the `v_*` readers. It also decodes in place, without a
/// `Value`: the resource listing holds the whole fleet, and building and dropping a `Value`
/// tree per guest was most of a resync's Proxmox CPU. Objects and arrays read as absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Scalar {
    #[default]
    Absent,
    Str(String),
    Int(u64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn string(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Bool(b) => Some(if b { "1" } else { "0" }.into()),
            Scalar::Absent => None,
        }
    }

    fn f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(n) => Some(*n as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Bool(_) | Scalar::Absent => None,
        }
    }

    fn u64(&self) -> Option<u64> {
        match self {
            Scalar::Int(n) => Some(*n),
            Scalar::Float(f) => Some(*f as u64),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Bool(b) => Some(*b as u64),
            Scalar::Absent => None,
        }
    }
}

/// The same leniency for answers read as a `Value`.
impl From<&Value> for Scalar {
    fn from(v: &Value) -> Self {
        match v {
            Value::String(s) => Scalar::Str(s.clone()),
            Value::Number(n) => n
                .as_u64()
                .map(Scalar::Int)
                .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or_default())),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Null | Value::Array(_) | Value::Object(_) => Scalar::Absent,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(u64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Absent)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Absent)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Absent)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Absent)
            }
        }
        d.deserialize_any(V)
    }
}

/// One `cluster/resources` entry as sent: only the fields we read (the other metrics fields
/// are skipped unparsed).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireResource {
    vmid: Scalar,
    node: Scalar,
    #[serde(rename = "type")]
    kind: Scalar,
    status: Scalar,
    name: Scalar,
    tags: Scalar,
    lock: Scalar,
    template: Scalar,
    cpu: Scalar,
    mem: Scalar,
    maxmem: Scalar,
    disk: Scalar,
    maxdisk: Scalar,
    netin: Scalar,
    netout: Scalar,
    uptime: Scalar,
}

/// A `cluster/resources` element: an entry, or `None` for anything that is not an object (one
/// odd element must not spoil the listing; the old `Value` reader skipped it too).
#[derive(Debug)]
pub(crate) struct MaybeResource(pub(crate) Option<WireResource>);

impl<'de> Deserialize<'de> for MaybeResource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeResource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(a);
                Ok(MaybeResource(Some(WireResource::deserialize(de)?)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MaybeResource(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeResource(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl WireResource {
    /// A `GET /nodes/{node}/lxc` element: a container of `node`.
    pub(crate) fn into_node_ct(mut self, node: &str) -> Option<ClusterResource> {
        self.node = Scalar::Str(node.to_string());
        self.kind = Scalar::Str("lxc".into());
        self.into_resource()
    }

    /// `None` for an entry without a usable vmid or node (skipped, as nothing can be said of it).
    pub(crate) fn into_resource(self) -> Option<ClusterResource> {
        let kind = match &self.kind {
            Scalar::Str(t) if t == "lxc" => GuestType::Lxc,
            Scalar::Str(t) if t == "qemu" => GuestType::Qemu,
            _ => GuestType::Other,
        };
        Some(ClusterResource {
            vmid: u32::try_from(self.vmid.u64()?).ok()?,
            node: self.node.string()?,
            kind,
            status: self.status.string().unwrap_or_else(|| "unknown".into()),
            name: self.name.string(),
            tags: self
                .tags
                .string()
                .map(|t| split_tags(&t))
                .unwrap_or_default(),
            lock: self.lock.string().filter(|l| !l.is_empty()),
            template: self.template.u64().is_some_and(|n| n != 0),
            usage: Usage {
                cpu: self
                    .cpu
                    .f64()
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .unwrap_or(0.0),
                mem: self.mem.u64().unwrap_or(0),
                maxmem: self.maxmem.u64().unwrap_or(0),
                disk: self.disk.u64().unwrap_or(0),
                maxdisk: self.maxdisk.u64().unwrap_or(0),
                netin: self.netin.u64().unwrap_or(0),
                netout: self.netout.u64().unwrap_or(0),
                uptime: self.uptime.u64().unwrap_or(0),
            },
        })
    }
}

/// Parsed `netN` property string: `name=eth0,bridge=vmbr0,hwaddr=..,ip=dhcp,type=veth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub name: Option<String>,
    pub bridge: Option<String>,
    pub hwaddr: Option<String>,
    /// `a.b.c.d/nn`, `dhcp` or `manual`.
    pub ip: Option<String>,
    pub gw: Option<String>,
}

impl NetConfig {
    pub fn parse(s: &str) -> Self {
        let mut n = NetConfig::default();
        for kv in s.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = Some(v.to_string());
            match k {
                "name" => n.name = v,
                "bridge" => n.bridge = v,
                "hwaddr" => n.hwaddr = v,
                "ip" => n.ip = v,
                "gw" => n.gw = v,
                _ => {}
            }
        }
        n
    }

    /// The static IPv4 address (prefix stripped), if `ip=` is a CIDR address.
    pub fn static_ipv4(&self) -> Option<Ipv4Addr> {
        self.ip.as_deref()?.split('/').next()?.parse().ok()
    }
}

/// `GET /nodes/{node}/lxc/{vmid}/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LxcConfig {
    pub hostname: Option<String>,
    /// Without the trailing `\n` PVE appends (quirk: the description is stored as `#` comment
    /// lines and read back with a trailing newline).
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub lock: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub onboot: bool,
    pub net0: Option<String>,
    pub net0_parsed: Option<NetConfig>,
    /// The rootfs volume's `size=` in whole GiB, rounded up (`8G`, `512M`, `1T`).
    pub rootfs_gib: Option<u32>,
    pub template: bool,
    /// SHA-1 hex of the conf file; pass back in [`ConfigUpdate::digest`] for optimistic writes.
    pub digest: String,
    pub raw: Map<String, Value>,
}

impl LxcConfig {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let raw = v.as_object()?.clone();
        let net0 = v_str(v, "net0");
        Some(LxcConfig {
            hostname: v_str(v, "hostname"),
            description: v_str(v, "description").map(|d| strip_one_newline(&d)),
            tags: v_str(v, "tags").map(|t| split_tags(&t)).unwrap_or_default(),
            lock: v_str(v, "lock").filter(|l| !l.is_empty()),
            cores: v_u64(v, "cores").and_then(|c| u32::try_from(c).ok()),
            memory: v_u64(v, "memory"),
            swap: v_u64(v, "swap"),
            onboot: v_bool(v, "onboot"),
            net0_parsed: net0.as_deref().map(NetConfig::parse),
            net0,
            rootfs_gib: v_str(v, "rootfs").and_then(|r| volume_size_gib(&r)),
            template: v_bool(v, "template"),
            digest: v_str(v, "digest").unwrap_or_default(),
            raw,
        })
    }
}

/// The `size=` of a volume property string (`local-lvm:vm-1-disk-0,size=8G`) in GiB, rounded
/// up. PVE writes sizes with a unit suffix (`K`, `M`, `G`, `T`; none: bytes).
pub fn volume_size_gib(volume: &str) -> Option<u32> {
    let size = volume
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "size")?
        .1;
    let (num, unit) = match size.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&size[..i], c.to_ascii_uppercase()),
        _ => (size, 'B'),
    };
    let n: f64 = num.parse().ok()?;
    let per_gib = match unit {
        'B' => 1024.0 * 1024.0 * 1024.0,
        'K' => 1024.0 * 1024.0,
        'M' => 1024.0,
        'G' => 1.0,
        'T' => 1.0 / 1024.0,
        _ => return None,
    };
    let gib = (n / per_gib).ceil();
    (gib.is_finite() && gib >= 0.0 && gib <= f64::from(u32::MAX)).then_some(gib as u32)
}

fn strip_one_newline(s: &str) -> String {
    s.strip_suffix('\n').unwrap_or(s).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    Running,
    Stopped,
    /// Anything else PVE might report (defensive).
    Unknown,
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtStatus {
    pub status: CtState,
    /// Hostname, or `CT<vmid>`.
    pub name: Option<String>,
    /// Present only when set.
    pub lock: Option<String>,
    pub tags: Vec<String>,
    pub uptime: u64,
    pub template: bool,
    /// The rootfs size in bytes (the volume's, so a finished resize shows in it).
    pub maxdisk: Option<u64>,
}

impl CtStatus {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let status = match v.get("status")?.as_str()? {
            "running" => CtState::Running,
            "stopped" => CtState::Stopped,
            _ => CtState::Unknown,
        };
        Some(CtStatus {
            status,
            name: v_str(v, "name"),
            lock: v_str(v, "lock").filter(|l| !l.is_empty()),
            tags: v_str(v, "tags").map(|t| split_tags(&t)).unwrap_or_default(),
            uptime: v_u64(v, "uptime").unwrap_or(0),
            template: v_bool(v, "template"),
            maxdisk: v_u64(v, "maxdisk"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddress {
    pub ip_address: String,
    /// `inet` or `inet6`.
    pub ip_address_type: String,
    pub prefix: Option<u8>,
}

/// One element of `GET .../interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub hwaddr: Option<String>,
    /// `a.b.c.d/nn` (PVE 8.1+, only the last IPv4 address is kept).
    pub inet: Option<String>,
    /// PVE 8.4+ (`ip-addresses`); empty on older versions.
    pub ip_addresses: Vec<IpAddress>,
}

impl Interface {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let ip_addresses = v
            .get("ip-addresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some(IpAddress {
                            ip_address: v_str(e, "ip-address")?,
                            ip_address_type: v_str(e, "ip-address-type").unwrap_or_default(),
                            prefix: v_u64(e, "prefix").and_then(|p| u8::try_from(p).ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Interface {
            name: v_str(v, "name")?,
            hwaddr: v_str(v, "hwaddr").or_else(|| v_str(v, "hardware-address")),
            inet: v_str(v, "inet"),
            ip_addresses,
        })
    }

    /// IPv4 addresses of this interface: `ip-addresses` (8.4+), falling back to `inet` (8.1+).
    pub fn ipv4s(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .ip_addresses
            .iter()
            .filter(|a| a.ip_address_type == "inet")
            .filter_map(|a| a.ip_address.parse().ok())
            .collect();
        if out.is_empty()
            && let Some(ip) = self
                .inet
                .as_deref()
                .and_then(|s| s.split('/').next()?.parse().ok())
        {
            out.push(ip);
        }
        out
    }
}

/// The container's IPv4 address: the first IPv4 on a non-`lo` interface (optionally the one
/// with `hwaddr`), skipping link-local 169.254/16. Note the simulator hands out 127.x.y.z.
pub fn primary_ipv4(ifaces: &[Interface], hwaddr: Option<&str>) -> Option<Ipv4Addr> {
    ifaces
        .iter()
        .filter(|i| i.name != "lo")
        .filter(|i| match (hwaddr, i.hwaddr.as_deref()) {
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
            _ => true,
        })
        .flat_map(|i| i.ipv4s())
        .find(|ip| !ip.is_link_local() && !ip.is_unspecified())
}

/// How a task ended. `OK` and `WARNINGS: n` are success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskExit {
    Ok,
    Warnings(u32),
    /// The error text (the `TASK ERROR: <msg>` line), e.g. `clone failed: ...`.
    Error(String),
}

impl TaskExit {
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s == "OK" {
            return TaskExit::Ok;
        }
        if let Some(n) = s.strip_prefix("WARNINGS:") {
            return TaskExit::Warnings(n.trim().parse().unwrap_or(0));
        }
        TaskExit::Error(s.to_string())
    }

    pub fn is_success(&self) -> bool {
        !matches!(self, TaskExit::Error(_))
    }

    /// `Ok(())` on success, else the classified error (same classification as HTTP 500
    /// messages; e.g. `clone failed: cfs-lock ... got lock request timeout` is Transient).
    pub fn into_result(self, endpoint: &'static str) -> Result<(), crate::PveError> {
        match self {
            TaskExit::Error(e) => Err(crate::PveError::task(endpoint, e)),
            _ => Ok(()),
        }
    }
}

/// The state of a task at the moment of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub running: bool,
    /// Set once `status == "stopped"`.
    pub exit: Option<TaskExit>,
    /// True when PVE answered 400 `no such task`: the task log is not visible yet right after
    /// dispatch. Reported as `running: true`; poll again. (If it persists for long, the caller's
    /// deadline decides.)
    pub not_visible_yet: bool,
}

impl TaskStatus {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let running = v.get("status")?.as_str()? == "running";
        let exit = if running {
            None
        } else {
            v_str(v, "exitstatus").map(|e| TaskExit::parse(&e))
        };
        // A stopped task without exitstatus: PVE writes `unexpected status` in that case.
        let exit = if running {
            None
        } else {
            Some(exit.unwrap_or_else(|| TaskExit::Error("unexpected status".into())))
        };
        Some(TaskStatus {
            running,
            exit,
            not_visible_yet: false,
        })
    }
}

/// One element of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub upid: String,
    /// `vzclone`, `vzstart`, ...
    pub kind: String,
    /// The task's `id` (for LXC tasks the vmid; for a clone the SOURCE vmid).
    pub id: String,
    /// Its exit status (`OK`, an error) once it ended; `None` while it runs (quirk: PVE lists an
    /// active task with `status: "RUNNING"`, read here as no exit status).
    pub status: Option<String>,
    pub endtime: Option<u64>,
}

impl TaskEntry {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        Some(TaskEntry {
            upid: v_str(v, "upid")?,
            kind: v_str(v, "type").unwrap_or_default(),
            id: v_str(v, "id").unwrap_or_default(),
            status: v_str(v, "status").filter(|s| !s.is_empty() && s != "RUNNING"),
            endtime: v_u64(v, "endtime"),
        })
    }

    /// Running as far as the listing tells: no end time and no exit status yet.
    pub fn running(&self) -> bool {
        self.endtime.is_none() && self.status.is_none()
    }
}

/// Which tasks `GET /nodes/{node}/tasks` lists (the schema's `source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskSource {
    /// The tasks running now.
    #[default]
    Active,
    /// Finished tasks (PVE's default).
    Archive,
    All,
}

/// The filters of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    pub source: TaskSource,
    /// One task type, e.g. `vzclone`.
    pub typefilter: Option<String>,
    pub vmid: Option<u32>,
    /// UNIX epoch.
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

impl TaskFilter {
    /// Every task running on the node. PVE pages at 50 by default; 10 000 covers any node.
    pub fn active() -> Self {
        TaskFilter {
            source: TaskSource::Active,
            limit: Some(10_000),
            ..TaskFilter::default()
        }
    }

    /// Every task started at or after `starttime` (PVE's clock, Unix seconds), running or
    /// ended (with its exit status), up to 10 000.
    pub fn since(starttime: i64) -> Self {
        TaskFilter {
            source: TaskSource::All,
            since: Some(starttime),
            ..TaskFilter::active()
        }
    }
}

// ---------- requests ----------

/// `POST /nodes/{node}/lxc/{vmid}/clone`. Clone takes no cores/memory/net/tags: set them with
/// a config PUT after the task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRequest {
    pub newid: u32,
    pub hostname: Option<String>,
    pub description: Option<String>,
    /// Unset: PVE makes a linked clone of a template, a full one otherwise. zlh always sets
    /// it (the template's `clone` mode).
    pub full: Option<bool>,
    /// Only for full clones (PVE: `parameter 'storage' not allowed for linked clones`).
    pub storage: Option<String>,
    pub pool: Option<String>,
}

/// `PUT /nodes/{node}/lxc/{vmid}/config` (synchronous).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    pub cores: Option<u32>,
    /// MiB, minimum 16.
    pub memory: Option<u64>,
    /// MiB.
    pub swap: Option<u64>,
    /// Replaces the tag list; `Some(vec![])` clears it (sent as `delete=tags`).
    pub tags: Option<Vec<String>>,
    pub description: Option<String>,
    pub hostname: Option<String>,
    /// Raw property string, e.g. `name=eth0,bridge=vmbr0,ip=dhcp`.
    pub net0: Option<String>,
    pub onboot: Option<bool>,
    /// The digest read with the config: PVE refuses the write if the file changed since.
    pub digest: Option<String>,
    /// Keys to remove.
    pub delete: Vec<String>,
}

/// `DELETE /nodes/{node}/lxc/{vmid}` options (sent in the query string).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOptions {
    pub purge: bool,
    /// Stop the CT first if running.
    pub force: bool,
    pub destroy_unreferenced_disks: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_listing_entries_tell_running_from_ended() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "an active task: PVE writes status RUNNING and no endtime",
                r#"{"upid":"UPID:pve:1:2:3:vzclone:900:root@pam:","type":"vzclone","id":"900","status":"RUNNING"}"#,
                true,
            ),
            (
                "an active task without a status at all",
                r#"{"upid":"UPID:pve:1:2:3:vzclone:900:root@pam:","type":"vzclone","id":"900"}"#,
                true,
            ),
            (
                "an archived task: its exit status and endtime",
                r#"{"upid":"UPID:pve:1:2:3:vzclone:900:root@pam:","type":"vzclone","id":"900","status":"OK","endtime":1700000000}"#,
                false,
            ),
        ];
        for (why, json, running) in cases {
            let v: Value = serde_json::from_str(json).unwrap();
            let e = TaskEntry::from_value(&v).expect(why);
            assert_eq!(e.running(), *running, "{why}");
        }
    }

    #[test]
    fn volume_sizes_read_in_gib() {
        let cases: &[(&str, &str, Option<u32>)] = &[
            (
                "PVE's usual form",
                "local-lvm:vm-101-disk-0,size=8G",
                Some(8),
            ),
            (
                "megabytes round up",
                "local:101/vm-101-disk-0.raw,size=512M",
                Some(1),
            ),
            ("terabytes", "tank:subvol-101-disk-0,size=1T", Some(1024)),
            ("no size: unknown", "local-lvm:vm-101-disk-0", None),
            ("a bare number is bytes", "x:y,size=1073741824", Some(1)),
            ("an unknown unit is unknown", "x:y,size=8Q", None),
        ];
        for (why, vol, want) in cases {
            assert_eq!(volume_size_gib(vol), *want, "{why}");
        }
    }

    #[test]
    fn resource_listing_is_read_leniently() {
        let lxc = |vmid: u32, status: &str| ClusterResource {
            vmid,
            node: "pve1".into(),
            kind: GuestType::Lxc,
            status: status.into(),
            name: Some("mc-1".into()),
            tags: vec!["zlh".into(), "zlh-x".into()],
            lock: None,
            template: false,
            usage: Usage::default(),
        };
        let cases: &[(&str, &str, Option<ClusterResource>)] = &[
            (
                "the documented shape, its metrics read, others (maxcpu) skipped",
                r#"{"vmid":101,"node":"pve1","type":"lxc","status":"running","name":"mc-1","tags":"zlh;zlh-x","template":0,"maxmem":1024,"mem":512,"cpu":0.1,"maxcpu":2,"disk":7,"maxdisk":9,"netin":3,"netout":4,"uptime":60,"id":"lxc/101"}"#,
                Some(ClusterResource {
                    usage: Usage {
                        cpu: 0.1,
                        mem: 512,
                        maxmem: 1024,
                        disk: 7,
                        maxdisk: 9,
                        netin: 3,
                        netout: 4,
                        uptime: 60,
                    },
                    ..lxc(101, "running")
                }),
            ),
            (
                "metrics rendered as strings read the same; a negative cpu reads as 0",
                r#"{"vmid":105,"node":"pve1","type":"lxc","status":"running","name":"mc-1","tags":"zlh;zlh-x","cpu":"-1","mem":"512","uptime":"60"}"#,
                Some(ClusterResource {
                    usage: Usage {
                        mem: 512,
                        uptime: 60,
                        ..Usage::default()
                    },
                    ..lxc(105, "running")
                }),
            ),
            (
                "Perl renders numbers as strings: vmid \"101\" is still 101",
                r#"{"vmid":"101","node":"pve1","type":"lxc","status":"running","name":"mc-1","tags":"zlh,zlh-x","template":"0"}"#,
                Some(lxc(101, "running")),
            ),
            (
                "a just-created CT has no status or name yet (RRD lag): unknown, not stopped",
                r#"{"vmid":102,"node":"pve1","type":"lxc","tags":"zlh zlh-x","lock":"create"}"#,
                Some(ClusterResource {
                    name: None,
                    lock: Some("create".into()),
                    ..lxc(102, "unknown")
                }),
            ),
            (
                "an empty lock is no lock",
                r#"{"vmid":103,"node":"pve1","type":"lxc","status":"stopped","name":"mc-1","tags":"zlh;zlh-x","lock":""}"#,
                Some(lxc(103, "stopped")),
            ),
            (
                "a template (boolean or 0/1) is flagged, so it is never taken for a server",
                r#"{"vmid":9000,"node":"pve1","type":"qemu","status":"stopped","template":true}"#,
                Some(ClusterResource {
                    kind: GuestType::Qemu,
                    name: None,
                    tags: vec![],
                    template: true,
                    ..lxc(9000, "stopped")
                }),
            ),
            (
                "an entry without a vmid says nothing usable: skipped, not an error",
                r#"{"node":"pve1","type":"lxc","status":"running"}"#,
                None,
            ),
            (
                "an object where a scalar belongs reads as absent",
                r#"{"vmid":104,"node":{"x":1},"type":"lxc"}"#,
                None,
            ),
        ];
        for (why, json, want) in cases {
            let wire: WireResource = serde_json::from_str(json).expect(why);
            assert_eq!(&wire.into_resource(), want, "{why}");
        }
    }
}
