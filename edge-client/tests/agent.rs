#![cfg(feature = "sim")]
mod common;

use common::{T, eventually, ip};
use edge_client::agent::JAVA_21;
use edge_client::sim::{
    AgentPower, AgentSim, AgentSimConfig, DEFAULT_CRASH_MESSAGE, POWER_BEFORE_INSTALL,
};
use edge_client::{AgentClient, AgentConfig, AgentPayload, AgentState, slp};
use model::{ErrorClass, ServerSpec, Variant};
use secrecy::SecretString;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Long enough that a timed phase is still in progress when the test looks at it.
const FOREVER: Duration = Duration::from_secs(3600);

fn fast() -> AgentSimConfig {
    AgentSimConfig {
        install_time: Duration::from_secs(10),
        time_scale: 200.0,
        ..Default::default()
    }
}

fn client(sim: &AgentSim, token: Option<&str>) -> AgentClient {
    AgentClient::new(AgentConfig {
        port: sim.agent_port(),
        token: token.map(|t| SecretString::from(t.to_string())),
        timeout: T,
    })
    .unwrap()
}

fn payload(vmid: u32) -> AgentPayload {
    let spec = ServerSpec::minecraft(Variant::Paper, "1.21.7");
    AgentPayload::for_spec(vmid, &spec, 25565, "admin", SecretString::from("pw-123")).unwrap()
}

async fn wait_state(c: &AgentClient, ip: &str, want: impl Fn(&AgentState) -> bool) -> AgentState {
    let want = &want;
    eventually(move || async move {
        let s = c.status(ip).await.ok()?.state;
        want(&s).then_some(s)
    })
    .await
}

async fn state(c: &AgentClient, ip: &str) -> AgentState {
    c.status(ip).await.unwrap().state
}

fn crashed(n: u32) -> AgentState {
    AgentState::Crashed {
        count: Some(n),
        message: Some(DEFAULT_CRASH_MESSAGE.into()),
    }
}

/// A started container with `payload(vmid)` installed and the game running.
async fn running(sim: &AgentSim, c: &AgentClient, addr: Ipv4Addr, vmid: u32) -> String {
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();
    c.send_config(&a, &payload(vmid)).await.unwrap();
    wait_state(c, &a, |s| *s == AgentState::Running).await;
    a
}

async fn slp_answers(sim: &AgentSim, addr: Ipv4Addr) -> bool {
    slp::ping(sim.game_addr(addr), "mc-paper.zlh.test", T)
        .await
        .is_ok()
}

#[tokio::test]
async fn install_runs_and_slp_answers() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(101);
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();
    assert_eq!(c.status(&a).await.unwrap().state, AgentState::Idle);
    c.health(&a).await.unwrap();
    let game = sim.game_addr(addr);
    assert!(
        slp::ping(game, "mc-paper-101.zlh.test", T)
            .await
            .unwrap_err()
            .is_transient(),
        "not running yet"
    );

    sim.set_install_time(Duration::from_secs(3600));
    c.send_config(&a, &payload(101)).await.unwrap();
    match c.status(&a).await.unwrap().state {
        AgentState::Installing { step, progress } => {
            assert!(step.is_some());
            assert!(progress.is_some());
        }
        s => panic!("expected installing, got {s:?}"),
    }
    sim.set_install_time(Duration::from_secs(10));
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    assert_eq!(sim.configs_received(addr), 1);
    let cfg = sim.last_config(addr).unwrap();
    assert_eq!(cfg["container_type"], "game");
    assert_eq!(cfg["java_path"], JAVA_21);
    assert_eq!(cfg["admin_pass"], "pw-123");

    let st = slp::ping(game, "mc-paper-101.zlh.test", T).await.unwrap();
    assert_eq!(st.version_name, "1.21.7");
    assert_eq!(st.players_max, 20);
    assert!(st.description.contains("101"), "{st:?}");

    // Re-sending the same config to a running Agent does not reinstall.
    c.send_config(&a, &payload(101)).await.unwrap();
    assert_eq!(c.status(&a).await.unwrap().state, AgentState::Running);
    assert_eq!(sim.configs_received(addr), 2);
}

/// `share_port`: the Agent and the SLP responder answer on one socket per container.
#[tokio::test]
async fn shared_port_serves_agent_and_slp() {
    let sim = AgentSim::start(AgentSimConfig {
        share_port: true,
        ..fast()
    })
    .await
    .unwrap();
    assert_eq!(sim.game_port(), sim.agent_port());
    let c = client(&sim, None);
    let addr = ip(102);
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();
    c.send_config(&a, &payload(102)).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    // Alternate the protocols on the same address: each is told apart on every connection.
    for _ in 0..3 {
        let st = slp::ping(sim.game_addr(addr), "mc-paper-102.zlh.test", T)
            .await
            .unwrap();
        assert!(st.description.contains("102"), "{st:?}");
        assert_eq!(c.status(&a).await.unwrap().state, AgentState::Running);
    }
    sim.container_stopped(addr).await;
    assert!(slp::ping(sim.game_addr(addr), "x", T).await.is_err());
}

#[tokio::test]
async fn failures_crash_restart_and_stop() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(102);
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();

    sim.set_failure(Some("disk full".into()));
    c.send_config(&a, &payload(102)).await.unwrap();
    let s = wait_state(&c, &a, |s| matches!(s, AgentState::Error { .. })).await;
    assert_eq!(
        s,
        AgentState::Error {
            message: "disk full".into()
        }
    );
    sim.set_failure(None);

    sim.fail_next_installs(1);
    c.send_config(&a, &payload(103)).await.unwrap();
    wait_state(&c, &a, |s| matches!(s, AgentState::Error { .. })).await;
    c.send_config(&a, &payload(102)).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Running).await;

    assert!(sim.crash(addr));
    assert_eq!(c.status(&a).await.unwrap().state, crashed(1));
    assert!(
        slp::ping(sim.game_addr(addr), "x", T).await.is_err(),
        "crashed server does not answer"
    );

    sim.restart_agent(addr);
    assert_eq!(c.status(&a).await.unwrap().state, AgentState::Idle);
    assert_eq!(sim.last_config(addr), None, "config forgotten");

    sim.container_stopped(addr).await;
    let err = c.status(&a).await.unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::Transient,
        "stopped container: connection refused: {err}"
    );
    assert!(
        slp::ping(sim.game_addr(addr), "x", T)
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(sim.states().is_empty());

    sim.container_started(addr).await.unwrap();
    assert_eq!(
        c.status(&a).await.unwrap().state,
        AgentState::Idle,
        "comes back idle"
    );
    assert_eq!(sim.configs_received(addr), 0);
}

#[tokio::test]
async fn fail_ips_and_many_containers() {
    let sim = AgentSim::start(AgentSimConfig {
        fail_ips: vec![ip(112)],
        ..fast()
    })
    .await
    .unwrap();
    let c = client(&sim, None);
    for last in 110..114 {
        sim.container_started(ip(last)).await.unwrap();
        c.send_config(&ip(last).to_string(), &payload(last as u32))
            .await
            .unwrap();
    }
    for last in 110..114 {
        let a = ip(last).to_string();
        let s = wait_state(&c, &a, |s| {
            matches!(s, AgentState::Running | AgentState::Error { .. })
        })
        .await;
        assert_eq!(
            matches!(s, AgentState::Error { .. }),
            last == 112,
            "{last}: {s:?}"
        );
    }
    assert_eq!(sim.states().len(), 4);
}

enum Case {
    WrongToken,
    NoToken,
    BadPayload,
    Injected503,
    AgentDown,
    Hang,
}

#[tokio::test]
async fn error_classes() {
    let cases = [
        (
            Case::WrongToken,
            ErrorClass::Unauthorized,
            "401 wrong bearer token",
        ),
        (
            Case::NoToken,
            ErrorClass::Unauthorized,
            "401 token required",
        ),
        (
            Case::BadPayload,
            ErrorClass::Invalid,
            "400 bad payload is a bug",
        ),
        (Case::Injected503, ErrorClass::Transient, "agent busy"),
        (Case::AgentDown, ErrorClass::Transient, "connection refused"),
        (Case::Hang, ErrorClass::Transient, "timeout"),
    ];
    for (i, (case, want, reason)) in cases.into_iter().enumerate() {
        let sim = AgentSim::start(AgentSimConfig {
            token: Some("agent-tok".into()),
            ..fast()
        })
        .await
        .unwrap();
        let addr = ip(120 + i as u8);
        let a = addr.to_string();
        sim.container_started(addr).await.unwrap();
        let good = client(&sim, Some("agent-tok"));
        let err = match case {
            Case::WrongToken => client(&sim, Some("nope")).status(&a).await.unwrap_err(),
            Case::NoToken => client(&sim, None)
                .send_config(&a, &payload(1))
                .await
                .unwrap_err(),
            Case::BadPayload => {
                // An unknown container_type: what an out-of-date Agent would reject.
                let raw = reqwest::Client::new()
                    .post(format!("{}/config", sim.url(addr)))
                    .bearer_auth("agent-tok")
                    .json(&serde_json::json!({"container_type": "vm"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(raw.status(), 400);
                edge_client::EdgeError::new(
                    edge_client::Backend::Agent,
                    edge_client::error::classify_status(raw.status().as_u16()),
                    Some(400),
                    "",
                )
            }
            Case::Injected503 => {
                sim.faults().fail_next("/status", 1, 503);
                good.status(&a).await.unwrap_err()
            }
            Case::AgentDown => {
                sim.set_outage(addr, true).await.unwrap();
                good.health(&a).await.unwrap_err()
            }
            Case::Hang => {
                sim.faults().set_latency(Duration::from_secs(3));
                AgentClient::new(AgentConfig {
                    port: sim.agent_port(),
                    token: Some("agent-tok".to_string().into()),
                    timeout: Duration::from_millis(200),
                })
                .unwrap()
                .status(&a)
                .await
                .unwrap_err()
            }
        };
        assert_eq!(err.class, want, "{reason}: {err}");
    }
}

/// The power routes reach the Agent in order; stop, start and restart back to back end with
/// the game running, and none is a reinstall.
#[tokio::test]
async fn power_calls_are_accepted_and_recorded() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(130);
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();
    c.send_config(&a, &payload(130)).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Running).await;

    c.stop(&a).await.unwrap();
    c.start(&a).await.unwrap();
    c.restart(&a).await.unwrap();
    assert_eq!(
        sim.power_requests(addr),
        vec![AgentPower::Stop, AgentPower::Start, AgentPower::Restart]
    );
    let posts: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.uri != "/config")
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts, ["/stop", "/start", "/restart"], "no query string");
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    assert_eq!(sim.configs_received(addr), 1, "power is not a reinstall");

    // Through the trait, as the engine will call them.
    async fn via_trait(agent: &impl edge_client::Agent, ip: &str) {
        agent.restart(ip).await.unwrap();
    }
    via_trait(&c, &a).await;
    assert_eq!(sim.power_requests(addr).last(), Some(&AgentPower::Restart));
    wait_state(&c, &a, |s| *s == AgentState::Running).await;

    sim.container_stopped(addr).await;
    sim.container_started(addr).await.unwrap();
    assert!(
        sim.power_requests(addr).is_empty(),
        "a new container starts clean"
    );
}

/// On the wire each power call is a bare POST with the bearer token: nothing else for the
/// Agent to parse, and the same authorization as `/config`.
#[tokio::test]
async fn power_calls_are_bodyless_posts_with_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut heads = Vec::new();
        for _ in 0..3 {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request head cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8(buf).unwrap();
            let (head, rest) = text.split_once("\r\n\r\n").unwrap();
            assert!(rest.is_empty(), "no body bytes: {rest:?}");
            heads.push(head.to_ascii_lowercase());
            sock.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
        }
        heads
    });
    let c = AgentClient::new(AgentConfig {
        port,
        token: Some(SecretString::from("agent-tok".to_string())),
        timeout: T,
    })
    .unwrap();
    c.start("127.0.0.1").await.unwrap();
    c.stop("127.0.0.1").await.unwrap();
    c.restart("127.0.0.1").await.unwrap();
    let heads = server.await.unwrap();
    for (head, path) in heads.iter().zip(["/start", "/stop", "/restart"]) {
        assert!(
            head.starts_with(&format!("post {path} http/1.1\r\n")),
            "{head}"
        );
        assert!(
            head.contains("\r\nauthorization: bearer agent-tok"),
            "{head}"
        );
        assert!(
            !head.contains("content-type") && !head.contains("transfer-encoding"),
            "{head}"
        );
        assert!(
            !head.contains("content-length") || head.contains("content-length: 0"),
            "{head}"
        );
    }
}

/// Power calls fail like every other Agent call: the engine can classify them the same way.
#[tokio::test]
async fn power_call_errors() {
    let sim = AgentSim::start(AgentSimConfig {
        token: Some("agent-tok".into()),
        ..fast()
    })
    .await
    .unwrap();
    let addr = ip(131);
    let good = client(&sim, Some("agent-tok"));
    let a = running(&sim, &good, addr, 131).await;

    let e = client(&sim, None).start(&a).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unauthorized, "token required: {e}");
    let e = client(&sim, Some("nope")).restart(&a).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unauthorized, "wrong token: {e}");
    assert!(
        sim.power_requests(addr).is_empty(),
        "refused is not recorded"
    );

    sim.faults().fail_next("/stop", 1, 503);
    let e = good.stop(&a).await.unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Transient, Some(503)),
        "{e}"
    );
    good.stop(&a).await.unwrap();
    assert_eq!(sim.power_requests(addr), vec![AgentPower::Stop]);

    sim.container_stopped(addr).await;
    let e = good.restart(&a).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "container down: {e}");
}

/// Stop, start and restart walk the game through `stopping`, `stopped`, `starting` and
/// `running` on the sim's clock; a start of a running game and a stop of a stopped one change
/// nothing.
#[tokio::test]
async fn start_stop_restart_lifecycles() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(140);
    let a = running(&sim, &c, addr, 140).await;
    let (start, stop) = (Duration::from_secs(5), Duration::from_secs(3));

    // stop: running → stopping → stopped.
    sim.set_stop_time(FOREVER);
    c.stop(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Stopping);
    sim.set_stop_time(stop);
    wait_state(&c, &a, |s| *s == AgentState::Stopped).await;
    c.stop(&a).await.unwrap();
    assert_eq!(
        state(&c, &a).await,
        AgentState::Stopped,
        "stop when stopped"
    );

    // start: stopped → starting → running.
    sim.set_start_time(FOREVER);
    c.start(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Starting);
    c.start(&a).await.unwrap();
    assert_eq!(
        state(&c, &a).await,
        AgentState::Starting,
        "start when starting"
    );
    sim.set_start_time(start);
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    c.start(&a).await.unwrap();
    assert_eq!(
        state(&c, &a).await,
        AgentState::Running,
        "start when running"
    );

    // restart of a running game: stopping → (stopped) → starting → running.
    sim.set_stop_time(FOREVER);
    sim.set_start_time(FOREVER);
    c.restart(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Stopping);
    sim.set_stop_time(stop);
    wait_state(&c, &a, |s| *s == AgentState::Starting).await;
    sim.set_start_time(start);
    wait_state(&c, &a, |s| *s == AgentState::Running).await;

    // restart of a stopped game is a start.
    c.stop(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Stopped).await;
    sim.set_start_time(FOREVER);
    c.restart(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Starting);
    sim.set_start_time(start);
    wait_state(&c, &a, |s| *s == AgentState::Running).await;

    // A start while stopping starts again once stopped; a stop while starting wins.
    sim.set_stop_time(FOREVER);
    sim.set_start_time(FOREVER);
    c.stop(&a).await.unwrap();
    c.start(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Stopping);
    sim.set_stop_time(stop);
    wait_state(&c, &a, |s| *s == AgentState::Starting).await;
    c.stop(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Stopped).await;

    use AgentPower::*;
    assert_eq!(
        sim.power_requests(addr),
        [
            Stop, Stop, Start, Start, Start, Restart, Stop, Restart, Stop, Start, Stop
        ]
    );
    assert_eq!(sim.configs_received(addr), 1, "power is not a reinstall");
}

/// A `stop` typed at the console stops the game after `stop_time`; a clean process exit is
/// `stopped` at once; neither is a power request or a crash.
#[tokio::test]
async fn console_stop_and_process_exit_lead_to_stopped() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(141);
    let a = running(&sim, &c, addr, 141).await;

    sim.set_stop_time(FOREVER);
    assert!(sim.console_stop(addr));
    assert_eq!(state(&c, &a).await, AgentState::Stopping);
    sim.set_stop_time(Duration::from_secs(3));
    wait_state(&c, &a, |s| *s == AgentState::Stopped).await;
    assert!(!sim.console_stop(addr), "nothing runs to type at");

    c.start(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    assert!(sim.process_exit(addr));
    assert_eq!(state(&c, &a).await, AgentState::Stopped, "at once");
    assert!(!sim.process_exit(addr), "no process left to exit");
    assert!(!sim.crash(addr), "a stopped game cannot crash");
    assert_eq!(state(&c, &a).await, AgentState::Stopped);

    assert_eq!(sim.power_requests(addr), [AgentPower::Start]);
    assert_eq!(sim.configs_received(addr), 1);
}

/// With crash-on-start every start, restart and install ends `crashed` with a `crashCount`
/// growing by one (and an `error` message on the wire); a requested stop or a different config
/// resets it, re-sending the same config does not.
#[tokio::test]
async fn crash_on_start_gives_growing_crash_count() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(142);
    let a = running(&sim, &c, addr, 142).await;

    assert!(sim.crash(addr));
    assert_eq!(state(&c, &a).await, crashed(1));
    sim.set_crash_on_start(addr, true);
    for n in 2..=4 {
        c.start(&a).await.unwrap();
        wait_state(&c, &a, |s| *s == crashed(n)).await;
    }
    c.restart(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == crashed(5)).await;
    let wire: serde_json::Value = reqwest::get(format!("{}/status", sim.url(addr)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        wire,
        serde_json::json!({"state": "crashed", "crashCount": 5, "error": DEFAULT_CRASH_MESSAGE})
    );

    // The same config again: a reinstall, whose start crashes too; the count goes on.
    c.send_config(&a, &payload(142)).await.unwrap();
    wait_state(&c, &a, |s| *s == crashed(6)).await;

    // A stop asked for: stopped at once (nothing runs), the count starts over.
    c.stop(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Stopped);
    c.start(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == crashed(1)).await;

    // A different config: the count starts over too.
    c.start(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == crashed(2)).await;
    c.send_config(&a, &payload(1142)).await.unwrap();
    wait_state(&c, &a, |s| *s == crashed(1)).await;

    sim.set_crash_on_start(addr, false);
    c.start(&a).await.unwrap();
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
}

/// Before an install (idle, installing, error) the Agent refuses power with 409 and a JSON
/// `error`: class Conflict, not transient, and not recorded.
#[tokio::test]
async fn power_before_install_is_refused() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(143);
    let a = addr.to_string();
    sim.container_started(addr).await.unwrap();

    async fn refused(c: &AgentClient, a: &str) {
        for (what, r) in [
            ("start", c.start(a).await),
            ("stop", c.stop(a).await),
            ("restart", c.restart(a).await),
        ] {
            let e = r.unwrap_err();
            assert_eq!(
                (e.class, e.status),
                (ErrorClass::Conflict, Some(409)),
                "{what}: {e}"
            );
            assert!(!e.is_transient(), "{what}: {e}");
            assert!(e.message.contains(POWER_BEFORE_INSTALL), "{what}: {e}");
        }
    }

    refused(&c, &a).await;
    assert_eq!(state(&c, &a).await, AgentState::Idle);
    let raw = reqwest::Client::new()
        .post(format!("{}/start", sim.url(addr)))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 409);
    assert_eq!(
        raw.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": POWER_BEFORE_INSTALL, "state": "idle"})
    );

    sim.set_install_time(FOREVER);
    c.send_config(&a, &payload(143)).await.unwrap();
    refused(&c, &a).await;
    assert!(matches!(state(&c, &a).await, AgentState::Installing { .. }));

    sim.set_install_time(Duration::from_secs(10));
    sim.set_failure(Some("disk full".into()));
    c.send_config(&a, &payload(144)).await.unwrap();
    wait_state(&c, &a, |s| matches!(s, AgentState::Error { .. })).await;
    refused(&c, &a).await;

    assert!(
        sim.power_requests(addr).is_empty(),
        "refused is not recorded"
    );
}

/// The Server List Ping answers only while the game is `running`: not while starting,
/// stopping, stopped or crashed.
#[tokio::test]
async fn slp_answers_only_while_running() {
    let sim = AgentSim::start(fast()).await.unwrap();
    let c = client(&sim, None);
    let addr = ip(144);
    let a = running(&sim, &c, addr, 144).await;
    assert!(slp_answers(&sim, addr).await, "running");

    sim.set_stop_time(FOREVER);
    c.stop(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Stopping);
    assert!(!slp_answers(&sim, addr).await, "stopping");
    sim.set_stop_time(Duration::from_secs(3));
    wait_state(&c, &a, |s| *s == AgentState::Stopped).await;
    assert!(!slp_answers(&sim, addr).await, "stopped");

    sim.set_start_time(FOREVER);
    c.start(&a).await.unwrap();
    assert_eq!(state(&c, &a).await, AgentState::Starting);
    assert!(!slp_answers(&sim, addr).await, "starting");
    sim.set_start_time(Duration::from_secs(5));
    wait_state(&c, &a, |s| *s == AgentState::Running).await;
    assert!(slp_answers(&sim, addr).await, "running again");

    sim.crash(addr);
    assert!(!slp_answers(&sim, addr).await, "crashed");
    assert_eq!(sim.slp_answered(), 2);
}

/// A state never seen before (a newer Agent) is Transient, never Invalid, so an Agent upgrade
/// cannot fail a server; the new states are read in any case.
#[tokio::test]
async fn unknown_state_is_transient() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = [r#"{"state":"hibernating"}"#, r#"{"state":"STOPPED"}"#];
    let server = tokio::spawn(async move {
        for body in bodies {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request head cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let c = AgentClient::new(AgentConfig {
        port,
        token: None,
        timeout: T,
    })
    .unwrap();
    let e = c.status("127.0.0.1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.message.contains("hibernating"), "{e}");
    assert_eq!(state(&c, "127.0.0.1").await, AgentState::Stopped);
    server.await.unwrap();
}
