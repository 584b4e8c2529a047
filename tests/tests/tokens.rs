//! Token lifecycle: list, create (the secret once), revoke and expiry through the API, `zctl
//! token` and `zlhd token`; a revoked or expired token is 401 on its very next request, on
//! every API replica (a second API process on PostgreSQL included).

mod ops;

use model::Role;
use model::store::Store;
use ops::{Api, HANG, sqlite_store, token};
use std::time::Duration;
use zlh_tests::process::{Zlhd, write_config};
use zlh_tests::{World, WorldOptions};

/// The status of `GET /api/servers` with `secret` at `base`, and the problem's detail.
async fn probe(http: &reqwest::Client, base: &str, secret: &str) -> (u16, String) {
    let res = http
        .get(format!("{base}/api/servers"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (status, body["detail"].as_str().unwrap_or("").to_string())
}

/// Poll until `secret` is refused at `base` (bounded by HANG), answering the refusal's detail.
async fn until_refused(http: &reqwest::Client, base: &str, secret: &str) -> String {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (status, detail) = probe(http, base, secret).await;
        if status == 401 {
            return detail;
        }
        assert_eq!(status, 200, "{detail}");
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API routes: create answers the secret once, list shows the token (never a secret) and
/// its last use, revoke makes it 401 at once, an expired one is 401 too; a non-operator is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_api_lists_creates_revokes_and_expires() {
    let (store, dir) = sqlite_store().await;
    let api = Api::start(store.clone()).await;
    let op = api.client(&token(&store, "oncall", Role::Operator, None).await);

    let created = op
        .create_token(&api::wire::CreateTokenRequest {
            name: "ci".into(),
            role: Role::Viewer,
            customer_id: None,
            expires_in: Some("30d".into()),
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("zlh_"));
    assert_eq!(created.token.state, "active");
    let expires = created.token.expires_at.expect("an expiry");
    let days = (expires - created.token.created_at).num_days();
    assert!((29..=30).contains(&days), "30d: {days}");
    assert_eq!(probe(&api.http, &api.base, &created.secret).await.0, 200);

    // The use is recorded (off the request path: wait for it).
    let deadline = tokio::time::Instant::now() + HANG;
    let listed = loop {
        let l = op.tokens().await.unwrap();
        let ci = l.iter().find(|t| t.name == "ci").unwrap().clone();
        if ci.last_used_at.is_some() {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last use never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&created.secret), "no secret in the list");
    assert!(
        !text.contains(&model::customer::token_hash(&created.secret)),
        "no hash either"
    );

    let revoked = op.revoke_token(created.token.id).await.unwrap();
    assert_eq!(revoked.state, "revoked");
    let (status, detail) = probe(&api.http, &api.base, &created.secret).await;
    assert_eq!((status, detail.as_str()), (401, api::auth::msg::UNKNOWN));

    // Expired: refused with its own message.
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let old = model::customer::new_token_secret();
    store
        .create_token_expiring(
            "old",
            &model::customer::token_hash(&old),
            Role::Operator,
            None,
            Some(past),
        )
        .await
        .unwrap();
    let (status, detail) = probe(&api.http, &api.base, &old).await;
    assert_eq!((status, detail.as_str()), (401, api::auth::msg::EXPIRED));

    // Bad requests are 422 naming the field; non-operators are 403.
    type Case = (&'static str, serde_json::Value, &'static str);
    let cases: &[Case] = &[
        (
            "a name like an external identity",
            serde_json::json!({"name": "jwt:x", "role": "viewer"}),
            "name",
        ),
        (
            "a customer token without a customer",
            serde_json::json!({"name": "c", "role": "customer"}),
            "customerId",
        ),
        (
            "a duration that is none",
            serde_json::json!({"name": "c", "role": "viewer", "expiresIn": "soon"}),
            "expiresIn",
        ),
    ];
    let op_secret = token(&store, "oncall2", Role::Operator, None).await;
    for (reason, body, field) in cases {
        let res = api
            .http
            .post(format!("{}/api/tokens", api.base))
            .bearer_auth(&op_secret)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{reason}");
        let p: serde_json::Value = res.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], *field, "{reason}: {p}");
    }
    let viewer = token(&store, "watcher", Role::Viewer, None).await;
    let customer = token(&store, "u1", Role::Customer, Some("u1")).await;
    for secret in [&viewer, &customer] {
        let res = api
            .http
            .get(format!("{}/api/tokens", api.base))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }
    drop(api);
    let _ = std::fs::remove_dir_all(dir);
}

/// `zctl token create|list|revoke`, and `zlhd token create --expires|list|revoke` on the
/// same database: each revocation is 401 at once, an expiry is 401 once it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zctl_and_zlhd_manage_tokens() {
    let (store, dir) = sqlite_store().await;
    let api = Api::start(store.clone()).await;
    let op = token(&store, "oncall", Role::Operator, None).await;

    let run = api
        .zctl(
            &op,
            &["token", "create", "--name", "ci", "--role", "viewer"],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let ci = run.stdout.trim().to_string();
    assert!(
        ci.starts_with("zlh_") && !ci.contains(' '),
        "only the secret on stdout: {run:?}"
    );
    assert!(run.stderr.contains("shown only once"), "{run:?}");
    assert_eq!(probe(&api.http, &api.base, &ci).await.0, 200);

    let run = api.zctl(&op, &["token", "list"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("ci") && run.stdout.contains("viewer"),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&ci), "no secret listed");

    let run = api.zctl(&op, &["token", "revoke", "ci"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        probe(&api.http, &api.base, &ci).await.0,
        401,
        "revoked: at once"
    );
    let run = api.zctl(&op, &["token", "revoke", "nobody"]).await;
    assert_eq!(run.code, 4, "not found: {run:?}");
    let run = api.zctl(&ci, &["token", "list"]).await;
    assert_eq!(run.code, 5, "a revoked token is not allowed: {run:?}");

    // An expiry through zctl: refused once it passes (waited for, never slept on).
    let run = api
        .zctl(
            &op,
            &[
                "token",
                "create",
                "--name",
                "brief",
                "--role",
                "viewer",
                "--expires",
                "2s",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let brief = run.stdout.trim().to_string();
    let detail = until_refused(&api.http, &api.base, &brief).await;
    assert_eq!(detail, api::auth::msg::EXPIRED);

    // zlhd's token commands on the same database.
    let config = dir.join("zlh.toml");
    let url = format!("sqlite://{}/zlh.db", dir.display());
    std::fs::write(&config, format!("database_url = \"{url}\"\n")).unwrap();
    let zlhd = |args: &[&str]| {
        std::process::Command::new(zlh_tests::process::zlhd_path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("ZLH_CONFIG")
            .env_remove("ZLH_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("zlhd runs")
    };
    let out = zlhd(&[
        "token",
        "create",
        "--name",
        "deploy",
        "--role",
        "operator",
        "--expires",
        "30d",
    ]);
    assert!(out.status.success(), "{out:?}");
    let deploy = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(probe(&api.http, &api.base, &deploy).await.0, 200);
    let out = zlhd(&["token", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    let row = listed
        .lines()
        .find(|l| l.contains("deploy"))
        .expect("listed");
    assert!(
        row.contains("active") && !row.trim_end().ends_with("never"),
        "an expiry: {row}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("ci ") && l.contains("revoked")),
        "{listed}"
    );
    let out = zlhd(&["token", "revoke", "deploy"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(probe(&api.http, &api.base, &deploy).await.0, 401);
    let out = zlhd(&[
        "token",
        "create",
        "--name",
        "jwt:sneaky",
        "--role",
        "operator",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    drop(api);
    let _ = std::fs::remove_dir_all(dir);
}

/// Two API processes on one PostgreSQL database: a token revoked through one, or expired, is
/// refused by the other on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_api_process_on_postgres_refuses_revoked_and_expired_tokens_at_once() {
    let db = zlh_tests::pg::fresh_database("zlh_tokens").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let first = Api::start(w.store.clone()).await;
    let dir = std::env::temp_dir().join(format!("zlh-tokens-{}", model::ServerId::new()));
    // Replicas on PostgreSQL share a console ticket key (an owner-only file).
    let key = dir.join("console-key");
    let config = write_config(&w, &dir, |c| c.api.console.key_file = Some(key.clone()));
    std::fs::write(&key, model::customer::new_token_secret()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // "API listening" (its address) is logged at info.
    let mut second = Zlhd::spawn_env(
        &config,
        &["--log-format", "json", "api"],
        &dir.join("api.log"),
        &[("RUST_LOG", "warn,api::router=info")],
    );
    let second_base = format!("http://{}", second.logged_addr("API listening", HANG).await);
    let http = &first.http;

    let op = token(&w.store, "oncall", Role::Operator, None).await;
    let run = first
        .zctl(
            &op,
            &["token", "create", "--name", "ci", "--role", "viewer"],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let ci = run.stdout.trim().to_string();
    assert_eq!(
        probe(http, &second_base, &ci).await.0,
        200,
        "valid on the second"
    );
    let run = first.zctl(&op, &["token", "revoke", "ci"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (status, detail) = probe(http, &second_base, &ci).await;
    assert_eq!(
        (status, detail.as_str()),
        (401, api::auth::msg::UNKNOWN),
        "revoked on the first"
    );

    let run = first
        .zctl(
            &op,
            &[
                "token",
                "create",
                "--name",
                "brief",
                "--role",
                "viewer",
                "--expires",
                "2s",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let brief = run.stdout.trim().to_string();
    assert_eq!(
        until_refused(http, &second_base, &brief).await,
        api::auth::msg::EXPIRED
    );
    // The expiry holds on the first as well, with no request there since.
    let (status, _) = probe(http, &first.base, &brief).await;
    assert_eq!(status, 401);

    second.kill9().await;
    drop(first);
    drop(w);
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(dir);
}
