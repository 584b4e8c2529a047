//! A typed client of the API (used by `zctl` and the end-to-end tests).
//!
//! Every method returns the typed body or a [`ClientError`] whose variant a CLI can map to an
//! exit code. The token is sent only in the `Authorization` header and never appears in
//! `Debug` output or error messages.

use crate::problem::Problem;
use crate::wire::{
    Accepted, AuditList, Bookmark, BulkReconciled, ControllerStatus, CreateServerRequest,
    CreateTokenRequest, CreatedToken, CustomerUpdate, DeletedRef, DevCatalog, EventList,
    GameCatalog, InstanceAccepted, InstanceOperation, InstanceRequest, ListFilter, OperationStatus,
    OrphanList, PatchServerRequest, PowerRequest, ServerList, TokenInfo, TokenList, WatchEvent,
};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use model::store::Orphan;
use model::{Customer, Event, OperationId, Server, ServerId, ServerSpec};
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Why a call failed. Each variant carries what a human needs; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// 404.
    #[error("{0}")]
    NotFound(Box<Problem>),
    /// 401: missing or unknown token.
    #[error("{0}")]
    Unauthorized(Box<Problem>),
    /// 403: the role may not do this, the customer is not active, or a quota is exceeded.
    #[error("{0}")]
    Forbidden(Box<Problem>),
    /// 409: idempotency conflict, another server in progress, stale resourceVersion, deleting.
    #[error("{0}")]
    Conflict(Box<Problem>),
    /// 400, 413, 415, 422 (and other 4xx): the request is wrong; `errors` names fields.
    #[error("{0}")]
    Invalid(Box<Problem>),
    /// 429: slow down.
    #[error("{problem} (retry after {retry_after_secs}s)")]
    RateLimited {
        problem: Box<Problem>,
        retry_after_secs: u64,
    },
    /// 5xx: the API or its store is in trouble; retrying later may help.
    #[error("{0}")]
    Server(Box<Problem>),
    /// The API answered something this client does not understand.
    #[error("unexpected response from the API: {0}")]
    Protocol(String),
    /// The base URL is not usable.
    #[error("invalid API URL: {0}")]
    BadUrl(String),
}

impl ClientError {
    /// The problem document the API answered, if any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::NotFound(p)
            | ClientError::Unauthorized(p)
            | ClientError::Forbidden(p)
            | ClientError::Conflict(p)
            | ClientError::Invalid(p)
            | ClientError::Server(p) => Some(p),
            ClientError::RateLimited { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The HTTP status, if the API answered.
    pub fn status(&self) -> Option<u16> {
        self.problem().map(|p| p.status)
    }

    fn from_problem(p: Problem, retry_after: Option<u64>) -> Self {
        let p = Box::new(p);
        match p.status {
            401 => ClientError::Unauthorized(p),
            403 => ClientError::Forbidden(p),
            404 => ClientError::NotFound(p),
            409 => ClientError::Conflict(p),
            429 => ClientError::RateLimited {
                problem: p,
                retry_after_secs: retry_after.unwrap_or(1),
            },
            s if s >= 500 => ClientError::Server(p),
            _ => ClientError::Invalid(p),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// What [`ApiClient::power`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerOutcome {
    /// 202: the spec changed; the update operation to follow.
    Changed(Accepted),
    /// 200: it was already so; nothing was written.
    Unchanged(Server),
}

/// Page request of [`ApiClient::list`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageParams {
    /// Server default (50) when `None`.
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<ServerId>,
}

/// How often a call is retried when the API answers "later" (429 rate limited, 503
/// unavailable), and the longest `Retry-After` honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: none).
    pub retries: usize,
    /// A `Retry-After` longer than this ends the retries at once (the error says how long).
    pub max_retry_after: Duration,
    /// The wait when the answer names none (doubling, with jitter, per retry).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    /// Five retries ride out a spent burst of the API's per-token limit (20/s, burst 40: a
    /// `Retry-After` of 1 s) and a short store outage (503 says 1 s), and still end a
    /// scripted call within about half a minute when the API stays unavailable.
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            max_retry_after: Duration::from_secs(30),
            backoff: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// No retries: every 429 and 503 is an error at once.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        max_retry_after: Duration::ZERO,
        backoff: Duration::ZERO,
    };
}

/// One attempt's failure, and whether (and when) to try again.
struct Failure {
    error: ClientError,
    later: Later,
}

/// When an attempt may be repeated.
enum Later {
    /// Not at all: the answer is final.
    Never,
    /// After the wait the answer asked for (`Retry-After`).
    After(Duration),
    /// After the policy's backoff (the answer said "later" without saying when).
    Backoff,
}

/// Filters and page of [`ApiClient::audit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditParams {
    pub server: Option<ServerId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// The typed client.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<SecretString>,
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Per-request timeout of ordinary calls (not watches).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ApiClient {
    /// A client of the API at `base_url` (`http://127.0.0.1:8080`), authenticating with
    /// `token` when given.
    pub fn new(base_url: &str, token: Option<SecretString>) -> Result<Self> {
        let url = reqwest::Url::parse(base_url).map_err(|e| ClientError::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::BadUrl(format!(
                "scheme {} is not http or https",
                url.scheme()
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("zlh-api-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::BadUrl(e.to_string()))?;
        Ok(ApiClient {
            base: base_url.trim_end_matches('/').to_string(),
            token,
            http,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The console WebSocket's handshake request (`GET /api/servers/{id}/console`, `ws` or
    /// `wss` for `http` or `https`), with the bearer token.
    pub fn console_request(
        &self,
        id: ServerId,
        read_only: bool,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let base = match self.base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => return Err(ClientError::BadUrl(self.base.clone())),
        };
        let query = if read_only { "?read_only=true" } else { "" };
        let mut req = format!("{base}/api/servers/{id}/console{query}")
            .into_client_request()
            .map_err(|e| ClientError::BadUrl(e.to_string()))?;
        if let Some(t) = &self.token {
            let v = reqwest::header::HeaderValue::try_from(format!("Bearer {}", t.expose_secret()))
                .map_err(|_| ClientError::BadUrl("the token is not a header value".into()))?;
            req.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(req)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t.expose_secret());
        }
        rb
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        // The chain's innermost message says why (refused, timed out, ...); URLs never carry
        // the token.
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            reason = s.to_string();
            src = s.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// Send and turn non-2xx answers into errors; 429 (and 503 for idempotent methods) are
    /// retried as the policy says, waiting what `Retry-After` asks. A 429 is answered before
    /// any handler runs, so any request may repeat; a 503 may come after a write committed
    /// (the request timed out), so a POST or PATCH (a restart would happen twice) is not
    /// repeated on it (docs/errors.md).
    async fn send(&self, rb: RequestBuilder) -> Result<reqwest::Response> {
        use backon::{ExponentialBuilder, Retryable};
        // A streaming body cannot be sent twice; every body of this client is in memory.
        let Some(first) = rb.try_clone() else {
            return self.send_once(rb, false).await.map_err(|f| f.error);
        };
        let idempotent = rb
            .try_clone()
            .and_then(|r| r.build().ok())
            .is_some_and(|r| {
                matches!(
                    *r.method(),
                    Method::GET | Method::HEAD | Method::PUT | Method::DELETE
                )
            });
        let policy = self.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.backoff)
            .with_max_delay(policy.max_retry_after)
            .with_max_times(policy.retries)
            .with_jitter();
        let mut next = Some(first);
        let attempt = || {
            let rb = next.take().or_else(|| rb.try_clone());
            async move {
                match rb {
                    Some(rb) => self.send_once(rb, idempotent).await,
                    None => Err(Failure {
                        error: ClientError::Protocol("the request cannot be repeated".into()),
                        later: Later::Never,
                    }),
                }
            }
        };
        attempt
            .retry(backoff)
            .when(|f: &Failure| !matches!(f.later, Later::Never))
            .adjust(|f: &Failure, wait| match f.later {
                Later::Never => None,
                Later::After(d) if d > policy.max_retry_after => None,
                Later::After(d) => wait.map(|_| d),
                Later::Backoff => wait,
            })
            .await
            .map_err(|f| f.error)
    }

    async fn send_once(
        &self,
        rb: RequestBuilder,
        idempotent: bool,
    ) -> Result<reqwest::Response, Failure> {
        let res = rb.send().await.map_err(|e| Failure {
            error: self.unreachable(e),
            later: Later::Never,
        })?;
        if res.status().is_success() {
            return Ok(res);
        }
        let later = match res.status().as_u16() {
            429 => retry_after(res.headers()).map_or(Later::Backoff, Later::After),
            503 if idempotent => retry_after(res.headers()).map_or(Later::Backoff, Later::After),
            _ => Later::Never,
        };
        Err(Failure {
            error: error_of(res).await,
            later,
        })
    }

    async fn call<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let res = self.send(rb.timeout(CALL_TIMEOUT)).await?;
        let bytes = res.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    // --- servers ---------------------------------------------------------------------

    /// `POST /api/servers`.
    pub async fn create(
        &self,
        req: &CreateServerRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted> {
        let mut rb = self.request(Method::POST, "/api/servers").json(req);
        if let Some(k) = idempotency_key {
            rb = rb.header("Idempotency-Key", k);
        }
        self.call(rb).await
    }

    /// `GET /api/servers` (one page).
    pub async fn list(&self, filter: &ListFilter, page: PageParams) -> Result<ServerList> {
        let mut q = filter_query(filter);
        if let Some(l) = page.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(a) = page.after {
            q.push(("after", a.to_string()));
        }
        self.call(self.request(Method::GET, "/api/servers").query(&q))
            .await
    }

    /// Every page of `GET /api/servers`.
    pub async fn list_all(&self, filter: &ListFilter) -> Result<Vec<Server>> {
        let mut out = Vec::new();
        let mut page = PageParams {
            limit: Some(500),
            after: None,
        };
        loop {
            let p = self.list(filter, page).await?;
            out.extend(p.items);
            match p.next {
                Some(n) => page.after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// `GET /api/servers/{id}`.
    pub async fn get(&self, id: ServerId) -> Result<Server> {
        self.call(self.request(Method::GET, &format!("/api/servers/{id}")))
            .await
    }

    /// `PATCH /api/servers/{id}`; with `resource_version`, only if the server is still there.
    pub async fn patch(
        &self,
        id: ServerId,
        spec: ServerSpec,
        resource_version: Option<i64>,
    ) -> Result<Accepted> {
        let body = PatchServerRequest {
            spec,
            resource_version,
        };
        self.call(
            self.request(Method::PATCH, &format!("/api/servers/{id}"))
                .json(&body),
        )
        .await
    }

    /// `POST /api/servers/{id}/power`; with `resource_version`, only if the server is still
    /// at that version (`If-Match`).
    pub async fn power(
        &self,
        id: ServerId,
        req: &PowerRequest,
        resource_version: Option<i64>,
    ) -> Result<PowerOutcome> {
        let mut rb = self
            .request(Method::POST, &format!("/api/servers/{id}/power"))
            .json(req)
            .timeout(CALL_TIMEOUT);
        if let Some(rv) = resource_version {
            rb = rb.header(reqwest::header::IF_MATCH, format!("\"{rv}\""));
        }
        let res = self.send(rb).await?;
        let changed = res.status() == reqwest::StatusCode::ACCEPTED;
        let bytes = res.bytes().await.map_err(|e| self.unreachable(e))?;
        let bad = |e: serde_json::Error| ClientError::Protocol(e.to_string());
        Ok(if changed {
            PowerOutcome::Changed(serde_json::from_slice(&bytes).map_err(bad)?)
        } else {
            PowerOutcome::Unchanged(serde_json::from_slice(&bytes).map_err(bad)?)
        })
    }

    /// `POST /api/servers/{id}/command`: one console line, without opening a console.
    pub async fn command(&self, id: ServerId, line: &str) -> Result<()> {
        let rb = self
            .request(Method::POST, &format!("/api/servers/{id}/command"))
            .json(&serde_json::json!({ "command": line }))
            .timeout(CALL_TIMEOUT);
        self.send(rb).await.map(|_| ())
    }

    /// `DELETE /api/servers/{id}`.
    pub async fn delete(&self, id: ServerId) -> Result<Accepted> {
        self.call(self.request(Method::DELETE, &format!("/api/servers/{id}")))
            .await
    }

    /// `POST /api/servers/{id}/reconcile[?retry=true]`.
    pub async fn reconcile(&self, id: ServerId, retry: bool) -> Result<Server> {
        let mut rb = self.request(Method::POST, &format!("/api/servers/{id}/reconcile"));
        if retry {
            rb = rb.query(&[("retry", "true")]);
        }
        self.call(rb).await
    }

    /// `POST /api/servers:reconcile[?retry=true]`: every server the filter matches, in one call.
    pub async fn reconcile_all(&self, filter: &ListFilter, retry: bool) -> Result<BulkReconciled> {
        let mut q = filter_query(filter);
        if retry {
            q.push(("retry", "true".into()));
        }
        self.call(
            self.request(Method::POST, "/api/servers:reconcile")
                .query(&q),
        )
        .await
    }

    /// `POST /api/servers/{id}/pause`.
    pub async fn pause(&self, id: ServerId) -> Result<Server> {
        self.call(self.request(Method::POST, &format!("/api/servers/{id}/pause")))
            .await
    }

    /// `POST /api/servers/{id}/resume`.
    pub async fn resume(&self, id: ServerId) -> Result<Server> {
        self.call(self.request(Method::POST, &format!("/api/servers/{id}/resume")))
            .await
    }

    /// `GET /api/servers/{id}/events`, newest first.
    pub async fn events(&self, id: ServerId) -> Result<Vec<Event>> {
        let l: EventList = self
            .call(self.request(Method::GET, &format!("/api/servers/{id}/events")))
            .await?;
        Ok(l.items)
    }

    // --- operations, controller, customers, catalog ----------------------------------

    /// `GET /api/operations/{id}`.
    pub async fn operation(&self, id: OperationId) -> Result<OperationStatus> {
        self.call(self.request(Method::GET, &format!("/api/operations/{id}")))
            .await
    }

    /// `GET /api/controller`.
    pub async fn controller_status(&self) -> Result<ControllerStatus> {
        self.call(self.request(Method::GET, "/api/controller"))
            .await
    }

    /// `GET /api/orphans`.
    pub async fn orphans(&self) -> Result<Vec<Orphan>> {
        let l: OrphanList = self.call(self.request(Method::GET, "/api/orphans")).await?;
        Ok(l.items)
    }

    /// `GET /api/pools` (operators).
    pub async fn pools(&self) -> Result<Vec<crate::wire::PoolStatus>> {
        let l: crate::wire::PoolList = self.call(self.request(Method::GET, "/api/pools")).await?;
        Ok(l.items)
    }

    /// `GET /api/customers/{id}`.
    pub async fn customer(&self, id: &str) -> Result<Customer> {
        self.call(self.request(Method::GET, &format!("/api/customers/{id}")))
            .await
    }

    /// `PUT /api/customers/{id}` (operators).
    pub async fn set_customer(&self, id: &str, update: &CustomerUpdate) -> Result<Customer> {
        self.call(
            self.request(Method::PUT, &format!("/api/customers/{id}"))
                .json(update),
        )
        .await
    }

    /// `GET /api/catalog/game`.
    pub async fn catalog_game(&self) -> Result<GameCatalog> {
        self.call(self.request(Method::GET, "/api/catalog/game"))
            .await
    }

    /// `GET /api/catalog/dev`.
    pub async fn catalog_dev(&self) -> Result<DevCatalog> {
        self.call(self.request(Method::GET, "/api/catalog/dev"))
            .await
    }

    // --- tokens and audit (operators) ---------------------------------------------------

    /// `GET /api/tokens`.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let l: TokenList = self.call(self.request(Method::GET, "/api/tokens")).await?;
        Ok(l.items)
    }

    /// `POST /api/tokens`: the secret is in the answer, once.
    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreatedToken> {
        self.call(self.request(Method::POST, "/api/tokens").json(req))
            .await
    }

    /// `DELETE /api/tokens/{id}`.
    pub async fn revoke_token(&self, id: uuid::Uuid) -> Result<TokenInfo> {
        self.call(self.request(Method::DELETE, &format!("/api/tokens/{id}")))
            .await
    }

    /// `GET /api/audit` (one page, newest first).
    pub async fn audit(&self, q: &AuditParams) -> Result<AuditList> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = q.server {
            query.push(("server", s.to_string()));
        }
        if let Some(a) = &q.actor {
            query.push(("actor", a.clone()));
        }
        if let Some(a) = &q.action {
            query.push(("action", a.clone()));
        }
        if let Some(b) = q.before {
            query.push(("before", b.to_string()));
        }
        if let Some(l) = q.limit {
            query.push(("limit", l.to_string()));
        }
        self.call(self.request(Method::GET, "/api/audit").query(&query))
            .await
    }

    // --- Portal compatibility --------------------------------------------------------

    /// `POST /api/instances`.
    pub async fn create_instance(
        &self,
        req: &InstanceRequest,
        idempotency_key: Option<&str>,
    ) -> Result<InstanceAccepted> {
        let mut rb = self.request(Method::POST, "/api/instances").json(req);
        if let Some(k) = idempotency_key {
            rb = rb.header("Idempotency-Key", k);
        }
        self.call(rb).await
    }

    /// `GET /api/instances/operations/{id}`.
    pub async fn instance_operation(&self, id: OperationId) -> Result<InstanceOperation> {
        self.call(self.request(Method::GET, &format!("/api/instances/operations/{id}")))
            .await
    }

    // --- health ----------------------------------------------------------------------

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<()> {
        self.send(self.request(Method::GET, "/healthz").timeout(CALL_TIMEOUT))
            .await
            .map(|_| ())
    }

    /// `GET /readyz`: the API and its store answer.
    pub async fn ready(&self) -> Result<()> {
        self.send(self.request(Method::GET, "/readyz").timeout(CALL_TIMEOUT))
            .await
            .map(|_| ())
    }

    // --- watch -----------------------------------------------------------------------

    /// `GET /api/servers?watch=true`: one connection's events. Without `resume_from` the
    /// stream starts with the current list (upserts without `seq`) and a bookmark. To survive
    /// disconnects, call again with `resume_from` = the last `seq` seen: nothing is missed.
    /// The stream ends when the server closes it; an `error` event becomes an `Err` item.
    pub fn watch(
        &self,
        filter: &ListFilter,
        resume_from: Option<i64>,
    ) -> impl Stream<Item = Result<WatchEvent>> + Send + 'static {
        let mut q = filter_query(filter);
        q.push(("watch", "true".into()));
        let mut rb = self
            .request(Method::GET, "/api/servers")
            .query(&q)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(n) = resume_from {
            rb = rb.header("Last-Event-ID", n.to_string());
        }
        let this = self.clone();
        futures::stream::once(async move {
            let res = this.send(rb).await?;
            let base = this.base.clone();
            Ok(res.bytes_stream().eventsource().filter_map(move |ev| {
                let base = base.clone();
                async move {
                    match ev {
                        Ok(ev) => decode_event(ev),
                        Err(e) => Some(Err(ClientError::Unreachable {
                            url: base,
                            reason: format!("watch stream broke: {e}"),
                        })),
                    }
                }
            }))
        })
        .map(|r: Result<_>| match r {
            Ok(s) => s.left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten()
    }
}

fn decode_event(ev: eventsource_stream::Event) -> Option<Result<WatchEvent>> {
    let seq = || ev.id.parse::<i64>().ok();
    let bad =
        |what: &str, e: serde_json::Error| ClientError::Protocol(format!("{what} event: {e}"));
    Some(match ev.event.as_str() {
        "upsert" => serde_json::from_str::<Server>(&ev.data)
            .map(|s| WatchEvent::Upsert {
                seq: seq(),
                server: Box::new(s),
            })
            .map_err(|e| bad("upsert", e)),
        "delete" => match (serde_json::from_str::<DeletedRef>(&ev.data), seq()) {
            (Ok(d), Some(seq)) => Ok(WatchEvent::Delete { seq, id: d.id }),
            (Err(e), _) => Err(bad("delete", e)),
            (_, None) => Err(ClientError::Protocol("delete event without id".into())),
        },
        "bookmark" => serde_json::from_str::<Bookmark>(&ev.data)
            .map(|b| WatchEvent::Bookmark {
                seq: b.resource_version,
            })
            .map_err(|e| bad("bookmark", e)),
        "error" => match serde_json::from_str::<Problem>(&ev.data) {
            Ok(p) => Err(ClientError::from_problem(p, None)),
            Err(e) => Err(bad("error", e)),
        },
        // Unknown event types are for newer clients.
        _ => return None,
    })
}

fn filter_query(f: &ListFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(c) = &f.customer {
        q.push(("customer", c.clone()));
    }
    if let Some(p) = f.phase {
        q.push(("phase", p.as_str().into()));
    }
    if let Some(k) = f.kind {
        q.push(("kind", k.as_str().into()));
    }
    if let Some(h) = &f.hostname {
        q.push(("hostname", h.clone()));
    }
    if let Some(v) = f.vmid {
        q.push(("vmid", v.to_string()));
    }
    q
}

/// `Retry-After` in seconds (the API never sends the HTTP-date form).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .map(Duration::from_secs)
}

/// The error for a non-2xx answer: its problem body, or one made up from the status.
async fn error_of(res: reqwest::Response) -> ClientError {
    let status = res.status();
    let retry_after = retry_after(res.headers()).map(|d| d.as_secs());
    let body = res.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice::<Problem>(&body)
        .ok()
        .filter(|p| !p.title.is_empty())
        .map(|mut p| {
            p.status = status.as_u16();
            p
        })
        .unwrap_or_else(|| {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            Problem {
                type_: "about:blank".into(),
                title: status
                    .canonical_reason()
                    .unwrap_or("HTTP error")
                    .to_string(),
                status: status.as_u16(),
                detail: (!text.trim().is_empty()).then(|| text.trim().to_string()),
                instance: None,
                errors: vec![],
                request_id: None,
                operation_id: None,
                standing: None,
                error: None,
            }
        });
    ClientError::from_problem(problem, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn debug_redacts_the_token() {
        let c = ApiClient::new(
            "http://127.0.0.1:1",
            Some(SecretString::from("zlh_supersecret")),
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("supersecret"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn statuses_map_to_variants() {
        type Case = (&'static str, u16, fn(&ClientError) -> bool);
        let cases: &[Case] = &[
            ("401 is unauthorized", 401, |e| {
                matches!(e, ClientError::Unauthorized(_))
            }),
            ("403 is forbidden", 403, |e| {
                matches!(e, ClientError::Forbidden(_))
            }),
            ("404 is not found", 404, |e| {
                matches!(e, ClientError::NotFound(_))
            }),
            ("409 is a conflict", 409, |e| {
                matches!(e, ClientError::Conflict(_))
            }),
            ("422 is invalid", 422, |e| {
                matches!(e, ClientError::Invalid(_))
            }),
            ("413 is invalid", 413, |e| {
                matches!(e, ClientError::Invalid(_))
            }),
            ("429 is rate limited", 429, |e| {
                matches!(e, ClientError::RateLimited { .. })
            }),
            ("503 is a server error", 503, |e| {
                matches!(e, ClientError::Server(_))
            }),
        ];
        for (reason, status, check) in cases {
            let p = Problem::for_status(StatusCode::from_u16(*status).unwrap());
            let e = ClientError::from_problem(p, Some(3));
            assert!(check(&e), "{reason}: {e:?}");
            assert!(!e.to_string().contains('\n'), "{reason}");
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            ApiClient::new("not a url", None),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            ApiClient::new("ftp://x", None),
            Err(ClientError::BadUrl(_))
        ));
    }
}
