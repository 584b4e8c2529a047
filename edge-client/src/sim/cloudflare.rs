//! Cloudflare API v4 DNS-records simulator, served under `/client/v4`: the
//! `{success, errors, messages, result, result_info}` envelope, pagination (`page`,
//! `per_page`), error codes 81044 / 81057-81058 / 7003 / 971, the flat SRV body (the old
//! `data.service/proto/name` is rejected), duplicates (via `insert_duplicate`), and 429 with
//! `retry-after` when a configured request budget per window is exceeded.

use super::{Core, SimServer, middleware, random_token};
use crate::cloudflare::code;
use crate::dns::{ObservedRecords, SrvRecord, normalize, srv_name};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PATH_PREFIX: &str = "/client/v4";
const MAX_PER_PAGE: usize = 5000;

#[derive(Debug, Clone)]
pub struct CloudflareSimConfig {
    /// Loopback address; port 0 = free port.
    pub addr: SocketAddr,
    pub zone_id: String,
    pub zone_name: String,
    pub token: String,
    /// Requests allowed per `window` (Cloudflare: 1200 per 5 min); `None` = unlimited.
    pub request_budget: Option<u32>,
    /// The budget window in simulated time (default 300 s).
    pub window: Duration,
    /// Simulated seconds per real second (100 → a 300 s window lasts 3 s).
    pub time_scale: f64,
    /// `retry-after` (seconds) sent with an injected 429.
    pub injected_retry_after_secs: u64,
}

impl Default for CloudflareSimConfig {
    fn default() -> Self {
        CloudflareSimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            zone_id: "023e105f4ecef8ad9ca31a8372d0c353".into(),
            zone_name: "zlh.test".into(),
            token: random_token(),
            request_budget: None,
            window: Duration::from_secs(300),
            time_scale: 1.0,
            injected_retry_after_secs: 1,
        }
    }
}

/// A record as stored by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfSimRecord {
    pub id: String,
    /// `A` or `SRV`.
    pub rtype: String,
    pub name: String,
    /// A: the address; SRV: `"<weight> <port> <target>"`.
    pub content: String,
    pub data: Option<SrvRecord>,
    pub ttl: u32,
    pub proxied: bool,
}

impl CfSimRecord {
    fn to_json(&self, zone_id: &str, zone_name: &str) -> Value {
        let mut v = json!({
            "id": self.id, "zone_id": zone_id, "zone_name": zone_name, "name": self.name,
            "type": self.rtype, "content": self.content, "proxiable": self.rtype == "A",
            "proxied": self.proxied, "ttl": self.ttl, "locked": false, "meta": {},
            "comment": null, "tags": [],
            "created_on": "2026-01-01T00:00:00.000000Z", "modified_on": "2026-01-01T00:00:00.000000Z",
        });
        if let Some(d) = &self.data {
            v["data"] = json!({"priority": d.priority, "weight": d.weight, "port": d.port, "target": d.target});
            v["priority"] = json!(d.priority);
        }
        v
    }

    fn same_data(&self, other: &CfSimRecord) -> bool {
        self.rtype == other.rtype
            && self.name == other.name
            && match (&self.data, &other.data) {
                (Some(a), Some(b)) => a.same_as(b),
                (None, None) => self.content == other.content,
                _ => false,
            }
    }
}

struct Budget {
    start: Instant,
    used: u32,
}

#[derive(Clone)]
struct AppState {
    cfg: Arc<CloudflareSimConfig>,
    records: Arc<Mutex<Vec<CfSimRecord>>>,
    budget: Arc<Mutex<Budget>>,
}

pub struct CloudflareSim {
    server: SimServer,
    core: Core,
    st: AppState,
}

fn envelope_err(status: u16, errors: &[(u32, &str)]) -> Response {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(c, m)| json!({"code": c, "message": m}))
        .collect();
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        s,
        axum::Json(json!({"success": false, "errors": errors, "messages": [], "result": null})),
    )
        .into_response()
}

fn rate_limited(retry_after: u64) -> Response {
    let mut r = envelope_err(
        429,
        &[(
            code::RATE_LIMITED,
            "Please wait and consider throttling your request speed",
        )],
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn ok(result: Value, info: Option<Value>) -> Response {
    let mut v = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(i) = info {
        v["result_info"] = i;
    }
    axum::Json(v).into_response()
}

fn not_routable(path: &str) -> Response {
    envelope_err(
        404,
        &[(
            code::COULD_NOT_ROUTE,
            &format!("Could not route to {path}, perhaps your object identifier is invalid?"),
        )],
    )
}

fn record_missing() -> Response {
    envelope_err(404, &[(code::RECORD_NOT_FOUND, "Record does not exist.")])
}

impl CloudflareSim {
    pub async fn start(cfg: CloudflareSimConfig) -> std::io::Result<Self> {
        let retry = cfg.injected_retry_after_secs;
        let core = Core::new(Arc::new(move |status, message: &str| match status {
            429 => rate_limited(retry),
            401 | 403 => envelope_err(
                status,
                &[(
                    code::AUTH_ERROR,
                    match message {
                        "" => "Authentication error",
                        m => m,
                    },
                )],
            ),
            // Cloudflare's edge answers 5xx with a small text/HTML page, not the envelope.
            s => super::plain_message(s, message),
        }));
        let st = AppState {
            cfg: Arc::new(cfg.clone()),
            records: Arc::default(),
            budget: Arc::new(Mutex::new(Budget {
                start: Instant::now(),
                used: 0,
            })),
        };
        let router = Router::new()
            .route(
                &format!("{PATH_PREFIX}/zones/{{zone}}/dns_records"),
                any(collection),
            )
            .route(
                &format!("{PATH_PREFIX}/zones/{{zone}}/dns_records/{{id}}"),
                any(item),
            )
            .fallback(|OriginalUri(u): OriginalUri| async move { not_routable(u.path()) })
            .with_state(st.clone())
            .layer(axum::middleware::from_fn_with_state(
                core.clone(),
                middleware,
            ));
        let router = super::with_fault_control(router, &core);
        let server = SimServer::start(cfg.addr, router, core.alive.clone()).await?;
        Ok(CloudflareSim { server, core, st })
    }

    /// `http://127.0.0.1:<port>/client/v4` (use as `CloudflareConfig::base_url`).
    pub fn url(&self) -> String {
        format!("http://{}{PATH_PREFIX}", self.server.addr())
    }
    pub fn token(&self) -> &str {
        &self.st.cfg.token
    }
    pub fn zone_id(&self) -> &str {
        &self.st.cfg.zone_id
    }
    pub fn zone_name(&self) -> &str {
        &self.st.cfg.zone_name
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CfSimRecord>> {
        self.st.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn records(&self) -> Vec<CfSimRecord> {
        self.lock().clone()
    }

    /// The A records of `host` and SRV records of `_minecraft._tcp.<host>`.
    pub fn observed(&self, host: &str) -> ObservedRecords {
        let host = normalize(host);
        let srv = srv_name(&host);
        let mut out = ObservedRecords::default();
        for r in self.lock().iter() {
            if r.rtype == "A" && r.name == host {
                out.a.extend(r.content.parse::<Ipv4Addr>().ok());
            }
            if r.rtype == "SRV" && r.name == srv {
                out.srv.extend(r.data.clone());
            }
        }
        out
    }

    /// Drift: set the content of every A record of `host` (creates one if none).
    pub fn set_a(&self, host: &str, ip: Ipv4Addr) {
        let host = normalize(host);
        let mut r = self.lock();
        let mut found = false;
        for rec in r.iter_mut().filter(|x| x.rtype == "A" && x.name == host) {
            rec.content = ip.to_string();
            found = true;
        }
        if !found {
            r.push(a_record(&host, ip));
        }
    }

    /// Drift: set the data of every SRV record of `_minecraft._tcp.<host>` (creates one).
    pub fn set_srv(&self, host: &str, srv: SrvRecord) {
        let name = srv_name(host);
        let mut r = self.lock();
        let mut found = false;
        for rec in r.iter_mut().filter(|x| x.rtype == "SRV" && x.name == name) {
            rec.content = srv_content(&srv);
            rec.data = Some(srv.clone());
            found = true;
        }
        if !found {
            r.push(srv_record(&name, srv));
        }
    }

    /// Duplicate the first record of (`name`, `rtype`) under a new id (as a dashboard/API
    /// race can). Returns the new id.
    pub fn insert_duplicate(&self, name: &str, rtype: &str) -> Option<String> {
        let name = normalize(name);
        let mut r = self.lock();
        let mut dup = r
            .iter()
            .find(|x| x.name == name && x.rtype == rtype)?
            .clone();
        dup.id = new_id();
        let id = dup.id.clone();
        r.push(dup);
        Some(id)
    }

    /// Insert any record as is (no validation).
    pub fn insert_record(&self, rec: CfSimRecord) {
        self.lock().push(rec);
    }

    /// Drift: delete every record of `host` and `_minecraft._tcp.<host>`.
    pub fn delete_all(&self, host: &str) {
        let host = normalize(host);
        let srv = srv_name(&host);
        self.lock().retain(|x| x.name != host && x.name != srv);
    }
}

fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

fn srv_content(s: &SrvRecord) -> String {
    format!("{} {} {}", s.weight, s.port, s.target)
}

fn a_record(name: &str, ip: Ipv4Addr) -> CfSimRecord {
    CfSimRecord {
        id: new_id(),
        rtype: "A".into(),
        name: name.into(),
        content: ip.to_string(),
        data: None,
        ttl: 60,
        proxied: false,
    }
}

fn srv_record(name: &str, s: SrvRecord) -> CfSimRecord {
    CfSimRecord {
        id: new_id(),
        rtype: "SRV".into(),
        name: name.into(),
        content: srv_content(&s),
        data: Some(s),
        ttl: 60,
        proxied: false,
    }
}

/// Auth, budget and zone checks common to both routes.
#[allow(clippy::result_large_err)]
fn precheck(st: &AppState, headers: &HeaderMap, zone: &str, path: &str) -> Result<(), Response> {
    // Budget first: Cloudflare counts every request, authenticated or not.
    if let Some(limit) = st.cfg.request_budget {
        let real_window = st.cfg.window.div_f64(st.cfg.time_scale.max(1e-9));
        let mut b = st.budget.lock().unwrap_or_else(|e| e.into_inner());
        if b.start.elapsed() >= real_window {
            b.start = Instant::now();
            b.used = 0;
        }
        b.used += 1;
        if b.used > limit {
            let left = real_window.saturating_sub(b.start.elapsed());
            return Err(rate_limited(left.as_secs_f64().ceil().max(1.0) as u64));
        }
    }
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => {
            return Err(envelope_err(
                400,
                &[(
                    code::MISSING_AUTH,
                    "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
                )],
            ));
        }
        Some(v) => match v.strip_prefix("Bearer ") {
            None => {
                return Err(envelope_err(
                    400,
                    &[(
                        code::BAD_AUTH_HEADER,
                        "Invalid format for Authorization header",
                    )],
                ));
            }
            Some(t) if t != st.cfg.token => {
                return Err(envelope_err(
                    403,
                    &[(code::AUTH_ERROR, "Authentication error")],
                ));
            }
            Some(_) => {}
        },
    }
    if zone != st.cfg.zone_id {
        return Err(not_routable(path));
    }
    Ok(())
}

/// Validate a create/update body into a record (id filled by the caller).
#[allow(clippy::result_large_err)]
fn record_from_body(st: &AppState, body: &[u8]) -> Result<CfSimRecord, Response> {
    let bad = |c: u32, m: &str| envelope_err(400, &[(c, m)]);
    let v: Value =
        serde_json::from_slice(body).map_err(|_| bad(9207, "Request body is invalid."))?;
    let rtype = v["type"].as_str().unwrap_or_default().to_ascii_uppercase();
    let mut name = normalize(v["name"].as_str().unwrap_or_default());
    if name.is_empty() {
        return Err(bad(9000, "DNS name is invalid."));
    }
    let zone = normalize(&st.cfg.zone_name);
    if name != zone && !name.ends_with(&format!(".{zone}")) {
        // Relative names are accepted and completed with the zone.
        name = format!("{name}.{zone}");
    }
    let ttl = v["ttl"].as_u64().unwrap_or(1) as u32;
    if ttl != 1 && !(60..=86400).contains(&ttl) {
        return Err(bad(
            9021,
            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
        ));
    }
    let proxied = v["proxied"].as_bool().unwrap_or(false);
    match rtype.as_str() {
        "A" => {
            let content = v["content"].as_str().unwrap_or_default();
            let ip: Ipv4Addr = content
                .parse()
                .map_err(|_| bad(9005, "Content for A record must be a valid IPv4 address."))?;
            Ok(CfSimRecord {
                proxied,
                ttl,
                ..a_record(&name, ip)
            })
        }
        "SRV" => {
            let d = &v["data"];
            if ["service", "proto", "name"]
                .iter()
                .any(|k| !d[*k].is_null())
            {
                return Err(bad(
                    1004,
                    "DNS Validation Error: SRV data fields 'service', 'proto' and 'name' are no longer supported",
                ));
            }
            let num = |k: &str| d[k].as_u64().and_then(|n| u16::try_from(n).ok());
            let (Some(priority), Some(weight), Some(port), Some(target)) = (
                num("priority"),
                num("weight"),
                num("port"),
                d["target"].as_str(),
            ) else {
                return Err(bad(1004, "DNS Validation Error: SRV data is incomplete"));
            };
            let s = SrvRecord {
                priority,
                weight,
                port,
                target: normalize(target),
            };
            Ok(CfSimRecord {
                ttl,
                ..srv_record(&name, s)
            })
        }
        _ => Err(bad(
            1004,
            "DNS Validation Error: unsupported record type in simulator",
        )),
    }
}

async fn collection(
    State(st): State<AppState>,
    Path(zone): Path<String>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = precheck(&st, &headers, &zone, uri.path()) {
        return r;
    }
    match method {
        Method::GET => {
            let recs = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let name = q.get("name").map(|n| normalize(n));
            let matching: Vec<&CfSimRecord> = recs
                .iter()
                .filter(|r| {
                    q.get("type")
                        .is_none_or(|t| t.eq_ignore_ascii_case(&r.rtype))
                })
                .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
                .collect();
            let per_page = q
                .get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, MAX_PER_PAGE);
            let page = q
                .get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let total = matching.len();
            let items: Vec<Value> = matching
                .into_iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|r| r.to_json(&st.cfg.zone_id, &st.cfg.zone_name))
                .collect();
            let info = json!({"page": page, "per_page": per_page, "count": items.len(),
                "total_count": total, "total_pages": total.div_ceil(per_page)});
            ok(Value::Array(items), Some(info))
        }
        Method::POST => {
            let rec = match record_from_body(&st, &body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut recs = st.records.lock().unwrap_or_else(|e| e.into_inner());
            if recs.iter().any(|r| r.same_data(&rec)) {
                return envelope_err(
                    400,
                    &[(
                        code::IDENTICAL_EXISTS,
                        "An identical record already exists.",
                    )],
                );
            }
            recs.push(rec.clone());
            ok(rec.to_json(&st.cfg.zone_id, &st.cfg.zone_name), None)
        }
        _ => not_routable(uri.path()),
    }
}

async fn item(
    State(st): State<AppState>,
    Path((zone, id)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = precheck(&st, &headers, &zone, uri.path()) {
        return r;
    }
    match method {
        Method::GET => {
            let recs = st.records.lock().unwrap_or_else(|e| e.into_inner());
            match recs.iter().find(|r| r.id == id) {
                Some(r) => ok(r.to_json(&st.cfg.zone_id, &st.cfg.zone_name), None),
                None => record_missing(),
            }
        }
        Method::PUT => {
            let mut rec = match record_from_body(&st, &body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut recs = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let Some(i) = recs.iter().position(|r| r.id == id) else {
                return record_missing();
            };
            if recs.iter().any(|r| r.id != id && r.same_data(&rec)) {
                return envelope_err(
                    400,
                    &[(
                        code::IDENTICAL_EXISTS,
                        "An identical record already exists.",
                    )],
                );
            }
            rec.id = id;
            recs[i] = rec.clone();
            ok(rec.to_json(&st.cfg.zone_id, &st.cfg.zone_name), None)
        }
        Method::DELETE => {
            let mut recs = st.records.lock().unwrap_or_else(|e| e.into_inner());
            let Some(i) = recs.iter().position(|r| r.id == id) else {
                return record_missing();
            };
            recs.remove(i);
            ok(json!({"id": id}), None)
        }
        _ => not_routable(uri.path()),
    }
}
