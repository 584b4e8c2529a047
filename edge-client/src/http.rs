//! Shared HTTP plumbing: client construction, the bearer header, one request → (status,
//! headers, body), with metrics and a debug log line that never includes a secret.

use crate::error::{Backend, EdgeError, record};
use model::ErrorClass;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// `proxy`: honour `HTTP(S)_PROXY` (only for Cloudflare on the public internet); internal
/// backends (Agent, Technitium, Velocity, simulators on loopback) are always reached directly.
pub(crate) fn client(
    backend: Backend,
    timeout: Duration,
    proxy: bool,
) -> Result<reqwest::Client, EdgeError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    if !proxy {
        b = b.no_proxy();
    }
    if backend == Backend::Agent {
        // Every container is its own host, polled a few times a minute at most: keeping an
        // idle connection to each would hold thousands of sockets (and their buffers) open
        // at fleet scale for no gain.
        b = b.pool_max_idle_per_host(0);
    }
    b.build().map_err(|e| {
        EdgeError::new(
            backend,
            ErrorClass::Invalid,
            None,
            format!("cannot build HTTP client: {}", e.without_url()),
        )
    })
}

/// `Bearer <token>`, marked sensitive so reqwest/hyper never print it.
pub(crate) fn bearer(token: &SecretString) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token-characters"));
    v.set_sensitive(true);
    v
}

/// Send one request. `what` is a log label and the metrics' `operation`: a request template
/// (method + path with `{id}` placeholders), never a query with secrets or a path with ids.
/// Transport failures become `Transient`; every outcome is counted once in
/// `zlh_backend_requests_total` by the caller-provided classification (see `finish`), and
/// the exchange's latency goes to `zlh_backend_request_duration_seconds`.
pub(crate) async fn send(
    backend: Backend,
    what: &str,
    req: reqwest::RequestBuilder,
) -> Result<Response, EdgeError> {
    tracing::debug!(backend = backend.as_str(), request = what, "edge request");
    let started = std::time::Instant::now();
    let latency = || {
        metrics::histogram!(model::metrics::BACKEND_REQUEST_DURATION, "backend" => backend.as_str(), "operation" => what.to_string())
            .record(started.elapsed().as_secs_f64());
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            latency();
            let err = EdgeError::from_reqwest(backend, e);
            record::<()>(backend, what, &Err(err.clone()));
            tracing::debug!(backend = backend.as_str(), request = what, error = %err, "edge request failed");
            return Err(err);
        }
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    // Not `text()`: its lossy decode walks the body char by char (a tenth of a zone listing's
    // CPU); valid UTF-8, which every backend sends, only needs checking.
    let body = match resp.bytes().await {
        // A UTF-8 byte order mark would make the JSON parse fail; `text()` dropped it too.
        Ok(b) => match b.strip_prefix("\u{FEFF}".as_bytes()) {
            Some(rest) => String::from_utf8_lossy(rest).into_owned(),
            None => String::from_utf8(Vec::from(b))
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
        Err(e) => {
            latency();
            let err = EdgeError::from_reqwest(backend, e);
            record::<()>(backend, what, &Err(err.clone()));
            return Err(err);
        }
    };
    latency();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Count a classified outcome (the HTTP exchange succeeded; the backend may still have said no).
pub(crate) fn finish<T>(
    backend: Backend,
    what: &str,
    r: Result<T, EdgeError>,
) -> Result<T, EdgeError> {
    record(backend, what, &r);
    if let Err(e) = &r {
        tracing::debug!(backend = backend.as_str(), request = what, error = %e, "edge request rejected");
    }
    r
}
