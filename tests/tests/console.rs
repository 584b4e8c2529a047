//! The console (issue 19) end to end: a real API in this process on the simulated stack, a
//! real WebSocket client (`tokio-tungstenite`), the Agent simulator's `/console/stream`
//! behind it. Each case states what it proves. Every wait is for an observable, bounded.

use futures::{SinkExt as _, StreamExt as _};
use model::customer::{new_token_secret, token_hash};
use model::store::Store;
use model::{Phase, Role, ServerId, ServerSpec, Variant};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};
use tokio_util::sync::CancellationToken;
use zlh_tests::world::Running;
use zlh_tests::{World, WorldOptions};

const T: Duration = Duration::from_secs(60);
/// A frame read has this long (the session is open: frames flow at once).
const READ: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Every log line of this test binary, at debug, for the secrets check.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let c = Captured::default();
        let w = c.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        c
    })
}

struct Stack {
    w: World,
    _ctl: Running,
    base: String,
    addr: String,
    op: String,
    customer: String,
    other: String,
    viewer: String,
    stop: CancellationToken,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
    id: ServerId,
    ip: Ipv4Addr,
    http: reqwest::Client,
}

async fn token(w: &World, name: &str, role: Role, customer: Option<&str>) -> String {
    let secret = new_token_secret();
    w.store
        .create_token(name, &token_hash(&secret), role, customer)
        .await
        .unwrap();
    secret
}

/// The world, a controller, an API with the console pointed at the Agent simulator, and
/// one Ready Paper server of customer `u1`.
async fn stack(edit: impl FnOnce(&mut api::console::ConsoleSetup)) -> Stack {
    logs();
    let w = World::new(WorldOptions::default()).await;
    let ctl = w.start_controller();
    let op = token(&w, "op", Role::Operator, None).await;
    let customer = token(&w, "u1", Role::Customer, Some("u1")).await;
    let other = token(&w, "u2", Role::Customer, Some("u2")).await;
    let viewer = token(&w, "viewer", Role::Viewer, None).await;
    let mut console = api::console::ConsoleSetup {
        agent_port: w.cfg.agent.port,
        origins: vec!["https://portal.example".into()],
        ..Default::default()
    };
    edit(&mut console);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let state = api::AppState {
        store: w.store.clone(),
        catalog: Arc::new(w.cfg.catalog()),
        config: api::ApiConfig {
            console,
            ..w.cfg.api.limits.clone()
        },
        metrics: None,
        sd: w.cfg.sd.clone(),
    };
    let api = {
        let stop = stop.clone();
        tokio::spawn(api::serve(listener, state, async move {
            stop.cancelled().await
        }))
    };
    let id = w
        .create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;
    w.wait_all(Some(Phase::Ready), T).await;
    let s = w.store.get_server(id).await.unwrap().unwrap();
    let ip: Ipv4Addr = s.status.ip.unwrap().parse().unwrap();
    Stack {
        w,
        _ctl: ctl,
        base: format!("http://{addr}"),
        addr,
        op,
        customer,
        other,
        viewer,
        stop,
        api,
        id,
        ip,
        http: reqwest::Client::new(),
    }
}

impl Stack {
    fn agent(&self) -> &edge_client::sim::AgentSim {
        self.w.sims.agent.as_ref().unwrap()
    }

    /// A ticket (the JSON answer) as `bearer`, or the refusal's status.
    async fn ticket(&self, bearer: &str) -> Result<serde_json::Value, u16> {
        let r = self
            .http
            .post(format!(
                "{}/api/servers/{}/console/ticket",
                self.base, self.id
            ))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        if r.status() != 201 {
            return Err(r.status().as_u16());
        }
        assert_eq!(
            r.headers()["cache-control"],
            "no-store",
            "a ticket must not be cached"
        );
        Ok(r.json().await.unwrap())
    }

    /// Open `path` (with its query) with these extra headers; the refusal's status and body.
    async fn open(&self, path: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                tungstenite::http::HeaderValue::from_str(v).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(res)) => {
                let body = res
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((res.status().as_u16(), body))
            }
            Err(e) => panic!("console dial failed: {e}"),
        }
    }

    async fn open_ticket(&self, bearer: &str) -> Ws {
        let t = self.ticket(bearer).await.expect("ticket");
        self.open(t["url"].as_str().unwrap(), &[])
            .await
            .expect("console opens")
    }
}

/// Read text frames until one satisfies `pred` (returned); panics on a close or after
/// `READ`.
async fn until_text(ws: &mut Ws, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + READ;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame matching {what}"));
        match m {
            Some(Ok(Message::Text(t))) if pred(t.as_str()) => return t.to_string(),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("waiting for {what}: {other:?}"),
        }
    }
}

/// Read until the close frame; its code, and how many data frames came before it.
async fn close_code(ws: &mut Ws) -> (u16, usize) {
    let deadline = tokio::time::Instant::now() + T;
    let mut frames = 0;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no close frame in time");
        match m {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), frames),
            Some(Ok(Message::Close(None))) => return (1005, frames),
            Some(Ok(Message::Text(_) | Message::Binary(_))) => frames += 1,
            Some(Ok(_)) => {}
            other => panic!("waiting for the close frame: {other:?}"),
        }
    }
}

async fn send_line(ws: &mut Ws, line: &str) {
    ws.send(Message::Text(format!("{line}\n").into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tickets_relay_roles_and_origins() {
    let s = stack(|_| {}).await;
    let t = s
        .ticket(&s.customer)
        .await
        .expect("the owner gets a ticket");
    assert_eq!(
        t["permissions"],
        serde_json::json!(["console.read", "console.write"]),
        "a customer in good standing may write"
    );
    let url = t["url"].as_str().unwrap().to_string();
    let mut ws = s.open(&url, &[]).await.expect("console opens");
    // The backlog is replayed: the server's start line was printed before anyone connected.
    until_text(&mut ws, "the backlog's Done line", |l| {
        l.starts_with("Done (")
    })
    .await;
    send_line(&mut ws, "list").await;
    until_text(&mut ws, "the players line", |l| {
        l == edge_client::sim::console_lines::PLAYERS
    })
    .await;

    // A ticket is single use: the second dial is a 401 problem before any upgrade.
    let (status, body) = s.open(&url, &[]).await.expect_err("a reused ticket");
    assert_eq!(status, 401, "reused ticket: {body}");
    assert!(
        body.contains("already used"),
        "the problem says why: {body}"
    );
    // A forged ticket is refused the same way, and no credential at all is 401 too.
    let path = format!("/api/servers/{}/console", s.id);
    let (status, _) = s
        .open(&format!("{path}?ticket=x.y.z"), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401, "a bad ticket");
    let (status, _) = s.open(&path, &[]).await.err().unwrap();
    assert_eq!(status, 401, "no credential");

    // Another customer cannot see the server at all.
    assert_eq!(
        s.ticket(&s.other).await.err(),
        Some(404),
        "another customer's ticket request is a 404, as if the server did not exist"
    );
    let auth = format!("Bearer {}", s.other);
    let (status, _) = s
        .open(&path, &[("authorization", &auth)])
        .await
        .err()
        .unwrap();
    assert_eq!(
        status, 404,
        "nor may it open the console with its bearer token"
    );

    // A ticket for one server does not open another's console.
    let other_server = format!("/api/servers/{}/console", ServerId::new());
    let t2 = s.ticket(&s.customer).await.unwrap();
    let q = t2["url"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .to_string();
    let (status, _) = s
        .open(&format!("{other_server}?{q}"), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403, "a ticket is bound to its server");

    // A bad Origin is refused before the upgrade; a listed one opens.
    let t3 = s.ticket(&s.customer).await.unwrap();
    let (status, _) = s
        .open(
            t3["url"].as_str().unwrap(),
            &[("origin", "https://evil.example")],
        )
        .await
        .expect_err("a foreign origin");
    assert_eq!(status, 403, "Origin not in console_origins");
    let t4 = s.ticket(&s.customer).await.unwrap();
    let mut listed = s
        .open(
            t4["url"].as_str().unwrap(),
            &[("origin", "https://portal.example")],
        )
        .await
        .expect("a listed origin opens");
    let _ = listed.close(None).await;

    // A viewer's session is read-only: its input is dropped by zlh, which says so once.
    let tv = s.ticket(&s.viewer).await.unwrap();
    assert_eq!(tv["permissions"], serde_json::json!(["console.read"]));
    let mut ro = s.open(tv["url"].as_str().unwrap(), &[]).await.unwrap();
    send_line(&mut ro, "say from-the-viewer").await;
    until_text(&mut ro, "the read-only notice", |l| {
        l == api::console::msg::READ_ONLY
    })
    .await;
    // The read-write session's line after it reaches the Agent; the viewer's never did.
    send_line(&mut ws, "say from-the-owner").await;
    until_text(&mut ws, "the owner's say", |l| {
        l == "[Server] from-the-owner"
    })
    .await;
    let input = s.agent().console_input(s.ip);
    assert!(
        !input.iter().any(|l| l.contains("from-the-viewer")),
        "a read-only session's input reached the Agent: {input:?}"
    );

    // A bearer token works for scripts (zctl) as well.
    let auth = format!("Bearer {}", s.op);
    let mut bearer = s.open(&path, &[("authorization", &auth)]).await.unwrap();
    send_line(&mut bearer, "nonsense").await;
    until_text(&mut bearer, "the unknown-command line", |l| {
        l == edge_client::sim::console_lines::UNKNOWN
    })
    .await;

    // The one-shot command reaches the console too (every session sees its answer).
    let r = s
        .http
        .post(format!("{}/api/servers/{}/command", s.base, s.id))
        .bearer_auth(&s.customer)
        .json(&serde_json::json!({"command": "say via-command"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    until_text(&mut ws, "the command's say", |l| {
        l == "[Server] via-command"
    })
    .await;

    // Typed `stop` stops the game process (the Agent's state), answered as vanilla does.
    send_line(&mut ws, "stop").await;
    until_text(&mut ws, "the stop line", |l| {
        l == edge_client::sim::console_lines::STOPPING
    })
    .await;
    s.w.wait_for("the game process stopping", T, async || {
        matches!(
            s.agent().state(s.ip),
            Some(edge_client::AgentState::Stopping | edge_client::AgentState::Stopped)
        )
    })
    .await;

    // Graceful shutdown ends every session with 1001.
    s.stop.cancel();
    for (name, mut w) in [("owner", ws), ("viewer", ro), ("bearer", bearer)] {
        let (code, _) = close_code(&mut w).await;
        assert_eq!(code, 1001, "{name}: zlh shutting down is 1001");
    }
    let _ = s.api.await;

    // No ticket or token reached a log line.
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(text.contains("console opened"), "the logs were captured");
    for (what, secret) in [
        ("ticket", t["ticket"].as_str().unwrap()),
        ("viewer ticket", tv["ticket"].as_str().unwrap()),
        ("customer token", s.customer.as_str()),
        ("operator token", s.op.as_str()),
        ("other token", s.other.as_str()),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
    }
    let _ = std::io::stderr().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_failures_floods_and_deletion() {
    let s = stack(|c| c.config.outbound_queue = 64).await;
    let agent = s.agent();

    // The Agent is down: 502 with Retry-After, before any upgrade.
    agent.set_outage(s.ip, true).await.unwrap();
    let t = s.ticket(&s.customer).await.unwrap();
    let (status, body) = s.open(t["url"].as_str().unwrap(), &[]).await.err().unwrap();
    assert_eq!(status, 502, "Agent outage: {body}");
    agent.set_outage(s.ip, false).await.unwrap();

    // The Agent refuses zlh's token: 502 saying so.
    agent.set_console_faults(edge_client::sim::ConsoleFaults {
        refuse: Some(401),
        ..Default::default()
    });
    let t = s.ticket(&s.customer).await.unwrap();
    let (status, body) = s.open(t["url"].as_str().unwrap(), &[]).await.err().unwrap();
    assert_eq!(status, 502);
    assert!(body.contains("token"), "the 502 names the token: {body}");

    // The Agent closes mid-session with an error code: the client sees 1011.
    agent.set_console_faults(edge_client::sim::ConsoleFaults {
        close_after: Some((1, 1011)),
        ..Default::default()
    });
    let mut ws = s.open_ticket(&s.customer).await;
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 1011, "the Agent closing abnormally");

    // A flood into a client that does not read: closed with 1013, and far fewer frames than
    // were sent ever reach it (the queue is bounded).
    const FLOOD: usize = 4000;
    agent.set_console_faults(edge_client::sim::ConsoleFaults {
        flood: Some((FLOOD, 16 * 1024)),
        ..Default::default()
    });
    let mut ws = s.open_ticket(&s.customer).await;
    // Not reading: wait until the relay gave up on it (the Agent's session ended).
    s.w.wait_for("the flooded session to end", T, async || {
        agent.console_flooded(s.ip) > 0 && agent.console_sessions(s.ip) == 0
    })
    .await;
    let (code, frames) = close_code(&mut ws).await;
    assert_eq!(code, 1013, "a client too slow for the flood");
    assert!(
        frames < FLOOD,
        "all {FLOOD} flood frames were buffered for the client ({frames})"
    );
    agent.set_console_faults(Default::default());

    // A client frame over 16 KiB is closed with 1009.
    let mut ws = s.open_ticket(&s.customer).await;
    ws.send(Message::Text("x".repeat(17 * 1024).into()))
        .await
        .unwrap();
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 1009, "frame too big");

    // Deleting the server closes its console with 1001.
    let mut ws = s.open_ticket(&s.customer).await;
    let r = s
        .http
        .delete(format!("{}/api/servers/{}", s.base, s.id))
        .bearer_auth(&s.op)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "delete: {}", r.status());
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 1001, "a deleted server's console goes away");
    // And a deleted server gets no new ticket.
    let refused = s.ticket(&s.customer).await.err();
    assert!(
        matches!(refused, Some(404 | 409)),
        "ticket for a deleted server: {refused:?}"
    );
    s.stop.cancel();
    let _ = s.api.await;
}

const JSON: (&str, &str) = ("sec-websocket-protocol", api::console::SUBPROTOCOL_JSON);

async fn send_event(ws: &mut Ws, event: &str, arg: &str) {
    let f = serde_json::json!({"event": event, "args": [arg]});
    ws.send(Message::Text(f.to_string().into())).await.unwrap();
}

/// Read JSON frames until an `event` whose args satisfy `pred` (returned).
async fn until_event(
    ws: &mut Ws,
    event: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {event} event"));
        match m {
            Some(Ok(Message::Text(t))) => {
                let f: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                let args = f["args"].as_array().cloned().unwrap_or_default();
                if f["event"] == event && pred(&args) {
                    return args;
                }
                assert_ne!(f["event"], "daemon error", "waiting for {event}");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("waiting for {event}: {other:?}"),
        }
    }
}

fn process_is(want: &'static str) -> impl Fn(&[serde_json::Value]) -> bool {
    move |a| a.first().is_some_and(|s| s["process"] == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_framing_power_renewal_and_max_age() {
    use api::console::json::{client, server};
    // Short enough to see renewal and the end; long enough for each step in between.
    let s = stack(|c| {
        c.config.max_session = Duration::from_secs(16);
        c.config.renew_notice = Duration::from_secs(8);
    })
    .await;
    let t = s.ticket(&s.customer).await.unwrap();
    let mut ws = s.open(t["url"].as_str().unwrap(), &[JSON]).await.unwrap();
    // The status comes on open.
    until_event(&mut ws, server::STATUS, |a| {
        a.first().is_some_and(|s| s["phase"] == "ready")
    })
    .await;
    // Renewal: warned before the end, a fresh ticket renews without reconnecting; a spent
    // one is a `jwt error` and the session goes on.
    until_event(&mut ws, server::TOKEN_EXPIRING, |_| true).await;
    send_event(&mut ws, client::AUTH, t["ticket"].as_str().unwrap()).await;
    until_event(&mut ws, server::JWT_ERROR, |_| true).await;
    let fresh = s.ticket(&s.customer).await.unwrap();
    send_event(&mut ws, client::AUTH, fresh["ticket"].as_str().unwrap()).await;
    until_event(&mut ws, server::AUTH_SUCCESS, |_| true).await;
    // `send command` reaches the Agent; its answer is `console output`.
    send_event(&mut ws, client::SEND_COMMAND, "list").await;
    until_event(&mut ws, server::CONSOLE_OUTPUT, |a| {
        a.first()
            .is_some_and(|l| l == edge_client::sim::console_lines::PLAYERS)
    })
    .await;
    // `set state` is the power route's spec change, and `status` follows it.
    send_event(&mut ws, client::SET_STATE, "stop").await;
    until_event(&mut ws, server::STATUS, process_is("stopped")).await;
    send_event(&mut ws, client::SET_STATE, "start").await;
    until_event(&mut ws, server::STATUS, process_is("running")).await;
    // The renewed session still ends at its maximum age: `token expired`, then 4001.
    until_event(&mut ws, server::TOKEN_EXPIRED, |_| true).await;
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 4001, "a session older than max_session");
    s.stop.cancel();
    let _ = s.api.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standing_address_and_command_refusals() {
    let s = stack(|_| {}).await;
    // A customer who falls overdue may no longer write: the read-write session ends, 4403.
    let mut ws = s.open_ticket(&s.customer).await;
    s.w.store
        .upsert_customer("u1", None, Some(model::Standing::Overdue))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await.0, 4403, "standing lowered");
    s.w.store
        .upsert_customer("u1", None, Some(model::Standing::Active))
        .await
        .unwrap();

    // A new address: the session must reconnect to it, 1012.
    let mut ws = s.open_ticket(&s.customer).await;
    let set_ip = async |ip: &str| loop {
        let now = s.w.store.get_server(s.id).await.unwrap().unwrap();
        let mut st = now.status.clone();
        st.ip = Some(ip.into());
        match s
            .w
            .store
            .write_status(s.id, &st, now.resource_version, None)
            .await
        {
            Ok(_) => break,
            Err(model::store::StoreError::Stale) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    set_ip("127.99.99.99").await;
    assert_eq!(close_code(&mut ws).await.0, 1012, "address changed");
    set_ip(&s.ip.to_string()).await;

    let command = async |line: &str| {
        let r = s
            .http
            .post(format!("{}/api/servers/{}/command", s.base, s.id))
            .bearer_auth(&s.customer)
            .json(&serde_json::json!({ "command": line }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // The Agent is down: the command cannot be sent, 502.
    s.agent().set_outage(s.ip, true).await.unwrap();
    let (status, body) = command("say x").await;
    assert_eq!(status, 502, "Agent outage: {body}");
    s.agent().set_outage(s.ip, false).await.unwrap();
    // The game is stopped (spec): a command has no process to reach, 409.
    let r = s
        .http
        .post(format!("{}/api/servers/{}/power", s.base, s.id))
        .bearer_auth(&s.customer)
        .json(&serde_json::json!({"signal": "stop"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "stop: {}", r.status());
    let (status, body) = command("say x").await;
    assert_eq!(status, 409, "game stopped: {body}");
    assert!(
        body.contains(api::routes::console::refusal::NOT_RUNNING),
        "{body}"
    );

    // A dev container has no game: `set state` is refused with a `daemon error`.
    let dev = s.w.create("u1", ServerSpec::dev("node", "22")).await;
    s.w.wait_all(Some(Phase::Ready), T).await;
    let r = s
        .http
        .post(format!("{}/api/servers/{dev}/console/ticket", s.base))
        .bearer_auth(&s.customer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "dev ticket");
    let t: serde_json::Value = r.json().await.unwrap();
    let mut ws = s.open(t["url"].as_str().unwrap(), &[JSON]).await.unwrap();
    send_event(&mut ws, api::console::json::client::SET_STATE, "stop").await;
    let why = until_event(&mut ws, api::console::json::server::DAEMON_ERROR, |_| true).await;
    assert_eq!(
        why,
        [api::console::json::err::DEV_STATE],
        "set state on a dev container"
    );
    s.stop.cancel();
    let _ = s.api.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zctl_console_as_a_process() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let zctl = zlh_tests::process::zctl_path();
    let s = stack(|_| {}).await;
    // No zctl config file of this machine's user.
    let home = std::env::temp_dir().join(format!("zlh-zctl-{}", ServerId::new()));
    std::fs::create_dir_all(&home).unwrap();
    let spawn = || {
        tokio::process::Command::new(&zctl)
            .args(["console", &s.id.to_string()])
            .env("ZLH_API_URL", &s.base)
            .env("ZLH_TOKEN", &s.customer)
            .env("HOME", &home)
            .env_remove("ZCTL_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let until_line = async |out: &mut tokio::io::Lines<_>, want: &str, pred: fn(&str) -> bool| {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let l: Option<String> = tokio::time::timeout_at(deadline, out.next_line())
                .await
                .unwrap_or_else(|_| panic!("zctl printed no {want}"))
                .unwrap();
            if l.as_deref().is_some_and(pred) {
                return;
            }
            assert!(l.is_some(), "zctl ended before {want}");
        }
    };
    // A stdin line reaches the server, its answer is printed; end of input closes, exit 0.
    let mut child = spawn();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"list\n").await.unwrap();
    until_line(&mut out, "the players line", |l| {
        l == edge_client::sim::console_lines::PLAYERS
    })
    .await;
    drop(stdin);
    let status = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "end of input is a normal close");
    // zlh shutting down (1001) is exit 6: open the console again later. Its stdin is held
    // open here: `Child::wait` closes a stdin it still owns, and that end of input would race
    // the server's 1001 (a normal close, exit 0).
    let mut child = spawn();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let _stdin = child.stdin.take().unwrap();
    until_line(&mut out, "the backlog's Done line", |l| {
        l.starts_with("Done (")
    })
    .await;
    s.stop.cancel();
    let status = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(6), "1001 → exit 6");
    let _ = s.api.await;
    let _ = std::fs::remove_dir_all(&home);
}

/// `zctl exec ID -- <line>` sends one line without a console; `zctl console --read-only`
/// sends nothing, even with input on stdin (the line typed there never reaches the game).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zctl_exec_and_a_read_only_console() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let zctl = zlh_tests::process::zctl_path();
    let s = stack(|_| {}).await;
    let home = std::env::temp_dir().join(format!("zlh-zctl-{}", ServerId::new()));
    std::fs::create_dir_all(&home).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = tokio::process::Command::new(&zctl);
        c.args(args)
            .env("ZLH_API_URL", &s.base)
            .env("ZLH_TOKEN", &s.customer)
            .env("HOME", &home)
            .env_remove("ZCTL_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    };
    let id = s.id.to_string();
    let status = cmd(&["exec", &id, "--", "say", "hello"])
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "exec succeeds");

    let mut ro = cmd(&["console", &id, "--read-only"]).spawn().unwrap();
    let mut out = tokio::io::BufReader::new(ro.stdout.take().unwrap()).lines();
    let mut stdin = ro.stdin.take().unwrap();
    stdin.write_all(b"say sneaky\n").await.unwrap();
    // The session is open once the backlog arrives, which already holds the exec'd line.
    lines_until(&mut out, "[Server] hello").await;
    drop(stdin);
    ro.kill().await.unwrap();

    // A later line proves the order: anything the read-only console sent came before it.
    let status = cmd(&["exec", &id, "--", "say", "after"])
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rw = cmd(&["console", &id]).spawn().unwrap();
    let mut out = tokio::io::BufReader::new(rw.stdout.take().unwrap()).lines();
    let seen = lines_until(&mut out, "[Server] after").await;
    assert!(
        !seen.iter().any(|l| l.contains("sneaky")),
        "read-only input never reached the game: {seen:?}"
    );
    rw.kill().await.unwrap();
    s.stop.cancel();
    let _ = s.api.await;
    let _ = std::fs::remove_dir_all(&home);
}

/// A token revoked while its session is open ends the session with 4401 (the session's
/// periodic check finds the token gone); the row is deleted as a revocation would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_ends_its_session_with_4401() {
    let s = stack(|_| {}).await;
    let secret = token(&s.w, "revocable", Role::Customer, Some("u1")).await;
    let path = format!("/api/servers/{}/console", s.id);
    let auth = format!("Bearer {secret}");
    let mut ws = s.open(&path, &[("authorization", &auth)]).await.unwrap();
    until_text(&mut ws, "the backlog", |l| l.starts_with("Done (")).await;
    let db = sqlx::SqlitePool::connect(&s.w.cfg.database_url)
        .await
        .unwrap();
    let gone = sqlx::query("DELETE FROM api_tokens WHERE name = 'revocable'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(gone.rows_affected(), 1, "the token existed");
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, api::console::close::TOKEN_REVOKED, "revoked: 4401");
    s.stop.cancel();
    let _ = s.api.await;
}

/// The lines zctl prints before `want` (which must come within `T`).
async fn lines_until(
    out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    want: &str,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + T;
    let mut seen = Vec::new();
    loop {
        let l = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {want} in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("zctl ended before {want}"));
        if l == want {
            return seen;
        }
        seen.push(l);
    }
}
