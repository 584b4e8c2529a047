//! Prometheus metric definitions: the vocabulary every crate declares its metrics in (name,
//! type, help, buckets), and the backend request metrics that the Proxmox and edge clients
//! share. The process's recorder (`controller::metrics::install`) turns each definition into
//! a `# HELP` line and, for a histogram, explicit buckets, so that series aggregate across
//! replicas and work with `histogram_quantile`.

/// What kind of series a metric is; a histogram carries its bucket bounds (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// One metric: its name (base units, `_total` for counters), kind and `# HELP` text (which
/// names its labels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

/// Requests to a backend by `backend`, `operation` and `class` (`ok`, or the error class).
pub const BACKEND_REQUESTS: &str = "zlh_backend_requests_total";
/// Latency of each request to a backend by `backend` and `operation`.
pub const BACKEND_REQUEST_DURATION: &str = "zlh_backend_request_duration_seconds";

/// A call on the LAN answers in milliseconds; a Proxmox call may run up to its 35 s timeout.
pub const BACKEND_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The backend clients' metrics. `operation` is a request template (Proxmox's endpoint
/// name, `GET /status`, `PUT dns_records/{id}`), never a path with ids or names in it.
pub const DEFS: &[MetricDef] = &[
    MetricDef {
        name: BACKEND_REQUESTS,
        kind: MetricKind::Counter,
        help: "Requests to a backend, by backend, operation and class (ok, or the error class).",
    },
    MetricDef {
        name: BACKEND_REQUEST_DURATION,
        kind: MetricKind::Histogram(BACKEND_BUCKETS),
        help: "Latency of requests to a backend (until the answer is read), by backend and operation.",
    },
];
