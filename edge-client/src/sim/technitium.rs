//! Technitium DNS Server simulator: `/api/zones/records/{get,add,delete}` with the always-200
//! envelope, the exact error strings, Bearer (or legacy `token` parameter) auth, `overwrite`
//! semantics (replace the RRset of that type), exact-rdata delete, and `listZone`.

use super::{
    Core, SimServer, middleware, parse_form, plain_error, plain_message, random_token,
    with_fault_control,
};
use crate::dns::{ObservedRecords, SrvRecord, normalize, srv_name};
use crate::technitium::msg;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

const SERVER_NAME: &str = "dns-sim.zlh.test";
const DEFAULT_TTL: u32 = 3600;

#[derive(Debug, Clone)]
pub struct TechnitiumSimConfig {
    /// Loopback address; port 0 = free port.
    pub addr: SocketAddr,
    pub zone: String,
    /// The API token clients must send.
    pub token: String,
}

impl Default for TechnitiumSimConfig {
    fn default() -> Self {
        TechnitiumSimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            zone: "zlh.test".into(),
            token: random_token(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimRdata {
    A(Ipv4Addr),
    Srv(SrvRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    pub ttl: u32,
    pub rdata: SimRdata,
}

impl SimRecord {
    fn rtype(&self) -> &'static str {
        match self.rdata {
            SimRdata::A(_) => "A",
            SimRdata::Srv(_) => "SRV",
        }
    }

    fn same_data(&self, other: &SimRdata) -> bool {
        match (&self.rdata, other) {
            (SimRdata::A(a), SimRdata::A(b)) => a == b,
            (SimRdata::Srv(a), SimRdata::Srv(b)) => a.same_as(b),
            _ => false,
        }
    }

    fn to_json(&self, name: &str) -> Value {
        let r_data = match &self.rdata {
            SimRdata::A(ip) => json!({"ipAddress": ip.to_string()}),
            SimRdata::Srv(s) => json!({
                "priority": s.priority, "weight": s.weight, "port": s.port,
                // Technitium writes "." for an empty target.
                "target": if s.target.is_empty() { ".".to_string() } else { s.target.clone() },
            }),
        };
        json!({
            "disabled": false, "name": name, "type": self.rtype(), "ttl": self.ttl,
            "rData": r_data, "dnssecStatus": "Unknown", "lastUsedOn": "0001-01-01T00:00:00",
        })
    }
}

type Records = Arc<Mutex<BTreeMap<String, Vec<SimRecord>>>>;

#[derive(Clone)]
struct AppState {
    zone: String,
    token: String,
    records: Records,
}

pub struct TechnitiumSim {
    server: SimServer,
    core: Core,
    cfg: TechnitiumSimConfig,
    records: Records,
}

fn envelope_error(message: &str) -> Response {
    axum::Json(json!({"server": SERVER_NAME, "status": msg::STATUS_ERROR, "errorMessage": message}))
        .into_response()
}

fn envelope_ok(response: Value) -> Response {
    axum::Json(json!({"server": SERVER_NAME, "status": msg::STATUS_OK, "response": response}))
        .into_response()
}

impl TechnitiumSim {
    pub async fn start(cfg: TechnitiumSimConfig) -> std::io::Result<Self> {
        let records: Records = Arc::default();
        // Injected status 200 = an `error` envelope, by default with an unknown (hence
        // transient) message.
        let core = Core::new(Arc::new(|status, message: &str| {
            if status == 200 {
                envelope_error(match message {
                    "" => "Injected fault: the operation timed out.",
                    m => m,
                })
            } else {
                plain_message(status, message)
            }
        }));
        let state = AppState {
            zone: normalize(&cfg.zone),
            token: cfg.token.clone(),
            records: records.clone(),
        };
        let router = Router::new()
            .route("/api/zones/records/{op}", any(handle))
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(
                core.clone(),
                middleware,
            ));
        let router = with_fault_control(router, &core);
        let server = SimServer::start(cfg.addr, router, core.alive.clone()).await?;
        Ok(TechnitiumSim {
            server,
            core,
            cfg,
            records,
        })
    }

    /// `http://127.0.0.1:<port>` (no `/api`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
    pub fn token(&self) -> &str {
        &self.cfg.token
    }
    pub fn zone(&self) -> &str {
        &self.cfg.zone
    }
    pub fn faults(&self) -> &super::Faults {
        &self.core.faults
    }
    pub fn requests(&self) -> Vec<super::LoggedRequest> {
        self.core.log.all()
    }
    /// How many requests were received (without copying the log).
    pub fn request_count(&self) -> usize {
        self.core.log.len()
    }
    pub async fn set_outage(&self, on: bool) -> std::io::Result<()> {
        self.server.set_outage(on).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<SimRecord>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record, by owner name (lower case, no trailing dot).
    pub fn records(&self) -> BTreeMap<String, Vec<SimRecord>> {
        self.lock().clone()
    }

    /// The A records of `host` and SRV records of `_minecraft._tcp.<host>`.
    pub fn observed(&self, host: &str) -> ObservedRecords {
        let r = self.lock();
        let mut out = ObservedRecords::default();
        for rec in r.get(&normalize(host)).into_iter().flatten() {
            if let SimRdata::A(ip) = rec.rdata {
                out.a.push(ip);
            }
        }
        for rec in r.get(&srv_name(host)).into_iter().flatten() {
            if let SimRdata::Srv(s) = &rec.rdata {
                out.srv.push(s.clone());
            }
        }
        out
    }

    /// Drift: replace the A RRset of `host` behind the client's back.
    pub fn set_a(&self, host: &str, ip: Ipv4Addr) {
        let mut r = self.lock();
        let v = r.entry(normalize(host)).or_default();
        v.retain(|x| x.rtype() != "A");
        v.push(SimRecord {
            ttl: 60,
            rdata: SimRdata::A(ip),
        });
    }

    /// Drift/duplicates: append a record to `name` (no RRset replacement).
    pub fn add_record(&self, name: &str, rdata: SimRdata) {
        self.lock()
            .entry(normalize(name))
            .or_default()
            .push(SimRecord { ttl: 60, rdata });
    }

    /// Drift: delete every record of `host` and `_minecraft._tcp.<host>`.
    pub fn delete_all(&self, host: &str) {
        let mut r = self.lock();
        r.remove(&normalize(host));
        r.remove(&srv_name(host));
    }
}

fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

async fn handle(
    State(st): State<AppState>,
    Path(op): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let mut p: HashMap<String, String> = query.into_iter().collect();
    if let Ok(b) = std::str::from_utf8(&body) {
        p.extend(parse_form(b));
    }
    // Auth: `Authorization: Bearer` (v15+) or the legacy `token` parameter.
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = bearer.or(p.get("token").map(String::as_str));
    if token != Some(st.token.as_str()) {
        return axum::Json(json!({
            "server": SERVER_NAME, "status": msg::STATUS_INVALID_TOKEN,
            "errorMessage": msg::INVALID_TOKEN,
        }))
        .into_response();
    }
    let Some(domain) = p.get("domain").map(|d| normalize(d)) else {
        return envelope_error(&msg::parameter_missing("domain"));
    };
    if let Some(z) = p.get("zone") {
        let z = normalize(z);
        if z != st.zone {
            return envelope_error(&format!("No such zone was found: {z}"));
        }
        if !in_zone(&domain, &st.zone) {
            return envelope_error(&format!(
                "The domain name '{domain}' does not belong to the zone: {z}"
            ));
        }
    } else if !in_zone(&domain, &st.zone) {
        return envelope_error(&format!("No such zone was found: {domain}"));
    }
    let zone_json = json!({"name": st.zone, "type": "Primary", "internal": false,
        "dnssecStatus": "Unsigned", "disabled": false});
    match op.as_str() {
        "get" => {
            let list_zone = p
                .get("listZone")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let r = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let records: Vec<Value> = r
                .iter()
                .filter(|(name, _)| {
                    if list_zone {
                        in_zone(name, &st.zone)
                    } else {
                        **name == domain
                    }
                })
                .flat_map(|(name, recs)| recs.iter().map(move |x| x.to_json(name)))
                .collect();
            envelope_ok(json!({"zone": zone_json, "name": domain, "records": records}))
        }
        "add" => {
            let rdata = match rdata_from(&p) {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let ttl = p
                .get("ttl")
                .and_then(|t| t.parse().ok())
                .unwrap_or(DEFAULT_TTL);
            let overwrite = p
                .get("overwrite")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let rec = SimRecord { ttl, rdata };
            let mut r = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let v = r.entry(domain.clone()).or_default();
            if overwrite {
                // SetRecord: replace the whole RRset of that type.
                v.retain(|x| x.rtype() != rec.rtype());
            } else if v.iter().any(|x| x.same_data(&rec.rdata)) {
                return envelope_error(msg::RECORD_EXISTS);
            }
            v.push(rec.clone());
            envelope_ok(json!({"zone": zone_json, "addedRecord": rec.to_json(&domain)}))
        }
        "delete" => {
            let rdata = match rdata_from(&p) {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let mut r = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let Some(v) = r.get_mut(&domain) else {
                return envelope_error(msg::NO_SUCH_RECORD);
            };
            let Some(i) = v.iter().position(|x| x.same_data(&rdata)) else {
                return envelope_error(msg::NO_SUCH_RECORD);
            };
            v.remove(i);
            if v.is_empty() {
                // Deleting the last record of a sub-name removes the empty node.
                r.remove(&domain);
            }
            envelope_ok(json!({}))
        }
        _ => plain_error(404),
    }
}

/// Record data from parameters, with Technitium's missing-parameter messages.
#[allow(clippy::result_large_err)]
fn rdata_from(p: &HashMap<String, String>) -> Result<SimRdata, Response> {
    let need = |k: &str| {
        p.get(k)
            .cloned()
            .ok_or_else(|| envelope_error(&msg::parameter_missing(k)))
    };
    let rtype = need("type")?;
    match rtype.to_ascii_uppercase().as_str() {
        "A" => {
            let v = p.get("ipAddress").or(p.get("value")).cloned();
            let v = v.ok_or_else(|| envelope_error(&msg::parameter_missing("ipAddress")))?;
            v.parse()
                .map(SimRdata::A)
                .map_err(|_| envelope_error(&format!("An invalid IP address was specified: {v}")))
        }
        "SRV" => {
            let num = |k: &str| -> Result<u16, Response> {
                need(k)?
                    .parse()
                    .map_err(|_| envelope_error(&format!("Invalid value for parameter '{k}'.")))
            };
            Ok(SimRdata::Srv(SrvRecord {
                priority: num("priority")?,
                weight: num("weight")?,
                port: num("port")?,
                target: normalize(&need("target")?),
            }))
        }
        other => Err(envelope_error(&format!(
            "The record type is not supported by the simulator: {other}"
        ))),
    }
}
