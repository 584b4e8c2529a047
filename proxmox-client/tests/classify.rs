//! Classification table: every error string in docs/proxmox-api.md §4, plus empty-body
//! 401/403/595/596/599, connection refused, reset and timeout, and the unknown 500.

use proxmox_client::{
    ErrorClass, ErrorClass::*, ErrorKind, Proxmox, PveClient, PveConfig, TaskExit, classify,
};
use secrecy::SecretString;
use std::time::Duration;

#[test]
fn message_table() {
    // (status or None for a task exit text, message, class, reason)
    let rows: &[(Option<u16>, &str, ErrorClass, &str)] = &[
        (
            Some(500),
            "CT is locked (disk)",
            Locked,
            "template already being cloned: wait, not a failure",
        ),
        (
            Some(500),
            "CT is locked (create)",
            Locked,
            "config/start during a clone",
        ),
        (Some(500), "CT is locked (backup)", Locked, "backup running"),
        (
            Some(500),
            "CT is locked (migrate)",
            Locked,
            "migration running",
        ),
        (
            None,
            "CT is locked (create)",
            Locked,
            "start task hitting the create lock",
        ),
        (
            Some(500),
            "can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout",
            Locked,
            "10 s flock timeout",
        ),
        (
            Some(500),
            "can't lock file '/var/lock/qemu-server/lock-203.conf' - got timeout",
            Locked,
            "QEMU flavour of the flock timeout",
        ),
        (
            None,
            "clone failed: cfs-lock 'storage-local-lvm' error: got lock request timeout",
            Transient,
            "parallel full clones on one storage",
        ),
        (
            Some(500),
            "got no worker upid - start worker failed",
            Transient,
            "pvedaemon fork hiccup",
        ),
        (
            Some(500),
            "starting worker failed: Resource temporarily unavailable",
            Transient,
            "worker start failure",
        ),
        (
            Some(500),
            "cluster not ready - no quorum?",
            Transient,
            "quorum lost: wait",
        ),
        (
            Some(500),
            "failed to read from command socket: Connection reset by peer",
            Transient,
            "status racing start/stop",
        ),
        (
            Some(500),
            "Configuration file 'nodes/pve/lxc/123.conf' does not exist",
            NotFound,
            "the only confirmed absence",
        ),
        (
            None,
            "Configuration file 'nodes/pve/lxc/123.conf' does not exist",
            NotFound,
            "task-side missing config",
        ),
        (
            Some(500),
            "CT 123 already exists on node 'pve'",
            Conflict,
            "newid taken",
        ),
        (
            Some(500),
            "VM 123 already exists on node 'pve'",
            Conflict,
            "newid taken by a QEMU guest",
        ),
        (
            Some(400),
            "Parameter verification failed. (vmid: VM 123 already exists)",
            Conflict,
            "nextid?vmid= with a taken id",
        ),
        (
            Some(500),
            "CT 123 already running",
            Conflict,
            "start when running: engine treats as success",
        ),
        (
            Some(500),
            "CT 123 not running",
            Conflict,
            "stop when stopped: engine treats as success",
        ),
        (
            Some(500),
            "unable to destroy CT 123 - container is running",
            Conflict,
            "DELETE without force: stop first",
        ),
        (
            Some(500),
            "parameter 'storage' not allowed for linked clones",
            Invalid,
            "our request is wrong",
        ),
        (
            Some(500),
            "Linked clone feature for 'local:base-900-disk-0' is not available",
            Invalid,
            "storage cannot do linked clones: config error",
        ),
        (
            Some(500),
            "can't clone CT to node 'pve2' (CT uses local storage)",
            Invalid,
            "bad target",
        ),
        (
            Some(500),
            "detected modified configuration - file changed by other user? Try again.",
            Conflict,
            "digest mismatch: re-read and retry",
        ),
        (
            Some(500),
            "no such resource 'ct:100'",
            Transient,
            "HA lookup miss is not a CT absence: unknown 500",
        ),
        (
            Some(500),
            "can't remove CT 123 - protection mode enabled",
            Invalid,
            "operator setting: fail visibly",
        ),
        (
            Some(500),
            "unable to remove CT 123 - used in HA resources and purge parameter not set.",
            Invalid,
            "needs purge: fail visibly",
        ),
        (
            None,
            "you can't start a CT if it's a template",
            Invalid,
            "bug: starting a template",
        ),
        (
            Some(500),
            "unable to modify read-only option: 'unprivileged'",
            Invalid,
            "bad config write",
        ),
        (
            Some(500),
            "no options specified",
            Invalid,
            "empty config PUT is a bug",
        ),
        (
            Some(500),
            "hostname lookup 'pve9' failed - failed to get address info for: pve9: Name or service not known",
            Invalid,
            "unknown node: configuration error",
        ),
        (
            None,
            "container did not stop",
            Transient,
            "shutdown timeout: retry or force",
        ),
        (
            None,
            "unexpected status",
            Transient,
            "odd task end: unknown",
        ),
        (
            Some(500),
            "unable to get any free VMID in range [100, 1000000]",
            Transient,
            "unknown 500: only delays",
        ),
        (
            Some(500),
            "something nobody has seen before",
            Transient,
            "an unknown 500 is Transient, never NotFound",
        ),
        (
            Some(500),
            "storage 'foo' does not exist",
            Transient,
            "'does not exist' about something else is not CT absence",
        ),
        (
            Some(400),
            "Parameter verification failed. (net0: invalid format - missing key in comma-separated list property)",
            Invalid,
            "400 per-parameter error",
        ),
        (
            Some(400),
            "Parameter verification failed. (upid: no such task)",
            Transient,
            "task not visible yet right after dispatch",
        ),
        (
            Some(400),
            "Parameter verification failed. (upid: unable to parse worker upid)",
            Invalid,
            "bad UPID is a bug",
        ),
        (Some(401), "", Unauthorized, "401 empty body"),
        (Some(401), "No ticket", Unauthorized, "401 no ticket"),
        (
            Some(401),
            "Authentication failed!",
            Unauthorized,
            "PVE 9.1.5+ wording",
        ),
        (
            Some(401),
            "permission denied - invalid PVE ticket",
            Unauthorized,
            "expired ticket",
        ),
        (Some(403), "", Unauthorized, "403 empty body"),
        (
            Some(403),
            "Permission check failed (/vms/999, VM.PowerMgmt)",
            Unauthorized,
            "ACL",
        ),
        (Some(404), "", NotFound, "404 is confirmed absence"),
        (Some(429), "", Transient, "rate limited"),
        (
            Some(501),
            "Method 'GET /nodes/pve/lxc/100/interfaces' not implemented",
            Invalid,
            "PVE < 8.1 / unknown path",
        ),
        (
            Some(501),
            "Unexpected content for method 'DELETE'",
            Invalid,
            "body on DELETE: our bug",
        ),
        (Some(502), "Bad Gateway", Transient, "proxy in front"),
        (
            Some(503),
            "Service Unavailable",
            Transient,
            "daemon restarting",
        ),
        (Some(504), "Gateway Timeout", Transient, "proxy timeout"),
        (Some(595), "", Transient, "595 empty body: node down"),
        (Some(595), "Connection refused", Transient, "595 refused"),
        (Some(595), "No route to host", Transient, "595 unreachable"),
        (Some(596), "", Transient, "596 empty body"),
        (
            Some(596),
            "Connection timed out",
            Transient,
            "pvedaemon busy > 30 s",
        ),
        (Some(596), "Broken pipe", Transient, "node unavailable"),
        (Some(597), "", Transient, "body receive failed"),
        (Some(599), "", Transient, "599 empty body"),
        (
            Some(599),
            "Too many redirections",
            Transient,
            "stale keep-alive",
        ),
    ];
    for (status, m, want, reason) in rows {
        assert_eq!(classify(*status, m), *want, "{reason}: {status:?} {m:?}");
    }
}

#[test]
fn helpers_and_task_exits() {
    use proxmox_client::PveError;
    let e = PveError::http("start", 500, "CT 123 already running");
    assert!(
        e.is_already_running() && !e.is_not_running(),
        "already running helper"
    );
    let e = PveError::http("stop", 500, "CT 123 not running");
    assert!(
        e.is_not_running() && !e.is_already_running(),
        "not running helper"
    );
    let e = PveError::http("clone", 500, "CT 123 already exists on node 'pve'");
    assert!(e.is_already_exists(), "already exists helper");
    let e = PveError::http(
        "delete",
        500,
        "unable to destroy CT 123 - container is running",
    );
    assert!(
        e.is_container_running() && !e.is_already_running(),
        "destroy-while-running helper"
    );
    let e = PveError::http("config_put", 500, "CT is locked (create)");
    assert_eq!(e.lock_name(), Some("create"), "lock name");

    let rows: &[(&str, TaskExit, &str)] = &[
        ("OK", TaskExit::Ok, "plain success"),
        ("WARNINGS: 2", TaskExit::Warnings(2), "warnings are success"),
        (
            "clone failed: boom",
            TaskExit::Error("clone failed: boom".into()),
            "anything else is the error",
        ),
    ];
    for (s, want, reason) in rows {
        assert_eq!(&TaskExit::parse(s), want, "{reason}");
        assert_eq!(
            TaskExit::parse(s).is_success(),
            !matches!(want, TaskExit::Error(_)),
            "{reason}"
        );
    }
    let err = TaskExit::parse("clone failed: cfs-lock 'storage-x' error: got lock request timeout")
        .into_result("clone")
        .unwrap_err();
    assert_eq!(
        (err.class, err.kind),
        (Transient, ErrorKind::Task),
        "failed task text is classified"
    );
}

fn cfg(url: String, timeout: Duration) -> PveConfig {
    let mut c = PveConfig::new(
        url,
        "root@pam!zlh",
        SecretString::from("s3cr3t-token-value".to_string()),
    );
    c.connect_timeout = timeout;
    c.request_timeout = timeout;
    c
}

#[tokio::test]
async fn transport_failures_are_transient() {
    // Connection refused: a port that was just free.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = l.local_addr().unwrap();
    drop(l);

    // Reset: accept, read a little, close without answering.
    let reset = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_addr = reset.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = reset.accept().await else {
                break;
            };
            let mut buf = [0u8; 512];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });

    // Timeout: accept and never answer.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            keep.push(s);
        }
    });

    let rows = [
        (refused, ErrorKind::Connect, "connection refused"),
        (
            reset_addr,
            ErrorKind::Io,
            "connection closed/reset without an answer",
        ),
        (
            hang_addr,
            ErrorKind::Timeout,
            "server never answers: request timeout",
        ),
    ];
    for (addr, kind, reason) in rows {
        let c = PveClient::new(cfg(format!("http://{addr}"), Duration::from_millis(300))).unwrap();
        let e = c.version().await.unwrap_err();
        assert_eq!(e.class, Transient, "{reason}: {e}");
        assert_eq!(e.kind, kind, "{reason}: {e}");
        assert!(!e.to_string().contains("s3cr3t"), "{reason}: token leaked");
    }
}

#[cfg(feature = "sim")]
#[tokio::test]
async fn wire_errors_read_reason_phrase_and_body() {
    use proxmox_client::sim::{PveSim, SimConfig};
    let sim = PveSim::start(SimConfig::fast()).await.unwrap();
    let c = PveClient::new(sim.client_config()).unwrap();
    let rows: &[(u16, &str, ErrorClass, &str)] = &[
        (
            401,
            "Authentication failed!",
            Unauthorized,
            "401 with empty body: reason phrase only",
        ),
        (
            403,
            "Permission check failed (/, Sys.Audit)",
            Unauthorized,
            "403",
        ),
        (595, "Connection refused", Transient, "595 empty body"),
        (596, "Connection timed out", Transient, "596 empty body"),
        (599, "Too many redirections", Transient, "599 empty body"),
        (500, "CT is locked (disk)", Locked, "500 with JSON message"),
        (
            500,
            "Configuration file 'nodes/pve/lxc/100.conf' does not exist",
            NotFound,
            "missing config",
        ),
        (500, "totally new failure", Transient, "unknown 500"),
        (501, "Method 'GET /version' not implemented", Invalid, "501"),
        (503, "Service Unavailable", Transient, "503"),
        (429, "Too Many Requests", Transient, "429"),
    ];
    for (code, m, want, reason) in rows {
        sim.fail_next("version", 1, *code, m);
        let e = c.version().await.unwrap_err();
        assert_eq!(e.status, Some(*code), "{reason}");
        assert_eq!(e.class, *want, "{reason}: {e}");
        assert!(
            e.message.contains(m),
            "{reason}: message {:?} lacks {m:?}",
            e.message
        );
    }
}

/// A loopback HTTP server answering every request with `200` and `body`.
async fn answer_200(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// The VMIDs listed, or the kind of error.
type Listed = Result<&'static [u32], ErrorKind>;

#[tokio::test]
async fn resource_listings_are_read_leniently_but_never_guessed() {
    let cases: &[(&str, Listed, &str)] = &[
        (
            r#"{"data":[{"vmid":101,"node":"pve1","type":"lxc"},null,"x",{"vmid":"102","node":"pve1","type":"lxc","template":"0"}]}"#,
            Ok(&[101, 102]),
            "odd elements are skipped and Perl's numbers-as-strings read, not a failed listing",
        ),
        (
            r#"{"data":null}"#,
            Err(ErrorKind::Decode),
            "no listing is an error, never an empty fleet",
        ),
        (
            r#"{"data":{"vmid":101}}"#,
            Err(ErrorKind::Decode),
            "data of the wrong shape is an error",
        ),
        (
            "<html>proxy error</html>",
            Err(ErrorKind::Decode),
            "a 200 that is not JSON is an error",
        ),
    ];
    for (body, want, why) in cases {
        let addr = answer_200(body).await;
        let c = PveClient::new(cfg(format!("http://{addr}"), Duration::from_secs(5))).unwrap();
        match (c.cluster_resources().await, want) {
            (Ok(list), Ok(vmids)) => {
                let got: Vec<u32> = list.iter().map(|r| r.vmid).collect();
                assert_eq!(got, *vmids, "{why}");
            }
            (Err(e), Err(kind)) => {
                assert_eq!(e.kind, *kind, "{why}: {e}");
                assert_eq!(e.class, Transient, "{why}: unknown, so only a delay: {e}");
            }
            (got, _) => panic!("{why}: got {got:?}"),
        }
    }
}
