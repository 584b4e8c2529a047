//! Watch: a client that disconnects and reconnects with its last id misses nothing and gets
//! nothing twice.

use crate::common::{Harness, paper};
use api::wire::{CreateServerRequest, ListFilter, WatchEvent};
use futures::{Stream, StreamExt};
use model::store::{ChangeKind, Store};
use model::{Role, ServerId, ServerSpec};
use std::time::Duration;

/// The next event (the timeout only keeps a broken test from hanging).
async fn next<S>(w: &mut S) -> WatchEvent
where
    S: Stream<Item = Result<WatchEvent, api::ClientError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("an event")
        .expect("stream open")
        .expect("a good event")
}

fn summary(e: &WatchEvent) -> (i64, &'static str, ServerId) {
    match e {
        WatchEvent::Upsert { seq, server } => {
            (seq.expect("change events carry ids"), "upsert", server.id)
        }
        WatchEvent::Delete { seq, id } => (*seq, "delete", *id),
        WatchEvent::Bookmark { .. } => panic!("no bookmark after a resume"),
    }
}

fn create(customer: &str, spec: ServerSpec) -> CreateServerRequest {
    CreateServerRequest {
        customer_id: Some(customer.into()),
        spec,
    }
}

#[tokio::test]
async fn reconnecting_with_the_last_id_receives_exactly_the_missed_changes() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let a = op
        .create(&create("u1", paper()), Some("a"))
        .await
        .unwrap()
        .server;

    // First connection: the current list, a bookmark, then live changes.
    let mut w = Box::pin(op.watch(&ListFilter::default(), None));
    match next(&mut w).await {
        WatchEvent::Upsert { seq: None, server } => assert_eq!(server.id, a.id),
        other => panic!("expected the listing first: {other:?}"),
    }
    let WatchEvent::Bookmark { seq: bookmark } = next(&mut w).await else {
        panic!("expected a bookmark")
    };
    let b = op
        .create(&create("u2", ServerSpec::dev("node", "22")), Some("b"))
        .await
        .unwrap()
        .server;
    let (last, kind, id) = summary(&next(&mut w).await);
    assert_eq!((kind, id), ("upsert", b.id));
    assert!(last > bookmark);
    drop(w); // disconnect

    // While away: a spec change, a status write, a deletion (request + archive), a create.
    let mut bigger = paper();
    bigger.resources.memory_mib = 3072;
    op.patch(a.id, bigger, None).await.unwrap();
    let bs = h.get(b.id).await;
    let mut st = bs.status.clone();
    st.vmid = Some(6001);
    h.store
        .write_status(b.id, &st, bs.resource_version, None)
        .await
        .unwrap();
    op.delete(a.id).await.unwrap();
    h.store.archive_and_delete(a.id, None).await.unwrap();
    let c = op
        .create(&create("u3", paper()), Some("c"))
        .await
        .unwrap()
        .server;

    let missed = h.store.changes_since(last, 1000).await.unwrap();
    let want: Vec<(i64, &str, ServerId)> = missed
        .iter()
        .map(|ch| {
            let k = match ch.kind {
                ChangeKind::Upsert => "upsert",
                ChangeKind::Delete => "delete",
            };
            (ch.seq, k, ch.server_id)
        })
        .collect();
    // Every write above is in the feed, ending with the delete of a and the create of c.
    assert!(want.len() >= 5, "{want:?}");
    let n = want.len();
    assert_eq!((want[n - 2].1, want[n - 2].2), ("delete", a.id), "{want:?}");
    assert_eq!(want.last().unwrap().2, c.id);

    // Reconnect with the last id: exactly the missed changes, in order.
    let mut w = Box::pin(op.watch(&ListFilter::default(), Some(last)));
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(summary(&next(&mut w).await));
    }
    assert_eq!(got, want);
    // And nothing else: the next event is the next change.
    let d = op
        .create(&create("u4", paper()), Some("d"))
        .await
        .unwrap()
        .server;
    let (seq, kind, id) = summary(&next(&mut w).await);
    assert_eq!((kind, id), ("upsert", d.id));
    assert!(seq > want.last().unwrap().0);
    // The upsert carries the server as it is now.
    if let WatchEvent::Upsert { server, .. } = next_after_patch(&op, &mut w, d.id).await {
        assert_eq!(server.spec.resources.memory_mib, 4096);
    }
}

async fn next_after_patch<S>(op: &api::ApiClient, w: &mut S, id: ServerId) -> WatchEvent
where
    S: Stream<Item = Result<WatchEvent, api::ClientError>> + Unpin,
{
    let mut spec = paper();
    spec.resources.memory_mib = 4096;
    op.patch(id, spec, None).await.unwrap();
    next(w).await
}

#[tokio::test]
async fn a_customer_watch_sees_only_its_own_changes() {
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let u1 = h.client(&h.token(Role::Customer, Some("u1")).await);
    let start = h.store.latest_seq().await.unwrap();
    let mut w = Box::pin(u1.watch(&ListFilter::default(), Some(start)));
    op.create(&create("u2", paper()), Some("x")).await.unwrap();
    let mine = op
        .create(&create("u1", paper()), Some("y"))
        .await
        .unwrap()
        .server;
    // The other customer's change is skipped; the first event is u1's.
    let (_, kind, id) = summary(&next(&mut w).await);
    assert_eq!((kind, id), ("upsert", mine.id));

    // resourceVersion= works like Last-Event-ID, and filters apply.
    let dev = op
        .create(&create("u1", ServerSpec::dev("node", "22")), Some("z"))
        .await
        .unwrap()
        .server;
    let f = ListFilter {
        kind: Some(model::Kind::Dev),
        ..Default::default()
    };
    let res = h
        .http
        .get(h.url(&format!(
            "/api/servers?watch=true&kind=dev&resourceVersion={start}"
        )))
        .bearer_auth(h.token(Role::Customer, Some("u1")).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(res);
    let mut w = Box::pin(u1.watch(&f, Some(start)));
    let (_, kind, id) = summary(&next(&mut w).await);
    assert_eq!((kind, id), ("upsert", dev.id));
}

/// A watch resuming from a position the change feed no longer reaches (retention) gets 410
/// Gone with a problem saying to re-list (as Kubernetes answers a too-old resourceVersion);
/// re-listing (a watch without a position) works and follows new changes.
#[tokio::test]
async fn a_watch_behind_the_feeds_retention_is_told_to_relist() {
    use model::store::Prune;
    let h = Harness::start().await;
    let op = h.client(&h.token(Role::Operator, None).await);
    let start = h.store.latest_seq().await.unwrap();
    op.create(&create("u1", paper()), Some("a")).await.unwrap();
    let everything = Prune::ChangeFeed {
        keep_for: Duration::ZERO,
    };
    // Bounded: the feed holds one change per write above.
    for _ in 0..10 {
        if h.store.prune(everything, 100).await.unwrap() == 0 {
            break;
        }
    }
    let mut w = Box::pin(op.watch(&ListFilter::default(), Some(start)));
    let e = w.next().await.expect("an answer").expect_err("410");
    assert_eq!(e.status(), Some(410), "{e}");
    let p = e.problem().unwrap();
    assert_eq!(p.type_, api::problem::kind::GONE.uri);
    assert!(
        p.detail.as_deref().unwrap_or("").contains("re-list"),
        "{p:?}"
    );

    // Re-list: the snapshot, its bookmark, then the next change.
    let mut w = Box::pin(op.watch(&ListFilter::default(), None));
    loop {
        if let WatchEvent::Bookmark { .. } = next(&mut w).await {
            break;
        }
    }
    let b = op
        .create(&create("u2", paper()), Some("b"))
        .await
        .unwrap()
        .server;
    let (_, kind, id) = summary(&next(&mut w).await);
    assert_eq!((kind, id), ("upsert", b.id));
}
