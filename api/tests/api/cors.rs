//! CORS (`[api] cors_origins`): preflights and exposed headers for listed origins only; no
//! CORS headers at all by default.

use crate::common::{Harness, paper};
use api::ApiConfig;
use model::Role;
use reqwest::Method;

const PORTAL: &str = "http://127.0.0.1:3000";
const STRANGER: &str = "http://127.0.0.1:3001";

async fn preflight(h: &Harness, origin: &str) -> reqwest::Response {
    h.http
        .request(Method::OPTIONS, h.url("/api/instances"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

#[tokio::test]
async fn listed_origins_pass_preflight_and_read_the_headers_others_do_not() {
    let h = Harness::start_with(ApiConfig {
        cors_origins: vec![PORTAL.into()],
        ..ApiConfig::default()
    })
    .await;
    let res = preflight(&h, PORTAL).await;
    assert!(
        res.status().is_success(),
        "preflight answered: {}",
        res.status()
    );
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        PORTAL,
        "the exact origin"
    );
    let methods = header(&res, "access-control-allow-methods");
    for m in ["get", "post", "patch", "delete"] {
        assert!(methods.contains(m), "{m} allowed: {methods}");
    }
    let allowed = header(&res, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
        "last-event-id",
    ] {
        assert!(allowed.contains(name), "{name} may be sent: {allowed}");
    }
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        "",
        "cookies are never allowed"
    );

    let res = preflight(&h, STRANGER).await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "",
        "an unlisted origin gets no allow-origin, so the browser refuses"
    );

    let token = h.token(Role::Operator, None).await;
    let s = h.seed("u1", paper()).await;
    let res = h
        .http
        .get(h.url(&format!("/api/servers/{}", s.id)))
        .header("origin", PORTAL)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        PORTAL,
        "a simple answer"
    );
    let exposed = header(&res, "access-control-expose-headers");
    for name in ["etag", "location", "retry-after", "x-request-id"] {
        assert!(exposed.contains(name), "{name} readable: {exposed}");
    }
    let res = h
        .http
        .get(h.url("/api/servers"))
        .header("origin", PORTAL)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        PORTAL,
        "a page can read its problems too"
    );
}

#[tokio::test]
async fn by_default_no_origin_is_allowed() {
    let h = Harness::start().await;
    let res = preflight(&h, PORTAL).await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "",
        "no allow-list: no browser access"
    );
    assert!(
        res.status().is_client_error(),
        "a preflight is just an unrouted OPTIONS: {}",
        res.status()
    );
}
