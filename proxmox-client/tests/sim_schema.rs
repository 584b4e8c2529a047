//! Schema conformance of the simulator: for every method and path of the allow-list (derived
//! from the official PVE schema, `tests/data/gen_allowlist.py`), the simulator accepts every
//! parameter the schema defines with a valid value, refuses a missing required one and an
//! undefined one with PVE's wording.
#![cfg(feature = "sim")]

use proxmox_client::sim::{PveSim, SimConfig};
use reqwest::Method;
use serde_json::Value;

const ALLOWLIST: &str = include_str!("data/pve-allowlist.json");
const UPID: &str = "UPID:pve:0000ABCD:01234567:63DF62A5:vzclone:900:root@pam!zlh:";

/// A valid value for a schema parameter, or `None` where this test cannot make one (property
/// strings, indexed keys).
fn sample(name: &str, p: &Value) -> Option<String> {
    if p.get("keys").is_some() || name.contains("[n]") {
        return None;
    }
    if let Some(e) = p["enum"].as_array() {
        return e[0].as_str().map(str::to_string);
    }
    let by_format = match p["format"].as_str() {
        Some("pve-vmid") => Some("150"),
        Some("pve-node") => Some("pve"),
        Some("dns-name") => Some("ct-150.example"),
        Some("pve-storage-id") => Some("local-lvm"),
        Some("pve-poolid") => Some("zlh"),
        Some("pve-tag-list") => Some("zlh"),
        Some("pve-configid-list") => Some("tags"),
        Some("pve-configid") => Some("snap1"),
        Some("pve-task-status-type-list") => Some("ok"),
        Some(_) => return None,
        None => None,
    };
    if let Some(v) = by_format {
        return Some(v.into());
    }
    if p["pattern"].is_string() {
        return (name == "size").then(|| "+1G".into());
    }
    Some(match p["type"].as_str().unwrap_or("string") {
        "boolean" => "0".into(),
        "integer" | "number" => p["minimum"].as_i64().unwrap_or(0).max(0).to_string(),
        _ => "x".into(),
    })
}

fn fill(path: &str) -> String {
    path.replace("{node}", "pve")
        .replace("{vmid}", "900")
        .replace("{upid}", UPID)
}

#[tokio::test]
async fn the_simulator_takes_every_schema_parameter_and_no_other() {
    let schema: Value = serde_json::from_str(ALLOWLIST).unwrap();
    let sim = PveSim::start(SimConfig::fast()).await.unwrap();
    let http = reqwest::Client::new();
    let auth = format!("PVEAPIToken={}={}", sim.token_id(), sim.token_secret());
    let send = |method: Method, path: String, params: Vec<(String, String)>| {
        let url = format!("{}/api2/json{path}", sim.url());
        let rb = http
            .request(method.clone(), url)
            .header("authorization", &auth);
        let rb = if method == Method::GET || method == Method::DELETE {
            rb.query(&params)
        } else {
            rb.form(&params)
        };
        async move {
            let r = rb.send().await.unwrap();
            let text = r.text().await.unwrap();
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
        }
    };
    let mut checked = 0;
    let mut refused = Vec::new();
    for (key, ep) in schema["endpoints"].as_object().unwrap() {
        let (m, path) = key.split_once(' ').unwrap();
        let method: Method = m.parse().unwrap();
        let params = ep["params"].as_object().unwrap();
        let in_path = |k: &str| path.contains(&format!("{{{k}}}"));
        let required: Vec<(String, String)> = params
            .iter()
            .filter(|(k, p)| p.get("required").is_some() && !in_path(k))
            .map(|(k, p)| (k.clone(), sample(k, p).expect("a required sample")))
            .collect();
        for (k, p) in params.iter().filter(|(k, _)| !in_path(k)) {
            let Some(v) = sample(k, p) else { continue };
            let mut ps: Vec<(String, String)> =
                required.iter().filter(|(r, _)| r != k).cloned().collect();
            ps.push((k.clone(), v.clone()));
            let body = send(method.clone(), fill(path), ps).await;
            if let Some(e) = body["errors"].get(k) {
                refused.push(format!("{key}: {k}={v}: {e}"));
            }
            checked += 1;
        }
        for (k, _) in &required {
            let ps = required.iter().filter(|(r, _)| r != k).cloned().collect();
            let body = send(method.clone(), fill(path), ps).await;
            assert_eq!(
                body["errors"][k], "property is missing and it is not optional",
                "{key}: without {k}"
            );
        }
        let mut ps = required.clone();
        ps.push(("bogus".into(), "1".into()));
        let body = send(method.clone(), fill(path), ps).await;
        assert_eq!(
            body["errors"]["bogus"],
            "property is not defined in schema and the schema does not allow additional properties",
            "{key}: an undefined parameter"
        );
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    assert!(checked > 60, "parameters checked: {checked}");
}
