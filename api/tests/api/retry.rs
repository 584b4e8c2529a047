//! The client's retries: a 429 is repeated after its `Retry-After` (any method), a 503 only
//! for idempotent methods, and never more often than the policy says.

use api::{ApiClient, ClientError, RetryPolicy};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A stand-in API on loopback: the first `refusals` requests get `status` (with
/// `Retry-After: 0`), the rest an empty controller status; counts every request.
async fn stand_in(status: StatusCode, refusals: usize) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let answer = move || {
        let h = h.clone();
        async move {
            let n = h.fetch_add(1, Ordering::SeqCst);
            if n < refusals {
                let mut r: Response = (status, "later").into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
                return r;
            }
            axum::Json(serde_json::json!({
                "replicas": [], "leasesHeld": 0, "queueDepth": 0, "queued": 0, "retry": false, "ids": []
            }))
            .into_response()
        }
    };
    let app = axum::Router::new()
        .route("/api/controller", axum::routing::get(answer.clone()))
        .route("/api/servers:reconcile", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

fn client(base: &str) -> ApiClient {
    ApiClient::new(base, None).unwrap().with_retry(RetryPolicy {
        retries: 3,
        max_retry_after: Duration::from_secs(5),
        backoff: Duration::from_millis(10),
    })
}

#[tokio::test]
async fn retries_follow_the_status_and_the_method() {
    type Case = (&'static str, StatusCode, usize, bool, bool, usize);
    // (reason, status, refusals, post, succeeds, requests sent)
    let cases: &[Case] = &[
        (
            "429 on a GET is waited out",
            StatusCode::TOO_MANY_REQUESTS,
            2,
            false,
            true,
            3,
        ),
        (
            "429 on a POST too: nothing ran",
            StatusCode::TOO_MANY_REQUESTS,
            2,
            true,
            true,
            3,
        ),
        (
            "503 on a GET is waited out",
            StatusCode::SERVICE_UNAVAILABLE,
            2,
            false,
            true,
            3,
        ),
        (
            "503 on a POST is final: it may have run",
            StatusCode::SERVICE_UNAVAILABLE,
            2,
            true,
            false,
            1,
        ),
        (
            "bounded: 3 retries, then the 429",
            StatusCode::TOO_MANY_REQUESTS,
            10,
            false,
            false,
            4,
        ),
        (
            "a 404 is never repeated",
            StatusCode::NOT_FOUND,
            10,
            false,
            false,
            1,
        ),
    ];
    for (reason, status, refusals, post, succeeds, sent) in cases {
        let (base, hits) = stand_in(*status, *refusals).await;
        let c = client(&base);
        let ok = if *post {
            c.reconcile_all(&Default::default(), false)
                .await
                .map(|_| ())
        } else {
            c.controller_status().await.map(|_| ())
        };
        assert_eq!(ok.is_ok(), *succeeds, "{reason}: {ok:?}");
        assert_eq!(hits.load(Ordering::SeqCst), *sent, "{reason}");
    }
    // No retries at all with the NONE policy.
    let (base, hits) = stand_in(StatusCode::TOO_MANY_REQUESTS, 1).await;
    let c = ApiClient::new(&base, None)
        .unwrap()
        .with_retry(RetryPolicy::NONE);
    assert!(matches!(
        c.controller_status().await,
        Err(ClientError::RateLimited { .. })
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
