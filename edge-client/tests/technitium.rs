#![cfg(feature = "sim")]
mod common;

use common::{T, ip, srv};
use edge_client::dns::{DesiredRecords, DnsProvider};
use edge_client::sim::{SimRdata, TechnitiumSim, TechnitiumSimConfig};
use edge_client::{TechnitiumClient, TechnitiumConfig};
use model::ErrorClass;
use std::time::Duration;

async fn setup() -> (TechnitiumSim, TechnitiumClient) {
    let sim = TechnitiumSim::start(TechnitiumSimConfig::default())
        .await
        .unwrap();
    let c = client(&sim, sim.token(), sim.zone(), T);
    (sim, c)
}

fn client(sim: &TechnitiumSim, token: &str, zone: &str, timeout: Duration) -> TechnitiumClient {
    TechnitiumClient::new(TechnitiumConfig {
        base_url: sim.url(),
        zone: zone.into(),
        token: token.to_string().into(),
        timeout,
    })
    .unwrap()
}

fn writes(sim: &TechnitiumSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.uri.contains("/add") || r.uri.contains("/delete"))
        .count()
}

const HOST: &str = "mc-paper-101.zlh.test";

fn desired() -> DesiredRecords {
    DesiredRecords {
        a: ip(50),
        srv: Some(srv(25565, HOST)),
    }
}

#[tokio::test]
async fn create_observe_noop() {
    let (sim, c) = setup().await;
    assert!(
        c.observe(HOST).await.unwrap().is_empty(),
        "absent name is empty, not an error"
    );
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "first ensure creates"
    );
    let obs = c.observe(HOST).await.unwrap();
    assert!(obs.matches(&desired()), "{obs:?}");
    assert_eq!(sim.observed(HOST), obs);
    // Records carry ttl 60.
    assert!(sim.records().values().flatten().all(|r| r.ttl == 60));

    let before = writes(&sim);
    assert!(
        !c.ensure(HOST, &desired()).await.unwrap(),
        "equal records: no-op"
    );
    assert_eq!(writes(&sim), before, "no-op sends no add/delete");
    // Every records/get carried `domain` (the previous client's defect).
    assert!(
        sim.requests()
            .iter()
            .filter(|r| r.uri.contains("/get"))
            .all(|r| r.uri.contains("domain="))
    );
}

#[tokio::test]
async fn drift_is_repaired() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();

    sim.set_a(HOST, ip(99));
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "wrong A repaired"
    );
    assert!(sim.observed(HOST).matches(&desired()));

    sim.add_record(HOST, SimRdata::A(ip(98)));
    sim.add_record(
        &format!("_minecraft._tcp.{HOST}"),
        SimRdata::Srv(srv(1, HOST)),
    );
    assert_eq!(sim.observed(HOST).a.len(), 2);
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "duplicates collapsed"
    );
    assert!(
        sim.observed(HOST).matches(&desired()),
        "{:?}",
        sim.observed(HOST)
    );

    sim.delete_all(HOST);
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "deleted behind our back: recreated"
    );
    assert!(sim.observed(HOST).matches(&desired()));

    // Desired without SRV removes a stray SRV record.
    let dev = DesiredRecords {
        a: ip(50),
        srv: None,
    };
    assert!(c.ensure(HOST, &dev).await.unwrap());
    assert!(sim.observed(HOST).srv.is_empty());
}

#[tokio::test]
async fn list_zone_keys_srv_under_host() {
    let (_sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();
    let other = "dev-102.zlh.test";
    c.ensure(
        other,
        &DesiredRecords {
            a: ip(51),
            srv: None,
        },
    )
    .await
    .unwrap();
    let zone = c.list_zone().await.unwrap();
    assert_eq!(zone.len(), 2, "{zone:?}");
    assert!(zone[HOST].matches(&desired()));
    assert_eq!(zone[other].a, vec![ip(51)]);
    assert!(zone[other].srv.is_empty());
}

#[tokio::test]
async fn remove_is_idempotent() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();
    assert!(c.remove(HOST).await.unwrap(), "deleted");
    assert!(sim.records().is_empty(), "{:?}", sim.records());
    assert!(!c.remove(HOST).await.unwrap(), "absent is success");
}

enum Setup {
    WrongToken,
    WrongZone,
    HostOutsideZone,
    Outage,
    Injected(u16),
    Hang,
}

#[tokio::test]
async fn error_classes() {
    let cases = [
        (
            Setup::WrongToken,
            ErrorClass::Unauthorized,
            "invalid-token envelope",
        ),
        (
            Setup::WrongZone,
            ErrorClass::Invalid,
            "configured zone missing: config error, not NotFound",
        ),
        (
            Setup::HostOutsideZone,
            ErrorClass::Invalid,
            "name outside the zone is a bug",
        ),
        (Setup::Outage, ErrorClass::Transient, "connection refused"),
        (
            Setup::Injected(503),
            ErrorClass::Transient,
            "proxy in front answers 503",
        ),
        (
            Setup::Injected(200),
            ErrorClass::Transient,
            "unknown error envelope only delays",
        ),
        (Setup::Hang, ErrorClass::Transient, "timeout"),
    ];
    for (case, want, reason) in cases {
        let (sim, good) = setup().await;
        let mut host = HOST.to_string();
        let c = match case {
            Setup::WrongToken => client(&sim, "not-the-token", sim.zone(), T),
            Setup::WrongZone => client(&sim, sim.token(), "other.test", T),
            Setup::HostOutsideZone => {
                host = "mc-x.other.test".into();
                good
            }
            Setup::Outage => {
                sim.set_outage(true).await.unwrap();
                good
            }
            Setup::Injected(s) => {
                sim.faults().fail_next("*", 1, s);
                good
            }
            Setup::Hang => {
                sim.faults().set_latency(Duration::from_secs(3));
                client(&sim, sim.token(), sim.zone(), Duration::from_millis(200))
            }
        };
        let err = c.ensure(&host, &desired()).await.unwrap_err();
        assert_eq!(err.class, want, "{reason}: {err}");
        assert_eq!(err.backend, edge_client::Backend::Technitium);
    }
}

#[tokio::test]
async fn outage_then_recovery() {
    let (sim, c) = setup().await;
    sim.set_outage(true).await.unwrap();
    assert!(c.observe(HOST).await.unwrap_err().is_transient());
    sim.set_outage(false).await.unwrap();
    assert!(c.ensure(HOST, &desired()).await.unwrap());
}

#[tokio::test]
async fn concurrent_removes_both_succeed() {
    // Both observe, then both delete the same exact records: the loser gets
    // `Cannot delete record: no such record exists.`, which is success.
    let (sim, c) = setup().await;
    let c2 = client(&sim, sim.token(), sim.zone(), T);
    c.ensure(HOST, &desired()).await.unwrap();
    let (a, b) = tokio::join!(c.remove(HOST), c2.remove(HOST));
    a.unwrap();
    b.unwrap();
    assert!(sim.records().is_empty());
}
