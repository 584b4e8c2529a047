//! `application/problem+json` (RFC 9457): the one error shape of the whole API.
//!
//! Handlers return [`ApiError`]; everything else that can fail before or around a handler
//! (axum's 404/405, extractor rejections, the body limit, timeouts, panics) is turned into the
//! same shape by [`problemify`](crate::router) middleware, so a client only ever parses one
//! kind of error body.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::FieldError;
use model::store::StoreError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Problem `type` URIs and titles. Tag URIs (RFC 4151), as RFC 9457 §3.1.1 suggests for
/// types that are identifiers rather than documentation links.
pub mod kind {
    /// One problem type: its URI and its fixed, human-readable title.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ProblemKind {
        pub uri: &'static str,
        pub title: &'static str,
    }

    macro_rules! kinds {
        ($($name:ident = $slug:literal, $title:literal;)*) => {
            $(pub const $name: ProblemKind = ProblemKind {
                uri: concat!("tag:zerolaghub.quest,2026:problem/", $slug),
                title: $title,
            };)*
            /// Every problem type, for documentation and tests.
            pub const ALL: &[ProblemKind] = &[$($name),*];
        };
    }

    kinds! {
        BAD_REQUEST = "bad-request", "Bad request";
        MALFORMED_BODY = "malformed-body", "Malformed request body";
        VALIDATION = "validation-failed", "Request failed validation";
        UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type", "Unsupported media type";
        PAYLOAD_TOO_LARGE = "payload-too-large", "Request body too large";
        UNAUTHORIZED = "unauthorized", "Authentication required";
        FORBIDDEN = "forbidden", "Not allowed";
        CUSTOMER_NOT_ACTIVE = "customer-not-active", "Customer is not in good standing";
        QUOTA_EXCEEDED = "quota-exceeded", "Quota exceeded";
        NOT_FOUND = "not-found", "Not found";
        METHOD_NOT_ALLOWED = "method-not-allowed", "Method not allowed";
        CONFLICT = "conflict", "Conflict";
        IDEMPOTENCY_CONFLICT = "idempotency-conflict", "Idempotency key reused with a different request";
        IN_PROGRESS = "in-progress", "Another server is still being provisioned";
        STALE = "stale-resource-version", "Stale resourceVersion";
        GONE = "resource-version-too-old", "resourceVersion too old: re-list";
        RATE_LIMITED = "rate-limited", "Too many requests";
        TIMEOUT = "timeout", "Request timed out";
        UNAVAILABLE = "unavailable", "Service unavailable";
        CAPACITY = "capacity-exhausted", "No capacity left";
        AGENT_UNREACHABLE = "agent-unreachable", "The server's Agent cannot be reached";
        INTERNAL = "internal", "Internal error";
        OTHER = "http-error", "HTTP error";
    }
}

use kind::ProblemKind;

/// An RFC 9457 problem document. Extensions: `errors` (field errors of a 422), `requestId`
/// (the `x-request-id` of the request), `operationId` (the operation a 409 refers to),
/// `standing` (of a refused customer), `error` (the detail again, on the previous system's
/// routes kept for the Portal, whose client reads that field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub type_: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this occurrence belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<model::Standing>,
    /// Only on the Portal's power routes: the same text as `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn about_blank() -> String {
    "about:blank".into()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if !self.errors.is_empty() {
            let list: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
            write!(f, " ({})", list.join("; "))?;
        }
        Ok(())
    }
}

impl Problem {
    pub fn new(kind: ProblemKind, status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            type_: kind.uri.into(),
            title: kind.title.into(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            instance: None,
            errors: Vec::new(),
            request_id: None,
            operation_id: None,
            standing: None,
            error: None,
        }
    }

    /// The problem for a bare status produced outside a handler (axum fallbacks, layers).
    pub fn for_status(status: StatusCode) -> Self {
        let (k, detail) = match status {
            StatusCode::NOT_FOUND => (kind::NOT_FOUND, "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                kind::METHOD_NOT_ALLOWED,
                "this resource does not support the request method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                kind::PAYLOAD_TOO_LARGE,
                "the request body exceeds the size limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                kind::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with content-type application/json",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                (kind::TIMEOUT, "the request took too long")
            }
            StatusCode::TOO_MANY_REQUESTS => (kind::RATE_LIMITED, "slow down"),
            StatusCode::UNAUTHORIZED => (kind::UNAUTHORIZED, "a bearer token is required"),
            StatusCode::FORBIDDEN => (kind::FORBIDDEN, "not allowed"),
            StatusCode::BAD_REQUEST => (kind::BAD_REQUEST, "the request is not valid"),
            StatusCode::SERVICE_UNAVAILABLE => (
                kind::UNAVAILABLE,
                "the request did not complete in time or the service is overloaded; try again later",
            ),
            StatusCode::INTERNAL_SERVER_ERROR => (
                kind::INTERNAL,
                "an unexpected error occurred; it has been logged",
            ),
            s if s.is_server_error() => (kind::UNAVAILABLE, "the server could not answer"),
            _ => (kind::OTHER, "the request could not be answered"),
        };
        let mut p = Problem::new(k, status, detail);
        if k == kind::OTHER {
            p.title = status.canonical_reason().unwrap_or("HTTP error").into();
        }
        p
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> Response {
        let body = serde_json::to_vec(self).unwrap_or_default();
        (
            self.status_code(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

/// Every error a handler returns. Each variant has one status and one problem type.
#[derive(Debug)]
pub enum ApiError {
    /// 400: a bad id, query or header.
    BadRequest(String),
    /// 400: a body that is not JSON.
    MalformedBody(String),
    /// 422: the body parsed but is not acceptable; field errors when known.
    Invalid {
        detail: String,
        errors: Vec<FieldError>,
    },
    Unauthorized(String),
    Forbidden(String),
    /// 404. The detail never distinguishes "missing" from "not yours".
    NotFound(String),
    Conflict {
        kind: ProblemKind,
        detail: String,
        operation: Option<model::OperationId>,
    },
    CustomerNotActive {
        customer: String,
        standing: model::Standing,
    },
    QuotaExceeded(String),
    RateLimited {
        retry_after_secs: u64,
        /// What the limit is per (`auth::limited`): a token, or a client address.
        limited: &'static str,
    },
    /// A problem built elsewhere (extractor rejections).
    Problem(Box<Problem>),
    /// 410: a watch resumes from a position the change feed no longer reaches (retention):
    /// the client re-lists and watches from the list's position, as in Kubernetes.
    Gone(String),
    /// 503, the store failed; the detail is logged, not sent.
    Unavailable(String),
    CapacityExhausted(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Invalid {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError {
                field: field.into(),
                message,
            }],
        }
    }

    pub fn to_problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::BadRequest(d) => Problem::new(kind::BAD_REQUEST, S::BAD_REQUEST, d),
            ApiError::MalformedBody(d) => Problem::new(kind::MALFORMED_BODY, S::BAD_REQUEST, d),
            ApiError::Invalid { detail, errors } => {
                let mut p = Problem::new(kind::VALIDATION, S::UNPROCESSABLE_ENTITY, detail);
                p.errors = errors.clone();
                p
            }
            ApiError::Unauthorized(d) => Problem::new(kind::UNAUTHORIZED, S::UNAUTHORIZED, d),
            ApiError::Forbidden(d) => Problem::new(kind::FORBIDDEN, S::FORBIDDEN, d),
            ApiError::NotFound(d) => Problem::new(kind::NOT_FOUND, S::NOT_FOUND, d),
            ApiError::Conflict {
                kind: k,
                detail,
                operation,
            } => {
                let mut p = Problem::new(*k, S::CONFLICT, detail);
                p.operation_id = operation.map(|o| o.to_string());
                p
            }
            ApiError::CustomerNotActive { customer, standing } => {
                let mut p = Problem::new(
                    kind::CUSTOMER_NOT_ACTIVE,
                    S::FORBIDDEN,
                    format!(
                        "customer {customer} is {}; new servers and changes are refused until the account is active",
                        standing.as_str()
                    ),
                );
                p.standing = Some(*standing);
                p
            }
            ApiError::QuotaExceeded(d) => Problem::new(
                kind::QUOTA_EXCEEDED,
                S::FORBIDDEN,
                format!("quota exceeded: {d}"),
            ),
            ApiError::RateLimited {
                retry_after_secs,
                limited,
            } => Problem::new(
                kind::RATE_LIMITED,
                S::TOO_MANY_REQUESTS,
                format!("rate limit for this {limited} exceeded; retry in {retry_after_secs}s"),
            ),
            ApiError::Problem(p) => (**p).clone(),
            ApiError::Gone(d) => Problem::new(kind::GONE, S::GONE, d),
            ApiError::Unavailable(_) => Problem::new(
                kind::UNAVAILABLE,
                S::SERVICE_UNAVAILABLE,
                "the store is unavailable; try again later",
            ),
            ApiError::CapacityExhausted(d) => {
                Problem::new(kind::CAPACITY, S::SERVICE_UNAVAILABLE, d)
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_problem().fmt(f)
    }
}

impl ApiError {
    /// The response with the problem's `error` field set to its detail, as the previous
    /// system's routes answered (status and headers unchanged).
    pub fn into_legacy_response(self) -> Response {
        self.respond(|p| p.error = p.detail.clone())
    }

    fn respond(self, edit: impl FnOnce(&mut Problem)) -> Response {
        if let ApiError::Unavailable(detail) = &self {
            tracing::error!(error = %detail, "store error");
        }
        let mut problem = self.to_problem();
        edit(&mut problem);
        let mut res = problem.to_response();
        let h = res.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited {
                retry_after_secs, ..
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unavailable(_) | ApiError::CapacityExhausted(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        res
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(|_| {})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound(model::store::msg::NOT_FOUND.into()),
            StoreError::Stale => ApiError::Conflict {
                kind: kind::STALE,
                detail: model::store::msg::STALE.into(),
                operation: None,
            },
            StoreError::Fenced => ApiError::Conflict {
                kind: kind::CONFLICT,
                detail: model::store::msg::FENCED.into(),
                operation: None,
            },
            StoreError::IdempotencyConflict => ApiError::Conflict {
                kind: kind::IDEMPOTENCY_CONFLICT,
                detail: model::store::msg::IDEMPOTENCY_CONFLICT.into(),
                operation: None,
            },
            StoreError::InProgress { operation } => ApiError::Conflict {
                kind: kind::IN_PROGRESS,
                detail: format!(
                    "{}; wait for operation {operation} or delete that server first",
                    model::store::msg::IN_PROGRESS
                ),
                operation: Some(operation),
            },
            e @ StoreError::RangeExhausted { .. } => ApiError::CapacityExhausted(e.to_string()),
            StoreError::CustomerNotActive { customer, standing } => {
                ApiError::CustomerNotActive { customer, standing }
            }
            StoreError::QuotaExceeded(d) => ApiError::QuotaExceeded(d),
            e @ StoreError::FeedGone { .. } => ApiError::Gone(e.to_string()),
            StoreError::Database(d) => ApiError::Unavailable(d),
        }
    }
}

/// Headers a problem response built by middleware keeps from the original response.
pub(crate) const KEPT_HEADERS: &[HeaderName] =
    &[header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses() {
        use model::{Kind, OperationId, Standing};
        let cases: Vec<(&str, StoreError, u16)> = vec![
            ("a missing row is 404", StoreError::NotFound, 404),
            ("a lost update is a conflict", StoreError::Stale, 409),
            ("a fenced write is a conflict", StoreError::Fenced, 409),
            (
                "a reused key is a conflict",
                StoreError::IdempotencyConflict,
                409,
            ),
            (
                "the launch guard is a conflict",
                StoreError::InProgress {
                    operation: OperationId::new(),
                },
                409,
            ),
            (
                "no VMIDs left is capacity, retryable",
                StoreError::RangeExhausted {
                    kind: Kind::Game,
                    min: 1,
                    max: 2,
                },
                503,
            ),
            (
                "a suspended customer is refused",
                StoreError::CustomerNotActive {
                    customer: "c".into(),
                    standing: Standing::Suspended,
                },
                403,
            ),
            (
                "quota is refused",
                StoreError::QuotaExceeded("servers 5/5".into()),
                403,
            ),
            (
                "a feed position behind retention is gone: re-list",
                StoreError::FeedGone {
                    after: 1,
                    oldest: 9,
                },
                410,
            ),
            (
                "a broken database is 503",
                StoreError::Database("secret dsn".into()),
                503,
            ),
        ];
        for (reason, e, status) in cases {
            let p = ApiError::from(e).to_problem();
            assert_eq!(p.status, status, "{reason}");
            assert!(!p.title.is_empty(), "{reason}");
            assert!(
                !p.detail.clone().unwrap_or_default().contains("secret"),
                "{reason}: leaks"
            );
        }
    }

    #[test]
    fn problem_display_is_one_line() {
        let p = ApiError::Invalid {
            detail: "spec is invalid".into(),
            errors: vec![FieldError {
                field: "version".into(),
                message: "bad".into(),
            }],
        }
        .to_problem();
        let s = p.to_string();
        assert_eq!(
            s,
            "Request failed validation: spec is invalid (version: bad)"
        );
        assert!(!s.contains('\n'));
    }

    #[test]
    fn problem_types_are_unique() {
        let mut uris: Vec<_> = kind::ALL.iter().map(|k| k.uri).collect();
        uris.sort();
        uris.dedup();
        assert_eq!(uris.len(), kind::ALL.len());
    }
}
