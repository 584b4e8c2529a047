//! The API driven by a real browser: headless Chromium (Debian's `chromium`, through
//! `chromedriver` over WebDriver) loads a static page from a second loopback origin which,
//! with a JWT the test signs as the account service would, creates a server with `fetch`
//! (preflight included), polls its operation until Ready and lists its servers; the same
//! page with another customer's JWT sees none of them; a page from an origin not on
//! `[api] cors_origins` is refused by the browser. Fails, never skips, without Chromium.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use zlh_tests::{World, WorldOptions};

/// Every wait's bound (a page's whole run, Chromium's start-up).
const T: Duration = Duration::from_secs(120);
const SECRET: &[u8] = b"the-account-service-shared-secret-for-this-test";

/// The page: reads what to do from its fragment, writes the outcome to `window.__result`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>zlh browser test</title></head><body><script>
(async () => {
  const p = new URLSearchParams(location.hash.slice(1));
  const api = p.get("api"), auth = { Authorization: "Bearer " + p.get("token") };
  const out = {};
  try {
    if (p.get("create") === "1") {
      const r = await fetch(api + "/api/servers", {
        method: "POST",
        headers: { ...auth, "Content-Type": "application/json", "Idempotency-Key": "browser-1" },
        body: JSON.stringify({ spec: { kind: "game", game: "minecraft", variant: "paper",
          version: "1.21.7", resources: { cores: 2, memoryMib: 2048, diskGib: 16 } } }),
      });
      out.createStatus = r.status;
      out.location = r.headers.get("Location");
      out.created = (await r.json()).server.id;
      for (;;) {
        const o = await (await fetch(api + out.location, { headers: auth })).json();
        out.state = o.state;
        if (o.state !== "pending" && o.state !== "running") break;
        await new Promise((done) => setTimeout(done, 100));
      }
    }
    const l = await (await fetch(api + "/api/servers", { headers: auth })).json();
    out.listed = l.items.map((s) => s.id);
  } catch (e) {
    out.error = String(e);
  }
  window.__result = JSON.stringify(out);
})();
</script></body></html>"#;

/// A static file server for `PAGE` on a loopback port of its own (an origin).
async fn serve_page(stop: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let mut conn = tokio::select! {
                _ = stop.cancelled() => return,
                c = listener.accept() => match c { Ok((c, _)) => c, Err(_) => return },
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) = if buf.starts_with(b"GET /") {
                    ("200 OK", PAGE)
                } else {
                    ("404 Not Found", "")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// `name` from the environment (`var`) or `PATH`; panics (the test fails) when absent.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found (set {var}); install Debian's chromium and chromium-driver \
                 (.ci/run does)"
            )
        })
}

/// chromedriver as a child process, and one headless Chromium session in it.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn start() -> Browser {
        let chromium = tool("CHROMIUM", "chromium");
        let chromedriver = tool("CHROMEDRIVER", "chromedriver");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir(
            std::env::temp_dir().join(format!("zlh-chromium-{port}-{}", std::process::id())),
        );
        std::fs::create_dir_all(&profile.0).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let v: Value = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["value"]["error"].is_null(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    /// Load `url` and wait for the page's `window.__result`.
    async fn run(&self, url: &str) -> Value {
        self.command("url", json!({"url": url})).await;
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let got = self
                .command(
                    "execute/sync",
                    json!({"script": "return window.__result || null", "args": []}),
                )
                .await;
            if let Some(s) = got.as_str() {
                return serde_json::from_str(s).unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never finished: {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}

fn jwt(customer: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": customer, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_browser_page_on_the_portal_origin_creates_and_lists_its_own_servers() {
    let w = World::new(WorldOptions::default()).await;
    let _ctl = w.start_controller();
    let stop = CancellationToken::new();
    let portal = serve_page(stop.clone()).await;
    let stranger = serve_page(stop.clone()).await;
    let keys = TempDir(std::env::temp_dir().join(format!("zlh-browser-{}", portal.port())));
    std::fs::create_dir_all(&keys.0).unwrap();
    std::fs::write(keys.0.join("jwt_secret"), SECRET).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let state = api::AppState {
        store: w.store.clone(),
        catalog: Arc::new(w.cfg.catalog()),
        config: api::ApiConfig {
            cors_origins: vec![format!("http://{portal}")],
            identity: Some(api::identity::IdentityConfig {
                hs256_secret_file: Some(keys.0.join("jwt_secret")),
                ..Default::default()
            }),
            ..w.cfg.api.limits.clone()
        },
        metrics: None,
        sd: w.cfg.sd.clone(),
    };
    let server = {
        let stop = stop.clone();
        tokio::spawn(api::serve(listener, state, async move {
            stop.cancelled().await
        }))
    };

    let browser = Browser::start().await;
    let page = |origin: SocketAddr, customer: &str, create: bool| {
        format!(
            // A query of its own per load: a change of fragment alone would not reload.
            "http://{origin}/?as={customer}&create={create}#api={api}&token={}&create={}",
            jwt(customer),
            u8::from(create)
        )
    };
    let u1 = browser.run(&page(portal, "u1", true)).await;
    assert!(u1["error"].is_null(), "the page's calls succeeded: {u1}");
    assert_eq!(
        u1["createStatus"], 202,
        "the create passed its preflight: {u1}"
    );
    assert!(
        u1["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/api/operations/")),
        "Location is exposed to the page: {u1}"
    );
    assert_eq!(
        u1["state"], "succeeded",
        "the operation reached Ready: {u1}"
    );
    assert_eq!(
        u1["listed"],
        json!([u1["created"]]),
        "u1 lists its server: {u1}"
    );
    let created: model::ServerId = u1["created"].as_str().unwrap().parse().unwrap();
    use model::store::Store as _;
    let s = w.store.get_server(created).await.unwrap().unwrap();
    assert_eq!(s.customer_id, "u1", "the JWT's sub is the customer");

    let u2 = browser.run(&page(portal, "u2", false)).await;
    assert!(u2["error"].is_null(), "{u2}");
    assert_eq!(
        u2["listed"],
        json!([]),
        "another customer's JWT sees none of them: {u2}"
    );

    let refused = browser.run(&page(stranger, "u1", false)).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "an origin not on the list is refused by the browser: {refused}"
    );
    assert!(refused["listed"].is_null(), "and reads nothing: {refused}");

    browser.quit().await;
    stop.cancel();
    server.await.unwrap().unwrap();
}
