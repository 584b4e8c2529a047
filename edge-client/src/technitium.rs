//! Technitium DNS Server HTTP API (docs/edge-apis.md §1).
//!
//! Quirks handled here:
//! - Every `/api/*` answer is HTTP 200; success or failure is the JSON `status`
//!   (`ok` | `error` | `invalid-token` | `2fa-required`).
//! - The token goes only in `Authorization: Bearer` (the legacy `token` query parameter leaks
//!   into access logs; the previous client did that).
//! - `records/get` always needs `domain`, even with `listZone=true` (the previous client
//!   omitted it and silently got `[]` from `Parameter 'domain' missing.`).
//! - `records/add` with `overwrite=true` replaces the whole RRset of that type: one call is an
//!   idempotent upsert that also repairs drift and duplicates.
//! - `records/delete` needs the exact rdata, so delete = get, then delete each record; a record
//!   already gone answers `Cannot delete record: no such record exists.` = success.

use crate::dns::{
    self, DesiredRecords, DnsProvider, ObservedRecords, RECORD_TTL, SrvRecord, normalize, srv_name,
};
use crate::error::{Backend, EdgeError};
use crate::http;
use model::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

const BACKEND: Backend = Backend::Technitium;

/// Exact server strings (DnsWebService.cs / WebServiceZonesApi.cs / Extensions.cs).
pub mod msg {
    pub const STATUS_OK: &str = "ok";
    pub const STATUS_ERROR: &str = "error";
    pub const STATUS_INVALID_TOKEN: &str = "invalid-token";
    pub const STATUS_2FA: &str = "2fa-required";
    pub const INVALID_TOKEN: &str = "Invalid token or session expired.";
    pub const NO_SUCH_RECORD: &str = "Cannot delete record: no such record exists.";
    pub const RECORD_EXISTS: &str = "Cannot add record: record already exists.";
    pub const NO_SUCH_ZONE_PREFIX: &str = "No such zone was found";
    pub const NOT_IN_ZONE_FRAGMENT: &str = "does not belong to the zone";
    pub const ACCESS_DENIED_PREFIX: &str = "Access was denied";
    /// `Parameter '<name>' missing.`
    pub fn parameter_missing(name: &str) -> String {
        format!("Parameter '{name}' missing.")
    }
}

#[derive(Debug, Clone)]
pub struct TechnitiumConfig {
    /// e.g. `http://10.0.0.2:5380` (no `/api`).
    pub base_url: String,
    /// The authoritative zone (`zerolaghub.quest`).
    pub zone: String,
    pub token: SecretString,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TechnitiumClient {
    http: reqwest::Client,
    pace: crate::pace::Pace,
    base: String,
    zone: String,
    token: SecretString,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    inner_error_message: Option<String>,
    /// Kept raw and decoded once into its target type (a zone listing has thousands of
    /// records; going through `Value` first doubled the resync's parsing).
    #[serde(default)]
    response: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    disabled: bool,
    /// Kept raw and read only for A and SRV records, each on its own: the zone holds other
    /// types (SOA, NS, ...) whose data we never need, and one odd record must not spoil the
    /// listing.
    #[serde(default)]
    r_data: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ARData {
    ip_address: Ipv4Addr,
}

#[derive(Debug, Deserialize)]
struct SrvRData {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

impl WireRecord {
    fn r_data<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.r_data.as_deref()?.get()).ok()
    }
}

#[derive(Debug, Default, Deserialize)]
struct RecordsResponse {
    #[serde(default)]
    records: Vec<WireRecord>,
}

/// Classify a non-`ok` envelope.
///
/// `No such zone was found` is `Invalid` (not `NotFound`): the configured zone is missing,
/// which is a configuration error to surface, and must never read as "record already gone".
/// Unknown error messages are `Transient` (Technitium's handler turns every exception, including
/// internal ones, into an `error` envelope; like an unknown 500 it must only delay).
pub fn classify(status: &str, message: &str) -> ErrorClass {
    match status {
        msg::STATUS_INVALID_TOKEN | msg::STATUS_2FA => ErrorClass::Unauthorized,
        _ if message == msg::NO_SUCH_RECORD => ErrorClass::NotFound,
        _ if message == msg::RECORD_EXISTS => ErrorClass::Conflict,
        _ if message.starts_with(msg::NO_SUCH_ZONE_PREFIX) => ErrorClass::Invalid,
        _ if message.contains(msg::NOT_IN_ZONE_FRAGMENT) => ErrorClass::Invalid,
        _ if message.starts_with(msg::ACCESS_DENIED_PREFIX) => ErrorClass::Unauthorized,
        _ if message.starts_with("Parameter '") && message.ends_with("' missing.") => {
            ErrorClass::Invalid
        }
        _ => ErrorClass::Transient,
    }
}

impl TechnitiumClient {
    pub fn new(cfg: TechnitiumConfig) -> Result<Self, EdgeError> {
        Ok(TechnitiumClient {
            http: http::client(BACKEND, cfg.timeout, false)?,
            pace: crate::pace::Pace::default(),
            base: cfg.base_url.trim_end_matches('/').to_string(),
            zone: normalize(&cfg.zone),
            token: cfg.token,
        })
    }

    /// Pace outgoing requests to at most `per_second` (0 = unpaced).
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.pace = crate::pace::Pace::per_second(per_second);
        self
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// One API call. `get` uses GET with query parameters (no secrets in them); mutations use
    /// POST form bodies.
    async fn call(
        &self,
        endpoint: &str,
        params: &[(&str, String)],
        post: bool,
    ) -> Result<Option<Box<RawValue>>, EdgeError> {
        let url = format!("{}/api/zones/records/{endpoint}", self.base);
        let req = if post {
            self.http.post(url).form(params)
        } else {
            self.http.get(url).query(params)
        }
        .header(reqwest::header::AUTHORIZATION, http::bearer(&self.token));
        let what = format!("{} records/{endpoint}", if post { "POST" } else { "GET" });
        self.pace.wait().await;
        let r = http::send(BACKEND, &what, req)
            .await
            .map_err(|e| self.scrub(e))?;
        let out = self.decode(r);
        http::finish(BACKEND, &what, out)
    }

    fn scrub(&self, e: EdgeError) -> EdgeError {
        e.scrub(self.token.expose_secret())
    }

    fn decode(&self, r: http::Response) -> Result<Option<Box<RawValue>>, EdgeError> {
        if r.status != 200 {
            // Only something in front of Technitium (a proxy) answers non-200.
            return Err(self.scrub(EdgeError::from_status(BACKEND, r.status, &r.body)));
        }
        let env: Envelope = serde_json::from_str(&r.body).map_err(|e| {
            EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(r.status),
                format!("malformed envelope: {e}"),
            )
        })?;
        if env.status == msg::STATUS_OK {
            return Ok(env.response);
        }
        let mut message = env
            .error_message
            .unwrap_or_else(|| format!("status '{}'", env.status));
        let class = classify(&env.status, &message);
        if let Some(inner) = env.inner_error_message {
            message = format!("{message} ({inner})");
        }
        Err(self.scrub(EdgeError::new(BACKEND, class, Some(r.status), message)))
    }

    async fn get_records(
        &self,
        domain: &str,
        list_zone: bool,
    ) -> Result<Vec<WireRecord>, EdgeError> {
        let mut params = vec![("domain", domain.to_string()), ("zone", self.zone.clone())];
        if list_zone {
            params.push(("listZone", "true".into()));
        }
        let v = self.call("get", &params, false).await?;
        let r: RecordsResponse = serde_json::from_str(v.as_deref().map_or("null", RawValue::get))
            .map_err(|e| {
            EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(200),
                format!("malformed records: {e}"),
            )
        })?;
        Ok(r.records.into_iter().filter(|r| !r.disabled).collect())
    }

    async fn add(&self, domain: &str, rec: &Rdata) -> Result<(), EdgeError> {
        let mut params = vec![
            ("domain", domain.to_string()),
            ("zone", self.zone.clone()),
            ("ttl", RECORD_TTL.to_string()),
            ("overwrite", "true".into()),
        ];
        rec.push_params(&mut params);
        self.call("add", &params, true).await.map(|_| ())
    }

    /// Delete one exact record; "no such record" is success (returns false).
    async fn delete(&self, domain: &str, rec: &Rdata) -> Result<bool, EdgeError> {
        let mut params = vec![("domain", domain.to_string()), ("zone", self.zone.clone())];
        rec.push_params(&mut params);
        match self.call("delete", &params, true).await {
            Ok(_) => Ok(true),
            Err(e) if e.class == ErrorClass::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

enum Rdata {
    A(Ipv4Addr),
    Srv(SrvRecord),
}

impl Rdata {
    fn push_params(&self, p: &mut Vec<(&'static str, String)>) {
        match self {
            Rdata::A(ip) => {
                p.push(("type", "A".into()));
                p.push(("ipAddress", ip.to_string()));
            }
            Rdata::Srv(s) => {
                p.push(("type", "SRV".into()));
                p.push(("priority", s.priority.to_string()));
                p.push(("weight", s.weight.to_string()));
                p.push(("port", s.port.to_string()));
                p.push(("target", s.target.clone()));
            }
        }
    }
}

fn parse_a(r: &WireRecord) -> Option<Ipv4Addr> {
    (r.rtype == "A")
        .then(|| r.r_data::<ARData>())
        .flatten()
        .map(|d| d.ip_address)
}

fn parse_srv(r: &WireRecord) -> Option<SrvRecord> {
    let d: SrvRData = (r.rtype == "SRV").then(|| r.r_data()).flatten()?;
    Some(SrvRecord {
        priority: d.priority,
        weight: d.weight,
        port: d.port,
        target: normalize(&d.target),
    })
}

impl DnsProvider for TechnitiumClient {
    fn name(&self) -> &'static str {
        "technitium"
    }

    async fn observe(&self, host_fqdn: &str) -> Result<ObservedRecords, EdgeError> {
        let host = normalize(host_fqdn);
        let srv = srv_name(&host);
        let mut out = ObservedRecords::default();
        // `records/get?domain=X` returns the records of node X (filter by name anyway).
        for r in self.get_records(&host, false).await? {
            if normalize(&r.name) == host
                && let Some(ip) = parse_a(&r)
            {
                out.a.push(ip);
            }
        }
        for r in self.get_records(&srv, false).await? {
            if normalize(&r.name) == srv
                && let Some(s) = parse_srv(&r)
            {
                out.srv.push(s);
            }
        }
        Ok(out)
    }

    async fn list_zone(&self) -> Result<HashMap<String, ObservedRecords>, EdgeError> {
        let zone = self.zone.clone();
        let mut out = HashMap::new();
        for r in self.get_records(&zone, true).await? {
            dns::add_to_listing(&mut out, &r.name, parse_a(&r), parse_srv(&r));
        }
        Ok(out)
    }

    async fn ensure(&self, host_fqdn: &str, desired: &DesiredRecords) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let obs = self.observe(&host).await?;
        let mut changed = false;
        if obs.a.as_slice() != [desired.a] {
            // overwrite=true replaces the A RRset: fixes a wrong IP and duplicates at once.
            self.add(&host, &Rdata::A(desired.a)).await?;
            changed = true;
        }
        let srv = srv_name(&host);
        match &desired.srv {
            Some(want) => {
                if !(obs.srv.len() == 1 && obs.srv[0].same_as(want)) {
                    self.add(&srv, &Rdata::Srv(want.clone())).await?;
                    changed = true;
                }
            }
            None => {
                for s in obs.srv {
                    changed |= self.delete(&srv, &Rdata::Srv(s)).await?;
                }
            }
        }
        Ok(changed)
    }

    async fn remove(&self, host_fqdn: &str) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let obs = self.observe(&host).await?;
        let mut changed = false;
        for ip in obs.a {
            changed |= self.delete(&host, &Rdata::A(ip)).await?;
        }
        let srv = srv_name(&host);
        for s in obs.srv {
            changed |= self.delete(&srv, &Rdata::Srv(s)).await?;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_one_by_one() {
        let srv = |port| SrvRecord {
            priority: 0,
            weight: 5,
            port,
            target: "mc-1.zlh.test".into(),
        };
        let cases: &[(&str, &str, Option<Ipv4Addr>, Option<SrvRecord>)] = &[
            (
                "an A record gives its address",
                r#"{"name":"mc-1.zlh.test","type":"A","ttl":60,"rData":{"ipAddress":"127.0.0.9"}}"#,
                Some(Ipv4Addr::new(127, 0, 0, 9)),
                None,
            ),
            (
                "an SRV record gives its target without the trailing dot",
                r#"{"name":"_minecraft._tcp.mc-1.zlh.test","type":"SRV","rData":{"priority":0,"weight":5,"port":25565,"target":"MC-1.zlh.test."}}"#,
                None,
                Some(srv(25565)),
            ),
            (
                "other types (SOA here) are skipped unread",
                r#"{"name":"zlh.test","type":"SOA","rData":{"primaryNameServer":"ns","serial":7}}"#,
                None,
                None,
            ),
            (
                "a malformed A record is skipped, not an error for the whole zone",
                r#"{"name":"mc-2.zlh.test","type":"A","rData":{"ipAddress":42}}"#,
                None,
                None,
            ),
            (
                "an SRV port out of range is skipped, never truncated",
                r#"{"name":"_minecraft._tcp.mc-1.zlh.test","type":"SRV","rData":{"priority":0,"weight":5,"port":70000,"target":"mc-1.zlh.test"}}"#,
                None,
                None,
            ),
        ];
        for (why, json, a, s) in cases {
            let r: WireRecord = serde_json::from_str(json).expect(why);
            assert_eq!(parse_a(&r), *a, "{why}");
            assert_eq!(parse_srv(&r), *s, "{why}");
        }
    }

    #[test]
    fn classify_table() {
        let cases = [
            (
                "invalid-token",
                msg::INVALID_TOKEN,
                ErrorClass::Unauthorized,
                "expired or wrong token",
            ),
            (
                "2fa-required",
                "",
                ErrorClass::Unauthorized,
                "a session login, not an API token",
            ),
            (
                "error",
                msg::NO_SUCH_RECORD,
                ErrorClass::NotFound,
                "delete of a gone record",
            ),
            (
                "error",
                msg::RECORD_EXISTS,
                ErrorClass::Conflict,
                "add without overwrite",
            ),
            (
                "error",
                "No such zone was found: zlh.test",
                ErrorClass::Invalid,
                "configured zone missing: config error, never 'gone'",
            ),
            (
                "error",
                "The domain name 'x.other' does not belong to the zone: zlh.test",
                ErrorClass::Invalid,
                "host outside zone",
            ),
            (
                "error",
                "Access was denied.",
                ErrorClass::Unauthorized,
                "token lacks zone permission",
            ),
            (
                "error",
                "Parameter 'domain' missing.",
                ErrorClass::Invalid,
                "client bug",
            ),
            (
                "error",
                "Object reference not set to an instance of an object.",
                ErrorClass::Transient,
                "unknown server error only delays",
            ),
        ];
        for (status, m, want, reason) in cases {
            assert_eq!(classify(status, m), want, "{reason}");
        }
    }
}
