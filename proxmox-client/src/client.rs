//! `PveClient`: reqwest-based implementation of [`Proxmox`].

use crate::api::Proxmox;
use crate::error::{ErrorKind, PveError};
use crate::request::{self, Method, PveRequest};
use crate::tls::{self, TlsMode};
use crate::types::*;
use crate::upid::Upid;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use model::ErrorClass;
use model::metrics::{BACKEND_REQUEST_DURATION, BACKEND_REQUESTS};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Client configuration. `Debug` redacts the secret.
#[derive(Debug, Clone)]
pub struct PveConfig {
    /// `https://host:8006` (or `http://127.0.0.1:port` for the simulator); no `/api2/json`.
    pub base_url: String,
    /// `user@realm!tokenid`.
    pub token_id: String,
    pub token_secret: SecretString,
    pub tls: TlsMode,
    pub connect_timeout: Duration,
    /// Whole-request timeout. pveproxy's own proxy hop gives up after 30 s (596).
    pub request_timeout: Duration,
    /// Outgoing requests per second per node, spaced evenly (a burst of one).
    pub rate_per_node_per_sec: u32,
}

impl PveConfig {
    /// Defaults: system TLS, connect 5 s, request 35 s, 20 req/s per node.
    pub fn new(
        base_url: impl Into<String>,
        token_id: impl Into<String>,
        secret: SecretString,
    ) -> Self {
        PveConfig {
            base_url: base_url.into(),
            token_id: token_id.into(),
            token_secret: secret,
            tls: TlsMode::System,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(35),
            rate_per_node_per_sec: 20,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    limiter: DefaultKeyedRateLimiter<String>,
    /// The nodes requests were sent to so far (see `pace`).
    nodes: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// The Proxmox VE API client. Cheap to clone.
#[derive(Clone)]
pub struct PveClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveClient")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// The limiter key of cluster-wide calls made before any node was seen.
const CLUSTER_KEY: &str = "_cluster";

fn config_err(m: impl Into<String>) -> PveError {
    PveError::other("client", ErrorKind::Request, ErrorClass::Invalid, m)
}

impl PveClient {
    pub fn new(cfg: PveConfig) -> Result<Self, PveError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| config_err(format!("base_url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_err("base_url must be http:// or https://"));
        }
        if !(cfg.token_id.contains('@') && cfg.token_id.contains('!')) {
            return Err(config_err("token_id must look like user@realm!tokenid"));
        }
        let secret = cfg.token_secret.expose_secret();
        if secret.is_empty() {
            return Err(config_err("token secret is empty"));
        }
        let mut auth = HeaderValue::from_str(&format!("PVEAPIToken={}={}", cfg.token_id, secret))
            .map_err(|_| {
            config_err("token id or secret contains characters not allowed in a header")
        })?;
        auth.set_sensitive(true);

        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent(concat!("zlh-proxmox-client/", env!("CARGO_PKG_VERSION")));
        match &cfg.tls {
            TlsMode::System => {}
            TlsMode::CaFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| config_err(format!("CA file {}: {e}", path.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| config_err(format!("CA file {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(config_err(format!(
                        "CA file {} holds no certificate",
                        path.display()
                    )));
                }
                b = b.tls_certs_only(certs);
            }
            TlsMode::Fingerprint(fp) => {
                let fp = tls::parse_fingerprint(fp).ok_or_else(|| {
                    config_err("fingerprint must be 32 bytes as AA:BB:.. or 64 hex digits")
                })?;
                let tls = tls::pinned_config(fp).map_err(|e| config_err(format!("tls: {e}")))?;
                b = b.tls_backend_preconfigured(tls);
            }
            TlsMode::Insecure => {
                tracing::warn!(
                    base_url = %base,
                    "INSECURE: Proxmox TLS certificate verification is DISABLED (tls = insecure). \
                     Anyone on the path can impersonate Proxmox and read the API token. \
                     Use a CA file or fingerprint pinning."
                );
                b = b.tls_danger_accept_invalid_certs(true);
            }
        }
        let http = b
            .build()
            .map_err(|e| config_err(format!("http client: {e}")))?;
        let rate = NonZeroU32::new(cfg.rate_per_node_per_sec.max(1)).expect("max(1)");
        Ok(PveClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                // A burst of one: requests spaced 1/rate apart, so no one-second window sees
                // more than the rate (a burst of `rate` would let twice the rate through in
                // the second it is spent).
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(NonZeroU32::MIN)),
                nodes: Default::default(),
            }),
        })
    }

    /// Wait for `node`'s turn at `rate_per_node_per_sec`. A cluster-wide call (`cluster/...`)
    /// is answered by whichever node's pveproxy the base URL reaches, which the client cannot
    /// tell: it waits for the turn of every node seen so far, so no node ever sees more than
    /// the rate whichever one serves it.
    async fn pace(&self, node: Option<&str>) {
        let limiter = &self.inner.limiter;
        let seen = || self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = node {
            let key = node.to_string();
            seen().insert(key.clone());
            return limiter.until_key_ready(&key).await;
        }
        let nodes: Vec<String> = seen().iter().cloned().collect();
        if nodes.is_empty() {
            return limiter.until_key_ready(&CLUSTER_KEY.to_string()).await;
        }
        for n in &nodes {
            limiter.until_key_ready(n).await;
        }
    }

    /// Send a built request and return the `data` member of the answer.
    pub async fn send(&self, r: &PveRequest) -> Result<Value, PveError> {
        Ok(self.send_as::<Value>(r).await?.unwrap_or(Value::Null))
    }

    /// One request; the 2xx answer's `data` decoded as `T` (`None` when absent or null).
    async fn send_as<T: DeserializeOwned>(&self, r: &PveRequest) -> Result<Option<T>, PveError> {
        self.pace(r.node.as_deref()).await;
        let url = format!("{}/api2/json{}", self.inner.base, r.path);
        let http = &self.inner.http;
        let rb = match r.method {
            // Quirk: a body on GET/DELETE is a 501; parameters go in the query string.
            Method::Get => http.get(&url).query(&r.params),
            Method::Delete => http.delete(&url).query(&r.params),
            Method::Post => http.post(&url).form(&r.params),
            Method::Put => http.put(&url).form(&r.params),
        };
        let rb = rb.header(AUTHORIZATION, self.inner.auth.clone());
        tracing::debug!(endpoint = r.endpoint, method = r.method.as_str(), path = %r.path, "proxmox request");
        let started = std::time::Instant::now();
        let res = match rb.send().await {
            Err(e) => Err(transport_err(r.endpoint, &e)),
            Ok(resp) => read_response::<T>(r.endpoint, resp).await,
        };
        metrics::histogram!(BACKEND_REQUEST_DURATION, "backend" => "proxmox", "operation" => r.endpoint)
            .record(started.elapsed().as_secs_f64());
        let class = match &res {
            Ok(_) => "ok",
            Err(e) => e.class.as_str(),
        };
        metrics::counter!(BACKEND_REQUESTS, "backend" => "proxmox", "operation" => r.endpoint, "class" => class)
            .increment(1);
        if let Err(e) = &res {
            tracing::debug!(endpoint = r.endpoint, error = %e, "proxmox error");
        }
        res
    }

    async fn upid(&self, r: &PveRequest) -> Result<Upid, PveError> {
        let v = self.send(r).await?;
        let s = v
            .as_str()
            .ok_or_else(|| decode(r.endpoint, "expected a UPID string"))?;
        s.parse()
            .map_err(|e: crate::upid::UpidParseError| decode(r.endpoint, e.to_string()))
    }
}

/// A 2xx answer we cannot read. Transient: the call may well have taken effect (unknown is not
/// absent), so nothing destructive may follow from it.
fn decode(endpoint: &'static str, m: impl Into<String>) -> PveError {
    PveError::other(endpoint, ErrorKind::Decode, ErrorClass::Transient, m)
}

/// Every PVE answer is `{"data": ...}`.
#[derive(Deserialize)]
struct Data<T> {
    data: Option<T>,
}

async fn read_response<T: DeserializeOwned>(
    endpoint: &'static str,
    resp: reqwest::Response,
) -> Result<Option<T>, PveError> {
    let status = resp.status().as_u16();
    // Quirk: PVE puts the (first line of the) error message in the status line's reason phrase;
    // the JSON `message` exists only since libpve-http-server-perl 5.2.0, and 595/596 have no body.
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| resp.status().canonical_reason().map(str::to_string));
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport_err(endpoint, &e))?;
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Data<T>>(&body) {
            Ok(d) => Ok(d.data),
            // Only on failure, so the common path parses once: tell "not JSON" from "not
            // what we expected", and read a body that is not an object as no data.
            Err(e) => match serde_json::from_slice::<Value>(&body) {
                Err(_) => Err(decode(
                    endpoint,
                    format!("invalid JSON in {status} answer: {e}"),
                )),
                Ok(Value::Object(_)) => Err(decode(endpoint, format!("unexpected data: {e}"))),
                Ok(_) => Ok(None),
            },
        };
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.trim_end().to_string())
        .filter(|m| !m.is_empty())
        .or(reason)
        .unwrap_or_default();
    // 400: the per-parameter `errors` map carries the real reason.
    if let Some(errs) = json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(Value::as_object)
    {
        let parts: Vec<String> = errs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str().map(str::trim_end).unwrap_or(&v.to_string())
                )
            })
            .collect();
        if !parts.is_empty() {
            message = format!("{message} ({})", parts.join("; "));
        }
    }
    Err(PveError::http(endpoint, status, message))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn find_rustls_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        // io::Error::source() skips the wrapped error itself; look inside explicitly.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

pub(crate) fn transport_err(endpoint: &'static str, e: &reqwest::Error) -> PveError {
    let chain = error_chain(e);
    let cert_error = match find_rustls_error(e) {
        Some(r @ (rustls::Error::General(_) | rustls::Error::InvalidCertificate(_))) => {
            Some(r.to_string())
        }
        // The connector may wrap the rustls error opaquely; fall back to its text.
        _ if chain.contains(crate::tls::FINGERPRINT_MISMATCH)
            || chain.contains("invalid peer certificate") =>
        {
            Some(chain.clone())
        }
        _ => None,
    };
    if let Some(m) = cert_error {
        // Wrong certificate: not transient; alert and fail visibly.
        return PveError::other(
            endpoint,
            ErrorKind::Tls,
            ErrorClass::Unauthorized,
            format!("TLS: {m}"),
        );
    }
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Io
    };
    PveError::other(endpoint, kind, ErrorClass::Transient, chain)
}

impl Proxmox for PveClient {
    async fn version(&self) -> Result<Version, PveError> {
        let r = request::build_version();
        let v = self.send(&r).await?;
        Ok(Version {
            version: v_str(&v, "version").ok_or_else(|| decode(r.endpoint, "no version"))?,
            release: v_str(&v, "release").unwrap_or_default(),
            repoid: v_str(&v, "repoid").unwrap_or_default(),
        })
    }

    async fn cluster_resources(&self) -> Result<Vec<ClusterResource>, PveError> {
        let r = request::build_cluster_resources();
        let list: Vec<MaybeResource> = self
            .send_as(&r)
            .await?
            .ok_or_else(|| decode(r.endpoint, "expected an array"))?;
        Ok(list
            .into_iter()
            .filter_map(|m| m.0?.into_resource())
            .collect())
    }

    async fn node_cts(&self, node: &str) -> Result<Vec<ClusterResource>, PveError> {
        let r = request::build_ct_list(node);
        let list: Vec<MaybeResource> = self
            .send_as(&r)
            .await?
            .ok_or_else(|| decode(r.endpoint, "expected an array"))?;
        // Quirk: the node's list carries neither `node` nor always `type`: both are implied.
        Ok(list
            .into_iter()
            .filter_map(|m| m.0?.into_node_ct(node))
            .collect())
    }

    async fn next_id(&self) -> Result<u32, PveError> {
        let r = request::build_next_id();
        let v = self.send(&r).await?;
        // Quirk: nextid is a string ("100"); accept a number too.
        as_u64(&v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| decode(r.endpoint, format!("bad nextid {v}")))
    }

    async fn clone_ct(
        &self,
        node: &str,
        source_vmid: u32,
        req: &CloneRequest,
    ) -> Result<Upid, PveError> {
        let r = request::build_clone(node, source_vmid, req)?;
        self.upid(&r).await
    }

    async fn ct_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, PveError> {
        let r = request::build_config_get(node, vmid);
        let v = self.send(&r).await?;
        LxcConfig::from_value(&v).ok_or_else(|| decode(r.endpoint, "expected an object"))
    }

    async fn update_ct_config(
        &self,
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<(), PveError> {
        // Synchronous: returns null on success.
        let r = request::build_config_put(node, vmid, update)?;
        self.send(&r).await.map(|_| ())
    }

    async fn ct_status(&self, node: &str, vmid: u32) -> Result<CtStatus, PveError> {
        let r = request::build_status_current(node, vmid);
        let v = self.send(&r).await?;
        CtStatus::from_value(&v).ok_or_else(|| decode(r.endpoint, "expected a status object"))
    }

    async fn start_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.upid(&request::build_start(node, vmid)).await
    }

    async fn stop_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.upid(&request::build_stop(node, vmid)).await
    }

    async fn shutdown_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid, PveError> {
        self.upid(&request::build_shutdown(node, vmid, timeout_s, force_stop))
            .await
    }

    async fn reboot_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
    ) -> Result<Upid, PveError> {
        self.upid(&request::build_reboot(node, vmid, timeout_s))
            .await
    }

    async fn delete_ct(
        &self,
        node: &str,
        vmid: u32,
        opts: &DeleteOptions,
    ) -> Result<Upid, PveError> {
        self.upid(&request::build_delete(node, vmid, opts)).await
    }

    async fn ct_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<Vec<Interface>>, PveError> {
        let r = request::build_interfaces(node, vmid);
        let v = self.send(&r).await?;
        // Quirk: `{"data":null}` while the CT is not running.
        match v {
            Value::Null => Ok(None),
            Value::Array(a) => Ok(Some(a.iter().filter_map(Interface::from_value).collect())),
            other => Err(decode(
                r.endpoint,
                format!("unexpected interfaces answer {other}"),
            )),
        }
    }

    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        let r = request::build_task_status(upid);
        match self.send(&r).await {
            Ok(v) => TaskStatus::from_value(&v)
                .ok_or_else(|| decode(r.endpoint, "expected a task status")),
            // Quirk: right after dispatch the task log may not exist yet: 400 {"upid":"no such
            // task"}. That is "not visible yet", reported as still running.
            Err(e)
                if e.status == Some(400) && e.message.contains(crate::error::msg::NO_SUCH_TASK) =>
            {
                Ok(TaskStatus {
                    running: true,
                    exit: None,
                    not_visible_yet: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn task_log(&self, upid: &Upid, start: u32, limit: u32) -> Result<Vec<String>, PveError> {
        let r = request::build_task_log(upid, start, limit);
        let v = self.send(&r).await?;
        let arr = v
            .as_array()
            .ok_or_else(|| decode(r.endpoint, "expected an array"))?;
        let mut lines: Vec<(u64, String)> = arr
            .iter()
            .map(|l| {
                (
                    v_u64(l, "n").unwrap_or(0),
                    v_str(l, "t").unwrap_or_default(),
                )
            })
            .collect();
        lines.sort_by_key(|(n, _)| *n);
        Ok(lines.into_iter().map(|(_, t)| t).collect())
    }

    async fn resize_ct(&self, node: &str, vmid: u32, size_gib: u32) -> Result<Upid, PveError> {
        let r = request::build_resize(node, vmid, size_gib)?;
        self.upid(&r).await
    }

    async fn node_tasks(
        &self,
        node: &str,
        filter: &TaskFilter,
    ) -> Result<Vec<TaskEntry>, PveError> {
        let r = request::build_tasks(node, filter)?;
        let v = self.send(&r).await?;
        let arr = v
            .as_array()
            .ok_or_else(|| decode(r.endpoint, "expected an array"))?;
        Ok(arr.iter().filter_map(TaskEntry::from_value).collect())
    }
}
