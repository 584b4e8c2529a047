//! LXC container handlers: clone, config, status, start/stop/reboot, delete, interfaces.

use super::SimEndpoint;
use super::response::{ok, pve_error};
use super::storage::{Rootfs, SizeArg, StorageKind};
use super::tasks::{NewTask, push_task};
use super::wording::{
    E_FULL_CLONE_RUNNING, E_MODIFIED, E_NO_OPTIONS, E_SAME_SIZE, E_SHRINK, E_STORAGE_LINKED,
    E_TEMPLATE_START, e_config_missing, e_exists, e_locked, e_no_disk, e_no_linked_clone,
    e_no_snapshot, e_no_storage,
};
use super::{CloneMode, Ct, Effect, Reboot, Shared};
use crate::request::Endpoint;
use axum::response::Response;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) fn new_ct(vmid: u32, node: &str, hostname: &str, now: Instant) -> Ct {
    let mut ct = Ct {
        vmid,
        node: node.into(),
        hostname: hostname.into(),
        description: None,
        tags: vec![],
        running: false,
        lock: None,
        template: false,
        cores: 1,
        memory: 512,
        swap: 512,
        onboot: false,
        net0: format!(
            "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
            random_mac()
        ),
        rootfs: Rootfs {
            volid: StorageKind::LvmThin.volid("local-lvm", vmid, false),
            bytes: 8 << 30,
        },
        digest: String::new(),
        created: now,
        preexisting: false,
        started_at: None,
    };
    touch(&mut ct, 0);
    ct
}

pub(crate) fn random_mac() -> String {
    // Locally administered unicast, like PVE's generated addresses (BC:24:11 is Proxmox's OUI).
    let b: [u8; 3] = rand::random();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// Quirk: the digest changes on every write.
pub(crate) fn touch(ct: &mut Ct, counter: u64) {
    let mut h = Sha256::new();
    h.update(format!("{ct:?}{counter}{}", rand::random::<u64>()).as_bytes());
    ct.digest = hex::encode(h.finalize())[..40].to_string();
}

pub(crate) fn with_ct(
    sh: &Shared,
    node: &str,
    vmid: u32,
    f: impl FnOnce(&Ct) -> Response,
) -> Response {
    let st = sh.state.lock().unwrap();
    match st.cts.get(&vmid).filter(|c| c.node == node) {
        Some(ct) => f(ct),
        // Also what PVE says when the CT lives on another node.
        None => pve_error(500, &e_config_missing(node, vmid)),
    }
}

pub(crate) fn tags_str(tags: &[String]) -> String {
    tags.join(";")
}

pub(crate) fn config_json(ct: &Ct) -> Value {
    let mut m = json!({
        "arch": "amd64",
        "cores": ct.cores,
        "memory": ct.memory,
        "swap": ct.swap,
        "hostname": ct.hostname,
        "net0": ct.net0,
        "ostype": "debian",
        "rootfs": ct.rootfs.line(),
        "unprivileged": 1,
        "digest": ct.digest,
    });
    if let Some(d) = &ct.description {
        // Quirk: stored as `#` comment lines, read back with a trailing newline.
        m["description"] = json!(format!("{d}\n"));
    }
    if !ct.tags.is_empty() {
        m["tags"] = json!(tags_str(&ct.tags));
    }
    if ct.onboot {
        m["onboot"] = json!(1);
    }
    if ct.template {
        m["template"] = json!(1);
    }
    if let Some(l) = &ct.lock {
        m["lock"] = json!(l);
    }
    m
}

pub(crate) fn status_json(ct: &Ct, now: Instant) -> Value {
    let mut m = json!({
        "vmid": ct.vmid,
        "type": "lxc",
        "status": if ct.running { "running" } else { "stopped" },
        "name": ct.hostname,
        "cpus": ct.cores,
        "maxmem": ct.memory * 1024 * 1024,
        "swap": 0,
        "maxswap": ct.swap * 1024 * 1024,
        "maxdisk": ct.rootfs.bytes,
        "diskread": 0, "diskwrite": 0,
        "ha": {"managed": 0},
    });
    // The same usage as the listings report.
    m.as_object_mut().expect("object").extend(usage(ct, now));
    if ct.running {
        m["pid"] = json!(10_000 + ct.vmid);
    }
    // Quirk: tags, template (only as 1) and lock appear only when set.
    if !ct.tags.is_empty() {
        m["tags"] = json!(tags_str(&ct.tags));
    }
    if ct.template {
        m["template"] = json!(1);
    }
    if let Some(l) = &ct.lock {
        m["lock"] = json!(l);
    }
    m
}

pub(crate) fn clone(
    sh: &Shared,
    node: &str,
    source: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let newid: u32 = params
        .get("newid")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let storage = params.get("storage");
    // Order as PVE's `clone_vm`: the target storage, the source's `disk` lock, the new
    // config, then the mode checks (which undo both locks when they fail).
    if let Some(sid) = storage
        && sh.storage(sid).is_none()
    {
        return pve_error(500, &e_no_storage(sid));
    }
    let mut st = sh.state.lock().unwrap();
    let Some(src) = st.cts.get(&source).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, source));
    };
    // 1. lock the source `disk` (a second clone of the same template fails here).
    if let Some(l) = &src.lock {
        return pve_error(500, &e_locked(l));
    }
    // 2. the new id must be free, cluster-wide.
    if let Some(existing) = st.cts.get(&newid) {
        return pve_error(500, &e_exists(newid, &existing.node));
    }
    // 3. the mode: `full` absent means linked for a template, full for a normal CT.
    let mode = match params.get("full").map(String::as_str) {
        Some("1") => CloneMode::Full,
        Some(_) => CloneMode::Linked,
        None if src.template => CloneMode::Linked,
        None => CloneMode::Full,
    };
    if storage.is_some() && mode == CloneMode::Linked {
        return pve_error(500, E_STORAGE_LINKED);
    }
    // The simulator keeps no snapshots.
    if let Some(snap) = params.get("snapname") {
        return pve_error(500, &e_no_snapshot(snap));
    }
    let src_kind = sh.storage(src.rootfs.storage()).map(|s| s.kind);
    match mode {
        // Quirk: only a base (template) volume on a snapshot-capable storage can be
        // cloned linked, so `full=0` on a normal CT fails here too.
        CloneMode::Linked if !src.template || !src_kind.is_some_and(StorageKind::linked_clones) => {
            return pve_error(500, &e_no_linked_clone(&src.rootfs.volid));
        }
        CloneMode::Full if src.running => return pve_error(500, E_FULL_CLONE_RUNNING),
        CloneMode::Linked | CloneMode::Full => {}
    }
    if let Some(t) = params.get("target")
        && t != node
    {
        return pve_error(
            500,
            &format!("can't clone CT to node '{t}' (CT uses local storage)"),
        );
    }
    *sh.counters
        .lock()
        .unwrap()
        .clone_calls
        .entry(newid)
        .or_default() += 1;
    st.cts.get_mut(&source).expect("checked").lock = Some("disk".into());
    // 3. new config: lock `create`, a new random MAC, hostname/description from the request.
    let hostname = params
        .get("hostname")
        .cloned()
        .unwrap_or_else(|| src.hostname.clone());
    let mut ct = new_ct(newid, node, &hostname, now);
    ct.description = params
        .get("description")
        .map(|d| d.trim_end_matches('\n').to_string())
        .or(src.description);
    ct.tags = src.tags.clone();
    ct.cores = src.cores;
    ct.memory = src.memory;
    ct.swap = src.swap;
    ct.lock = Some("create".into());
    let target_sid = storage.map_or(src.rootfs.storage(), String::as_str);
    let target_kind = sh
        .storage(target_sid)
        .map_or(StorageKind::LvmThin, |s| s.kind);
    ct.rootfs = Rootfs {
        volid: match mode {
            CloneMode::Full => target_kind.volid(target_sid, newid, false),
            CloneMode::Linked => target_kind.linked_volid(target_sid, source, newid),
        },
        bytes: src.rootfs.bytes,
    };
    st.cts.insert(newid, ct);
    let dur = match mode {
        CloneMode::Full => sh.cfg.timings.clone,
        CloneMode::Linked => sh.cfg.timings.linked_clone,
    };
    // Quirk: the clone task's UPID names the SOURCE vmid.
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::CLONE,
            task_type: "vzclone",
            id: source,
            node,
            effect: Effect::Clone {
                source,
                newid,
                mode,
                volid: src.rootfs.volid.clone(),
            },
            duration: dur,
            error: None,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

pub(crate) fn config_put(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get_mut(&vmid).filter(|c| c.node == node) else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    // Order as PVE: lock the file, load, check_lock, then the digest.
    if let Some(l) = &ct.lock {
        return pve_error(500, &e_locked(l));
    }
    if let Some(d) = params.get("digest")
        && *d != ct.digest
    {
        return pve_error(500, E_MODIFIED);
    }
    if params.keys().all(|k| k == "digest") {
        return pve_error(500, E_NO_OPTIONS);
    }
    for (k, v) in params {
        match k.as_str() {
            "cores" => ct.cores = v.parse().unwrap_or(ct.cores),
            "memory" => ct.memory = v.parse().unwrap_or(ct.memory),
            "swap" => ct.swap = v.parse().unwrap_or(ct.swap),
            "onboot" => ct.onboot = v == "1",
            "hostname" => ct.hostname = v.clone(),
            "description" => ct.description = Some(v.trim_end_matches('\n').to_string()),
            "net0" => ct.net0 = v.clone(),
            "tags" => {
                // Quirk: split on [;, ], lower-cased, sorted, de-duplicated, `;`-joined.
                let mut t: Vec<String> = crate::types::split_tags(v)
                    .into_iter()
                    .map(|t| t.to_lowercase())
                    .collect();
                t.sort();
                t.dedup();
                ct.tags = t;
            }
            _ => {}
        }
    }
    if let Some(del) = params.get("delete") {
        for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            match k {
                "tags" => ct.tags.clear(),
                "description" => ct.description = None,
                "onboot" => ct.onboot = false,
                _ => {}
            }
        }
    }
    touch(ct, 2);
    // Synchronous: `{"data":null}`.
    ok(Value::Null)
}

pub(crate) fn start(sh: &Shared, node: &str, vmid: u32, now: Instant) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if ct.running {
        return pve_error(500, &format!("CT {vmid} already running"));
    }
    sh.counters.lock().unwrap().start_calls += 1;
    // The lock and template checks run inside the task.
    let err = if let Some(l) = &ct.lock {
        Some(e_locked(l))
    } else if ct.template {
        Some(E_TEMPLATE_START.to_string())
    } else {
        None
    };
    let dur = sh.cfg.timings.start;
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::START,
            task_type: "vzstart",
            id: vmid,
            node,
            effect: Effect::Start { vmid },
            duration: dur,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

pub(crate) fn stop(
    sh: &Shared,
    endpoint: &'static str,
    node: &str,
    vmid: u32,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if !ct.running {
        return pve_error(500, &format!("CT {vmid} not running"));
    }
    let err = ct.lock.as_ref().map(|l| e_locked(l));
    let (ty, dur) = if endpoint == Endpoint::STOP {
        ("vzstop", sh.cfg.timings.stop)
    } else {
        ("vzshutdown", sh.cfg.timings.shutdown)
    };
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint,
            task_type: ty,
            id: vmid,
            node,
            effect: Effect::Stop { vmid },
            duration: dur,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

/// docs/proxmox-api.md §2: checks only that the CT runs, then one `vzreboot` task shuts it
/// down (killed after `timeout`) and starts it again, with the events and IP delay of a start.
pub(crate) fn reboot(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if !ct.running {
        // Quirk: `VM`, not `CT`, in this one message.
        return pve_error(500, &format!("VM {vmid} not running"));
    }
    let t = &sh.cfg.timings;
    let mut down = t.shutdown;
    if let Some(secs) = params.get("timeout").and_then(|v| v.parse().ok()) {
        down = down.min(Duration::from_secs(secs));
    }
    // PVE checks no lock at dispatch; the start half refuses a locked CT, as `start` does.
    let err = ct.lock.as_ref().map(|l| e_locked(l));
    let effect = Effect::Reboot(Reboot {
        vmid,
        down_at: now + sh.scaled(down),
        was_up: None,
    });
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::REBOOT,
            task_type: "vzreboot",
            id: vmid,
            node,
            effect,
            duration: down + t.start,
            error: err,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

pub(crate) fn delete(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if let Some(l) = &ct.lock {
        return pve_error(500, &e_locked(l));
    }
    let force = params.get("force").is_some_and(|v| v == "1");
    if ct.running && !force {
        return pve_error(
            500,
            &format!("unable to destroy CT {vmid} - container is running"),
        );
    }
    sh.counters.lock().unwrap().destroy_calls += 1;
    st.cts.get_mut(&vmid).expect("checked").lock = Some("destroyed".into());
    let dur = sh.cfg.timings.destroy;
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: Endpoint::DELETE,
            task_type: "vzdestroy",
            id: vmid,
            node,
            effect: Effect::Destroy { vmid },
            duration: dur,
            error: None,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

pub(crate) fn interfaces(sh: &Shared, node: &str, vmid: u32, now: Instant) -> Response {
    let ip = sh.ip_for(vmid);
    let ip_ready = sh.scaled(sh.cfg.timings.ip_delay);
    with_ct(sh, node, vmid, |ct| {
        let Some(started) = ct.started_at.filter(|_| ct.running) else {
            // Quirk: null while the CT is not running.
            return ok(Value::Null);
        };
        let hw = crate::types::NetConfig::parse(&ct.net0)
            .hwaddr
            .unwrap_or_default()
            .to_lowercase();
        let lo = json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "hardware-address": "00:00:00:00:00:00",
            "inet": "127.0.0.1/8", "inet6": "::1/128",
            "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8},
                             {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}]});
        let mut eth0 = json!({"name": "eth0", "hwaddr": hw, "hardware-address": hw,
            "inet6": "fe80::be24:11ff:fe00:1/64",
            "ip-addresses": [{"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "inet6", "prefix": 64}]});
        if now.saturating_duration_since(started) >= ip_ready {
            // Both shapes: `inet` (8.1+) and `ip-addresses` (8.4+).
            eth0["inet"] = json!(format!("{ip}/8"));
            eth0["ip-addresses"].as_array_mut().expect("array").insert(
                0,
                json!({"ip-address": ip.to_string(), "ip-address-type": "inet", "prefix": 8}),
            );
        }
        ok(json!([lo, eth0]))
    })
}

/// `resize_vm`: the checks run before the worker forks (and again inside it, under the
/// config flock, so of two racing grows to one size the second fails in its task); the
/// worker writes the new size. No config `lock` is set.
pub(crate) fn resize(
    sh: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let mut st = sh.state.lock().unwrap();
    let Some(ct) = st.cts.get(&vmid).filter(|c| c.node == node).cloned() else {
        return pve_error(500, &e_config_missing(node, vmid));
    };
    if let Some(l) = &ct.lock {
        return pve_error(500, &e_locked(l));
    }
    if let Some(d) = params.get("digest")
        && *d != ct.digest
    {
        return pve_error(500, E_MODIFIED);
    }
    let disk = params.get("disk").map_or("", String::as_str);
    if disk != "rootfs" {
        return pve_error(500, &e_no_disk(disk));
    }
    let Some(arg) = params.get("size").and_then(|v| SizeArg::parse(v)) else {
        return pve_error(500, "invalid size string");
    };
    let bytes = match arg.relative {
        true => ct.rootfs.bytes.saturating_add(arg.bytes),
        false => arg.bytes,
    };
    if let Some(e) = resize_refusal(ct.rootfs.bytes, bytes) {
        return pve_error(500, e);
    }
    let upid = push_task(
        sh,
        &mut st,
        NewTask {
            endpoint: SimEndpoint::RESIZE,
            task_type: "resize",
            id: vmid,
            node,
            effect: Effect::Resize { vmid, bytes },
            duration: sh.cfg.timings.resize,
            error: None,
        },
        now,
    );
    ok(json!(upid.to_string()))
}

/// Why a volume of `current` bytes cannot become `new` bytes, if it cannot.
pub(crate) fn resize_refusal(current: u64, new: u64) -> Option<&'static str> {
    match new.cmp(&current) {
        std::cmp::Ordering::Less => Some(E_SHRINK),
        std::cmp::Ordering::Equal => Some(E_SAME_SIZE),
        std::cmp::Ordering::Greater => None,
    }
}

/// A CT's live usage, as `status/current`, `GET /nodes/{node}/lxc` and cluster/resources
/// report it: made up but steady for a running CT (a tenth of each core busy, a quarter of its
/// memory, a gigabyte of disk, traffic growing with uptime); zeros for a stopped one, as PVE.
pub(crate) fn usage(ct: &Ct, now: Instant) -> Map<String, Value> {
    let uptime = ct
        .started_at
        .filter(|_| ct.running)
        .map(|s| now.saturating_duration_since(s).as_secs())
        .unwrap_or(0);
    let mut m = Map::new();
    m.insert("uptime".into(), json!(uptime));
    if ct.running {
        m.insert("cpu".into(), json!(f64::from(ct.cores) * 0.1));
        m.insert("mem".into(), json!(ct.memory * 1024 * 1024 / 4));
        m.insert("disk".into(), json!((1u64 << 30).min(ct.rootfs.bytes)));
        m.insert("netin".into(), json!(SIM_NET_BYTES_PER_SEC * (uptime + 1)));
        m.insert(
            "netout".into(),
            json!(2 * SIM_NET_BYTES_PER_SEC * (uptime + 1)),
        );
    } else {
        for k in ["cpu", "mem", "disk", "netin", "netout"] {
            m.insert(k.into(), json!(0));
        }
    }
    m
}

/// The simulated traffic of a running CT (`netin`; `netout` is twice this).
pub(crate) const SIM_NET_BYTES_PER_SEC: u64 = 4096;
