//! One error type for every edge backend, classified with the shared taxonomy
//! (`model::ErrorClass`, docs/errors.md).
//!
//! Messages never carry a token or secret: clients never put secrets in URLs, reqwest errors
//! are stripped of their URL, and every client scrubs its own secret from messages built from
//! response bodies (`EdgeError::scrub`).

use model::ErrorClass;
use std::fmt;
use std::time::Duration;

/// Which external system an error (or a metric sample) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Agent,
    Technitium,
    Cloudflare,
    Velocity,
    Slp,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Agent => "agent",
            Backend::Technitium => "technitium",
            Backend::Cloudflare => "cloudflare",
            Backend::Velocity => "velocity",
            Backend::Slp => "slp",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed edge call. `Display` is `"<backend> <class> [HTTP <status>]: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub backend: Backend,
    pub class: ErrorClass,
    /// HTTP status when the backend answered (Technitium errors arrive with 200).
    pub status: Option<u16>,
    pub message: String,
    /// Cloudflare 429: how long the API asked us to wait (`retry-after`, seconds).
    pub retry_after: Option<Duration>,
    /// Our own outgoing budget has no room for the call for this long, so nothing was sent:
    /// not an outage, a time to come back at.
    pub budget_wait: Option<Duration>,
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend, self.class)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, " (retry after {}s)", r.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for EdgeError {}

/// Longest part of a response body echoed into an error message.
const BODY_SNIPPET_MAX: usize = 300;
pub(crate) const MSG_TIMEOUT: &str = "request timed out";
pub const MSG_OVER_BUDGET: &str = "the outgoing request budget has no room now; nothing was sent";
pub(crate) const MSG_CONNECT: &str = "connection failed";
pub(crate) const REDACTED: &str = "[redacted]";

impl EdgeError {
    pub fn new(
        backend: Backend,
        class: ErrorClass,
        status: Option<u16>,
        message: impl Into<String>,
    ) -> Self {
        EdgeError {
            backend,
            class,
            status,
            message: message.into(),
            retry_after: None,
            budget_wait: None,
        }
    }

    /// Nothing sent: the outgoing budget has room again in `wait` (`budget_wait`).
    pub fn over_budget(backend: Backend, wait: Duration) -> Self {
        EdgeError {
            budget_wait: Some(wait),
            ..EdgeError::new(backend, ErrorClass::Transient, None, MSG_OVER_BUDGET)
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }

    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// Transport failure (no HTTP answer): always `Transient`. The URL is dropped from the
    /// message (it could name an internal host; it never holds a secret, but stay minimal).
    pub(crate) fn from_reqwest(backend: Backend, err: reqwest::Error) -> Self {
        let err = err.without_url();
        let message = if err.is_timeout() {
            MSG_TIMEOUT.to_string()
        } else if err.is_connect() {
            format!("{MSG_CONNECT}: {}", source_chain(&err))
        } else if err.is_decode() {
            return EdgeError::new(
                backend,
                ErrorClass::Transient,
                None,
                format!("malformed response body: {}", source_chain(&err)),
            );
        } else {
            format!("request failed: {}", source_chain(&err))
        };
        EdgeError::new(backend, ErrorClass::Transient, None, message)
    }

    /// Generic HTTP status classification (docs/errors.md); backends refine it.
    pub(crate) fn from_status(backend: Backend, status: u16, body: &str) -> Self {
        EdgeError::new(
            backend,
            classify_status(status),
            Some(status),
            snippet(body),
        )
    }

    /// Replace every occurrence of `secret` in the message (defence in depth against a
    /// backend echoing a credential back in an error body).
    pub(crate) fn scrub(mut self, secret: &str) -> Self {
        if !secret.is_empty() && self.message.contains(secret) {
            self.message = self.message.replace(secret, REDACTED);
        }
        self
    }
}

/// docs/errors.md, "Classification rules": 401/403 Unauthorized; 404/410 NotFound; 409
/// Conflict; 423 Locked; 408/429 and 5xx (501 aside) Transient; 501 and other 4xx Invalid. An
/// unknown 500 is Transient, never NotFound.
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Unauthorized,
        404 | 410 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        423 => ErrorClass::Locked,
        408 | 429 => ErrorClass::Transient,
        501 => ErrorClass::Invalid,
        500..=599 => ErrorClass::Transient,
        400..=499 => ErrorClass::Invalid,
        // 1xx/3xx are not expected from these APIs; unknown means retry later.
        _ => ErrorClass::Transient,
    }
}

pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "empty response body".into();
    }
    let mut s: String = body.chars().take(BODY_SNIPPET_MAX).collect();
    if body.chars().count() > BODY_SNIPPET_MAX {
        s.push('…');
    }
    s
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// `zlh_backend_requests_total{backend, operation, class}`; class is `ok` on success.
/// `operation` is a request template (`GET /status`), so the label set stays bounded.
pub(crate) fn record<T>(backend: Backend, operation: &str, result: &Result<T, EdgeError>) {
    let class = match result {
        Ok(_) => "ok",
        Err(e) => e.class.as_str(),
    };
    metrics::counter!(model::metrics::BACKEND_REQUESTS, "backend" => backend.as_str(), "operation" => operation.to_string(), "class" => class)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases: &[(u16, ErrorClass, &str)] = &[
            (
                400,
                ErrorClass::Invalid,
                "bad parameters are a bug: fail visibly",
            ),
            (401, ErrorClass::Unauthorized, "missing credentials"),
            (403, ErrorClass::Unauthorized, "insufficient permission"),
            (404, ErrorClass::NotFound, "confirmed absence"),
            (409, ErrorClass::Conflict, "identity taken"),
            (429, ErrorClass::Transient, "rate limited: retry later"),
            (
                500,
                ErrorClass::Transient,
                "unknown 500 only delays, never destroys",
            ),
            (501, ErrorClass::Invalid, "not implemented is a bug"),
            (502, ErrorClass::Transient, "gateway"),
            (503, ErrorClass::Transient, "unavailable"),
            (504, ErrorClass::Transient, "gateway timeout"),
        ];
        for (status, class, reason) in cases {
            assert_eq!(classify_status(*status), *class, "{status}: {reason}");
        }
    }

    #[test]
    fn display_and_scrub() {
        let e = EdgeError::new(
            Backend::Cloudflare,
            ErrorClass::Transient,
            Some(429),
            "slow down tok123",
        )
        .scrub("tok123");
        assert_eq!(
            e.to_string(),
            "cloudflare transient (HTTP 429): slow down [redacted]"
        );
    }
}
