//! Cluster-wide and node handlers: version, cluster/resources, nextid, the node list and a
//! node's container list.

use super::Shared;
use super::lxc::{tags_str, usage};
use super::response::{ok, one_param_error};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

pub(crate) fn release(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

pub(crate) fn cluster_resources(sh: &Shared, now: Instant) -> Response {
    let lag = sh.scaled(sh.cfg.timings.resources_lag);
    let st = sh.state.lock().unwrap();
    let list: Vec<Value> = st
        .cts
        .values()
        .map(|ct| {
            let mut m = json!({
                "id": format!("lxc/{}", ct.vmid),
                "vmid": ct.vmid,
                "node": ct.node,
                "type": "lxc",
                "maxcpu": ct.cores,
                "maxmem": ct.memory * 1024 * 1024,
                "maxdisk": ct.rootfs.bytes,
            });
            // Quirk: name/status/template come from the RRD broadcast (~10 s lag); a fresh CT
            // shows status "unknown" and no name. tags and lock are read from the config.
            if !ct.preexisting && now.saturating_duration_since(ct.created) < lag {
                m["status"] = json!("unknown");
            } else {
                m["status"] = json!(if ct.running { "running" } else { "stopped" });
                m["name"] = json!(ct.hostname);
                m["template"] = json!(ct.template as u8);
                m.as_object_mut().expect("object").extend(usage(ct, now));
            }
            if !ct.tags.is_empty() {
                m["tags"] = json!(tags_str(&ct.tags));
            }
            if let Some(l) = &ct.lock {
                m["lock"] = json!(l);
            }
            m
        })
        .collect();
    ok(Value::Array(list))
}

pub(crate) fn next_id(sh: &Shared, params: &BTreeMap<String, String>) -> Response {
    let st = sh.state.lock().unwrap();
    if let Some(v) = params.get("vmid") {
        let vmid: u32 = v.parse().unwrap_or(0);
        if st.cts.contains_key(&vmid) {
            // Quirk: 400 with an errors map, and the text says VM even for a CT.
            return one_param_error("vmid", format!("VM {vmid} already exists"));
        }
        return ok(json!(vmid.to_string()));
    }
    let mut id = 100u32;
    while st.cts.contains_key(&id) {
        id += 1;
    }
    // Quirk: nextid is a string.
    ok(json!(id.to_string()))
}

/// The simulated host of every node, as `GET /nodes` reports it. Sized like a mid-range game
/// host; the simulator never refuses work for lack of it.
const NODE_CPUS: u32 = 32;
const NODE_MEM_BYTES: u64 = 128 << 30;

/// `GET /nodes`: every node online, its load the sum of its running CTs'.
pub(crate) fn node_list(sh: &Shared, now: Instant) -> Response {
    let st = sh.state.lock().unwrap();
    let uptime = now.saturating_duration_since(sh.epoch).as_secs();
    let list: Vec<Value> = sh
        .cfg
        .nodes
        .iter()
        .map(|n| {
            let running = || st.cts.values().filter(|c| c.node == *n && c.running);
            let cpu: f64 = running().map(|c| f64::from(c.cores) * 0.1).sum();
            let mem: u64 = running().map(|c| c.memory * 1024 * 1024 / 4).sum();
            json!({
                "id": format!("node/{n}"), "node": n, "type": "node", "status": "online",
                "cpu": cpu / f64::from(NODE_CPUS), "maxcpu": NODE_CPUS,
                "mem": mem, "maxmem": NODE_MEM_BYTES,
                "uptime": uptime, "level": "",
            })
        })
        .collect();
    ok(Value::Array(list))
}

/// `GET /nodes/{node}/lxc`: the node's CTs, live (no RRD lag: `vmstatus` reads the config and
/// the cgroups). Quirk: `vmid` is a number here since PVE 8 (a string before).
pub(crate) fn ct_list(sh: &Shared, node: &str, now: Instant) -> Response {
    let st = sh.state.lock().unwrap();
    let list: Vec<Value> = st
        .cts
        .values()
        .filter(|c| c.node == node)
        .map(|ct| {
            let mut m = json!({
                "vmid": ct.vmid, "type": "lxc", "name": ct.hostname,
                "status": if ct.running { "running" } else { "stopped" },
                "cpus": ct.cores, "maxmem": ct.memory * 1024 * 1024,
                "maxswap": ct.swap * 1024 * 1024, "maxdisk": ct.rootfs.bytes,
                "diskread": 0, "diskwrite": 0,
            });
            m.as_object_mut().expect("object").extend(usage(ct, now));
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
        })
        .collect();
    ok(Value::Array(list))
}
