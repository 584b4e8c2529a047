//! Extractors whose rejections are problem+json: JSON bodies, query strings, ids and headers.

use crate::problem::{ApiError, ApiResult, Problem};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use model::{FieldError, ServerId};
use serde::de::DeserializeOwned;
use std::fmt;

/// `axum::Json` with problem+json rejections: 400 for malformed JSON, 415 without a JSON
/// content-type, 413 over the body limit, 422 for unknown fields, missing fields and wrong
/// types (naming the field path).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

const DATA_PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";
const SYNTAX_PREFIX: &str = "Failed to parse the request body as JSON: ";

fn json_rejection(r: JsonRejection) -> ApiError {
    let text = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => {
            let detail = text.strip_prefix(DATA_PREFIX).unwrap_or(&text).to_string();
            // serde_path_to_error renders `path.to.field: message`; `.` is the root.
            let errors = match detail.split_once(": ") {
                Some((path, message)) if !path.contains(' ') => vec![FieldError {
                    field: if path == "." {
                        String::new()
                    } else {
                        path.to_string()
                    },
                    message: message.to_string(),
                }],
                _ => Vec::new(),
            };
            ApiError::Invalid { detail, errors }
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::MalformedBody(
            text.strip_prefix(SYNTAX_PREFIX)
                .unwrap_or(&text)
                .to_string(),
        ),
        JsonRejection::MissingJsonContentType(_) => {
            let mut p = Problem::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            p.detail = Some("expected a JSON body with content-type: application/json".into());
            ApiError::Problem(Box::new(p))
        }
        other => {
            let status = other.status();
            let mut p = Problem::for_status(status);
            if status != StatusCode::PAYLOAD_TOO_LARGE {
                p.detail = Some(text);
            }
            ApiError::Problem(Box::new(p))
        }
    }
}

/// `axum::extract::Query` with a 400 problem on bad parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    let text = r.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::BadRequest(format!("invalid query string: {detail}"))
}

/// Parse a uuid path segment (400 if it is not one).
pub fn parse_id<T: std::str::FromStr>(what: &str, s: &str) -> ApiResult<T> {
    s.parse().map_err(|_| {
        let shown: String = s.chars().take(64).collect();
        ApiError::BadRequest(format!(
            "'{shown}' is not a valid {what} id (expected a UUID)"
        ))
    })
}

/// A server as a path names it: its id, or the VMID reserved for it (what the Portal and
/// on-call know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRef {
    Id(ServerId),
    Vmid(u32),
}

impl ServerRef {
    /// A UUID, or a VMID (digits only); 400 otherwise.
    pub fn parse(s: &str) -> ApiResult<Self> {
        if let Ok(id) = s.parse::<ServerId>() {
            return Ok(ServerRef::Id(id));
        }
        // Digits only: `u32::from_str` would also take a leading `+`.
        if !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && let Ok(vmid) = s.parse::<u32>()
        {
            return Ok(ServerRef::Vmid(vmid));
        }
        let shown: String = s.chars().take(64).collect();
        Err(ApiError::BadRequest(format!(
            "'{shown}' is not a valid server id (expected a UUID or a VMID)"
        )))
    }
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerRef::Id(id) => id.fmt(f),
            ServerRef::Vmid(v) => write!(f, "with VMID {v}"),
        }
    }
}

/// The `{id}` segment of every server route, as a [`ServerRef`] (400 if it is neither a UUID
/// nor a VMID). Look the server up with `routes::servers::visible_server`.
pub struct ServerPath(pub ServerRef);

impl<S: Send + Sync> FromRequestParts<S> for ServerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::BadRequest(r.body_text()))?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "id")
            .map(|(_, v)| v)
            // A route without `{id}` using this extractor is a programming error.
            .ok_or_else(|| ApiError::BadRequest("this route names no server".into()))?;
        ServerRef::parse(raw).map(ServerPath)
    }
}

/// Customer ids: what the Portal uses (`u000`), bounded and path-safe.
pub fn check_customer_id(field: &str, id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "must be 1-64 characters of letters, digits, '-', '_', '.' or '@'",
        ))
    }
}

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1-255 visible ASCII characters".into())
        })?;
    Ok(Some(s.to_string()))
}

/// `If-Match: "<resourceVersion>"` (quotes and a weak prefix are accepted).
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::BadRequest("If-Match must be a resourceVersion like \"42\"".into()))
}

/// The `x-request-id` set by the request-id layer.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn header_parsing_table() {
        type Case = (&'static str, Option<&'static str>, Result<Option<i64>, ()>);
        let cases: &[Case] = &[
            ("no header means unconditional", None, Ok(None)),
            ("a quoted etag", Some("\"42\""), Ok(Some(42))),
            ("a weak etag", Some("W/\"7\""), Ok(Some(7))),
            ("a bare number", Some("3"), Ok(Some(3))),
            ("garbage is refused", Some("abc"), Err(())),
        ];
        for (reason, value, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(v) = value {
                h.insert("if-match", HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(if_match(&h).map_err(|_| ()), *want, "{reason}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert("idempotency-key", HeaderValue::from_static("abc-123"));
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&"x".repeat(256)).unwrap(),
        );
        assert!(idempotency_key(&h).is_err());
    }

    #[test]
    fn server_refs_table() {
        let id = ServerId::new();
        let cases: Vec<(&str, String, Option<ServerRef>)> = vec![
            ("a uuid is an id", id.to_string(), Some(ServerRef::Id(id))),
            (
                "digits are a VMID",
                "5208".into(),
                Some(ServerRef::Vmid(5208)),
            ),
            ("a sign is not a VMID", "+5208".into(), None),
            ("a negative number is not a VMID", "-1".into(), None),
            ("beyond u32 is not a VMID", "99999999999".into(), None),
            ("a name is neither", "mc-paper-1".into(), None),
            ("empty is neither", String::new(), None),
        ];
        for (reason, s, want) in cases {
            assert_eq!(ServerRef::parse(&s).ok(), want, "{reason}");
        }
    }

    #[test]
    fn customer_ids_table() {
        for (reason, id, ok) in [
            ("the Portal's ids", "u000", true),
            ("emails are fine", "a.b@example.com", true),
            ("empty is refused", "", false),
            ("slashes are refused", "a/b", false),
            ("spaces are refused", "a b", false),
        ] {
            assert_eq!(check_customer_id("customerId", id).is_ok(), ok, "{reason}");
        }
    }
}
