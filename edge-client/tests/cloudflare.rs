#![cfg(feature = "sim")]
mod common;

use common::{T, ip, srv};
use edge_client::dns::{DesiredRecords, DnsProvider};
use edge_client::sim::{CfSimRecord, CloudflareSim, CloudflareSimConfig};
use edge_client::{CloudflareClient, CloudflareConfig};
use model::ErrorClass;
use std::time::Duration;

const HOST: &str = "mc-paper-101.zlh.test";

fn desired() -> DesiredRecords {
    DesiredRecords {
        a: ip(60),
        srv: Some(srv(25565, HOST)),
    }
}

fn client_with(sim: &CloudflareSim, f: impl FnOnce(&mut CloudflareConfig)) -> CloudflareClient {
    let mut cfg = CloudflareConfig::new(
        sim.zone_id(),
        sim.zone_name(),
        sim.token().to_string().into(),
    );
    cfg.base_url = sim.url();
    cfg.timeout = T;
    // Tests send hundreds of requests; the default 900/5 min would pace them.
    cfg.requests_per_5min = 1_000_000;
    f(&mut cfg);
    CloudflareClient::new(cfg).unwrap()
}

async fn setup_with(cfg: CloudflareSimConfig) -> (CloudflareSim, CloudflareClient) {
    let sim = CloudflareSim::start(cfg).await.unwrap();
    let c = client_with(&sim, |_| {});
    (sim, c)
}

async fn setup() -> (CloudflareSim, CloudflareClient) {
    setup_with(CloudflareSimConfig::default()).await
}

fn writes(sim: &CloudflareSim) -> usize {
    sim.requests().iter().filter(|r| r.method != "GET").count()
}

#[tokio::test]
async fn create_observe_noop() {
    let (sim, c) = setup().await;
    assert!(c.observe(HOST).await.unwrap().is_empty());
    assert!(c.ensure(HOST, &desired()).await.unwrap());
    let obs = c.observe(HOST).await.unwrap();
    assert!(obs.matches(&desired()), "{obs:?}");
    assert_eq!(sim.observed(HOST), obs);
    for r in sim.records() {
        assert_eq!(r.ttl, 60);
        assert!(!r.proxied, "game traffic is never proxied");
    }
    let before = writes(&sim);
    assert!(!c.ensure(HOST, &desired()).await.unwrap());
    assert_eq!(writes(&sim), before, "no-op sends only GETs");
    // Listings are by type + exact name with an explicit per_page.
    let lists: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        lists
            .iter()
            .all(|r| r.uri.contains("type=") && r.uri.contains("per_page=100"))
    );
}

#[tokio::test]
async fn drift_and_duplicates_are_repaired() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();

    sim.set_a(HOST, ip(99));
    sim.set_srv(HOST, srv(1, HOST));
    assert!(c.ensure(HOST, &desired()).await.unwrap());
    assert!(sim.observed(HOST).matches(&desired()));
    assert!(
        sim.requests().iter().any(|r| r.method == "PUT"),
        "drift is repaired in place"
    );

    // A proxied record is drift too.
    let mut recs = sim.records();
    let a = recs.iter_mut().find(|r| r.rtype == "A").unwrap();
    sim.delete_all(HOST);
    sim.insert_record(CfSimRecord {
        proxied: true,
        ..a.clone()
    });
    assert!(c.ensure(HOST, &desired()).await.unwrap());
    assert!(sim.records().iter().all(|r| !r.proxied));

    sim.insert_duplicate(HOST, "A").unwrap();
    sim.insert_duplicate(&format!("_minecraft._tcp.{HOST}"), "SRV")
        .unwrap();
    assert_eq!(sim.records().len(), 4);
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "duplicates collapsed"
    );
    assert_eq!(sim.records().len(), 2);
    assert!(sim.observed(HOST).matches(&desired()));

    let dev = DesiredRecords {
        a: ip(60),
        srv: None,
    };
    assert!(c.ensure(HOST, &dev).await.unwrap(), "stray SRV removed");
    assert!(sim.observed(HOST).srv.is_empty());
}

#[tokio::test]
async fn pagination_over_many_duplicates_and_zone_listing() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();
    for _ in 0..149 {
        sim.insert_duplicate(HOST, "A").unwrap();
    }
    assert_eq!(
        c.observe(HOST).await.unwrap().a.len(),
        150,
        "all pages read"
    );
    assert!(c.ensure(HOST, &desired()).await.unwrap());
    assert_eq!(sim.observed(HOST).a, vec![ip(60)]);

    for i in 0..230u32 {
        let h = format!("dev-{i}.zlh.test");
        sim.set_a(&h, ip((i % 200) as u8 + 2));
    }
    let zone = c.list_zone().await.unwrap();
    assert_eq!(zone.len(), 231);
    assert!(zone[HOST].matches(&desired()), "SRV keyed under its host");
}

#[tokio::test]
async fn remove_is_idempotent() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();
    sim.insert_duplicate(HOST, "A").unwrap();
    assert!(c.remove(HOST).await.unwrap());
    assert!(sim.records().is_empty());
    assert!(!c.remove(HOST).await.unwrap(), "absent is success");
}

#[tokio::test]
async fn rate_limit_budget_429_sets_retry_after_and_blocks_locally() {
    let cfg = CloudflareSimConfig {
        request_budget: Some(3),
        ..Default::default()
    };
    let (sim, c) = setup_with(cfg).await;
    c.ensure(HOST, &desired()).await.unwrap_err();
    let err = loop {
        match c.observe(HOST).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.status, Some(429));
    assert!(err.retry_after.is_some(), "{err}");
    let sent = sim.requests().len();
    let again = c.observe(HOST).await.unwrap_err();
    assert!(again.retry_after.is_some());
    assert_eq!(
        sim.requests().len(),
        sent,
        "blocked locally until retry-after passes"
    );
}

/// A write the outgoing budget has no room for is answered at once with when there will be
/// room, and sends nothing (no listing spent on a write that cannot follow); one with room
/// soon enough waits for it.
#[tokio::test]
async fn a_write_over_the_budget_sends_nothing_and_says_when() {
    let sim = CloudflareSim::start(CloudflareSimConfig::default())
        .await
        .unwrap();
    // 60 per 5 minutes: a burst of 6 (a tenth), then one every 5 s.
    let c = client_with(&sim, |cfg| {
        cfg.requests_per_5min = 60;
        cfg.max_budget_wait = Duration::from_millis(50);
    });
    assert!(
        c.ensure(HOST, &desired()).await.unwrap(),
        "within the burst"
    );
    let sent = sim.requests().len();
    assert_eq!(sent, 4, "a listing and a create per name");
    let e = c.remove(HOST).await.unwrap_err();
    let wait = e.budget_wait.expect("told when there is room");
    assert!(wait > Duration::from_millis(50), "{wait:?}");
    assert_eq!((e.class, e.status), (ErrorClass::Transient, None), "{e}");
    assert_eq!(sim.requests().len(), sent, "nothing sent");
    assert!(
        !sim.observed(HOST).is_empty(),
        "the records are untouched until there is room"
    );
}

enum Case {
    WrongToken,
    WrongZoneId,
    Injected429,
    Injected502,
    Outage,
    Hang,
}

#[tokio::test]
async fn error_classes() {
    let cases = [
        (
            Case::WrongToken,
            ErrorClass::Unauthorized,
            "403 / 10000 Authentication error",
        ),
        (
            Case::WrongZoneId,
            ErrorClass::Invalid,
            "404 / 7003 is a config error, never 'gone'",
        ),
        (
            Case::Injected429,
            ErrorClass::Transient,
            "429 from fault injection",
        ),
        (Case::Injected502, ErrorClass::Transient, "edge 502"),
        (Case::Outage, ErrorClass::Transient, "connection refused"),
        (Case::Hang, ErrorClass::Transient, "timeout"),
    ];
    for (case, want, reason) in cases {
        let (sim, good) = setup().await;
        let c = match case {
            Case::WrongToken => client_with(&sim, |c| c.token = "nope".to_string().into()),
            Case::WrongZoneId => client_with(&sim, |c| c.zone_id = "0000".into()),
            Case::Injected429 => {
                sim.faults().fail_next("*", 1, 429);
                good
            }
            Case::Injected502 => {
                sim.faults().fail_next("*", 1, 502);
                good
            }
            Case::Outage => {
                sim.set_outage(true).await.unwrap();
                good
            }
            Case::Hang => {
                sim.faults().set_latency(Duration::from_secs(3));
                client_with(&sim, |c| c.timeout = Duration::from_millis(200))
            }
        };
        let err = c.ensure(HOST, &desired()).await.unwrap_err();
        assert_eq!(err.class, want, "{reason}: {err}");
        if let Case::Injected429 = case {
            assert_eq!(err.retry_after, Some(Duration::from_secs(1)), "{reason}");
        }
    }
}

#[tokio::test]
async fn delete_with_wrong_zone_id_is_an_error_not_success() {
    let (sim, c) = setup().await;
    c.ensure(HOST, &desired()).await.unwrap();
    let bad = client_with(&sim, |c| c.zone_id = "ffff".into());
    let err = bad.remove(HOST).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Invalid, "{err}");
    assert!(err.message.contains("7003"), "{err}");
    assert_eq!(sim.records().len(), 2, "nothing deleted");
}

#[tokio::test]
async fn transient_write_failure_then_retry_converges() {
    let (sim, c) = setup().await;
    sim.faults().fail_next("POST", 1, 503);
    assert!(c.ensure(HOST, &desired()).await.unwrap_err().is_transient());
    assert!(c.ensure(HOST, &desired()).await.unwrap());
    assert!(sim.observed(HOST).matches(&desired()));
}

#[tokio::test]
async fn concurrent_ensure_and_remove_converge() {
    // Both list (empty), both create: the loser gets 81058, re-lists and converges.
    let (sim, c) = setup().await;
    let c2 = client_with(&sim, |_| {});
    let d = desired();
    let (a, b) = tokio::join!(c.ensure(HOST, &d), c2.ensure(HOST, &d));
    a.unwrap();
    b.unwrap();
    assert!(
        sim.observed(HOST).matches(&desired()),
        "{:?}",
        sim.records()
    );
    // Both list, both delete the same ids: the loser gets 404 / 81044, which is success.
    let (a, b) = tokio::join!(c.remove(HOST), c2.remove(HOST));
    a.unwrap();
    b.unwrap();
    assert!(sim.records().is_empty());
}
