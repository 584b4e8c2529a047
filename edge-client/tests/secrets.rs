#![cfg(feature = "sim")]
//! No token or secret in any URL (the simulators' request logs), log line (captured tracing
//! output at TRACE, including reqwest/hyper) or error message.
mod common;

use common::{T, capture_logs, ip, srv};
use edge_client::dns::{DesiredRecords, DnsProvider};
use edge_client::sim::*;
use edge_client::velocity::secret_header_value;
use edge_client::*;
use secrecy::SecretString;
use std::time::Duration;

#[tokio::test]
async fn secrets_never_leak() {
    let (logs, _guard) = capture_logs();
    let mut errors: Vec<String> = Vec::new();
    let mut push = |r: Result<String, EdgeError>| {
        if let Err(e) = r {
            errors.push(format!("{e} / {e:?}"));
        }
    };

    let tech = TechnitiumSim::start(TechnitiumSimConfig::default())
        .await
        .unwrap();
    let cf = CloudflareSim::start(CloudflareSimConfig::default())
        .await
        .unwrap();
    let vel = VelocitySim::start(VelocitySimConfig::default())
        .await
        .unwrap();
    let agent = AgentSim::start(AgentSimConfig {
        token: Some("agent-token-0123456789".into()),
        install_time: Duration::from_secs(1),
        time_scale: 100.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let wrong = "wrong-token-9876543210";
    let admin_pass = "admin-pass-5555555555";
    let host = "mc-paper-7.zlh.test";
    let d = DesiredRecords {
        a: ip(7),
        srv: Some(srv(25565, host)),
    };

    for token in [tech.token(), wrong] {
        let c = TechnitiumClient::new(TechnitiumConfig {
            base_url: tech.url(),
            zone: tech.zone().into(),
            token: token.to_string().into(),
            timeout: T,
        })
        .unwrap();
        push(c.ensure(host, &d).await.map(|b| b.to_string()));
        push(c.list_zone().await.map(|z| format!("{z:?}")));
        push(c.remove(host).await.map(|b| b.to_string()));
        tech.faults().fail_next("*", 1, 200);
        push(c.observe(host).await.map(|o| format!("{o:?}")));
        assert!(!format!("{c:?}").contains(token), "Debug of the client");
    }
    for token in [cf.token(), wrong] {
        let mut cfg = CloudflareConfig::new(cf.zone_id(), cf.zone_name(), token.to_string().into());
        cfg.base_url = cf.url();
        let c = CloudflareClient::new(cfg).unwrap();
        push(c.ensure(host, &d).await.map(|b| b.to_string()));
        push(c.remove(host).await.map(|b| b.to_string()));
        cf.faults().fail_next("*", 1, 429);
        push(c.observe(host).await.map(|o| format!("{o:?}")));
        assert!(!format!("{c:?}").contains(token));
    }
    for secret in [vel.secret(), wrong] {
        let c = VelocityClient::new(VelocityConfig {
            base_url: vel.url(),
            secret: secret.to_string().into(),
            timeout: T,
        })
        .unwrap();
        push(
            c.ensure("mc-paper-7", "127.0.0.7", 25565)
                .await
                .map(|b| b.to_string()),
        );
        push(c.remove("mc-paper-7").await.map(|b| b.to_string()));
        assert!(!format!("{c:?}").contains(secret));
    }
    agent.container_started(ip(7)).await.unwrap();
    for token in ["agent-token-0123456789", wrong] {
        let c = AgentClient::new(AgentConfig {
            port: agent.agent_port(),
            token: Some(token.to_string().into()),
            timeout: T,
        })
        .unwrap();
        let spec = model::ServerSpec::minecraft(model::Variant::Paper, "1.21.7");
        let p = AgentPayload::for_spec(7, &spec, 25565, "admin", SecretString::from(admin_pass))
            .unwrap();
        assert!(!format!("{p:?}").contains(admin_pass));
        push(c.send_config("127.0.0.7", &p).await.map(|_| String::new()));
        push(c.status("127.0.0.7").await.map(|s| format!("{s:?}")));
        assert!(!format!("{c:?}").contains(token));
    }
    assert!(
        errors.len() >= 8,
        "the wrong-credential calls failed: {errors:?}"
    );

    let secrets = [
        tech.token().to_string(),
        cf.token().to_string(),
        vel.secret().to_string(),
        secret_header_value(vel.secret()),
        "agent-token-0123456789".to_string(),
        wrong.to_string(),
        admin_pass.to_string(),
    ];
    let mut urls = Vec::new();
    urls.extend(tech.requests());
    urls.extend(cf.requests());
    urls.extend(vel.requests());
    urls.extend(agent.requests());
    assert!(urls.len() > 20);
    let logs = logs.text();
    assert!(logs.contains("edge request"), "logs were captured");
    for s in &secrets {
        for u in &urls {
            assert!(!u.uri.contains(s.as_str()), "secret in URL {}", u.uri);
        }
        assert!(!logs.contains(s.as_str()), "secret in logs");
        for e in &errors {
            assert!(!e.contains(s.as_str()), "secret in error {e}");
        }
    }
}
