//! A flood of idle TCP connections against the real daemon (regression test of the defect
//! where 1,100 idle connections made the API answer nothing and starved the controller):
//! `zlhd serve` on SQLite runs with a soft open-file limit of 256, as an unconfigured unit's
//! 1,024 scaled down, and twice as many idle connections as that are opened and held.
//!
//! It lowers its connection cap to fit the limit (and says so) and closes the connections
//! beyond it at once; the header-read timeout is an hour here, so those it holds stay held
//! (that timeout has its own test in `api/tests/connections.rs`). Meanwhile the controller
//! still provisions a server: it still has file descriptors and its own store connections.
//! When the flood goes, the API answers again, with nothing restarted.

use model::customer::{new_token_secret, token_hash};
use model::store::Store;
use model::{Phase, Role, ServerId, ServerSpec, Variant};
use std::time::Duration;
use tokio::net::TcpStream;
use zlh_tests::process::{Zlhd, write_config};
use zlh_tests::{World, WorldOptions, check_invariants};

const T: Duration = Duration::from_secs(120);
/// The child's soft open-file limit.
const CHILD_FILES: u64 = 256;
/// Idle connections opened and held: well past the child's limit.
const FLOOD: usize = 2 * CHILD_FILES as usize;

/// Run `f` with this process's soft `RLIMIT_NOFILE` at `soft` (a child spawned inside
/// inherits it), then restore it.
fn with_open_file_limit<T>(soft: u64, f: impl FnOnce() -> T) -> T {
    let get = || {
        // SAFETY: getrlimit fills the zeroed struct it is given.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            lim
        }
    };
    let set = |lim: &libc::rlimit| {
        // SAFETY: setrlimit reads the struct; lowering or raising up to the hard limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
    };
    let before = get();
    set(&libc::rlimit {
        rlim_cur: soft,
        ..before
    });
    let out = f();
    set(&before);
    out
}

/// This process needs room for the flood itself.
fn raise_own_open_file_limit() {
    // SAFETY: as above.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        assert!(
            lim.rlim_cur >= FLOOD as u64 + 512,
            "the test needs {} open files, the hard limit is {}",
            FLOOD + 512,
            lim.rlim_cur
        );
    }
}

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed_by_server(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => panic!("an idle connection got an answer to nothing"),
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_idle_connections_neither_silences_the_api_nor_starves_the_controller() {
    raise_own_open_file_limit();
    let w = World::new(WorldOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("zlh-flood-{}", ServerId::new()));
    let config = write_config(&w, &dir, |c| {
        c.api.limits.header_read_timeout = Duration::from_secs(3600);
    });
    let secret = new_token_secret();
    w.store
        .create_token("op", &token_hash(&secret), Role::Operator, None)
        .await
        .unwrap();
    let log = dir.join("zlhd.log");
    let mut z = with_open_file_limit(CHILD_FILES, || {
        Zlhd::spawn_env(
            &config,
            &["--log-format", "json", "serve"],
            &log,
            &[("RUST_LOG", "info")],
        )
    });
    let addr = z.logged_addr("API listening", T).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(zlhd::store::CAP_LOWERED),
        "the cap is lowered to fit the limit, and it says so"
    );

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(addr).await.expect("the kernel accepts"));
    }

    // Past the cap (which is below the limit), connections are closed at once.
    let beyond = FLOOD - CHILD_FILES as usize;
    w.wait_for("the connections past the cap closed", T, async || {
        flood.iter().filter(|s| closed_by_server(s)).count() >= beyond
    })
    .await;

    // Held, the rest do not stop the controller: a new server is provisioned.
    let id = w
        .create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;
    w.wait_all(Some(Phase::Ready), T).await;

    // The flood goes; the API answers again.
    drop(flood);
    let http = reqwest::Client::builder().timeout(T).build().unwrap();
    let base = format!("http://{addr}");
    w.wait_for("the API answering again", T, async || {
        let res = http.get(format!("{base}/readyz")).send().await;
        res.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let res = http
        .get(format!("{base}/api/servers/{id}"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v = check_invariants(&w).await;
    assert!(v.is_empty(), "invariants:\n{}", v.join("\n"));
    z.kill9().await;
    let _ = std::fs::remove_dir_all(&dir);
}
