//! Cloudflare API v4 DNS records (docs/edge-apis.md §2).
//!
//! Quirks handled here:
//! - SRV bodies use the flat `data{priority,weight,port,target}` + outer `name`; the old
//!   `data.service/proto/name` fields are rejected since 2024-05-31 (the previous client still
//!   sent them).
//! - No create without a list first (retries of a blind create hit 81057/81058); a create that
//!   still races into 81057/81058 re-lists and continues.
//! - Duplicates are possible (dashboard/API races): N>1 records are collapsed to one.
//! - Delete: 404 / 81044 `Record does not exist.` is success, but 404 / 7003 `Could not route
//!   to ...` is a wrong zone id or path: an error, never "already gone".
//! - 429: the API blocks the token for the rest of the window; we return `Transient` with
//!   `retry_after` from `retry-after`, and send nothing until that time has passed.
//! - Outgoing requests go through a governor limiter at `requests_per_5min` (default 900,
//!   well below Cloudflare's 1200 per 5 minutes per token). A write reserves its calls up
//!   front and waits at most `max_budget_wait` for them; past that it is answered at once
//!   with `budget_wait` (nothing sent), so a burst of new servers does not hold every
//!   reconcile worker in the limiter's queue.

use crate::dns::{
    self, DesiredRecords, DnsProvider, ObservedRecords, RECORD_TTL, SrvRecord, normalize, srv_name,
};
use crate::error::{Backend, EdgeError, classify_status, record, snippet};
use crate::http;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use model::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BACKEND: Backend = Backend::Cloudflare;

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
pub const DEFAULT_REQUESTS_PER_5MIN: u32 = 900;
/// Page size for listings (set explicitly; the default is not documented reliably).
pub const PER_PAGE: u32 = 100;
/// Zone listings (the fleet resync) use large pages so their cost stays flat as the fleet
/// grows: the API's `per_page` allows up to 5,000,000 (`cloudflare/api-schemas`,
/// `dns-records_per_page`), and 5,000 keeps each answer a few MB at most.
pub const ZONE_PER_PAGE: u32 = 5000;
/// Safety stop for pagination (100 × 1000 records is far beyond one zone of ours).
const MAX_PAGES: u32 = 1000;

/// Error codes (issue threads cited in docs/edge-apis.md §2; api-schemas `common.yaml`).
pub mod code {
    /// `Record does not exist.` (HTTP 404): gone, success for delete.
    pub const RECORD_NOT_FOUND: u32 = 81044;
    /// `An A, AAAA, or CNAME record with that host already exists.`
    pub const HOST_EXISTS: u32 = 81053;
    /// `A CNAME record with that host already exists.`
    pub const CNAME_EXISTS: u32 = 81054;
    /// `The record already exists.`
    pub const RECORD_EXISTS: u32 = 81057;
    /// `An identical record already exists.`
    pub const IDENTICAL_EXISTS: u32 = 81058;
    /// `Could not route to ..., perhaps your object identifier is invalid?` (HTTP 404).
    pub const COULD_NOT_ROUTE: u32 = 7003;
    /// `Please wait and consider throttling your request speed` (HTTP 429).
    pub const RATE_LIMITED: u32 = 971;
    /// `Authentication error`.
    pub const AUTH_ERROR: u32 = 10000;
    /// `Invalid access token`.
    pub const INVALID_TOKEN: u32 = 9109;
    /// `Invalid format for Authorization header`.
    pub const BAD_AUTH_HEADER: u32 = 6111;
    /// `Missing X-Auth-Key, X-Auth-Email or Authorization headers`.
    pub const MISSING_AUTH: u32 = 9106;
}

/// A write's wait for the budget, unless configured: a few seconds, about one of the
/// engine's wait polls.
pub const DEFAULT_MAX_BUDGET_WAIT: Duration = Duration::from_secs(3);

/// The calls a write of one name takes when nothing is there yet (a listing and a create,
/// or a listing and a delete): what `ensure` and `remove` reserve per name up front.
const CALLS_PER_NAME: u32 = 2;

/// Calls paid for by a reservation (`CloudflareClient::reserve`): they skip the limiter.
struct Prepaid(AtomicU32);

impl Prepaid {
    const fn none() -> Self {
        Prepaid(AtomicU32::new(0))
    }

    /// Use one prepaid call, if any is left.
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub const MSG_LOCALLY_BLOCKED: &str =
    "rate limited by Cloudflare earlier; not sending until retry-after has passed";

#[derive(Debug, Clone)]
pub struct CloudflareConfig {
    /// Default `https://api.cloudflare.com/client/v4`.
    pub base_url: String,
    pub zone_id: String,
    /// e.g. `zerolaghub.quest`.
    pub zone_name: String,
    pub token: SecretString,
    pub timeout: Duration,
    /// Outgoing budget, default 900 (Cloudflare allows 1200 per 5 minutes per token).
    pub requests_per_5min: u32,
    /// The longest a write (`ensure`, `remove`) waits for room in the budget; past that it
    /// is answered at once with `budget_wait` and nothing is sent, so its caller is not held
    /// (a reconcile worker under a burst of new servers).
    pub max_budget_wait: Duration,
}

impl CloudflareConfig {
    pub fn new(zone_id: &str, zone_name: &str, token: SecretString) -> Self {
        CloudflareConfig {
            base_url: DEFAULT_BASE_URL.into(),
            zone_id: zone_id.into(),
            zone_name: zone_name.into(),
            token,
            timeout: Duration::from_secs(10),
            requests_per_5min: DEFAULT_REQUESTS_PER_5MIN,
            max_budget_wait: DEFAULT_MAX_BUDGET_WAIT,
        }
    }
}

#[derive(Clone)]
pub struct CloudflareClient {
    http: reqwest::Client,
    base: String,
    zone_id: String,
    zone_name: String,
    token: SecretString,
    limiter: Arc<DefaultDirectRateLimiter>,
    max_budget_wait: Duration,
    blocked_until: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareClient")
            .field("base", &self.base)
            .field("zone_id", &self.zone_id)
            .field("zone_name", &self.zone_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    /// Kept raw and decoded once into its target type (a zone listing has thousands of
    /// records; going through `Value` first doubled the resync's parsing).
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: Option<u32>,
}

/// A DNS record as Cloudflare returns it (the fields we use).
#[derive(Debug, Clone, Deserialize)]
struct CfRecord {
    id: String,
    #[serde(rename = "type")]
    rtype: String,
    name: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    data: Option<SrvData>,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    proxied: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SrvData {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// The body we write; `Serialize` gives exactly the documented shapes.
#[derive(Debug, Clone, Serialize)]
struct Body {
    #[serde(rename = "type")]
    rtype: &'static str,
    name: String,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxied: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<SrvData>,
}

impl Body {
    fn a(name: &str, ip: Ipv4Addr) -> Body {
        Body {
            rtype: "A",
            name: name.into(),
            ttl: RECORD_TTL,
            content: Some(ip.to_string()),
            // Game traffic must not go through Cloudflare's HTTP proxy.
            proxied: Some(false),
            data: None,
        }
    }

    fn srv(name: &str, s: &SrvRecord) -> Body {
        Body {
            rtype: "SRV",
            name: name.into(),
            ttl: RECORD_TTL,
            content: None,
            proxied: None,
            data: Some(SrvData {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: normalize(&s.target),
            }),
        }
    }

    fn equals(&self, r: &CfRecord) -> bool {
        if r.rtype != self.rtype || r.ttl.unwrap_or(RECORD_TTL) != self.ttl {
            return false;
        }
        match self.rtype {
            "A" => r.content == self.content && !r.proxied.unwrap_or(false),
            _ => match (&r.data, &self.data) {
                (Some(a), Some(b)) => srv_of(a).same_as(&srv_of(b)),
                _ => false,
            },
        }
    }
}

fn srv_of(d: &SrvData) -> SrvRecord {
    SrvRecord {
        priority: d.priority,
        weight: d.weight,
        port: d.port,
        target: normalize(&d.target),
    }
}

/// Classify a failed answer by HTTP status and Cloudflare error codes.
pub fn classify(status: u16, codes: &[u32]) -> ErrorClass {
    let has = |c: u32| codes.contains(&c);
    if has(code::COULD_NOT_ROUTE) {
        // Wrong zone id or path: configuration, not absence.
        ErrorClass::Invalid
    } else if status == 429 || has(code::RATE_LIMITED) {
        ErrorClass::Transient
    } else if has(code::AUTH_ERROR)
        || has(code::INVALID_TOKEN)
        || has(code::BAD_AUTH_HEADER)
        || has(code::MISSING_AUTH)
    {
        ErrorClass::Unauthorized
    } else if has(code::RECORD_NOT_FOUND) {
        ErrorClass::NotFound
    } else if has(code::RECORD_EXISTS)
        || has(code::IDENTICAL_EXISTS)
        || has(code::HOST_EXISTS)
        || has(code::CNAME_EXISTS)
    {
        ErrorClass::Conflict
    } else if (200..300).contains(&status) {
        // `success:false` with a 2xx is not documented: unknown, so retry later.
        ErrorClass::Transient
    } else {
        classify_status(status)
    }
}

/// A failed call with the Cloudflare codes kept for decisions (81057/81058/81044).
struct Fail {
    err: EdgeError,
    codes: Vec<u32>,
}

impl From<EdgeError> for Fail {
    fn from(err: EdgeError) -> Self {
        Fail { err, codes: vec![] }
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    // Seconds; Cloudflare sends an integer (an HTTP-date form is not used by the API).
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl CloudflareClient {
    pub fn new(cfg: CloudflareConfig) -> Result<Self, EdgeError> {
        let n = cfg.requests_per_5min.max(1);
        let period = Duration::from_secs(300) / n;
        // GCRA allows `burst + window/period` per window; keep the burst at a tenth of the
        // budget (max 100) so a full window never exceeds ~1.1× the configured rate.
        let burst = NonZeroU32::new((n / 10).clamp(1, 100)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let proxy = !is_loopback_url(&cfg.base_url);
        Ok(CloudflareClient {
            http: http::client(BACKEND, cfg.timeout, proxy)?,
            base: cfg.base_url.trim_end_matches('/').to_string(),
            zone_id: cfg.zone_id,
            zone_name: normalize(&cfg.zone_name),
            token: cfg.token,
            limiter: Arc::new(RateLimiter::direct(quota)),
            max_budget_wait: cfg.max_budget_wait,
            blocked_until: Arc::new(Mutex::new(None)),
        })
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    fn records_url(&self) -> String {
        format!("{}/zones/{}/dns_records", self.base, self.zone_id)
    }

    fn scrub(&self, e: EdgeError) -> EdgeError {
        e.scrub(self.token.expose_secret())
    }

    fn blocked_for(&self) -> Option<Duration> {
        let mut b = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        match *b {
            Some(until) if until > Instant::now() => Some(until - Instant::now()),
            Some(_) => {
                *b = None;
                None
            }
            None => None,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        query: &[(&str, String)],
        body: Option<&Body>,
        what: &str,
        paid: &Prepaid,
    ) -> Result<Envelope, Fail> {
        if let Some(left) = self.blocked_for() {
            let mut e = EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(429),
                MSG_LOCALLY_BLOCKED,
            );
            e.retry_after = Some(left);
            record::<()>(BACKEND, what, &Err(e.clone()));
            return Err(e.into());
        }
        if !paid.take() {
            self.limiter.until_ready().await;
        }
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, http::bearer(&self.token));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = http::send(BACKEND, what, req)
            .await
            .map_err(|e| self.scrub(e))?;
        let env: Result<Envelope, _> = serde_json::from_str(&r.body);
        let out = match env {
            Ok(env) if env.success && (200..300).contains(&r.status) => Ok(env),
            Ok(env) => {
                let codes: Vec<u32> = env.errors.iter().map(|e| e.code).collect();
                let message = if env.errors.is_empty() {
                    snippet(&r.body)
                } else {
                    env.errors
                        .iter()
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let mut err =
                    EdgeError::new(BACKEND, classify(r.status, &codes), Some(r.status), message);
                if r.status == 429 {
                    err.retry_after = retry_after(&r.headers);
                }
                Err(Fail {
                    err: self.scrub(err),
                    codes,
                })
            }
            Err(_) if (200..300).contains(&r.status) => Err(Fail::from(EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(r.status),
                format!("malformed envelope: {}", snippet(&r.body)),
            ))),
            Err(_) => {
                let mut err = EdgeError::from_status(BACKEND, r.status, &r.body);
                if r.status == 429 {
                    err.retry_after = retry_after(&r.headers);
                }
                Err(Fail::from(self.scrub(err)))
            }
        };
        if let Err(f) = &out
            && f.err.status == Some(429)
            && let Some(ra) = f.err.retry_after
        {
            *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + ra);
        }
        match out {
            Ok(env) => {
                record::<()>(BACKEND, what, &Ok(()));
                Ok(env)
            }
            Err(f) => {
                let err = http::finish::<()>(BACKEND, what, Err(f.err)).unwrap_err();
                Err(Fail {
                    err,
                    codes: f.codes,
                })
            }
        }
    }

    /// Take `n` calls' worth of the budget at once, waiting for it at most
    /// `max_budget_wait`: a write either has room for its calls soon or is told when it will
    /// (`EdgeError::budget_wait`, nothing sent), so it never holds its caller for long, and
    /// it never spends part of the budget on listings only to find no room for the write.
    /// Calls beyond the `n` (an update, extra records) wait for the budget as reads do; a
    /// reservation left unused (the records were in place) is spent.
    async fn reserve(&self, n: u32) -> Result<Prepaid, EdgeError> {
        let Some(want) = NonZeroU32::new(n) else {
            return Ok(Prepaid::none());
        };
        loop {
            match self.limiter.check_n(want) {
                Ok(Ok(())) => return Ok(Prepaid(AtomicU32::new(n))),
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if wait > self.max_budget_wait {
                        return Err(EdgeError::over_budget(BACKEND, wait));
                    }
                    tokio::time::sleep(wait).await;
                }
                // More than the burst (a budget under 40 per 5 minutes): no reservation, each
                // call waits for the budget on its own.
                Err(_) => return Ok(Prepaid::none()),
            }
        }
    }

    /// List records by type and (optionally) exact name, following `result_info.total_pages`.
    async fn list(
        &self,
        rtype: &str,
        name: Option<&str>,
        paid: &Prepaid,
    ) -> Result<Vec<CfRecord>, EdgeError> {
        let per_page = if name.is_some() {
            PER_PAGE
        } else {
            ZONE_PER_PAGE
        };
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let mut q = vec![
                ("type", rtype.to_string()),
                ("page", page.to_string()),
                ("per_page", per_page.to_string()),
            ];
            if let Some(n) = name {
                q.push(("name", n.to_string()));
            }
            let env = self
                .call(
                    reqwest::Method::GET,
                    self.records_url(),
                    &q,
                    None,
                    "GET dns_records",
                    paid,
                )
                .await
                .map_err(|f| f.err)?;
            let raw = env.result.as_deref().map_or("null", RawValue::get);
            let recs: Vec<CfRecord> = serde_json::from_str(raw).map_err(|e| {
                EdgeError::new(
                    BACKEND,
                    ErrorClass::Transient,
                    Some(200),
                    format!("malformed records: {e}"),
                )
            })?;
            let got = recs.len();
            out.extend(recs.into_iter().filter(|r| {
                r.rtype == rtype && name.is_none_or(|n| normalize(&r.name) == normalize(n))
            }));
            let total = env.result_info.and_then(|i| i.total_pages).unwrap_or(1);
            if page >= total || got == 0 || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        Ok(out)
    }

    async fn create(&self, body: &Body, paid: &Prepaid) -> Result<(), Fail> {
        self.call(
            reqwest::Method::POST,
            self.records_url(),
            &[],
            Some(body),
            "POST dns_records",
            paid,
        )
        .await
        .map(|_| ())
    }

    async fn update(&self, id: &str, body: &Body, paid: &Prepaid) -> Result<(), EdgeError> {
        let url = format!("{}/{id}", self.records_url());
        self.call(
            reqwest::Method::PUT,
            url,
            &[],
            Some(body),
            "PUT dns_records/{id}",
            paid,
        )
        .await
        .map(|_| ())
        .map_err(|f| f.err)
    }

    /// Delete by id; 404 / 81044 = already gone (false); 7003 stays an error.
    async fn delete(&self, id: &str, paid: &Prepaid) -> Result<bool, EdgeError> {
        let url = format!("{}/{id}", self.records_url());
        match self
            .call(
                reqwest::Method::DELETE,
                url,
                &[],
                None,
                "DELETE dns_records/{id}",
                paid,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(f) if f.codes.contains(&code::COULD_NOT_ROUTE) => Err(f.err),
            Err(f) if f.err.status == Some(404) || f.codes.contains(&code::RECORD_NOT_FOUND) => {
                Ok(false)
            }
            Err(f) => Err(f.err),
        }
    }

    /// Make the records of (`rtype`, `name`) exactly `want` (or none).
    async fn ensure_one(
        &self,
        rtype: &str,
        name: &str,
        want: Option<Body>,
        paid: &Prepaid,
    ) -> Result<bool, EdgeError> {
        let mut existing = self.list(rtype, Some(name), paid).await?;
        let mut changed = false;
        let Some(body) = want else {
            for r in existing {
                changed |= self.delete(&r.id, paid).await?;
            }
            return Ok(changed);
        };
        if existing.is_empty() {
            match self.create(&body, paid).await {
                Ok(()) => return Ok(true),
                Err(f)
                    if f.codes.contains(&code::RECORD_EXISTS)
                        || f.codes.contains(&code::IDENTICAL_EXISTS) =>
                {
                    // Someone created it between our list and create: re-list and converge.
                    existing = self.list(rtype, Some(name), paid).await?;
                    if existing.is_empty() {
                        return Err(f.err);
                    }
                }
                Err(f) => return Err(f.err),
            }
        }
        let keep_idx = existing.iter().position(|r| body.equals(r)).unwrap_or(0);
        let keep = existing.remove(keep_idx);
        if !body.equals(&keep) {
            self.update(&keep.id, &body, paid).await?;
            changed = true;
        }
        for extra in existing {
            changed |= self.delete(&extra.id, paid).await?;
        }
        Ok(changed)
    }
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn a_of(r: &CfRecord) -> Option<Ipv4Addr> {
    (r.rtype == "A")
        .then(|| r.content.as_deref()?.parse().ok())
        .flatten()
}

impl DnsProvider for CloudflareClient {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    async fn observe(&self, host_fqdn: &str) -> Result<ObservedRecords, EdgeError> {
        let host = normalize(host_fqdn);
        let none = Prepaid::none();
        let a = self.list("A", Some(&host), &none).await?;
        let srv = self.list("SRV", Some(&srv_name(&host)), &none).await?;
        Ok(ObservedRecords {
            a: a.iter().filter_map(a_of).collect(),
            srv: srv
                .iter()
                .filter_map(|r| r.data.as_ref().map(srv_of))
                .collect(),
        })
    }

    async fn list_zone(&self) -> Result<HashMap<String, ObservedRecords>, EdgeError> {
        let mut out = HashMap::new();
        let none = Prepaid::none();
        for r in self.list("A", None, &none).await? {
            dns::add_to_listing(&mut out, &r.name, a_of(&r), None);
        }
        for r in self.list("SRV", None, &none).await? {
            dns::add_to_listing(&mut out, &r.name, None, r.data.as_ref().map(srv_of));
        }
        Ok(out)
    }

    async fn ensure(&self, host_fqdn: &str, desired: &DesiredRecords) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let paid = self.reserve(2 * CALLS_PER_NAME).await?;
        let a = Some(Body::a(&host, desired.a));
        let mut changed = self.ensure_one("A", &host, a, &paid).await?;
        let srv = srv_name(&host);
        let want = desired.srv.as_ref().map(|s| Body::srv(&srv, s));
        changed |= self.ensure_one("SRV", &srv, want, &paid).await?;
        Ok(changed)
    }

    async fn remove(&self, host_fqdn: &str) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let paid = self.reserve(2 * CALLS_PER_NAME).await?;
        let mut changed = self.ensure_one("A", &host, None, &paid).await?;
        changed |= self
            .ensure_one("SRV", &srv_name(&host), None, &paid)
            .await?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases: &[(u16, &[u32], ErrorClass, &str)] = &[
            (
                404,
                &[code::COULD_NOT_ROUTE],
                ErrorClass::Invalid,
                "7003 is a wrong zone id, never 'gone'",
            ),
            (
                404,
                &[code::RECORD_NOT_FOUND],
                ErrorClass::NotFound,
                "81044 record gone",
            ),
            (
                400,
                &[code::RECORD_EXISTS],
                ErrorClass::Conflict,
                "81057 exists",
            ),
            (
                400,
                &[code::IDENTICAL_EXISTS],
                ErrorClass::Conflict,
                "81058 identical exists",
            ),
            (
                400,
                &[code::HOST_EXISTS],
                ErrorClass::Conflict,
                "81053 other type at host",
            ),
            (
                429,
                &[code::RATE_LIMITED],
                ErrorClass::Transient,
                "rate limited",
            ),
            (
                403,
                &[code::AUTH_ERROR],
                ErrorClass::Unauthorized,
                "bad token",
            ),
            (
                400,
                &[code::BAD_AUTH_HEADER],
                ErrorClass::Unauthorized,
                "malformed auth header",
            ),
            (
                400,
                &[1004],
                ErrorClass::Invalid,
                "validation error is a bug",
            ),
            (500, &[], ErrorClass::Transient, "server error only delays"),
            (
                200,
                &[],
                ErrorClass::Transient,
                "undocumented success:false",
            ),
        ];
        for (status, codes, want, reason) in cases {
            assert_eq!(classify(*status, codes), *want, "{reason}");
        }
    }

    #[test]
    fn srv_body_is_flat() {
        let b = Body::srv(
            "_minecraft._tcp.mc-a.zlh.test",
            &SrvRecord {
                priority: 0,
                weight: 5,
                port: 25565,
                target: "MC-A.zlh.test.".into(),
            },
        );
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"SRV","name":"_minecraft._tcp.mc-a.zlh.test","ttl":60,
                "data":{"priority":0,"weight":5,"port":25565,"target":"mc-a.zlh.test"}})
        );
        let a =
            serde_json::to_value(Body::a("mc-a.zlh.test", Ipv4Addr::new(127, 0, 0, 2))).unwrap();
        assert_eq!(
            a,
            serde_json::json!({"type":"A","name":"mc-a.zlh.test","ttl":60,"content":"127.0.0.2","proxied":false})
        );
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:4000/client/v4"));
        assert!(is_loopback_url("http://localhost:4000"));
        assert!(!is_loopback_url(DEFAULT_BASE_URL));
    }
}
