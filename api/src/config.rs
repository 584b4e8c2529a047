//! `ApiConfig`: the API's limits, and `SdConfig`: the exporters Prometheus service discovery
//! lists; every default in one place.

use model::Kind;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The API's limits. Every default is in [`ApiConfig::default`] with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest accepted request body, in bytes (larger → 413).
    pub body_limit_bytes: usize,
    /// Longest time to produce response headers (longer → 503). SSE streams are not cut.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Sustained requests per second allowed per token (more → 429 with `retry-after`).
    pub rate_limit_per_second: u32,
    /// Requests a token may send in a burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Sustained requests per second per client address whose token is not known good
    /// (unknown, revoked, or a token's first request since start): more are 429 before the
    /// token is looked up. Tokens seen valid are not counted here. 0 turns this limit off.
    pub address_rate_limit_per_second: u32,
    /// Such requests an address may send in a burst above the sustained rate.
    pub address_rate_limit_burst: u32,
    /// How long an `Idempotency-Key` replays its create, whatever happens to the server.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
    /// Page size when `limit` is not given.
    pub page_size_default: u32,
    /// Largest page size; larger `limit`s are clamped.
    pub page_size_max: u32,
    /// How many events `GET /api/servers/{id}/events` returns at most.
    pub events_limit: u32,
    /// A watch re-reads the change feed at least this often even without a wake-up.
    #[serde(with = "humantime_serde")]
    pub watch_poll_interval: Duration,
    /// A controller replica counts as alive if its heartbeat is at most this old.
    #[serde(with = "humantime_serde")]
    pub replica_alive_within: Duration,
    /// Open client connections at most; more are closed as soon as they are accepted. `zlhd`
    /// lowers it, with a warning, to what the open-file limit leaves.
    pub max_connections: usize,
    /// A connection has this long to send a request's headers, counted from its first byte
    /// (from accepting it, for its first request); then it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// `[api] cors_origins`: browser origins allowed to call the API (`crate::cors`). Not
    /// read from `[api.limits]`: the application shell copies it from `[api]`.
    #[serde(skip)]
    pub cors_origins: Vec<String>,
    /// `[api.identity]`: the account service's JWTs (`crate::identity`); copied like
    /// `cors_origins`.
    #[serde(skip)]
    pub identity: Option<crate::identity::IdentityConfig>,
    /// `[api.console]`, `[api] console_origins` and the Agent's port and token: the console
    /// (`crate::console`); copied like `cors_origins`.
    #[serde(skip)]
    pub console: crate::console::ConsoleSetup,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            // A spec is well under 1 KiB; 64 KiB leaves room and keeps parsing cheap.
            body_limit_bytes: 64 * 1024,
            // Every handler is a few store queries; 10 s means the store is in trouble.
            request_timeout: Duration::from_secs(10),
            // The Portal polls every second or two per open tab; 20/s with a burst of 40 is
            // far above a well-behaved client and far below what hurts the store.
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            // Each unknown token costs a store lookup. A valid token is counted once, then
            // known; an address guessing tokens gets 10 lookups/s after a burst of 50, which
            // leaves room for a client starting with many tokens and none for a flood.
            address_rate_limit_per_second: 10,
            address_rate_limit_burst: 50,
            // Stripe's 24 h: longer than any client's retry loop, short enough that the keys
            // table stays small.
            idempotency_retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
            page_size_default: 50,
            page_size_max: 500,
            events_limit: 100,
            // Wake-ups are in-process (or NOTIFY); the poll only covers lost ones.
            watch_poll_interval: Duration::from_secs(1),
            // Controllers heartbeat every few seconds.
            replica_alive_within: Duration::from_secs(30),
            // The Portal and operators need a few dozen; 1,024 leaves room for many watch
            // streams and stays far below the units' LimitNOFILE (65,536).
            max_connections: 1024,
            // A real client sends its headers in one packet; 10 s bounds slowloris.
            header_read_timeout: Duration::from_secs(10),
            // Longer than the Portal's poll interval (a second or two), so its connection is
            // reused; short enough that idle connections do not pile up.
            keep_alive_timeout: Duration::from_secs(60),
            // No browser origin: browser access is a deliberate choice (the Portal's origin).
            cors_origins: Vec::new(),
            // zlh's own tokens only, until the account service's keys are configured.
            identity: None,
            // Defaults with their reasons in `crate::console::ConsoleConfig`.
            console: Default::default(),
        }
    }
}

/// `[sd]`: the Prometheus exporters that run in the containers, for `GET /api/sd/targets`.
/// Which exporters exist and on which ports is the templates' business, so it is configured
/// here, not written into the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdConfig {
    /// One target group per Ready server and exporter whose `kinds` name the server's kind.
    pub exporters: Vec<Exporter>,
}

/// One exporter inside the containers of some kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exporter {
    /// The `exporter` label and the value of the `exporter` filter.
    pub name: String,
    /// The kinds of server whose containers run it.
    pub kinds: Vec<Kind>,
    /// Its port on the container's address.
    pub port: u16,
    /// `__metrics_path__` when it does not serve `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    /// `__scheme__` when it is scraped over `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

impl Default for SdConfig {
    fn default() -> Self {
        SdConfig {
            exporters: vec![
                // node_exporter on its registered port, in every container template.
                Exporter {
                    name: "node".into(),
                    kinds: vec![Kind::Game, Kind::Dev],
                    port: 9100,
                    metrics_path: None,
                    scheme: None,
                },
                // The Minecraft exporter plugin's default port, in the game templates.
                Exporter {
                    name: "minecraft".into(),
                    kinds: vec![Kind::Game],
                    port: 9225,
                    metrics_path: None,
                    scheme: None,
                },
            ],
        }
    }
}

impl SdConfig {
    /// The exporter named `name`.
    pub fn exporter(&self, name: &str) -> Option<&Exporter> {
        self.exporters.iter().find(|e| e.name == name)
    }

    /// Checks serde cannot express; the error names the key (`sd.exporters[1].port: ...`).
    pub fn validate(&self) -> Result<(), String> {
        for (i, e) in self.exporters.iter().enumerate() {
            let key = |field: &str| format!("sd.exporters[{i}].{field}");
            let name_ok = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
            if !name_ok {
                return Err(format!(
                    "{}: must be 1-64 characters of a-z, 0-9, '_' or '-'",
                    key("name")
                ));
            }
            if self.exporters[..i].iter().any(|o| o.name == e.name) {
                return Err(format!("{}: '{}' is configured twice", key("name"), e.name));
            }
            if e.kinds.is_empty() {
                return Err(format!("{}: is empty", key("kinds")));
            }
            if e.port == 0 {
                return Err(format!("{}: must not be 0", key("port")));
            }
            if let Some(p) = &e.metrics_path
                && (!p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c == '?'))
            {
                return Err(format!(
                    "{}: must be a path starting with '/', without a query",
                    key("metrics_path")
                ));
            }
            if let Some(s) = &e.scheme
                && s != "http"
                && s != "https"
            {
                return Err(format!("{}: must be http or https", key("scheme")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_exporters_are_valid_and_bad_ones_are_named() {
        SdConfig::default().validate().unwrap();
        /// (reason, the change, text the error must name)
        type Case = (&'static str, fn(&mut Exporter), &'static str);
        let cases: &[Case] = &[
            ("an empty name", |e| e.name.clear(), "sd.exporters[0].name"),
            ("an upper-case name", |e| e.name = "Node".into(), "name"),
            ("no kinds", |e| e.kinds.clear(), "sd.exporters[0].kinds"),
            ("port 0", |e| e.port = 0, "sd.exporters[0].port"),
            (
                "a relative path",
                |e| e.metrics_path = Some("metrics".into()),
                "metrics_path",
            ),
            ("ftp", |e| e.scheme = Some("ftp".into()), "scheme"),
        ];
        for (reason, edit, needle) in cases {
            let mut c = SdConfig::default();
            edit(&mut c.exporters[0]);
            let err = c.validate().expect_err(reason);
            assert!(err.contains(needle), "{reason}: {err}");
        }
        let mut twice = SdConfig::default();
        twice.exporters[1].name = "node".into();
        assert!(twice.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn partial_config_keeps_defaults() {
        let c: ApiConfig =
            serde_json::from_str(r#"{"request_timeout":"2s","page_size_max":100}"#).unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.page_size_max, 100);
        assert_eq!(c.body_limit_bytes, 64 * 1024);
    }
}
