//! The audit log: every mutating call records who (token name and role), what and when, in
//! `GET /api/audit` (operators only, paged, filtered) and in the server's events.

mod ops;

use api::client::AuditParams;
use api::wire::{CreateServerRequest, PowerRequest, PowerSignal};
use model::{Role, ServerSpec, Variant};
use ops::{Api, sqlite_store, token};

/// Create, patch, power, pause, reconcile and delete by an operator, a reconcile by the
/// Portal: each is one entry naming its actor, role, action and time, newest first; the
/// filters and pages select them; each server event says who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_records_who_what_and_when() {
    let (store, dir) = sqlite_store().await;
    let api = Api::start(store.clone()).await;
    let op = api.client(&token(&store, "oncall", Role::Operator, None).await);
    let portal = api.client(&token(&store, "portal-1", Role::Portal, None).await);
    let before = chrono::Utc::now();

    let spec = ServerSpec::minecraft(Variant::Paper, "1.21.7");
    let created = op
        .create(
            &CreateServerRequest {
                customer_id: Some("u1".into()),
                spec: spec.clone(),
            },
            None,
        )
        .await
        .unwrap();
    let id = created.server.id;
    let mut bigger = spec.clone();
    bigger.resources.memory_mib *= 2;
    op.patch(id, bigger, None).await.unwrap();
    let restart = PowerRequest {
        signal: PowerSignal::Restart,
        target: None,
    };
    op.power(id, &restart, None).await.unwrap();
    op.pause(id).await.unwrap();
    portal.reconcile(id, true).await.unwrap();
    op.reconcile(id, false).await.unwrap();
    op.delete(id).await.unwrap();
    let after = chrono::Utc::now();

    let page = op
        .audit(&AuditParams {
            server: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(&str, &str, Role)> = page
        .items
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.role))
        .collect();
    assert_eq!(
        got,
        vec![
            ("server.delete", "oncall", Role::Operator),
            ("server.reconcile", "oncall", Role::Operator),
            ("server.reconcile", "portal-1", Role::Portal),
            ("server.pause", "oncall", Role::Operator),
            ("server.power", "oncall", Role::Operator),
            ("server.patch", "oncall", Role::Operator),
            ("server.create", "oncall", Role::Operator),
        ]
    );
    for e in &page.items {
        assert!(before <= e.at && e.at <= after, "when: {e:?}");
        assert_eq!(e.server_id, Some(id));
    }
    assert_eq!(
        page.items[4].detail, "restart game",
        "what: the power request"
    );
    assert_eq!(page.items[2].detail, "reconcile with retry");

    type Case = (&'static str, AuditParams, usize);
    let cases: Vec<Case> = vec![
        (
            "by actor",
            AuditParams {
                actor: Some("portal-1".into()),
                ..Default::default()
            },
            1,
        ),
        (
            "by action",
            AuditParams {
                action: Some("server.reconcile".into()),
                ..Default::default()
            },
            2,
        ),
        (
            "by server and actor",
            AuditParams {
                server: Some(id),
                actor: Some("oncall".into()),
                ..Default::default()
            },
            6,
        ),
        (
            "another server: nothing",
            AuditParams {
                server: Some(model::ServerId::new()),
                ..Default::default()
            },
            0,
        ),
    ];
    for (reason, q, n) in cases {
        assert_eq!(op.audit(&q).await.unwrap().items.len(), n, "{reason}");
    }
    // Pages of 3, newest first, `next` until the end: every entry once.
    let mut seen = Vec::new();
    let mut q = AuditParams {
        limit: Some(3),
        ..Default::default()
    };
    for _ in 0..10 {
        let p = op.audit(&q).await.unwrap();
        seen.extend(p.items.iter().map(|e| e.seq));
        match p.next {
            Some(n) => q.before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, page.items.iter().map(|e| e.seq).collect::<Vec<_>>());

    // The server's own events say who asked, for each kind of request.
    let events = op.events(id).await.unwrap();
    for reason in [
        api::audit::reason::CREATE_REQUESTED,
        api::audit::reason::UPDATE_REQUESTED,
        api::audit::reason::POWER_REQUESTED,
        api::audit::reason::PAUSE_REQUESTED,
        api::audit::reason::RECONCILE_REQUESTED,
        api::audit::reason::DELETE_REQUESTED,
    ] {
        let e = events
            .iter()
            .find(|e| e.reason == reason)
            .unwrap_or_else(|| panic!("no {reason} event: {events:?}"));
        assert!(e.message.contains("requested by "), "{e:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("requested by portal (token portal-1)")),
        "{events:?}"
    );

    // zctl shows the same log.
    let run = api
        .zctl(
            &token(&store, "oncall-cli", Role::Operator, None).await,
            &["audit", "--server", &id.to_string()],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("server.delete") && run.stdout.contains("portal-1"),
        "{run:?}"
    );
    drop(api);
    let _ = std::fs::remove_dir_all(dir);
}

/// Only operators read the audit log: a customer's token (and a viewer's) is 403, also
/// through zctl (exit 5); token changes are audited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_operators_read_the_audit_log() {
    let (store, dir) = sqlite_store().await;
    let api = Api::start(store.clone()).await;
    let customer = token(&store, "u1", Role::Customer, Some("u1")).await;
    let viewer = token(&store, "watcher", Role::Viewer, None).await;
    for secret in [&customer, &viewer] {
        let res = api
            .http
            .get(format!("{}/api/audit", api.base))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }
    let run = api.zctl(&customer, &["audit"]).await;
    assert_eq!(run.code, 5, "{run:?}");

    let op = token(&store, "oncall", Role::Operator, None).await;
    let run = api
        .zctl(
            &op,
            &["token", "create", "--name", "ci", "--role", "viewer"],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = api
        .zctl(&op, &["audit", "--action", "token.create", "-o", "json"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["items"][0]["actor"], "oncall", "{doc}");
    assert!(
        doc["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("token ci"),
        "{doc}"
    );
    drop(api);
    let _ = std::fs::remove_dir_all(dir);
}
