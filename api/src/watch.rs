//! `GET /api/servers?watch=true`: the change feed as Server-Sent Events.
//!
//! Each change is sent as `event: upsert` (data: the server as it is now, or its last state if
//! it has been deleted since) or `event: delete`
//! (data: `{"id": ...}`), with `id: <change-feed sequence>`. A client that reconnects with
//! `Last-Event-ID: N` (or `resourceVersion=N`) gets every change after `N` that it may see,
//! exactly once each. Without a resume point the stream starts with the current list (matching
//! the filters) as `upsert` events *without* ids, followed by `event: bookmark` whose id is the
//! sequence the list is current to; resuming from it misses nothing.
//!
//! The feed is read in a loop that wakes on every store write (in-process notice) and at least
//! every `watch_poll_interval` (covering lost notices). Keep-alive comments flow every 15 s.
//! Filters are applied to each change as the server is now; a server that stops matching is
//! not announced as deleted.

use crate::auth::Principal;
use crate::auth::store_filter;
use crate::problem::{ApiError, ApiResult, Problem};
use crate::state::Ctx;
use crate::wire::ListQuery;
use crate::wire::{Bookmark, DeletedRef};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use model::Server;
use model::store::{Change, ChangeKind, PageRequest, ServerFilter, Store};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Changes read from the feed per query.
const BATCH: u32 = 500;

/// Why a resume point beyond the feed's latest sequence is refused: no stream of this feed
/// sent it (another database, a restored backup, a made-up number), and following it would
/// silently skip every change up to it.
pub const RESUME_AHEAD: &str = "is ahead of the change feed";

const LAST_EVENT_ID: &str = "Last-Event-ID";
const RESOURCE_VERSION: &str = "resourceVersion";

/// The resume point and where it came from: `Last-Event-ID` wins over `resourceVersion`.
fn resume_point(headers: &HeaderMap, q: &ListQuery) -> ApiResult<Option<(i64, &'static str)>> {
    if let Some(v) = headers.get("last-event-id") {
        let s = v.to_str().unwrap_or("").trim();
        return match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some((n, LAST_EVENT_ID))),
            _ => Err(ApiError::BadRequest(
                "Last-Event-ID must be a non-negative change sequence".into(),
            )),
        };
    }
    match q.resource_version {
        Some(n) if n < 0 => Err(ApiError::BadRequest(
            "resourceVersion must be non-negative".into(),
        )),
        other => Ok(other.map(|n| (n, RESOURCE_VERSION))),
    }
}

pub(crate) async fn watch(
    ctx: Arc<Ctx>,
    p: Principal,
    headers: &HeaderMap,
    q: &ListQuery,
) -> ApiResult<Response> {
    let resume = resume_point(headers, q)?;
    if q.limit.is_some() || q.after.is_some() {
        return Err(ApiError::BadRequest(
            "limit and after do not apply to a watch".into(),
        ));
    }
    let filter = store_filter(&p, &q.filter());
    // Fail before the stream starts if the store is down (a clean 503 instead of a stream
    // that ends at once).
    let latest = ctx.app.store.latest_seq().await?;
    if let Some((n, name)) = resume
        && n > latest
    {
        return Err(ApiError::BadRequest(format!(
            "{name} {n} {RESUME_AHEAD} (latest {latest}); resume from a sequence this API sent, \
             or watch without one to start from the current list"
        )));
    }
    // Behind the feed's retention: 410 with "re-list" (as Kubernetes answers a too-old
    // resourceVersion), before the stream starts.
    if let Some((n, _)) = resume {
        ctx.app.store.changes_since(n, 1).await?;
    }
    let resume = resume.map(|(n, _)| n);
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let w = Watcher { ctx, p, filter, tx };
    tokio::spawn(async move {
        match resume {
            Some(after) => w.follow(after).await,
            None => {
                if w.snapshot(latest).await.is_some() {
                    w.follow(latest).await
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct Watcher {
    ctx: Arc<Ctx>,
    p: Principal,
    /// `None`: the caller may see nothing of what it asked for.
    filter: Option<ServerFilter>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
}

/// Whether a server matches the filter (the same semantics as the store's list filter).
pub(crate) fn matches(f: &ServerFilter, s: &Server) -> bool {
    f.customer_id.as_ref().is_none_or(|c| *c == s.customer_id)
        && f.kind.is_none_or(|k| k == s.spec.kind)
        && f.phase.is_none_or(|ph| ph == s.phase().0)
        && f.hostname
            .as_ref()
            .is_none_or(|h| s.status.hostname.as_ref() == Some(h))
        && f.vmid
            .is_none_or(|v| s.status.vmid == Some(v) || s.reserved_vmid == Some(v))
}

impl Watcher {
    /// Send; `None` when the client is gone.
    async fn send(&self, ev: Event) -> Option<()> {
        self.tx.send(Ok(ev)).await.ok()
    }

    async fn fail(&self, e: model::store::StoreError) {
        let err = ApiError::from(e);
        if let ApiError::Unavailable(d) = &err {
            tracing::warn!(error = %d, "watch: store error; ending the stream");
        }
        let p: Problem = err.to_problem();
        if let Ok(ev) = Event::default().event("error").json_data(&p) {
            let _ = self.send(ev).await;
        }
    }

    /// The current list as upserts without ids, then a bookmark at `latest`.
    async fn snapshot(&self, latest: i64) -> Option<()> {
        if let Some(filter) = &self.filter {
            let mut after = None;
            loop {
                let page = match self
                    .ctx
                    .app
                    .store
                    .list_servers(
                        filter,
                        PageRequest {
                            after,
                            limit: BATCH,
                        },
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        self.fail(e).await;
                        return None;
                    }
                };
                for s in crate::redact::servers(&self.p, page.items) {
                    let ev = Event::default().event("upsert").json_data(&s).ok()?;
                    self.send(ev).await?;
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        let ev = Event::default()
            .event("bookmark")
            .id(latest.to_string())
            .json_data(Bookmark {
                resource_version: latest,
            })
            .ok()?;
        self.send(ev).await
    }

    /// Follow the change feed after `cursor` until the client leaves or the server shuts down.
    async fn follow(&self, mut cursor: i64) {
        let mut wake = self.ctx.app.store.subscribe();
        let poll = self.ctx.app.config.watch_poll_interval;
        loop {
            let changes = match self.ctx.app.store.changes_since(cursor, BATCH).await {
                Ok(c) => c,
                Err(e) => return self.fail(e).await,
            };
            let full = changes.len() as u32 == BATCH;
            for ch in changes {
                cursor = ch.seq;
                match self.event_for(&ch).await {
                    Ok(Some(ev)) => {
                        if self.send(ev).await.is_none() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return self.fail(e).await,
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
                r = wake.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        wake = self.ctx.app.store.subscribe();
                    }
                }
            }
        }
    }

    /// The event for one change, if this caller may see it and it matches the filters.
    async fn event_for(&self, ch: &Change) -> Result<Option<Event>, model::store::StoreError> {
        let Some(filter) = &self.filter else {
            return Ok(None);
        };
        let store = &self.ctx.app.store;
        match ch.kind {
            ChangeKind::Upsert => {
                // Gone since: its last state is in the archive (its delete change follows).
                let s = match store.get_server(ch.server_id).await? {
                    Some(s) => s,
                    None => match store.get_archived(ch.server_id).await? {
                        Some(a) => a.server,
                        None => return Ok(None),
                    },
                };
                if !self.p.sees(&s.customer_id) || !matches(filter, &s) {
                    return Ok(None);
                }
                Ok(Event::default()
                    .event("upsert")
                    .id(ch.seq.to_string())
                    .json_data(crate::redact::server(&self.p, s))
                    .ok())
            }
            ChangeKind::Delete => {
                let visible = match store.get_archived(ch.server_id).await? {
                    Some(a) => {
                        let s = &a.server;
                        self.p.sees(&s.customer_id)
                            && filter
                                .customer_id
                                .as_ref()
                                .is_none_or(|c| *c == s.customer_id)
                            && filter.kind.is_none_or(|k| k == s.spec.kind)
                    }
                    // Nothing to prove ownership with: only unscoped, unfiltered watchers.
                    None => self.p.scope.is_none() && filter.customer_id.is_none(),
                };
                if !visible {
                    return Ok(None);
                }
                Ok(Event::default()
                    .event("delete")
                    .id(ch.seq.to_string())
                    .json_data(DeletedRef { id: ch.server_id })
                    .ok())
            }
        }
    }
}
