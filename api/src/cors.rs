//! CORS for browser pages (the Portal's) calling the API with a bearer token: tower-http's
//! `CorsLayer` over an exact allow-list, `[api] cors_origins`. Empty (the default) adds no
//! layer, so no page on another origin can read an answer.
//!
//! Credentials (cookies) are not allowed: the API authenticates with `Authorization`, which a
//! page sends explicitly, so no ambient credential can be abused cross-site.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a page may send: those the API reads.
pub const ALLOWED_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
    header::IF_MATCH,
    HeaderName::from_static("last-event-id"),
];

/// Response headers a page may read beyond the CORS-safelisted ones.
pub const EXPOSED_HEADERS: [HeaderName; 4] = [
    header::ETAG,
    header::LOCATION,
    header::RETRY_AFTER,
    HeaderName::from_static("x-request-id"),
];

/// The methods the API's routes use.
pub const ALLOWED_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// How long a browser may cache a preflight: 10 minutes, Chromium's own cap (longer values
/// are clamped), so a changed allow-list takes effect within that.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// An origin that is not `scheme://host[:port]`; the reason for `[api] cors_origins`.
pub const BAD_ORIGIN: &str = "must be an exact origin: http(s)://host[:port], without path, \
     query or wildcard";

/// Check one configured origin.
pub fn check_origin(origin: &str) -> Result<HeaderValue, &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(BAD_ORIGIN)?;
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(BAD_ORIGIN);
    }
    HeaderValue::from_str(origin).map_err(|_| BAD_ORIGIN)
}

/// Validate `[api] cors_origins`, naming the first bad entry.
pub fn validate(origins: &[String]) -> Result<(), String> {
    for (i, o) in origins.iter().enumerate() {
        check_origin(o).map_err(|why| format!("api.cors_origins[{i}]: {why}"))?;
    }
    Ok(())
}

/// The layer for these origins; `None` when there are none (no browser access). Entries that
/// are not origins are skipped (config validation refuses them before this).
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| check_origin(o).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods(ALLOWED_METHODS)
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_origins_are_accepted() {
        let cases = [
            ("an https origin", "https://portal.example.com", true),
            ("with a port", "http://127.0.0.1:3000", true),
            ("a wildcard is not an origin", "*", false),
            ("a wildcard host", "https://*.example.com", false),
            ("a path", "https://portal.example.com/app", false),
            ("no scheme", "portal.example.com", false),
            ("another scheme", "ftp://portal.example.com", false),
            ("a trailing slash", "https://portal.example.com/", false),
        ];
        for (reason, origin, ok) in cases {
            assert_eq!(check_origin(origin).is_ok(), ok, "{reason}: {origin}");
        }
        assert!(layer(&[]).is_none(), "no origins: no layer");
    }
}
