//! TLS: a self-signed server on 127.0.0.1; the pinned fingerprint connects, a wrong one is
//! refused with a clear, non-transient error.

use proxmox_client::tls::cert_fingerprint;
use proxmox_client::{ErrorClass, ErrorKind, Proxmox, PveClient, PveConfig, TlsMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    url: String,
    cert_der: Vec<u8>,
    cert_pem: String,
}

async fn tls_server() -> Server {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_der = ck.cert.der().to_vec();
    let cert_pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf);
                let authed = req.contains("PVEAPIToken=root@pam!zlh=tls-secret");
                let resp = if authed {
                    let body = r#"{"data":{"version":"9.1.9","release":"9.1","repoid":"abc"}}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Authentication failed!\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Server {
        url: format!("https://127.0.0.1:{}", addr.port()),
        cert_der,
        cert_pem,
    }
}

fn client(url: &str, tls: TlsMode) -> Result<PveClient, proxmox_client::PveError> {
    let mut c = PveConfig::new(
        url,
        "root@pam!zlh",
        SecretString::from("tls-secret".to_string()),
    );
    c.tls = tls;
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    PveClient::new(c)
}

#[tokio::test]
async fn fingerprint_pinning() {
    let srv = tls_server().await;
    let right = cert_fingerprint(&srv.cert_der);
    let right_plain_hex = right.replace(':', "").to_lowercase();
    let wrong = cert_fingerprint(b"some other certificate");

    // (fingerprint, connects?, reason)
    let rows = [
        (
            right.clone(),
            true,
            "the server's own fingerprint, AA:BB form",
        ),
        (
            right_plain_hex,
            true,
            "the same fingerprint as plain lower-case hex",
        ),
        (
            wrong.clone(),
            false,
            "a different fingerprint must be refused",
        ),
    ];
    for (fp, connects, reason) in rows {
        let c = client(&srv.url, TlsMode::Fingerprint(fp)).unwrap();
        let r = c.version().await;
        if connects {
            assert_eq!(
                r.unwrap_or_else(|e| panic!("{reason}: {e}")).version,
                "9.1.9",
                "{reason}"
            );
        } else {
            let e = r.expect_err(reason);
            assert_eq!(e.kind, ErrorKind::Tls, "{reason}: {e}");
            assert_eq!(
                e.class,
                ErrorClass::Unauthorized,
                "{reason}: a wrong certificate is not transient"
            );
            assert!(
                e.message.contains("fingerprint mismatch"),
                "{reason}: clear message: {e}"
            );
            assert!(
                e.message.contains(&right),
                "{reason}: names the presented fingerprint: {e}"
            );
        }
    }
}

#[tokio::test]
async fn system_roots_refuse_self_signed_and_ca_file_accepts() {
    let srv = tls_server().await;
    let e = client(&srv.url, TlsMode::System)
        .unwrap()
        .version()
        .await
        .expect_err("self-signed");
    assert_ne!(
        e.class,
        ErrorClass::NotFound,
        "a TLS failure is never NotFound: {e}"
    );

    let dir = std::env::temp_dir().join(format!("zlh-pve-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("pve-root-ca.pem");
    std::fs::write(&ca, &srv.cert_pem).unwrap();
    let v = client(&srv.url, TlsMode::CaFile(ca.clone()))
        .unwrap()
        .version()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v.expect("CA file trusts the cert").version, "9.1.9");
}

#[tokio::test]
async fn bad_fingerprint_config_is_invalid() {
    let e = client("https://127.0.0.1:1", TlsMode::Fingerprint("AA:BB".into())).unwrap_err();
    assert_eq!(
        e.class,
        ErrorClass::Invalid,
        "short fingerprint is a config error"
    );
}
