//! Store scenarios, each written once and run against SQLite and PostgreSQL.
//!
//! Postgres tests use `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`, a
//! role that may CREATE DATABASE) and create a fresh database per test, dropped afterwards.

use chrono::{DateTime, Utc};
use futures::future::join_all;
use model::store::*;
use model::{
    ConditionStatus, ConditionType, EventType, Kind, ManualClock, OperationKind, Phase, Quota,
    Role, ServerId, ServerSpec, ServerStatus, Standing, Variant,
};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const TTL: Duration = Duration::from_secs(30);

// --- harness -------------------------------------------------------------------------------

struct Harness {
    store: AnyStore,
    clock: ManualClock,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(PathBuf),
    Pg { admin_url: String, db: String },
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 120_000_000).unwrap()
}

impl Harness {
    async fn sqlite() -> Harness {
        let path = std::env::temp_dir().join(format!(
            "zlh-store-test-{}.db",
            uuid::Uuid::now_v7().simple()
        ));
        let url = format!("sqlite:{}", path.display());
        Harness::open(url, Cleanup::Sqlite(path)).await
    }

    async fn postgres() -> Harness {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let db = format!("zlh_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("Postgres tests need DATABASE_URL (a role with CREATEDB): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let (server, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL has a database name");
        let url = format!("{server}/{db}{query}");
        Harness::open(url, Cleanup::Pg { admin_url, db }).await
    }

    async fn open(url: String, cleanup: Cleanup) -> Harness {
        let clock = ManualClock::new(t0());
        let store = AnyStore::connect(&url, Arc::new(clock.clone()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        Harness {
            store,
            clock,
            url,
            cleanup,
        }
    }

    /// Another store on the same database (another "process").
    async fn second_store(&self) -> AnyStore {
        AnyStore::connect(&self.url, Arc::new(self.clock.clone()))
            .await
            .expect("connect")
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(chrono::Duration::from_std(d).unwrap());
    }

    async fn finish(self) {
        let Harness { store, cleanup, .. } = self;
        drop(store);
        match cleanup {
            Cleanup::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Pg { admin_url, db } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("admin connect");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .expect("DROP DATABASE");
            }
        }
    }
}

/// Generate a SQLite and a Postgres test from each scenario `async fn name(&impl Store, &Harness)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let h = super::Harness::sqlite().await;
                super::$name(&h.store, &h).await;
                h.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let h = super::Harness::postgres().await;
                super::$name(&h.store, &h).await;
                h.finish().await;
            }
        }
    )*};
}

both!(
    create_get_list,
    update_spec_bumps_generation,
    write_status_is_optimistic,
    leases_fence_writers,
    deletion_and_archive,
    concurrent_reservations_are_distinct,
    last_free_vmid_goes_to_one,
    reservation_skips_and_replaces,
    concurrent_idempotent_creates,
    launch_guard,
    quota_and_standing,
    events_fold,
    status_and_events_are_one_write,
    change_feed,
    customers_and_tokens,
    replicas_and_orphans,
    singletons,
    notifications,
    concurrent_updates_stay_within_the_quota,
    quotas_cover_cores_and_disk,
    idempotency_keys_outlive_their_server,
    stats_merge_by_part_outside_the_feed,
    token_lifecycle,
    audit_log,
    reconcile_many,
);

/// A bulk reconcile: each server touched (feed, retry) with its event, a missing one skipped.
async fn reconcile_many(s: &impl Store, _h: &Harness) {
    let a = create(s, "alice", game()).await;
    let b = create(s, "bob", game()).await;
    let seq = s.latest_seq().await.unwrap();
    let gone = ServerId::new();
    let done = s
        .request_reconcile_many(
            &[a.id, gone, b.id],
            true,
            ("ReconcileRequested", "by oncall"),
        )
        .await
        .unwrap();
    assert_eq!(done, vec![a.id, b.id], "the missing one skipped");
    for x in [&a, &b] {
        let now = s.get_server(x.id).await.unwrap().unwrap();
        assert!(now.resource_version > x.resource_version, "touched");
        assert!(now.retry_requested_at.is_some(), "retry set");
        let ev = s.list_events(x.id, 10).await.unwrap();
        assert!(
            ev.iter()
                .any(|e| e.reason == "ReconcileRequested" && e.message == "by oncall")
        );
    }
    // Positions are not consecutive on PostgreSQL (they are transaction ids): count them.
    let changed: Vec<ServerId> = s
        .changes_since(seq, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.server_id)
        .collect();
    assert_eq!(changed, vec![a.id, b.id], "one feed entry each, in order");
}

/// Tokens carry an expiry, a throttled last use and a revocation; listing shows every token.
async fn token_lifecycle(s: &impl Store, h: &Harness) {
    use model::TokenState;
    let expires = t0() + chrono::Duration::days(30);
    let t = s
        .create_token_expiring("ci", "h-ci", Role::Viewer, None, Some(expires))
        .await
        .unwrap();
    let forever = s
        .create_token("oncall", "h-oncall", Role::Operator, None)
        .await
        .unwrap();
    let found = s.find_token("h-ci").await.unwrap().unwrap();
    assert_eq!(found.expires_at, Some(expires), "expiry stored");
    assert_eq!(found.state(t0()), TokenState::Active);
    assert_eq!(
        found.state(expires),
        TokenState::Expired,
        "expiry is exclusive"
    );

    // A use is written; an earlier or throttled one does not overwrite a newer one.
    let used = t0() + chrono::Duration::minutes(5);
    s.touch_token(t.id, used, used - chrono::Duration::minutes(1))
        .await
        .unwrap();
    s.touch_token(t.id, used + chrono::Duration::seconds(10), used)
        .await
        .unwrap();
    let got = s.get_token(t.id).await.unwrap().unwrap();
    assert_eq!(
        got.last_used_at,
        Some(used),
        "one write per throttle period"
    );

    let revoked = s.revoke_token(t.id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(t0()));
    assert_eq!(revoked.state(t0()), TokenState::Revoked);
    h.clock.advance(chrono::Duration::seconds(60));
    let again = s.revoke_token(t.id).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(t0()),
        "the first revocation's time stays"
    );
    assert!(matches!(
        s.revoke_token(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
    let names: Vec<_> = s
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.revoked_at.is_some()))
        .collect();
    assert_eq!(
        names,
        vec![("ci".to_string(), true), ("oncall".to_string(), false)]
    );
    assert_eq!(
        s.find_token("h-oncall").await.unwrap().unwrap().id,
        forever.id
    );
}

/// The audit log: appended with the store's clock, filtered, paged newest first, pruned
/// oldest first in bounded batches.
async fn audit_log(s: &impl Store, h: &Harness) {
    use model::{AuditFilter, NewAudit};
    let a = ServerId::new();
    let entry = |actor: &str, action: &str, server: Option<ServerId>| NewAudit {
        actor: actor.into(),
        role: Role::Operator,
        action: action.into(),
        server_id: server,
        detail: format!("{action} by {actor}"),
    };
    let first = s
        .record_audit(&entry("oncall", "server.pause", Some(a)))
        .await
        .unwrap();
    assert_eq!(first.at, t0());
    h.clock.advance(chrono::Duration::seconds(3600));
    for i in 0..5 {
        s.record_audit(&entry("ci", "server.reconcile", Some(ServerId::new())))
            .await
            .unwrap();
        let _ = i;
    }
    s.record_audit(&entry("oncall", "token.create", None))
        .await
        .unwrap();
    let all = s.list_audit(&AuditFilter::default(), 100).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    assert_eq!(all[0].action, "token.create");
    assert_eq!(all[0].server_id, None);

    type Case = (&'static str, AuditFilter, usize);
    let cases: Vec<Case> = vec![
        (
            "by server",
            AuditFilter {
                server_id: Some(a),
                ..Default::default()
            },
            1,
        ),
        (
            "by actor",
            AuditFilter {
                actor: Some("ci".into()),
                ..Default::default()
            },
            5,
        ),
        (
            "by action",
            AuditFilter {
                action: Some("token.create".into()),
                ..Default::default()
            },
            1,
        ),
        (
            "actor and action together",
            AuditFilter {
                actor: Some("oncall".into()),
                action: Some("server.reconcile".into()),
                ..Default::default()
            },
            0,
        ),
        (
            "before a seq: the older ones",
            AuditFilter {
                before: Some(all[2].seq),
                ..Default::default()
            },
            4,
        ),
    ];
    for (reason, f, n) in cases {
        assert_eq!(s.list_audit(&f, 100).await.unwrap().len(), n, "{reason}");
    }
    // Paging: pages of 3 cover everything once.
    let mut seen = Vec::new();
    let mut f = AuditFilter::default();
    for _ in 0..10 {
        let page = s.list_audit(&f, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        f.before = Some(last.seq);
        seen.extend(page.into_iter().map(|e| e.seq));
    }
    assert_eq!(seen, all.iter().map(|e| e.seq).collect::<Vec<_>>());

    // Pruning: only entries older than the cut, at most a batch per call, oldest first.
    // keep_for is measured from the store's clock.
    let keep = |cut: DateTime<Utc>| model::store::Prune::Audit {
        keep_for: (model::Clock::now(&h.clock) - cut).to_std().unwrap(),
    };
    let cut = t0() + chrono::Duration::minutes(30);
    assert_eq!(
        s.prune(keep(cut), 10).await.unwrap(),
        1,
        "only the first is older"
    );
    assert_eq!(s.prune(keep(cut), 10).await.unwrap(), 0);
    h.clock.advance(chrono::Duration::hours(2));
    let later = t0() + chrono::Duration::hours(2);
    assert_eq!(s.prune(keep(later), 2).await.unwrap(), 2, "bounded");
    let left = s.list_audit(&AuditFilter::default(), 100).await.unwrap();
    assert_eq!(left.len(), 4);
    assert_eq!(
        left.last().unwrap().seq,
        all[3].seq,
        "the oldest went first"
    );
}

/// Live detail: a part a sample carries replaces the stored one and the others stay; a write
/// bumps no `resourceVersion` and adds nothing to the change feed; deletion drops the row.
async fn stats_merge_by_part_outside_the_feed(s: &impl Store, _h: &Harness) {
    use model::{Players, ResourceUsage, ServerStats};
    let a = create(s, "alice", game()).await;
    let b = create(s, "alice", game()).await;
    let (rv, seq) = (a.resource_version, s.latest_seq().await.unwrap());
    let usage = ResourceUsage {
        cpu: 0.25,
        mem_bytes: 512,
        maxmem_bytes: 1024,
        ..Default::default()
    };
    let res = |id| ServerStats {
        server_id: id,
        resources: Some(usage.clone()),
        resources_seen_at: Some(t0()),
        ..Default::default()
    };
    s.write_stats(&[res(a.id), res(b.id)]).await.unwrap();
    let later = t0() + chrono::Duration::seconds(30);
    let players = Players {
        online: 2,
        max: 20,
        sample: vec!["alex".into(), "steve".into()],
    };
    s.write_stats(&[ServerStats {
        server_id: a.id,
        players: Some(players.clone()),
        players_seen_at: Some(later),
        ..Default::default()
    }])
    .await
    .unwrap();
    let mut got = s.list_stats(&[a.id, b.id, ServerId::new()]).await.unwrap();
    got.sort_by_key(|x| x.server_id);
    assert_eq!(got.len(), 2, "a server never sampled has no row");
    assert_eq!(
        got[0].resources.as_ref(),
        Some(&usage),
        "the players write kept resources"
    );
    assert_eq!(got[0].players.as_ref(), Some(&players));
    assert_eq!(got[0].last_seen(), Some(later));
    assert_eq!(got[1].players, None);
    assert_eq!(
        s.get_server(a.id).await.unwrap().unwrap().resource_version,
        rv
    );
    assert_eq!(
        s.latest_seq().await.unwrap(),
        seq,
        "samples stay out of the feed"
    );
    s.archive_and_delete(a.id, None).await.unwrap();
    assert!(
        s.list_stats(&[a.id]).await.unwrap().is_empty(),
        "deleted with its server"
    );
}

// --- helpers -------------------------------------------------------------------------------

fn game() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

fn dev() -> ServerSpec {
    ServerSpec::dev("node", "22")
}

fn with_memory(mut spec: ServerSpec, mib: u32) -> ServerSpec {
    spec.resources.memory_mib = mib;
    spec
}

fn keyed(customer: &str, spec: ServerSpec, key: &str, hash: &str) -> NewServer {
    NewServer {
        customer_id: customer.into(),
        spec,
        idempotency: Some(Idempotency {
            key: key.into(),
            request_hash: hash.into(),
            retention: DEFAULT_IDEMPOTENCY_RETENTION,
        }),
        enforce_quota: false,
    }
}

/// Create with a fresh idempotency key (so the no-key launch guard does not interfere).
async fn create(s: &impl Store, customer: &str, spec: ServerSpec) -> model::Server {
    let key = uuid::Uuid::now_v7().to_string();
    let c = s
        .create_server(keyed(customer, spec, &key, "h"))
        .await
        .expect("create");
    assert!(c.created);
    c.server
}

fn ready(generation: i64) -> ServerStatus {
    let mut st = ServerStatus::default();
    st.set_condition(
        ConditionType::Ready,
        ConditionStatus::True,
        "Ready",
        "all good",
        generation,
        t0(),
    );
    st
}

fn ids(servers: &[model::Server]) -> Vec<ServerId> {
    servers.iter().map(|s| s.id).collect()
}

// --- scenarios -----------------------------------------------------------------------------

async fn create_get_list(s: &impl Store, _h: &Harness) {
    let a = create(s, "alice", game()).await;
    let b = create(s, "alice", dev()).await;
    let c = create(s, "bob", game()).await;
    assert_eq!(a.generation, 1);
    assert_eq!(a.status, ServerStatus::default());
    assert_eq!(a.created_at, t0());
    assert_eq!(s.get_server(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_server(ServerId::new()).await.unwrap(), None);
    assert_eq!(s.all_server_ids().await.unwrap(), vec![a.id, b.id, c.id]);

    // Keyset pagination.
    let p1 = s
        .list_servers(
            &ServerFilter::default(),
            PageRequest {
                after: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p1.items), vec![a.id, b.id]);
    assert_eq!(p1.next, Some(b.id));
    let p2 = s
        .list_servers(
            &ServerFilter::default(),
            PageRequest {
                after: p1.next,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p2.items), vec![c.id]);
    assert_eq!(p2.next, None);

    let all = PageRequest {
        after: None,
        limit: 100,
    };
    let by = |f: ServerFilter| async move { ids(&s.list_servers(&f, all).await.unwrap().items) };
    assert_eq!(
        by(ServerFilter {
            customer_id: Some("alice".into()),
            ..Default::default()
        })
        .await,
        vec![a.id, b.id]
    );
    assert_eq!(
        by(ServerFilter {
            kind: Some(Kind::Game),
            ..Default::default()
        })
        .await,
        vec![a.id, c.id]
    );
    assert_eq!(
        by(ServerFilter {
            customer_id: Some("bob".into()),
            kind: Some(Kind::Dev),
            ..Default::default()
        })
        .await,
        vec![]
    );

    // hostname and vmid (reserved or observed) filters; phase filter across pages.
    let mut st = ready(1);
    st.hostname = Some("mc-paper-5001".into());
    st.vmid = Some(5001);
    let c2 = s
        .write_status(c.id, &st, c.resource_version, None)
        .await
        .unwrap();
    assert_eq!(c2.status, st);
    // Every write is on the feed with its new version: a copy that follows the feed (the
    // resync's mirror) sees the status change and re-reads only that row.
    let feed = s.changes_since(c.resource_version, 10).await.unwrap();
    assert_eq!(
        feed.iter()
            .map(|ch| (ch.server_id, ch.seq))
            .collect::<Vec<_>>(),
        vec![(c.id, c2.resource_version)],
        "the status write is the one feed entry after the previous version"
    );
    assert_ne!(c2.resource_version, c.resource_version);
    s.reserve_vmid(
        b.id,
        VmidRange {
            min: 6000,
            max: 6010,
        },
        &[],
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        by(ServerFilter {
            hostname: Some("mc-paper-5001".into()),
            ..Default::default()
        })
        .await,
        vec![c.id]
    );
    assert_eq!(
        by(ServerFilter {
            vmid: Some(5001),
            ..Default::default()
        })
        .await,
        vec![c.id]
    );
    assert_eq!(
        by(ServerFilter {
            vmid: Some(6000),
            ..Default::default()
        })
        .await,
        vec![b.id]
    );
    assert_eq!(
        by(ServerFilter {
            phase: Some(Phase::Ready),
            ..Default::default()
        })
        .await,
        vec![c.id]
    );
    let queued = ServerFilter {
        phase: Some(Phase::Queued),
        ..Default::default()
    };
    let q1 = s
        .list_servers(
            &queued,
            PageRequest {
                after: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&q1.items), vec![a.id]);
    let q2 = s
        .list_servers(
            &queued,
            PageRequest {
                after: q1.next,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&q2.items), vec![b.id]);
    assert_eq!(q2.next, None, "no queued server after b");
}

async fn update_spec_bumps_generation(s: &impl Store, h: &Harness) {
    let a = create(s, "alice", game()).await;
    h.advance(Duration::from_secs(1));
    let spec = with_memory(game(), 4096);
    let (a2, op) = s
        .update_spec(a.id, spec.clone(), Some(a.resource_version))
        .await
        .unwrap();
    assert_eq!((a2.generation, a2.spec.clone()), (2, spec.clone()));
    assert!(a2.resource_version > a.resource_version);
    assert!(a2.updated_at > a.updated_at);
    assert_eq!(
        (op.kind, op.generation, op.server_id),
        (OperationKind::Update, 2, a.id)
    );
    assert_eq!(s.get_operation(op.id).await.unwrap(), Some(op));
    assert_eq!(s.get_server(a.id).await.unwrap(), Some(a2.clone()));
    assert!(matches!(
        s.update_spec(a.id, game(), Some(a.resource_version)).await,
        Err(StoreError::Stale)
    ));
    assert!(matches!(
        s.update_spec(ServerId::new(), game(), None).await,
        Err(StoreError::NotFound)
    ));
    let (a3, _) = s.update_spec(a.id, game(), None).await.unwrap();
    assert_eq!(a3.generation, 3);
}

async fn write_status_is_optimistic(s: &impl Store, _h: &Harness) {
    let a = create(s, "alice", game()).await;
    let mut st = ServerStatus {
        observed_generation: 1,
        vmid: Some(4242),
        ..Default::default()
    };
    st.node = Some("pve1".into());
    let a2 = s
        .write_status(a.id, &st, a.resource_version, None)
        .await
        .unwrap();
    assert_eq!(a2.status, st);
    assert_eq!(
        s.get_server(a.id).await.unwrap().unwrap().status.vmid,
        Some(4242)
    );
    // A writer holding the old version loses.
    let r = s
        .write_status(a.id, &ServerStatus::default(), a.resource_version, None)
        .await;
    assert!(matches!(r, Err(StoreError::Stale)), "{r:?}");
    assert!(matches!(
        s.write_status(ServerId::new(), &st, 1, None).await,
        Err(StoreError::NotFound)
    ));
    let p = s.set_paused(a.id, true).await.unwrap();
    assert!(p.paused && p.resource_version > a2.resource_version);
    let r = s.request_reconcile(a.id, true).await.unwrap();
    assert!(r.retry_requested_at.is_some() && r.resource_version > p.resource_version);
}

async fn leases_fence_writers(s: &impl Store, h: &Harness) {
    // Two holders racing for the same lease: exactly one wins, many times over.
    for _ in 0..10 {
        let srv = create(s, "alice", game()).await;
        let (x, y) = tokio::join!(
            s.claim_lease(srv.id, "x", TTL),
            s.claim_lease(srv.id, "y", TTL)
        );
        let winners = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
        assert_eq!(winners, 1);
    }

    let srv = create(s, "alice", game()).await;
    let la = s
        .claim_lease(srv.id, "a", TTL)
        .await
        .unwrap()
        .expect("free lease");
    assert_eq!(la.expires_at, t0() + chrono::Duration::seconds(30));
    // Re-claiming by the holder renews with the same token; another holder is refused.
    assert_eq!(
        s.claim_lease(srv.id, "a", TTL)
            .await
            .unwrap()
            .map(|l| l.token),
        Some(la.token)
    );
    assert_eq!(s.claim_lease(srv.id, "b", TTL).await.unwrap(), None);
    let fa = Fence { token: la.token };
    let srv = s
        .write_status(srv.id, &ready(1), srv.resource_version, Some(fa))
        .await
        .unwrap();

    // a stalls past expiry; b takes over with a larger token; a's writes are fenced.
    h.advance(TTL + Duration::from_secs(1));
    let lb = s
        .claim_lease(srv.id, "b", TTL)
        .await
        .unwrap()
        .expect("expired lease");
    assert!(lb.token > la.token);
    let fb = Fence { token: lb.token };
    let r = s
        .write_status(
            srv.id,
            &ServerStatus::default(),
            srv.resource_version,
            Some(fa),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Fenced)), "{r:?}");
    assert!(matches!(
        s.renew_lease(srv.id, "a", fa, TTL).await,
        Err(StoreError::Fenced)
    ));
    assert!(matches!(
        s.archive_and_delete(srv.id, Some(fa)).await,
        Err(StoreError::Fenced)
    ));
    let srv = s
        .write_status(
            srv.id,
            &ServerStatus::default(),
            srv.resource_version,
            Some(fb),
        )
        .await
        .unwrap();
    let renewed = s.renew_lease(srv.id, "b", fb, TTL).await.unwrap();
    assert_eq!(renewed.token, lb.token);

    // Releasing ends the right to write but keeps the counter: the next claim is larger.
    s.release_lease(srv.id, "a", fa).await.unwrap(); // not a's: no-op
    assert_eq!(s.claim_lease(srv.id, "a", TTL).await.unwrap(), None);
    s.release_lease(srv.id, "b", fb).await.unwrap();
    let r = s
        .write_status(
            srv.id,
            &ServerStatus::default(),
            srv.resource_version,
            Some(fb),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Fenced)), "{r:?}");
    let lb2 = s
        .claim_lease(srv.id, "b", TTL)
        .await
        .unwrap()
        .expect("released lease");
    assert!(lb2.token > lb.token);
    assert_eq!(s.release_all_leases("b").await.unwrap(), 1);
    assert_eq!(s.release_all_leases("b").await.unwrap(), 0);
    assert!(matches!(
        s.claim_lease(ServerId::new(), "a", TTL).await,
        Err(StoreError::NotFound)
    ));
}

async fn deletion_and_archive(s: &impl Store, _h: &Harness) {
    let a = create(s, "alice", game()).await;
    let vmid = s
        .reserve_vmid(a.id, VmidRange { min: 100, max: 200 }, &[], false)
        .await
        .unwrap();
    let lease = s.claim_lease(a.id, "ctl", TTL).await.unwrap().unwrap();
    let (d1, op1) = s.request_deletion(a.id).await.unwrap();
    let (d2, op2) = s.request_deletion(a.id).await.unwrap();
    assert_eq!(op1, op2);
    assert_eq!(op1.kind, OperationKind::Delete);
    assert_eq!(d1.deletion_requested_at, d2.deletion_requested_at);
    assert_eq!(d1.phase().0, Phase::Deleting);
    assert!(matches!(
        s.request_deletion(ServerId::new()).await,
        Err(StoreError::NotFound)
    ));

    s.archive_and_delete(a.id, Some(Fence { token: lease.token }))
        .await
        .unwrap();
    assert_eq!(s.get_server(a.id).await.unwrap(), None);
    assert!(s.list_reservations().await.unwrap().is_empty());
    let archived = s.get_archived(a.id).await.unwrap().expect("archived");
    assert_eq!(archived.server.id, a.id);
    assert_eq!(archived.server.reserved_vmid, Some(vmid));
    assert_eq!(archived.deleted_at, t0());
    assert!(s.all_server_ids().await.unwrap().is_empty());
    // Repeats are fine; operations stay readable.
    s.archive_and_delete(a.id, None).await.unwrap();
    assert_eq!(s.get_operation(op1.id).await.unwrap(), Some(op1));
    let last = s.changes_since(0, 100).await.unwrap().pop().unwrap();
    assert_eq!((last.server_id, last.kind), (a.id, ChangeKind::Delete));
    // The VMID is free again.
    let b = create(s, "alice", game()).await;
    assert_eq!(
        s.reserve_vmid(b.id, VmidRange { min: 100, max: 200 }, &[], false)
            .await
            .unwrap(),
        vmid
    );
}

async fn concurrent_reservations_are_distinct(s: &impl Store, _h: &Harness) {
    let mut servers = Vec::new();
    for _ in 0..50 {
        servers.push(create(s, "alice", game()).await.id);
    }
    let range = VmidRange {
        min: 1000,
        max: 1099,
    };
    let got = join_all(
        servers
            .iter()
            .map(|id| s.reserve_vmid(*id, range, &[], false)),
    )
    .await;
    let vmids: Vec<u32> = got.into_iter().map(|r| r.expect("reserve")).collect();
    let distinct: BTreeSet<u32> = vmids.iter().copied().collect();
    assert_eq!(distinct.len(), 50);
    assert!(vmids.iter().all(|v| (1000..=1099).contains(v)));
    assert_eq!(s.list_reservations().await.unwrap().len(), 50);
    for (id, vmid) in servers.iter().zip(&vmids) {
        assert_eq!(
            s.get_server(*id).await.unwrap().unwrap().reserved_vmid,
            Some(*vmid)
        );
        // Idempotent.
        assert_eq!(s.reserve_vmid(*id, range, &[], false).await.unwrap(), *vmid);
    }
}

async fn last_free_vmid_goes_to_one(s: &impl Store, _h: &Harness) {
    for round in 0..5u32 {
        let vmid = 2000 + round;
        let range = VmidRange {
            min: vmid,
            max: vmid,
        };
        let a = create(s, "alice", game()).await;
        let b = create(s, "alice", game()).await;
        let (x, y) = tokio::join!(
            s.reserve_vmid(a.id, range, &[], false),
            s.reserve_vmid(b.id, range, &[], false)
        );
        let (ok, err): (Vec<_>, Vec<_>) = [x, y].into_iter().partition(|r| r.is_ok());
        assert_eq!(ok.len(), 1, "round {round}");
        assert_eq!(*ok[0].as_ref().unwrap(), vmid);
        match &err[0] {
            Err(StoreError::RangeExhausted { kind, min, max }) => {
                assert_eq!((*kind, *min, *max), (Kind::Game, vmid, vmid));
            }
            other => panic!("expected RangeExhausted, got {other:?}"),
        }
    }
}

async fn reservation_skips_and_replaces(s: &impl Store, _h: &Harness) {
    let range = VmidRange { min: 300, max: 305 };
    let a = create(s, "alice", game()).await;
    let b = create(s, "alice", dev()).await;
    assert_eq!(
        s.reserve_vmid(a.id, range, &[300, 301], false)
            .await
            .unwrap(),
        302
    );
    assert_eq!(
        s.reserve_vmid(b.id, range, &[300], false).await.unwrap(),
        301
    );
    // 302 turned out to be occupied by an intruder: move elsewhere, atomically.
    let moved = s.reserve_vmid(a.id, range, &[300], true).await.unwrap();
    assert_eq!(moved, 303);
    assert_eq!(
        s.get_server(a.id).await.unwrap().unwrap().reserved_vmid,
        Some(303)
    );
    let res = s.list_reservations().await.unwrap();
    assert_eq!(res, vec![(301, b.id), (303, a.id)]);
    // Nothing left: the old reservation survives a failed replace.
    let r = s
        .reserve_vmid(a.id, range, &[300, 302, 304, 305], true)
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::RangeExhausted {
                kind: Kind::Game,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        s.get_server(a.id).await.unwrap().unwrap().reserved_vmid,
        Some(303)
    );
    s.release_vmid(a.id).await.unwrap();
    assert_eq!(
        s.get_server(a.id).await.unwrap().unwrap().reserved_vmid,
        None
    );
    assert_eq!(s.list_reservations().await.unwrap(), vec![(301, b.id)]);
    assert!(matches!(
        s.reserve_vmid(ServerId::new(), range, &[], false).await,
        Err(StoreError::NotFound)
    ));
}

async fn concurrent_idempotent_creates(s: &impl Store, _h: &Harness) {
    let got =
        join_all((0..20).map(|_| s.create_server(keyed("alice", game(), "k1", "hash1")))).await;
    let got: Vec<Created> = got.into_iter().map(|r| r.expect("create")).collect();
    assert_eq!(got.iter().filter(|c| c.created).count(), 1);
    let first = &got[0];
    assert!(
        got.iter()
            .all(|c| c.server.id == first.server.id && c.operation.id == first.operation.id)
    );
    assert_eq!(s.all_server_ids().await.unwrap().len(), 1);
    assert_eq!(first.operation.kind, OperationKind::Create);
    assert_eq!(first.operation.generation, 1);
    let r = s.create_server(keyed("alice", game(), "k1", "hash2")).await;
    assert!(matches!(r, Err(StoreError::IdempotencyConflict)), "{r:?}");
    // Keys are per customer.
    let other = s
        .create_server(keyed("bob", game(), "k1", "hash2"))
        .await
        .unwrap();
    assert!(other.created);
}

async fn launch_guard(s: &impl Store, _h: &Harness) {
    let new = |spec| NewServer {
        customer_id: "alice".into(),
        spec,
        idempotency: None,
        enforce_quota: true,
    };
    let a = s.create_server(new(game())).await.unwrap();
    assert!(a.created);
    let again = s.create_server(new(game())).await.unwrap();
    assert!(!again.created);
    assert_eq!(
        (again.server.id, again.operation.id),
        (a.server.id, a.operation.id)
    );
    match s.create_server(new(dev())).await {
        Err(StoreError::InProgress { operation }) => assert_eq!(operation, a.operation.id),
        other => panic!("expected InProgress, got {other:?}"),
    }
    // Once the first one is Ready, a new launch goes ahead.
    s.write_status(a.server.id, &ready(1), a.server.resource_version, None)
        .await
        .unwrap();
    let b = s.create_server(new(dev())).await.unwrap();
    assert!(b.created);
    // Another customer is not affected.
    let c = s
        .create_server(NewServer {
            customer_id: "bob".into(),
            ..new(dev())
        })
        .await
        .unwrap();
    assert!(c.created);
}

async fn quota_and_standing(s: &impl Store, _h: &Harness) {
    s.upsert_customer(
        "alice",
        Some(Quota {
            max_servers: 2,
            max_memory_mib: 6144,
            ..Quota::default()
        }),
        None,
    )
    .await
    .unwrap();
    let mut n = 0;
    let mut new = |mib| {
        n += 1;
        NewServer {
            enforce_quota: true,
            ..keyed("alice", with_memory(game(), mib), &format!("k{n}"), "h")
        }
    };
    s.create_server(new(2048)).await.unwrap();
    let first_again = NewServer {
        enforce_quota: true,
        ..keyed("alice", with_memory(game(), 2048), "k1", "h")
    };
    s.create_server(new(2048)).await.unwrap();
    match s.create_server(new(1024)).await {
        Err(StoreError::QuotaExceeded(m)) => assert!(m.contains("2 of at most 2 servers"), "{m}"),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    // A replay is not a new server: quota does not apply.
    assert!(!s.create_server(first_again).await.unwrap().created);

    s.upsert_customer(
        "alice",
        Some(Quota {
            max_servers: 10,
            max_memory_mib: 6144,
            ..Quota::default()
        }),
        None,
    )
    .await
    .unwrap();
    match s.create_server(new(4096)).await {
        Err(StoreError::QuotaExceeded(m)) => assert!(m.contains("4096 MiB of 6144 MiB"), "{m}"),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    s.create_server(new(2048)).await.unwrap();

    let c = s
        .upsert_customer("alice", None, Some(Standing::Suspended))
        .await
        .unwrap();
    assert_eq!(c.quota.max_servers, 10, "partial update keeps the quota");
    match s.create_server(new(512)).await {
        Err(StoreError::CustomerNotActive { customer, standing }) => {
            assert_eq!(
                (customer.as_str(), standing),
                ("alice", Standing::Suspended)
            );
        }
        other => panic!("expected CustomerNotActive, got {other:?}"),
    }
    // Without enforcement (operators) it goes through.
    let forced = NewServer {
        enforce_quota: false,
        ..new(512)
    };
    assert!(s.create_server(forced).await.unwrap().created);
}

async fn events_fold(s: &impl Store, h: &Harness) {
    let a = create(s, "alice", game()).await;
    s.append_event(
        a.id,
        EventType::Normal,
        "Cloning",
        "cloning from template 9000",
    )
    .await
    .unwrap();
    h.advance(Duration::from_secs(1));
    s.append_event(a.id, EventType::Warning, "ProxmoxUnavailable", "503")
        .await
        .unwrap();
    h.advance(Duration::from_secs(1));
    s.append_event(
        a.id,
        EventType::Normal,
        "Cloning",
        "cloning from template 9000",
    )
    .await
    .unwrap();
    let ev = s.list_events(a.id, 10).await.unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!((ev[0].reason.as_str(), ev[0].count), ("Cloning", 2));
    assert_eq!(ev[0].first_seen, t0());
    assert_eq!(ev[0].last_seen, t0() + chrono::Duration::seconds(2));
    assert_eq!((ev[1].type_, ev[1].count), (EventType::Warning, 1));
    assert_eq!(s.list_events(a.id, 1).await.unwrap().len(), 1);
    assert!(s.list_events(ServerId::new(), 10).await.unwrap().is_empty());
    // Very long messages are kept (truncated), not refused.
    s.append_event(a.id, EventType::Warning, "Huge", &"x".repeat(10_000))
        .await
        .unwrap();
}

/// A status write with events keeps both or neither: a refused write (stale, fenced) leaves
/// no event behind, so an event never tells of a step the status does not record.
async fn status_and_events_are_one_write(s: &impl Store, h: &Harness) {
    let a = create(s, "alice", game()).await;
    let restarted = |message: &str| model::NewEvent {
        type_: EventType::Normal,
        reason: "GameRestarted",
        message: message.into(),
    };
    let mut st = ServerStatus::default();
    st.observed_restarts.game = 1;
    let a2 = s
        .write_status_with_events(a.id, &st, a.resource_version, None, &[restarted("one")])
        .await
        .unwrap();
    assert_eq!(a2.status.observed_restarts.game, 1);
    let stale = s
        .write_status_with_events(a.id, &st, a.resource_version, None, &[restarted("stale")])
        .await;
    assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
    let old = s.claim_lease(a.id, "a", TTL).await.unwrap().expect("free");
    h.advance(TTL + Duration::from_secs(1));
    let newer = s
        .claim_lease(a.id, "b", TTL)
        .await
        .unwrap()
        .expect("expired");
    assert!(newer.token > old.token);
    let fence = Some(Fence { token: old.token });
    let fenced = s
        .write_status_with_events(
            a.id,
            &st,
            a2.resource_version,
            fence,
            &[restarted("fenced")],
        )
        .await;
    assert!(matches!(fenced, Err(StoreError::Fenced)), "{fenced:?}");
    let messages: Vec<String> = s
        .list_events(a.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["one"], "only the written status's event");
}

async fn change_feed(s: &impl Store, _h: &Harness) {
    assert_eq!(s.latest_seq().await.unwrap(), 0);
    let a = create(s, "alice", game()).await;
    let b = create(s, "alice", dev()).await;
    let a2 = s.set_paused(a.id, true).await.unwrap();
    assert_eq!(s.latest_seq().await.unwrap(), a2.resource_version);
    let feed = s.changes_since(0, 100).await.unwrap();
    let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        vec![a.resource_version, b.resource_version, a2.resource_version]
    );
    assert_eq!(
        feed.iter().map(|c| c.server_id).collect::<Vec<_>>(),
        vec![a.id, b.id, a.id]
    );
    assert!(feed.iter().all(|c| c.kind == ChangeKind::Upsert));
    // Resume from the middle.
    let rest = s.changes_since(feed[0].seq, 100).await.unwrap();
    assert_eq!(rest, feed[1..].to_vec());
    assert_eq!(s.changes_since(0, 1).await.unwrap(), feed[..1].to_vec());

    // Concurrent writers: every write gets its own seq and the feed holds them all in order.
    let mut servers = Vec::new();
    for _ in 0..10 {
        servers.push(create(s, "bob", game()).await.id);
    }
    let before = s.latest_seq().await.unwrap();
    let writes = join_all(servers.iter().flat_map(|id| {
        [
            s.request_reconcile(*id, false),
            s.request_reconcile(*id, true),
        ]
    }))
    .await;
    let mut rvs: Vec<i64> = writes
        .into_iter()
        .map(|r| r.unwrap().resource_version)
        .collect();
    rvs.sort();
    // Followed (PostgreSQL may hand out a final prefix first while an older transaction in
    // the cluster is still open; bounded).
    let mut feed: Vec<i64> = Vec::new();
    for _ in 0..1000 {
        let after = feed.last().copied().unwrap_or(before);
        feed.extend(
            s.changes_since(after, 1000)
                .await
                .unwrap()
                .iter()
                .map(|c| c.seq),
        );
        if feed.len() >= rvs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(feed, rvs);
    for id in servers {
        let srv = s.get_server(id).await.unwrap().unwrap();
        let last = s
            .changes_since(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .rfind(|c| c.server_id == id)
            .unwrap();
        assert_eq!(srv.resource_version, last.seq);
    }
}

async fn customers_and_tokens(s: &impl Store, _h: &Harness) {
    let c = s.get_customer("nobody").await.unwrap();
    assert_eq!(
        (c.id.as_str(), c.standing, c.quota),
        ("nobody", Standing::Active, Quota::default())
    );
    let q = Quota {
        max_servers: 1,
        max_memory_mib: 1024,
        max_cores: 3,
        max_disk_gib: 40,
    };
    let c = s
        .upsert_customer("carol", Some(q), Some(Standing::Overdue))
        .await
        .unwrap();
    assert_eq!(s.get_customer("carol").await.unwrap(), c);
    let c = s
        .upsert_customer("carol", None, Some(Standing::Active))
        .await
        .unwrap();
    assert_eq!((c.quota, c.standing), (q, Standing::Active));

    let hash = model::customer::token_hash("zlh_secret");
    let t = s
        .create_token("portal", &hash, Role::Portal, None)
        .await
        .unwrap();
    let t2 = s
        .create_token("carol's", "other-hash", Role::Customer, Some("carol"))
        .await
        .unwrap();
    // By id too (a console session checks its token is still there).
    assert_eq!(s.get_token(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.get_token(uuid::Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(s.find_token(&hash).await.unwrap(), Some(t));
    assert_eq!(s.find_token("other-hash").await.unwrap(), Some(t2));
    assert_eq!(s.find_token("missing").await.unwrap(), None);
    assert!(
        s.create_token("dup", &hash, Role::Viewer, None)
            .await
            .is_err(),
        "hash is unique"
    );
}

async fn replicas_and_orphans(s: &impl Store, h: &Harness) {
    let info = |id: &str| ReplicaInfo {
        id: id.into(),
        started_at: t0(),
        last_seen: t0(),
        queue_depth: 3,
        workers_busy: 1,
        leases_held: 0,
    };
    s.heartbeat(&info("r1")).await.unwrap();
    s.heartbeat(&info("r2")).await.unwrap();
    for _ in 0..2 {
        let srv = create(s, "alice", game()).await;
        s.claim_lease(srv.id, "r1", TTL).await.unwrap().unwrap();
    }
    let reps = s.list_replicas(Duration::from_secs(60)).await.unwrap();
    let held: Vec<(String, i64)> = reps.iter().map(|r| (r.id.clone(), r.leases_held)).collect();
    assert_eq!(held, vec![("r1".into(), 2), ("r2".into(), 0)]);
    assert_eq!(reps[0].queue_depth, 3);
    h.advance(Duration::from_secs(45));
    s.heartbeat(&info("r2")).await.unwrap();
    let reps = s.list_replicas(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        reps.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r2"]
    );
    assert_eq!(reps[0].last_seen, t0() + chrono::Duration::seconds(45));

    let orphan = |vmid, at: DateTime<Utc>| Orphan {
        vmid,
        node: "pve1".into(),
        marker: ServerId::new().to_string(),
        name: Some(format!("ct{vmid}")),
        first_seen: at,
        last_seen: at,
    };
    s.replace_orphans(&[orphan(100, t0()), orphan(101, t0())])
        .await
        .unwrap();
    let later = t0() + chrono::Duration::minutes(5);
    s.replace_orphans(&[orphan(101, later), orphan(102, later)])
        .await
        .unwrap();
    let o = s.list_orphans().await.unwrap();
    assert_eq!(o.iter().map(|o| o.vmid).collect::<Vec<_>>(), vec![101, 102]);
    assert_eq!((o[0].first_seen, o[0].last_seen), (t0(), later));
    assert_eq!(o[1].first_seen, later);
    s.replace_orphans(&[]).await.unwrap();
    assert!(s.list_orphans().await.unwrap().is_empty());
    s.ping().await.unwrap();
}

async fn singletons(s: &impl Store, h: &Harness) {
    assert!(s.try_singleton("resync", "a", TTL).await.unwrap());
    assert!(!s.try_singleton("resync", "b", TTL).await.unwrap());
    assert!(s.try_singleton("resync", "a", TTL).await.unwrap());
    assert!(s.try_singleton("orphan-scan", "b", TTL).await.unwrap());
    h.advance(TTL + Duration::from_secs(1));
    assert!(s.try_singleton("resync", "b", TTL).await.unwrap());
    assert!(!s.try_singleton("resync", "a", TTL).await.unwrap());
    // Releasing someone else's singleton does nothing; releasing our own frees it at once.
    s.release_singleton("resync", "a").await.unwrap();
    assert!(!s.try_singleton("resync", "a", TTL).await.unwrap());
    s.release_singleton("resync", "b").await.unwrap();
    assert!(s.try_singleton("resync", "a", TTL).await.unwrap());
}

/// Wait for a notice matching `want`, skipping others (local writes may arrive twice on PG).
async fn expect_notice(rx: &mut tokio::sync::broadcast::Receiver<Notice>, want: Notice) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(n)) if n == want => return,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("notice channel: {e}"),
            Err(_) => panic!("no notice {want:?} within 10 s"),
        }
    }
}

async fn notifications(s: &impl Store, h: &Harness) {
    let mut rx = h.store.subscribe();
    let a = create(s, "alice", game()).await;
    expect_notice(
        &mut rx,
        Notice {
            server_id: a.id,
            origin: Origin::User,
        },
    )
    .await;
    let a = s
        .write_status(a.id, &ready(1), a.resource_version, None)
        .await
        .unwrap();
    expect_notice(
        &mut rx,
        Notice {
            server_id: a.id,
            origin: Origin::Controller,
        },
    )
    .await;
    s.reserve_vmid(a.id, VmidRange { min: 1, max: 10 }, &[], false)
        .await
        .unwrap();
    expect_notice(
        &mut rx,
        Notice {
            server_id: a.id,
            origin: Origin::Controller,
        },
    )
    .await;
    s.request_deletion(a.id).await.unwrap();
    expect_notice(
        &mut rx,
        Notice {
            server_id: a.id,
            origin: Origin::User,
        },
    )
    .await;

    match h.store.backend() {
        "sqlite" => assert!(h.store.sqlite_path().is_some()),
        "postgres" => {
            assert_eq!(h.store.sqlite_path(), None);
            // Another process on the same database hears our writes through LISTEN/NOTIFY.
            let other = h.second_store().await;
            let mut rx2 = other.subscribe();
            s.archive_and_delete(a.id, None).await.unwrap();
            expect_notice(
                &mut rx2,
                Notice {
                    server_id: a.id,
                    origin: Origin::Controller,
                },
            )
            .await;
            let b = create(s, "bob", dev()).await;
            expect_notice(
                &mut rx2,
                Notice {
                    server_id: b.id,
                    origin: Origin::User,
                },
            )
            .await;
        }
        other => panic!("unknown backend {other}"),
    }
}

#[tokio::test]
async fn unsupported_url_is_refused_without_echoing_it() {
    let clock = Arc::new(ManualClock::new(t0()));
    let Err(e) = AnyStore::connect("mysql://u:hunter2@127.0.0.1/x", clock).await else {
        panic!("mysql accepted");
    };
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

// --- quotas on update, cores and disk; idempotency retention --------------------------------

fn with_resources(mut spec: ServerSpec, cores: u32, mib: u32, disk: u32) -> ServerSpec {
    spec.resources = model::Resources {
        cores,
        memory_mib: mib,
        disk_gib: disk,
    };
    spec
}

/// Regression: two concurrent PATCHes took a customer past its memory quota because the
/// update-time check ran outside the write transaction. Eight servers of 512 MiB under a
/// 6144 MiB quota leave room for exactly four of the eight concurrent raises to 1024 MiB.
async fn concurrent_updates_stay_within_the_quota(s: &impl Store, _h: &Harness) {
    s.upsert_customer(
        "alice",
        Some(Quota {
            max_servers: 10,
            max_memory_mib: 6144,
            ..Quota::default()
        }),
        None,
    )
    .await
    .unwrap();
    let mut servers = Vec::new();
    for _ in 0..8 {
        servers.push(create(s, "alice", with_memory(game(), 512)).await);
    }
    // Open the pool's connections first, so that the updates start together.
    for r in join_all((0..8).map(|_| s.ping())).await {
        r.unwrap();
    }
    let results = join_all(
        servers
            .iter()
            .map(|srv| s.update_spec_within_quota(srv.id, with_memory(game(), 1024), None)),
    )
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        assert!(
            matches!(r, Ok(_) | Err(StoreError::QuotaExceeded(_))),
            "only quota refusals: {r:?}"
        );
    }
    assert_eq!(ok, 4, "exactly the four raises that fit: {results:?}");
    let mut total = 0;
    for srv in &servers {
        total += s
            .get_server(srv.id)
            .await
            .unwrap()
            .unwrap()
            .spec
            .resources
            .memory_mib;
    }
    assert_eq!(total, 6144, "at the quota, never above");
}

/// Regression: a customer could raise its own server to 16 cores and 1 TiB: only the server
/// count and memory were quotas.
async fn quotas_cover_cores_and_disk(s: &impl Store, _h: &Harness) {
    s.upsert_customer(
        "alice",
        Some(Quota {
            max_servers: 10,
            max_memory_mib: 1 << 20,
            max_cores: 6,
            max_disk_gib: 64,
        }),
        None,
    )
    .await
    .unwrap();
    let c = s.get_customer("alice").await.unwrap();
    assert_eq!((c.quota.max_cores, c.quota.max_disk_gib), (6, 64), "stored");
    let enforced = |spec, key: &str| NewServer {
        enforce_quota: true,
        ..keyed("alice", spec, key, key)
    };
    let a = s
        .create_server(enforced(with_resources(game(), 4, 2048, 32), "a"))
        .await
        .unwrap()
        .server;
    let cases = [
        (
            "cores at create",
            with_resources(game(), 3, 2048, 16),
            "cores",
        ),
        (
            "disk at create",
            with_resources(game(), 1, 2048, 40),
            "disk",
        ),
    ];
    for (reason, spec, what) in cases {
        match s.create_server(enforced(spec, reason)).await {
            Err(StoreError::QuotaExceeded(m)) => assert!(m.contains(what), "{reason}: {m}"),
            other => panic!("{reason}: expected QuotaExceeded, got {other:?}"),
        }
    }
    let b = s
        .create_server(enforced(with_resources(game(), 2, 2048, 32), "b"))
        .await
        .unwrap()
        .server;
    // Growing a's cores or disk does not fit beside b; nothing is written.
    for (reason, spec, what) in [
        (
            "cores at update",
            with_resources(game(), 5, 2048, 32),
            "cores",
        ),
        (
            "disk at update",
            with_resources(game(), 4, 2048, 33),
            "disk",
        ),
    ] {
        match s.update_spec_within_quota(a.id, spec, None).await {
            Err(StoreError::QuotaExceeded(m)) => assert!(m.contains(what), "{reason}: {m}"),
            other => panic!("{reason}: expected QuotaExceeded, got {other:?}"),
        }
    }
    assert_eq!(s.get_server(a.id).await.unwrap().unwrap().generation, 1);
    // Over a lowered quota, a change that grows nothing still goes through.
    s.upsert_customer(
        "alice",
        Some(Quota {
            max_cores: 2,
            ..c.quota
        }),
        None,
    )
    .await
    .unwrap();
    let mut stopped = a.spec.clone();
    stopped.power = model::Power::Stopped;
    let (a2, _) = s
        .update_spec_within_quota(a.id, stopped, None)
        .await
        .unwrap();
    assert_eq!(a2.generation, 2);
    // Unchecked updates (operators) are not refused.
    s.update_spec(b.id, with_resources(game(), 16, 2048, 1024), None)
        .await
        .unwrap();
}

/// Regression: an `Idempotency-Key` was deleted with its server's row, so a late retry of a
/// deleted server's create made a new server. Keys live for their retention, then expire.
async fn idempotency_keys_outlive_their_server(s: &impl Store, h: &Harness) {
    let first = s
        .create_server(keyed("alice", game(), "k", "h"))
        .await
        .unwrap();
    s.request_deletion(first.server.id).await.unwrap();
    s.archive_and_delete(first.server.id, None).await.unwrap();
    let replay = s
        .create_server(keyed("alice", game(), "k", "h"))
        .await
        .unwrap();
    assert!(!replay.created, "a replay, not a new server");
    assert_eq!(
        (replay.server.id, replay.operation.id),
        (first.server.id, first.operation.id)
    );
    assert!(
        replay.server.is_deleting(),
        "the archived server's last state"
    );
    assert!(matches!(
        s.create_server(keyed("alice", dev(), "k", "other")).await,
        Err(StoreError::IdempotencyConflict)
    ));
    assert!(s.all_server_ids().await.unwrap().is_empty(), "nothing made");

    // Just inside the retention it still replays; past it, the key is forgotten.
    h.advance(DEFAULT_IDEMPOTENCY_RETENTION - Duration::from_secs(1));
    let late = s.create_server(keyed("alice", game(), "k", "h")).await;
    assert!(!late.unwrap().created);
    h.advance(Duration::from_secs(2));
    let fresh = s
        .create_server(keyed("alice", dev(), "k", "other"))
        .await
        .unwrap();
    assert!(
        fresh.created,
        "an expired key neither replays nor conflicts"
    );
    assert_ne!(fresh.server.id, first.server.id);
    let again = s
        .create_server(keyed("alice", dev(), "k", "other"))
        .await
        .unwrap();
    assert_eq!((again.created, again.server.id), (false, fresh.server.id));
}

// --- warm pools (docs/pools.md) ------------------------------------------------------------

both!(
    pool_members_share_the_vmid_allocator,
    concurrent_claims_take_distinct_members,
    retired_members_are_never_claimed,
);

fn member_of(template: u32) -> model::NewPoolMember {
    model::NewPoolMember {
        template,
        node: "pve".into(),
        template_digest: "f1".into(),
        template_version: None,
    }
}

/// Members and servers draw from one free list: never the same VMID, and a member's VMID
/// goes back to it when the member is forgotten.
async fn pool_members_share_the_vmid_allocator(s: &impl Store, _h: &Harness) {
    let range = VmidRange {
        min: 3000,
        max: 3002,
    };
    let m = s
        .reserve_pool_member(&member_of(900), Kind::Game, range, &[])
        .await
        .unwrap();
    assert_eq!((m.vmid, m.state), (3000, model::MemberState::Cloning));
    let a = create(s, "alice", game()).await;
    assert_eq!(
        s.reserve_vmid(a.id, range, &[], false).await.unwrap(),
        3001,
        "a server skips the member's VMID"
    );
    let m2 = s
        .reserve_pool_member(&member_of(900), Kind::Game, range, &[3002])
        .await;
    assert!(
        matches!(m2, Err(StoreError::RangeExhausted { .. })),
        "Proxmox's taken VMIDs are skipped for members too: {m2:?}"
    );
    assert!(s.delete_pool_member(3000).await.unwrap());
    let b = create(s, "alice", game()).await;
    assert_eq!(
        s.reserve_vmid(b.id, range, &[], false).await.unwrap(),
        3000,
        "a forgotten member's VMID is free again"
    );
    assert!(s.list_pool_members().await.unwrap().is_empty());
}

/// Claims are atomic: many servers at once, each takes a different free member or none; the
/// member's VMID becomes the claimant's reservation with the claim recorded, and a member
/// not free (cloning) is never taken.
async fn concurrent_claims_take_distinct_members(s: &impl Store, _h: &Harness) {
    let range = VmidRange {
        min: 4000,
        max: 4099,
    };
    let mut free = BTreeSet::new();
    for i in 0..6 {
        let m = s
            .reserve_pool_member(&member_of(900), Kind::Game, range, &[])
            .await
            .unwrap();
        // One of them stays cloning.
        if i < 5 {
            assert!(s.member_ready(m.vmid).await.unwrap());
            free.insert(m.vmid);
        }
    }
    let other = s
        .reserve_pool_member(&member_of(901), Kind::Game, range, &[])
        .await
        .unwrap();
    s.member_ready(other.vmid).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(create(s, "alice", game()).await.id);
    }
    let got = join_all(ids.iter().map(|id| s.claim_pool_member(*id, 900))).await;
    let claimed: Vec<(ServerId, u32)> = ids
        .iter()
        .zip(got)
        .filter_map(|(id, r)| r.expect("claim").map(|v| (*id, v)))
        .collect();
    let vmids: BTreeSet<u32> = claimed.iter().map(|(_, v)| *v).collect();
    assert_eq!(vmids, free, "each free member claimed exactly once");
    for (id, vmid) in &claimed {
        let srv = s.get_server(*id).await.unwrap().unwrap();
        assert_eq!(
            srv.reserved_vmid,
            Some(*vmid),
            "{id}: the member's VMID is its own"
        );
        assert_eq!(
            srv.status.progress.pool_claim,
            Some(*vmid),
            "{id}: claim recorded"
        );
        // A server with a VMID claims nothing more.
        assert_eq!(s.claim_pool_member(*id, 900).await.unwrap(), None);
    }
    let left = s.list_pool_members().await.unwrap();
    assert_eq!(
        left.len(),
        2,
        "the cloning member and the other pool's stay"
    );
    assert!(left.iter().all(|m| !vmids.contains(&m.vmid)));
    let reserved: BTreeSet<u32> = s
        .list_reservations()
        .await
        .unwrap()
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert!(vmids.is_subset(&reserved), "claims are reservations");
}

/// A retiring member (about to be destroyed) is never claimed; a claimed one cannot be
/// retired (it is no member any more).
async fn retired_members_are_never_claimed(s: &impl Store, _h: &Harness) {
    let range = VmidRange {
        min: 4100,
        max: 4199,
    };
    let a = s
        .reserve_pool_member(&member_of(900), Kind::Game, range, &[])
        .await
        .unwrap();
    let b = s
        .reserve_pool_member(&member_of(900), Kind::Game, range, &[])
        .await
        .unwrap();
    for m in [&a, &b] {
        s.member_ready(m.vmid).await.unwrap();
    }
    assert!(s.retire_member(a.vmid).await.unwrap());
    assert!(!s.retire_member(a.vmid).await.unwrap(), "already retiring");
    let x = create(s, "alice", game()).await;
    assert_eq!(
        s.claim_pool_member(x.id, 900).await.unwrap(),
        Some(b.vmid),
        "the free one"
    );
    assert!(
        !s.retire_member(b.vmid).await.unwrap(),
        "claimed: no member"
    );
    let y = create(s, "alice", game()).await;
    assert_eq!(s.claim_pool_member(y.id, 900).await.unwrap(), None);
    assert!(
        s.set_member_task(a.vmid, model::MemberState::Retiring, Some("UPID:x"))
            .await
            .unwrap()
    );
    assert!(
        !s.set_member_task(a.vmid, model::MemberState::Cloning, None)
            .await
            .unwrap(),
        "a task is recorded only in the state it belongs to"
    );
}
