//! `ApiConfig`: the API's limits, with every default in one place.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The API's limits. Every default is in [`ApiConfig::default`] with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest accepted request body, in bytes (larger → 413).
    pub body_limit_bytes: usize,
    /// Longest time to produce response headers (longer → 503). SSE streams are not cut.
    #[serde(with = "humantime_secs")]
    pub request_timeout: Duration,
    /// Sustained requests per second allowed per token (more → 429 with `retry-after`).
    pub rate_limit_per_second: u32,
    /// Requests a token may send in a burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Page size when `limit` is not given.
    pub page_size_default: u32,
    /// Largest page size; larger `limit`s are clamped.
    pub page_size_max: u32,
    /// How many events `GET /api/servers/{id}/events` returns at most.
    pub events_limit: u32,
    /// A watch re-reads the change feed at least this often even without a wake-up.
    #[serde(with = "humantime_secs")]
    pub watch_poll_interval: Duration,
    /// A controller replica counts as alive if its heartbeat is at most this old.
    #[serde(with = "humantime_secs")]
    pub replica_alive_within: Duration,
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
            page_size_default: 50,
            page_size_max: 500,
            events_limit: 100,
            // Wake-ups are in-process (or NOTIFY); the poll only covers lost ones.
            watch_poll_interval: Duration::from_secs(1),
            // Controllers heartbeat every few seconds.
            replica_alive_within: Duration::from_secs(30),
        }
    }
}

/// Durations as humantime strings (`"10s"`, `"500ms"`).
mod humantime_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_keeps_defaults() {
        let c: ApiConfig =
            serde_json::from_str(r#"{"request_timeout":"2s","page_size_max":100}"#).unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.page_size_max, 100);
        assert_eq!(c.body_limit_bytes, 64 * 1024);
    }
}
