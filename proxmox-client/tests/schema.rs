//! Schema conformance: every request the client can build uses only parameters the official
//! PVE schema allows for that method and path, with values of the right format.
//! The allow-list (`tests/data/pve-allowlist.json`) is derived from the schema by
//! `tests/data/gen_allowlist.py`; this test reads only the repository.

use proxmox_client::request::*;
use proxmox_client::{CloneRequest, ConfigUpdate, DeleteOptions, TaskFilter, TaskSource, Upid};
use serde_json::Value;

const ALLOWLIST: &str = include_str!("data/pve-allowlist.json");

struct Schema(Value);

impl Schema {
    fn load() -> Self {
        Schema(serde_json::from_str(ALLOWLIST).expect("allow-list parses"))
    }

    fn endpoint(&self, r: &PveRequest) -> Result<&Value, String> {
        let key = format!("{} {}", r.method.as_str(), r.schema_path);
        self.0["endpoints"]
            .get(&key)
            .ok_or_else(|| format!("{key}: not in the schema"))
    }

    /// Look a parameter up, expanding `net[n]` & co. to `net0..net31`.
    fn param<'a>(&'a self, ep: &'a Value, name: &str) -> Option<&'a Value> {
        if let Some(p) = ep["params"].get(name) {
            return Some(p);
        }
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let idx = &name[base.len()..];
        if idx.is_empty() || (idx.len() > 1 && idx.starts_with('0')) {
            return None;
        }
        let key = format!("{base}[n]");
        let max = self.0["_indexed"].get(&key)?.as_u64()?;
        let i: u64 = idx.parse().ok()?;
        if i < max {
            ep["params"].get(&key)
        } else {
            None
        }
    }

    fn validate(&self, r: &PveRequest) -> Result<(), String> {
        let ep = self.endpoint(r)?;
        let mut seen = Vec::new();
        for (k, v) in r
            .path_params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(r.params.iter().cloned())
        {
            let p = self
                .param(ep, &k)
                .ok_or_else(|| format!("{}: unknown parameter '{k}'", r.endpoint))?;
            check(p, &v).map_err(|e| format!("{}: {k}={v:?}: {e}", r.endpoint))?;
            if seen.contains(&k) {
                return Err(format!("{}: '{k}' sent twice", r.endpoint));
            }
            seen.push(k);
        }
        for (k, p) in ep["params"].as_object().unwrap() {
            if p.get("required").is_some() && !seen.contains(k) {
                return Err(format!("{}: required '{k}' missing", r.endpoint));
            }
        }
        Ok(())
    }
}

fn check(p: &Value, v: &str) -> Result<(), String> {
    match p["type"].as_str().unwrap_or("string") {
        "boolean" => {
            if v != "0" && v != "1" {
                return Err("boolean must be 0 or 1".into());
            }
        }
        "integer" => {
            let n: i64 = v.parse().map_err(|_| "not an integer".to_string())?;
            if let Some(min) = p.get("minimum").and_then(Value::as_i64)
                && n < min
            {
                return Err(format!("below minimum {min}"));
            }
            if let Some(max) = p.get("maximum").and_then(Value::as_i64)
                && n > max
            {
                return Err(format!("above maximum {max}"));
            }
        }
        "number" => {
            v.parse::<f64>().map_err(|_| "not a number".to_string())?;
        }
        "string" => {
            if let Some(max) = p.get("maxLength").and_then(Value::as_u64)
                && v.chars().count() as u64 > max
            {
                return Err(format!("longer than {max}"));
            }
        }
        t => return Err(format!("unexpected schema type {t}")),
    }
    if let Some(en) = p.get("enum").and_then(Value::as_array)
        && !en.iter().any(|e| e.as_str() == Some(v))
    {
        return Err("not in the enumeration".into());
    }
    if let Some(f) = p.get("format").and_then(Value::as_str) {
        check_format(f, v)?;
    }
    if let Some(pat) = p.get("pattern").and_then(Value::as_str) {
        check_pattern(pat, v)?;
    }
    if let Some(keys) = p.get("keys").and_then(Value::as_object) {
        // A property string: `k=v,k=v`; every key known, every value valid, required present.
        let mut present = Vec::new();
        for kv in v.split(',') {
            let (k, val) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}' is not key=value"))?;
            let sub = keys
                .get(k)
                .ok_or_else(|| format!("unknown key '{k}' in property string"))?;
            check(sub, val).map_err(|e| format!("{k}: {e}"))?;
            present.push(k.to_string());
        }
        for (k, sub) in keys {
            if sub.get("required").is_some() && !present.contains(k) {
                return Err(format!("property string lacks required key '{k}'"));
            }
        }
    }
    Ok(())
}

fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn check_format(f: &str, v: &str) -> Result<(), String> {
    let ok = match f {
        "pve-vmid" => v.parse::<u32>().is_ok(),
        "pve-node" => label_ok(v),
        "dns-name" => v.split('.').all(label_ok),
        "pve-tag-list" => v.split(';').all(proxmox_client::request::is_valid_tag),
        "pve-configid-list" => v.split(',').all(|k| {
            k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        }),
        "pve-storage-id" => {
            v.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        }
        "pve-poolid" => {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        }
        "mac-addr" => {
            let parts: Vec<&str> = v.split(':').collect();
            parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
        }
        "ipv4" => v.parse::<std::net::Ipv4Addr>().is_ok(),
        "pve-ipv4-config" => {
            v == "dhcp"
                || v == "manual"
                || v.split_once('/').is_some_and(|(ip, p)| {
                    ip.parse::<std::net::Ipv4Addr>().is_ok()
                        && p.parse::<u8>().is_ok_and(|p| p <= 32)
                })
        }
        other => {
            return Err(format!(
                "format '{other}' has no checker here: add one before sending it"
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("does not match format {f}"))
    }
}

fn check_pattern(pat: &str, v: &str) -> Result<(), String> {
    let ok = match pat {
        // bridge, name
        r"[-_.\w\d]+" => {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }
        // resize `size`: an optional `+`, a decimal, an optional unit.
        r"\+?\d+(\.\d+)?[KMGT]?" => {
            let v = v.strip_prefix('+').unwrap_or(v);
            let v = v.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(v);
            let mut parts = v.splitn(2, '.');
            let digits = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            digits(parts.next()) && parts.next().is_none_or(|f| digits(Some(f)))
        }
        other => return Err(format!("pattern '{other}' has no checker here")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("does not match pattern {pat}"))
    }
}

fn upid() -> Upid {
    "UPID:pve:0000ABCD:01234567:63DF62A5:vzclone:900:root@pam!zlh:"
        .parse()
        .unwrap()
}

/// Every builder, with every option the client supports set.
fn every_request() -> Vec<(&'static str, PveRequest)> {
    let full_clone = CloneRequest {
        newid: 123,
        hostname: Some("mc-paper-123".into()),
        description: Some("zlh:server=0190a1b2-c3d4\nline two".into()),
        full: Some(true),
        storage: Some("local-lvm".into()),
        pool: Some("zlh".into()),
    };
    let linked = CloneRequest {
        newid: 999_999_999,
        full: Some(false),
        ..CloneRequest::default()
    };
    let update = ConfigUpdate {
        cores: Some(4),
        memory: Some(4096),
        swap: Some(0),
        tags: Some(vec![
            "zlh".into(),
            "srv-0190a1b2".into(),
            "game.minecraft".into(),
        ]),
        description: Some("zlh:server=0190a1b2".into()),
        hostname: Some("mc-paper-123".into()),
        net0: Some("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth".into()),
        onboot: Some(true),
        digest: Some("a".repeat(40)),
        delete: vec!["mp0".into(), "unused1".into()],
    };
    let clear_tags = ConfigUpdate {
        tags: Some(vec![]),
        onboot: Some(false),
        ..ConfigUpdate::default()
    };
    let static_ip = ConfigUpdate {
        net0: Some("name=eth0,bridge=vmbr1,ip=127.0.5.5/24,gw=127.0.5.1,firewall=1,tag=20".into()),
        ..ConfigUpdate::default()
    };
    let all_delete = DeleteOptions {
        purge: true,
        force: true,
        destroy_unreferenced_disks: true,
    };
    vec![
        ("version", build_version()),
        (
            "cluster resources filtered to vm",
            build_cluster_resources(),
        ),
        ("next id", build_next_id()),
        ("a node's containers", build_ct_list("pve")),
        (
            "full clone with every option",
            build_clone("pve", 900, &full_clone).unwrap(),
        ),
        (
            "linked clone, max newid",
            build_clone("pve", 900, &linked).unwrap(),
        ),
        ("config get", build_config_get("pve", 123)),
        (
            "config put with every field",
            build_config_put("pve", 123, &update).unwrap(),
        ),
        (
            "config put clearing tags",
            build_config_put("pve", 123, &clear_tags).unwrap(),
        ),
        (
            "config put static ip",
            build_config_put("pve", 123, &static_ip).unwrap(),
        ),
        ("status current", build_status_current("pve", 123)),
        ("start", build_start("pve", 123)),
        ("stop", build_stop("pve", 123)),
        (
            "shutdown with timeout and forceStop",
            build_shutdown("pve", 123, Some(60), true),
        ),
        ("shutdown plain", build_shutdown("pve", 123, None, false)),
        (
            "reboot with a zero timeout",
            build_reboot("pve", 123, Some(0)),
        ),
        ("reboot plain", build_reboot("pve", 123, None)),
        (
            "delete with every option",
            build_delete("pve", 123, &all_delete),
        ),
        (
            "delete plain",
            build_delete("pve", 123, &DeleteOptions::default()),
        ),
        ("interfaces", build_interfaces("pve", 123)),
        ("task status", build_task_status(&upid())),
        ("task log", build_task_log(&upid(), 0, 500)),
        (
            "rootfs resize to an absolute size",
            build_resize("pve", 123, 32).unwrap(),
        ),
        (
            "the active tasks of a node",
            build_tasks("pve", &TaskFilter::active()).unwrap(),
        ),
        (
            "a node's tasks since the oldest one waited on",
            build_tasks("pve", &TaskFilter::since(1_700_000_000)).unwrap(),
        ),
        (
            "tasks with every filter",
            build_tasks(
                "pve",
                &TaskFilter {
                    source: TaskSource::All,
                    typefilter: Some("vzclone".into()),
                    vmid: Some(900),
                    since: Some(1_700_000_000),
                    limit: Some(50),
                },
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn every_request_conforms_to_the_schema() {
    let s = Schema::load();
    let reqs = every_request();
    let mut endpoints: Vec<&str> = reqs.iter().map(|(_, r)| r.endpoint).collect();
    endpoints.sort();
    endpoints.dedup();
    assert_eq!(
        endpoints.len(),
        Endpoint::ALL.len(),
        "every endpoint is covered"
    );
    for (reason, r) in &reqs {
        s.validate(r).unwrap_or_else(|e| panic!("{reason}: {e}"));
        assert!(
            !r.path.contains('{'),
            "{reason}: placeholders filled: {}",
            r.path
        );
    }
}

/// The client reads these answers as a UPID string (a task); the schema must agree.
#[test]
fn task_endpoints_return_a_string() {
    let s = Schema::load();
    let tasks = [
        build_clone(
            "pve",
            900,
            &CloneRequest {
                newid: 123,
                ..Default::default()
            },
        )
        .unwrap(),
        build_start("pve", 123),
        build_stop("pve", 123),
        build_shutdown("pve", 123, None, false),
        build_reboot("pve", 123, None),
        build_delete("pve", 123, &DeleteOptions::default()),
        build_resize("pve", 123, 32).unwrap(),
    ];
    for r in &tasks {
        let ep = s.endpoint(r).unwrap();
        assert_eq!(ep["returns"], "string", "{}", r.endpoint);
    }
}

#[test]
fn validator_rejects_what_pve_rejects() {
    let s = Schema::load();
    let base = build_config_put(
        "pve",
        123,
        &ConfigUpdate {
            cores: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let with = |k: &str, v: &str| {
        let mut r = base.clone();
        r.params.push((k.into(), v.into()));
        r
    };
    let rows: Vec<(&str, PveRequest)> = vec![
        ("unknown parameter", with("bogus", "1")),
        ("boolean as the string true", with("onboot", "true")),
        ("memory under its minimum of 16", with("memory", "8")),
        ("net index beyond net31", with("net32", "name=eth1")),
        (
            "net without its required name key",
            with("net1", "bridge=vmbr0"),
        ),
        (
            "unknown key in a property string",
            with("net1", "name=eth1,colour=red"),
        ),
        ("uppercase-invalid tag char", with("tags", "zlh;bad tag")),
        (
            "description longer than 8192",
            with("description", &"x".repeat(8193)),
        ),
        ("clone without newid", {
            let mut r = build_clone(
                "pve",
                900,
                &CloneRequest {
                    newid: 100,
                    ..Default::default()
                },
            )
            .unwrap();
            r.params.clear();
            r
        }),
        (
            "vmid below 100 in the path",
            build_status_current("pve", 99),
        ),
        ("resize size with a unit PVE does not know", {
            let mut r = build_resize("pve", 123, 32).unwrap();
            r.params[1].1 = "32GiB".into();
            r
        }),
        ("tasks source outside the enumeration", {
            let mut r = build_tasks("pve", &TaskFilter::active()).unwrap();
            r.params[0].1 = "running".into();
            r
        }),
        ("reboot does not take forceStop", {
            let mut r = build_reboot("pve", 123, None);
            r.params.push(("forceStop".into(), "1".into()));
            r
        }),
    ];
    for (reason, r) in rows {
        assert!(
            s.validate(&r).is_err(),
            "{reason}: validator accepted {r:?}"
        );
    }
}

#[test]
fn builders_refuse_bad_input() {
    let rows: Vec<(&str, Result<PveRequest, proxmox_client::PveError>)> = vec![
        (
            "tag with a space",
            build_config_put(
                "pve",
                123,
                &ConfigUpdate {
                    tags: Some(vec!["a b".into()]),
                    ..Default::default()
                },
            ),
        ),
        (
            "memory below 16",
            build_config_put(
                "pve",
                123,
                &ConfigUpdate {
                    memory: Some(8),
                    ..Default::default()
                },
            ),
        ),
        (
            "zero cores",
            build_config_put(
                "pve",
                123,
                &ConfigUpdate {
                    cores: Some(0),
                    ..Default::default()
                },
            ),
        ),
        (
            "hostname with underscore",
            build_clone(
                "pve",
                900,
                &CloneRequest {
                    newid: 123,
                    hostname: Some("a_b".into()),
                    ..Default::default()
                },
            ),
        ),
        ("resize to zero", build_resize("pve", 123, 0)),
        (
            "newid below 100",
            build_clone(
                "pve",
                900,
                &CloneRequest {
                    newid: 99,
                    ..Default::default()
                },
            ),
        ),
    ];
    for (reason, r) in rows {
        let e = r.expect_err(reason);
        assert_eq!(e.class, proxmox_client::ErrorClass::Invalid, "{reason}");
    }
}
