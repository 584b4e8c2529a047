//! The ZpackVelocityBridge plugin's HTTP API (docs/edge-apis.md §3):
//! `POST /zpack/register {server_name,address,port}`, `POST /zpack/unregister {server_name}`,
//! `GET /zpack/list`, header `X-Zpack-Secret` = hex SHA-256 of the shared secret.
//!
//! Quirks handled here:
//! - Velocity names are case-insensitive; registrations live only in the proxy's memory, so a
//!   proxy restart forgets them: `ensure` always observes (list) first.
//! - Velocity refuses to re-register a name with a different address ("already registered"):
//!   a move is unregister + register.
//! - Unregister of an unknown name is 404: success (idempotent).
//! - The caller must use one canonical name for register, observe and unregister (the
//!   previous system registered the short name and unregistered the FQDN).

use crate::error::{Backend, EdgeError};
use crate::http;
use model::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

const BACKEND: Backend = Backend::Velocity;
pub const SECRET_HEADER: &str = "X-Zpack-Secret";
/// Body fragment of Velocity's `IllegalArgumentException` for a name taken with another
/// address; some bridge builds surface it as HTTP 500 instead of 409.
pub const ALREADY_REGISTERED: &str = "already registered";

#[derive(Debug, Clone)]
pub struct VelocityConfig {
    /// e.g. `http://10.0.0.5:8081`.
    pub base_url: String,
    pub secret: SecretString,
    pub timeout: Duration,
}

/// One server registered in the proxy. `port` is `None` when the bridge's list gave only an
/// address without a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
}

#[derive(Debug, Serialize)]
struct RegisterBody<'a> {
    server_name: &'a str,
    address: &'a str,
    port: u16,
}

#[derive(Debug, Serialize)]
struct UnregisterBody<'a> {
    server_name: &'a str,
}

/// Lenient list entry: `{"name","address","port"}`, or `{"name","address":"host:port"}`, or
/// only `{"name"}`.
#[derive(Debug, Deserialize)]
struct WireEntry {
    #[serde(alias = "server_name")]
    name: String,
    #[serde(default, alias = "host")]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireList {
    Wrapped { servers: Vec<WireEntry> },
    Bare(Vec<WireEntry>),
}

pub(crate) fn parse_list(body: &str) -> Result<Vec<Registration>, serde_json::Error> {
    let entries = match serde_json::from_str::<WireList>(body)? {
        WireList::Wrapped { servers } => servers,
        WireList::Bare(v) => v,
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let address = e.address.unwrap_or_default();
            match (e.port, address.rsplit_once(':')) {
                (None, Some((host, port))) if port.parse::<u16>().is_ok() => Registration {
                    name: e.name,
                    address: host.to_string(),
                    port: port.parse().ok(),
                },
                (port, _) => Registration {
                    name: e.name,
                    address,
                    port,
                },
            }
        })
        .collect())
}

/// Hex SHA-256 of the shared secret (what the bridge compares).
pub fn secret_header_value(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct VelocityClient {
    http: reqwest::Client,
    pace: crate::pace::Pace,
    base: String,
    secret: SecretString,
    /// Hashed once; the raw secret never leaves this process.
    header: SecretString,
}

impl VelocityClient {
    pub fn new(cfg: VelocityConfig) -> Result<Self, EdgeError> {
        let header = secret_header_value(cfg.secret.expose_secret()).into();
        Ok(VelocityClient {
            http: http::client(BACKEND, cfg.timeout, false)?,
            pace: crate::pace::Pace::default(),
            base: cfg.base_url.trim_end_matches('/').to_string(),
            secret: cfg.secret,
            header,
        })
    }

    /// Pace outgoing requests to at most `per_second` (0 = unpaced).
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.pace = crate::pace::Pace::per_second(per_second);
        self
    }

    fn scrub(&self, e: EdgeError) -> EdgeError {
        e.scrub(self.secret.expose_secret())
            .scrub(self.header.expose_secret())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<http::Response, EdgeError> {
        let mut hv = reqwest::header::HeaderValue::from_str(self.header.expose_secret())
            .map_err(|_| EdgeError::new(BACKEND, ErrorClass::Invalid, None, "bad secret header"))?;
        hv.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(SECRET_HEADER, hv);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let what = format!("{method} {path}");
        self.pace.wait().await;
        let r = http::send(BACKEND, &what, req)
            .await
            .map_err(|e| self.scrub(e))?;
        let out = if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            let mut e = EdgeError::from_status(BACKEND, r.status, &r.body);
            if r.status == 500 && r.body.contains(ALREADY_REGISTERED) {
                e.class = ErrorClass::Conflict;
            }
            Err(self.scrub(e))
        };
        http::finish(BACKEND, &what, out)
    }

    /// `GET /zpack/list`.
    pub async fn list(&self) -> Result<Vec<Registration>, EdgeError> {
        let r = self.call(reqwest::Method::GET, "/zpack/list", None).await?;
        parse_list(&r.body).map_err(|e| {
            EdgeError::new(
                BACKEND,
                ErrorClass::Transient,
                Some(r.status),
                format!("malformed list: {e}"),
            )
        })
    }

    /// The registration of `name` (case-insensitive), if any.
    pub async fn observe(&self, name: &str) -> Result<Option<Registration>, EdgeError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(name)))
    }

    /// `POST /zpack/register`. Same name + same address is accepted by Velocity (idempotent);
    /// a different address is `Conflict`.
    pub async fn register(&self, name: &str, address: &str, port: u16) -> Result<(), EdgeError> {
        let body = serde_json::to_value(RegisterBody {
            server_name: name,
            address,
            port,
        })
        .unwrap_or_default();
        self.call(reqwest::Method::POST, "/zpack/register", Some(body))
            .await
            .map(|_| ())
    }

    /// `POST /zpack/unregister`; 404 (unknown name) is success. Returns whether it existed.
    pub async fn unregister(&self, name: &str) -> Result<bool, EdgeError> {
        let body = serde_json::to_value(UnregisterBody { server_name: name }).unwrap_or_default();
        match self
            .call(reqwest::Method::POST, "/zpack/unregister", Some(body))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Make `name` point at `address:port`: no-op when equal (returns false), move
    /// (unregister + register) when the address differs, register when absent.
    pub async fn ensure(&self, name: &str, address: &str, port: u16) -> Result<bool, EdgeError> {
        match self.observe(name).await? {
            Some(r) if r.address == address && r.port.is_none_or(|p| p == port) => Ok(false),
            Some(r) => {
                self.unregister(&r.name).await?;
                self.register(name, address, port).await?;
                Ok(true)
            }
            None => {
                self.register(name, address, port).await?;
                Ok(true)
            }
        }
    }

    /// Unregister `name`; absent is success. Returns whether it was registered.
    pub async fn remove(&self, name: &str) -> Result<bool, EdgeError> {
        self.unregister(name).await
    }
}

/// What zlh asks of the Velocity proxy, as `VelocityClient` does it; the engine depends on
/// this so its glue can be tested against an in-memory proxy (feature `fake`).
pub trait Proxy: Send + Sync {
    /// Every registration the proxy holds.
    fn list(&self) -> impl Future<Output = Result<Vec<Registration>, EdgeError>> + Send;
    /// The registration of `name` (case-insensitive), if any.
    fn observe(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Registration>, EdgeError>> + Send;
    /// Make `name` point at `address:port`; returns whether anything changed.
    fn ensure(
        &self,
        name: &str,
        address: &str,
        port: u16,
    ) -> impl Future<Output = Result<bool, EdgeError>> + Send;
    /// Unregister `name`; absent is success. Returns whether it was registered.
    fn remove(&self, name: &str) -> impl Future<Output = Result<bool, EdgeError>> + Send;
}

impl Proxy for VelocityClient {
    async fn list(&self) -> Result<Vec<Registration>, EdgeError> {
        VelocityClient::list(self).await
    }

    async fn observe(&self, name: &str) -> Result<Option<Registration>, EdgeError> {
        VelocityClient::observe(self, name).await
    }

    async fn ensure(&self, name: &str, address: &str, port: u16) -> Result<bool, EdgeError> {
        VelocityClient::ensure(self, name, address, port).await
    }

    async fn remove(&self, name: &str) -> Result<bool, EdgeError> {
        VelocityClient::remove(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_list_table() {
        let cases = [
            (
                r#"{"servers":[{"name":"mc-a","address":"127.0.0.5","port":25565}]}"#,
                Registration {
                    name: "mc-a".into(),
                    address: "127.0.0.5".into(),
                    port: Some(25565),
                },
                "full entry",
            ),
            (
                r#"{"servers":[{"name":"mc-a","address":"127.0.0.5:25566"}]}"#,
                Registration {
                    name: "mc-a".into(),
                    address: "127.0.0.5".into(),
                    port: Some(25566),
                },
                "host:port address",
            ),
            (
                r#"[{"name":"mc-a","address":"127.0.0.5"}]"#,
                Registration {
                    name: "mc-a".into(),
                    address: "127.0.0.5".into(),
                    port: None,
                },
                "bare array, no port",
            ),
            (
                r#"{"servers":[{"name":"mc-a"}]}"#,
                Registration {
                    name: "mc-a".into(),
                    address: "".into(),
                    port: None,
                },
                "name only",
            ),
        ];
        for (body, want, reason) in cases {
            assert_eq!(parse_list(body).unwrap(), vec![want], "{reason}");
        }
    }

    #[test]
    fn secret_is_hex_sha256() {
        assert_eq!(
            secret_header_value("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
