//! Cluster-wide and node handlers: version, cluster/resources, nextid.

use super::Shared;
use super::lxc::*;
use super::response::*;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

pub(crate) fn release(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The simulated traffic of a running CT (`netin`; `netout` is twice this).
pub(crate) const SIM_NET_BYTES_PER_SEC: u64 = 4096;

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
                "maxdisk": 8u64 << 30,
            });
            // Quirk: name/status/template come from the RRD broadcast (~10 s lag); a fresh CT
            // shows status "unknown" and no name. tags and lock are read from the config.
            if !ct.preexisting && now.saturating_duration_since(ct.created) < lag {
                m["status"] = json!("unknown");
            } else {
                m["status"] = json!(if ct.running { "running" } else { "stopped" });
                m["name"] = json!(ct.hostname);
                m["template"] = json!(ct.template as u8);
                let uptime = ct
                    .started_at
                    .map(|s| now.saturating_duration_since(s).as_secs())
                    .unwrap_or(0);
                m["uptime"] = json!(uptime);
                // A running CT's metrics, made up but steady: a tenth of each core busy, a
                // quarter of its memory, a gigabyte of disk, traffic growing with uptime.
                // A stopped one reports zeros, as PVE does.
                if ct.running {
                    m["cpu"] = json!(f64::from(ct.cores) * 0.1);
                    m["mem"] = json!(ct.memory * 1024 * 1024 / 4);
                    m["disk"] = json!(1u64 << 30);
                    m["netin"] = json!(SIM_NET_BYTES_PER_SEC * (uptime + 1));
                    m["netout"] = json!(2 * SIM_NET_BYTES_PER_SEC * (uptime + 1));
                } else {
                    for k in ["cpu", "mem", "disk", "netin", "netout"] {
                        m[k] = json!(0);
                    }
                }
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
