//! How the simulator answers: PVE's success envelope, its error shapes, a reset.

use super::wording::E_PARAM_VERIFICATION;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// PVE error: reason phrase = first line; body `{"data":null,"message":"...\n"}`, or empty
/// for 401 and the pveproxy proxy codes (595..599); `Connection: close` on every status >= 400.
pub(crate) fn pve_error(code: u16, message: &str) -> Response {
    let first = message
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    let empty = code == 401 || (595..=599).contains(&code);
    let body = if empty {
        Body::empty()
    } else {
        Body::from(
            json!({"data": null, "message": format!("{}\n", message.trim_end_matches('\n'))})
                .to_string(),
        )
    };
    finish_error(code, &first, body)
}

pub(crate) fn finish_error(code: u16, reason: &str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(reason.to_string().into_bytes()) {
        r.extensions_mut().insert(rp);
    }
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// 400 `Parameter verification failed.` with the per-parameter `errors` map. Values are PVE's
/// verbatim: only `invalid format - ...` texts end in `\n` (the format checkers `die` with a
/// newline; the type, range and presence checks add none).
pub(crate) fn param_error(errors: BTreeMap<String, String>) -> Response {
    let errs: Map<String, Value> = errors
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body =
        json!({"data": null, "message": format!("{E_PARAM_VERIFICATION}\n"), "errors": errs});
    finish_error(400, E_PARAM_VERIFICATION, Body::from(body.to_string()))
}

pub(crate) fn one_param_error(k: &str, v: impl Into<String>) -> Response {
    param_error(BTreeMap::from([(k.to_string(), v.into())]))
}

pub(crate) fn ok(data: Value) -> Response {
    ok_with(data, None)
}

pub(crate) fn ok_with(data: Value, total: Option<usize>) -> Response {
    let mut body = json!({"data": data});
    if let Some(t) = total {
        body["total"] = json!(t);
    }
    let mut r = Response::new(Body::from(body.to_string()));
    let h = r.headers_mut();
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// A response whose body fails: hyper aborts the connection, the client sees a reset.
pub(crate) fn reset() -> Response {
    let s = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    Body::from_stream(s).into_response()
}
