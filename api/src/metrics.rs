//! The API's Prometheus metrics: names, help texts and buckets (installed with the others by
//! `controller::metrics::install`), and the bounded label values they are recorded with.

use axum::http::Method;
use model::metrics::{MetricDef, MetricKind};

/// Requests answered, by `method`, `route` (the route template) and `status`.
pub const REQUESTS: &str = "zlh_api_requests_total";
/// Time to produce each response, by `method` and `route`.
pub const REQUEST_DURATION: &str = "zlh_api_request_duration_seconds";
/// Servers recorded by a create (an idempotent replay is not counted).
pub const SERVERS_CREATED: &str = "zlh_api_servers_created_total";

/// The `route` of a request no route matched (404s): never the raw path, which would make a
/// new series per scanned URL.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A handler is a few store queries (milliseconds); the request timeout is 10 s.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const DEFS: &[MetricDef] = &[
    MetricDef {
        name: REQUESTS,
        kind: MetricKind::Counter,
        help: "API requests answered, by method, route (the route template) and status code.",
    },
    MetricDef {
        name: REQUEST_DURATION,
        kind: MetricKind::Histogram(REQUEST_BUCKETS),
        help: "Time the API took to produce a response, by method and route (the route template).",
    },
    MetricDef {
        name: SERVERS_CREATED,
        kind: MetricKind::Counter,
        help: "Servers recorded by a create request (idempotent replays are not counted).",
    },
    MetricDef {
        name: crate::listen::CONNECTIONS_REFUSED,
        kind: MetricKind::Counter,
        help: "Client connections closed as soon as accepted because max_connections were open.",
    },
    MetricDef {
        name: crate::listen::CONNECTIONS_OPEN,
        kind: MetricKind::Gauge,
        help: "Open client connections.",
    },
];

/// The `method` label: a standard method, or `other` (a client may send any token as a
/// method, and each would be a new series).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
