//! Regression: the DNS, proxy and Agent simulators had no HTTP fault control. Each now serves
//! `/_sim/faults` in the vocabulary the Proxmox simulator uses (`model::faults`), and the
//! control answers through an outage it started.
#![cfg(feature = "sim")]
mod common;

use common::ip;
use edge_client::sim::{
    AgentSim, AgentSimConfig, CloudflareSim, CloudflareSimConfig, TechnitiumSim,
    TechnitiumSimConfig, VelocitySim, VelocitySimConfig,
};
use model::faults::{FAULTS_PATH, TASK_ERRORS_PROXMOX_ONLY};

/// One simulator as the test drives it: its fault control and a request that passes through
/// its fault handling.
struct Target {
    name: &'static str,
    control: String,
    probe: String,
}

/// The probe's status and body; `Err` when the connection broke without an answer.
async fn probe(http: &reqwest::Client, t: &Target) -> Result<(u16, String), reqwest::Error> {
    let res = http.get(&t.probe).send().await?;
    let status = res.status().as_u16();
    Ok((status, res.text().await?))
}

async fn post(http: &reqwest::Client, t: &Target, body: &str) -> (u16, String) {
    let res = http
        .post(&t.control)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn every_edge_simulator_has_the_fault_control_over_http() {
    let technitium = TechnitiumSim::start(TechnitiumSimConfig::default())
        .await
        .unwrap();
    let cloudflare = CloudflareSim::start(CloudflareSimConfig::default())
        .await
        .unwrap();
    let velocity = VelocitySim::start(VelocitySimConfig::default())
        .await
        .unwrap();
    let agent = AgentSim::start(AgentSimConfig::default()).await.unwrap();
    let addr = ip(77);
    agent.container_started(addr).await.unwrap();
    let cf_base = reqwest::Url::parse(&cloudflare.url())
        .unwrap()
        .origin()
        .ascii_serialization();
    let targets = [
        Target {
            name: "technitium",
            control: format!("{}{FAULTS_PATH}", technitium.url()),
            probe: format!("{}/api/zones/records/get", technitium.url()),
        },
        Target {
            name: "cloudflare",
            control: format!("{cf_base}{FAULTS_PATH}"),
            probe: format!(
                "{}/zones/{}/dns_records",
                cloudflare.url(),
                cloudflare.zone_id()
            ),
        },
        Target {
            name: "velocity",
            control: format!("{}{FAULTS_PATH}", velocity.url()),
            probe: format!("{}/zpack/list", velocity.url()),
        },
        Target {
            name: "agent",
            control: format!("{}{FAULTS_PATH}", agent.url(addr)),
            probe: format!("{}/health", agent.url(addr)),
        },
    ];
    let http = reqwest::Client::new();
    for t in &targets {
        let name = t.name;
        let (normal, _) = probe(&http, t).await.expect(name);
        assert_ne!(
            normal, 503,
            "{name}: the baseline is not the injected status"
        );

        // A rule: the next request fails with this status and message.
        let rule = r#"{"rules": [{"endpoint": "*", "next": 1,
            "action": {"kind": "error", "code": 503, "message": "injected by the test"}}]}"#;
        assert_eq!(post(&http, t, rule).await.0, 200, "{name}");
        let (status, body) = probe(&http, t).await.expect(name);
        assert_eq!(status, 503, "{name}");
        assert!(body.contains("injected by the test"), "{name}: {body}");
        assert_eq!(
            probe(&http, t).await.expect(name).0,
            normal,
            "{name}: spent"
        );

        // An outage that drops connections, lifted through the same control.
        let refuse = r#"{"outage": {"kind": "refuse"}}"#;
        assert_eq!(post(&http, t, refuse).await.0, 200, "{name}");
        assert!(probe(&http, t).await.is_err(), "{name}: refused");
        assert_eq!(post(&http, t, r#"{"outage": null}"#).await.0, 200, "{name}");
        assert_eq!(
            probe(&http, t).await.expect(name).0,
            normal,
            "{name}: lifted"
        );

        // A status outage, cleared by DELETE.
        let down = r#"{"outage": {"kind": "status", "code": 502}}"#;
        assert_eq!(post(&http, t, down).await.0, 200, "{name}");
        assert_eq!(probe(&http, t).await.expect(name).0, 502, "{name}");
        let res = http.delete(&t.control).send().await.unwrap();
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(
            probe(&http, t).await.expect(name).0,
            normal,
            "{name}: cleared"
        );

        // Task errors are the Proxmox simulator's; bad specs say why.
        let tasks = r#"{"task_errors": [{"endpoint": "clone", "message": "x"}]}"#;
        let (status, body) = post(&http, t, tasks).await;
        assert_eq!(status, 400, "{name}");
        assert!(body.contains(TASK_ERRORS_PROXMOX_ONLY), "{name}: {body}");
        assert_eq!(post(&http, t, "{").await.0, 400, "{name}");
    }
}
