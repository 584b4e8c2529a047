#![cfg(feature = "sim")]
mod common;

use common::T;
use edge_client::sim::{VelocitySim, VelocitySimConfig};
use edge_client::{Registration, VelocityClient, VelocityConfig};
use model::ErrorClass;
use std::time::Duration;

const NAME: &str = "mc-paper-101";

async fn setup() -> (VelocitySim, VelocityClient) {
    let sim = VelocitySim::start(VelocitySimConfig::default())
        .await
        .unwrap();
    let c = client(&sim, sim.secret(), T);
    (sim, c)
}

fn client(sim: &VelocitySim, secret: &str, timeout: Duration) -> VelocityClient {
    VelocityClient::new(VelocityConfig {
        base_url: sim.url(),
        secret: secret.to_string().into(),
        timeout,
    })
    .unwrap()
}

fn reg(address: &str, port: u16) -> Registration {
    Registration {
        name: NAME.into(),
        address: address.into(),
        port: Some(port),
    }
}

#[tokio::test]
async fn register_observe_noop() {
    let (sim, c) = setup().await;
    assert_eq!(c.observe(NAME).await.unwrap(), None);
    assert!(c.ensure(NAME, "127.0.0.70", 25565).await.unwrap());
    assert_eq!(
        c.observe(NAME).await.unwrap(),
        Some(reg("127.0.0.70", 25565))
    );
    assert_eq!(sim.registrations(), vec![reg("127.0.0.70", 25565)]);
    let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
    assert!(
        !c.ensure(NAME, "127.0.0.70", 25565).await.unwrap(),
        "equal: no-op"
    );
    assert!(
        !c.ensure("MC-PAPER-101", "127.0.0.70", 25565).await.unwrap(),
        "names are case-insensitive"
    );
    assert_eq!(
        sim.requests().iter().filter(|r| r.method == "POST").count(),
        posts
    );
}

#[tokio::test]
async fn proxy_restart_and_drift_are_repaired() {
    let (sim, c) = setup().await;
    c.ensure(NAME, "127.0.0.70", 25565).await.unwrap();
    sim.restart();
    assert_eq!(
        c.observe(NAME).await.unwrap(),
        None,
        "restart forgot the registration"
    );
    assert!(c.ensure(NAME, "127.0.0.70", 25565).await.unwrap());
    assert_eq!(sim.registrations(), vec![reg("127.0.0.70", 25565)]);

    sim.insert(NAME, "127.0.0.71", 25565);
    assert!(
        c.ensure(NAME, "127.0.0.70", 25565).await.unwrap(),
        "moved: unregister + register"
    );
    assert_eq!(sim.registrations(), vec![reg("127.0.0.70", 25565)]);
    sim.insert(NAME, "127.0.0.70", 25570);
    assert!(
        c.ensure(NAME, "127.0.0.70", 25565).await.unwrap(),
        "port drift"
    );
    assert_eq!(sim.registrations(), vec![reg("127.0.0.70", 25565)]);
}

#[tokio::test]
async fn remove_is_idempotent() {
    let (sim, c) = setup().await;
    c.ensure(NAME, "127.0.0.70", 25565).await.unwrap();
    assert!(c.remove(NAME).await.unwrap());
    assert!(sim.registrations().is_empty());
    assert!(
        !c.remove(NAME).await.unwrap(),
        "404 unknown name is success"
    );
}

enum Case {
    WrongSecret,
    RegisterTaken,
    Injected500,
    Injected400,
    Outage,
    Hang,
}

#[tokio::test]
async fn error_classes() {
    let cases = [
        (
            Case::WrongSecret,
            ErrorClass::Unauthorized,
            "403 wrong X-Zpack-Secret",
        ),
        (
            Case::RegisterTaken,
            ErrorClass::Conflict,
            "name taken with another address",
        ),
        (
            Case::Injected500,
            ErrorClass::Transient,
            "unknown 500 only delays",
        ),
        (
            Case::Injected400,
            ErrorClass::Invalid,
            "bad request is a bug",
        ),
        (Case::Outage, ErrorClass::Transient, "connection refused"),
        (Case::Hang, ErrorClass::Transient, "timeout"),
    ];
    for (case, want, reason) in cases {
        let (sim, good) = setup().await;
        let err = match case {
            Case::WrongSecret => client(&sim, "wrong", T).ensure(NAME, "127.0.0.70", 1).await,
            Case::RegisterTaken => {
                sim.insert(NAME, "127.0.0.71", 25565);
                good.register(NAME, "127.0.0.70", 25565).await.map(|_| true)
            }
            Case::Injected500 => {
                sim.faults().fail_next("/zpack/list", 1, 500);
                good.ensure(NAME, "127.0.0.70", 1).await
            }
            Case::Injected400 => {
                sim.faults().fail_next("POST /zpack/register", 1, 400);
                good.ensure(NAME, "127.0.0.70", 1).await
            }
            Case::Outage => {
                sim.set_outage(true).await.unwrap();
                good.ensure(NAME, "127.0.0.70", 1).await
            }
            Case::Hang => {
                sim.faults().set_latency(Duration::from_secs(3));
                client(&sim, sim.secret(), Duration::from_millis(200))
                    .remove(NAME)
                    .await
            }
        }
        .unwrap_err();
        assert_eq!(err.class, want, "{reason}: {err}");
    }
}
