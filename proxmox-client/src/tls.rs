//! TLS settings for Proxmox: system roots, a CA file (`pve-root-ca.pem`), SHA-256 pinning of the
//! leaf certificate (the Proxmox convention for self-signed clusters), or explicit insecure.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// How the client authenticates the Proxmox server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// The platform's trust store.
    System,
    /// Trust only the CA(s) in this PEM file (e.g. `/etc/pve/pve-root-ca.pem`).
    CaFile(PathBuf),
    /// Pin the SHA-256 of the leaf certificate's DER, as `AA:BB:...` (as `pvenode cert info`
    /// prints it) or plain hex. Chain and name checks are replaced by the comparison; handshake
    /// signatures are still verified.
    Fingerprint(String),
    /// Accept any certificate. Explicit opt-in only; logged loudly.
    Insecure,
}

/// Parse `AA:BB:...` or hex into 32 bytes.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hexs: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    let bytes = hex::decode(hexs).ok()?;
    bytes.try_into().ok()
}

/// Format 32 bytes as `AA:BB:...`.
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The SHA-256 fingerprint of a DER certificate, `AA:BB:...`.
pub fn cert_fingerprint(der: &[u8]) -> String {
    format_fingerprint(Sha256::digest(der).as_slice())
}

/// Message prefix of a pin mismatch.
pub const FINGERPRINT_MISMATCH: &str = "server certificate fingerprint mismatch";

#[derive(Debug)]
pub(crate) struct FingerprintVerifier {
    fp: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Sha256::digest(end_entity.as_ref());
        if got.as_slice() == self.fp {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "{FINGERPRINT_MISMATCH}: pinned {}, server presented {}",
                format_fingerprint(&self.fp),
                format_fingerprint(got.as_slice())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config that trusts exactly the pinned leaf certificate.
pub(crate) fn pinned_config(fp: [u8; 32]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FingerprintVerifier { fp, provider }))
        .with_no_client_auth();
    // reqwest adds no ALPN to a preconfigured config; pveproxy speaks HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
