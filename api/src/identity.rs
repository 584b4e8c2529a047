//! External identities (`[api.identity]`): bearer JWTs issued by the account service,
//! verified the way kube-apiserver verifies OIDC tokens. zlh never issues them.
//!
//! Keys: an HS256 shared secret read from a credential file, and/or a JWKS file of RS256,
//! ES256 and EdDSA public keys (re-read when the file changes). Each key accepts only its own
//! algorithm, so an HS256 token is never checked against an RSA key (algorithm confusion),
//! and `alg: none` is refused before anything else. The principal is a `customer` scoped to
//! the id in `customer_claim`, or a `viewer` (support staff) when `viewer_claim` is `true`.
//!
//! Failures are 401 problems saying which check failed (signature, expiry, issuer, ...),
//! never which key was tried; tokens and keys appear in no log, error or `Debug` output.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `[api.identity]`. Every default is in [`IdentityConfig::default`] with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// File holding the HS256 shared secret (a systemd credential); read at start-up.
    pub hs256_secret_file: Option<PathBuf>,
    /// JWKS file (`{"keys": [...]}`) of RS256, ES256 and EdDSA public keys; re-read when it
    /// changes.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// The claim holding the customer id.
    pub customer_claim: String,
    /// A claim that, when `true`, makes the caller a fleet-wide `viewer` (support staff).
    pub viewer_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            hs256_secret_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            // The account service's login puts the user id in `sub`.
            customer_claim: "sub".into(),
            viewer_claim: None,
            // NTP-synced hosts differ by well under a second; 30 s covers a lagging one and
            // keeps an expired token usable for at most that long.
            leeway: Duration::from_secs(30),
        }
    }
}

/// Why a JWT was refused: the `detail` of its 401. Names the check, never a key.
pub mod reason {
    pub const MALFORMED: &str = "the bearer JWT is malformed";
    pub const UNSIGNED: &str = "unsigned JWTs (alg none) are refused";
    pub const ALGORITHM: &str = "the JWT's algorithm is not accepted by any configured key";
    pub const NO_KEY: &str = "no configured key matches the JWT's kid";
    pub const SIGNATURE: &str = "the JWT's signature does not verify";
    pub const EXPIRED: &str = "the JWT has expired (exp)";
    pub const NOT_YET_VALID: &str = "the JWT is not valid yet (nbf)";
    pub const ISSUER: &str = "the JWT's issuer (iss) is not accepted";
    pub const AUDIENCE: &str = "the JWT's audience (aud) is not accepted";
    pub const MISSING_EXP: &str = "the JWT has no exp claim";
    pub const MISSING_ISS: &str = "the JWT has no iss claim";
    pub const MISSING_AUD: &str = "the JWT has no aud claim";
    pub const CLAIMS: &str = "the JWT's claims are malformed";
    pub const CUSTOMER: &str = "the JWT has no valid customer claim";
    pub const KEYS: &str = "the identity keys are unavailable";
}

/// Loading the keys (start-up and JWKS reloads). Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("api.identity: set hs256_secret_file or jwks_file (or remove [api.identity])")]
    NoKeys,
    #[error("api.identity.customer_claim: must not be empty")]
    NoCustomerClaim,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the HS256 secret is empty", path.display())]
    EmptySecret { path: PathBuf },
    #[error("{}: not a JWKS ({why})", path.display())]
    Jwks { path: PathBuf, why: String },
}

/// A JWT, as opposed to one of zlh's opaque tokens: three base64url parts.
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.split('.').count() == 3 && bearer.starts_with("eyJ")
}

/// Who a verified JWT names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A customer, by id.
    Customer(String),
    /// Support staff: read-only, every customer. Carries the customer claim for the logs.
    Viewer(String),
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct Jwks {
    path: PathBuf,
    keys: Vec<Key>,
    /// The file's bytes when `keys` were parsed: a rewrite within the file system's mtime
    /// resolution, of the same length (a rotated key of the same size), is still seen.
    raw: Vec<u8>,
    checked: Instant,
    /// The [`RELOADS`] count at the last check.
    reloads: u64,
}

/// How often the JWKS file is re-read (a few KiB) to see whether it changed.
const JWKS_RECHECK: Duration = Duration::from_secs(1);

/// Bumped by [`reload`] (zlhd on SIGHUP, `controller/zlhd/src/run.rs`): every JWKS of this
/// process re-reads its file at its next use, within `JWKS_RECHECK` or not.
static RELOADS: AtomicU64 = AtomicU64::new(0);

/// Re-read every JWKS file of this process at its next use (an operator's SIGHUP after
/// replacing the file, rather than waiting for the change to be seen).
pub fn reload() {
    RELOADS.fetch_add(1, Ordering::Relaxed);
}

/// Whether a JWKS last checked `elapsed` ago, having seen `seen` reload requests of the
/// `asked` made so far, re-reads its file now.
fn recheck_due(elapsed: Duration, seen: u64, asked: u64) -> bool {
    elapsed >= JWKS_RECHECK || seen != asked
}

/// The verifier built from `[api.identity]`. No `Debug`: it holds the keys.
pub struct Verifier {
    config: IdentityConfig,
    hs256: Option<DecodingKey>,
    jwks: Option<Mutex<Jwks>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Verifier {
    /// Read the secret and the JWKS; an error names the file and what is wrong with it.
    pub fn load(config: &IdentityConfig) -> Result<Self, IdentityError> {
        if config.hs256_secret_file.is_none() && config.jwks_file.is_none() {
            return Err(IdentityError::NoKeys);
        }
        if config.customer_claim.is_empty() {
            return Err(IdentityError::NoCustomerClaim);
        }
        let hs256 = match &config.hs256_secret_file {
            None => None,
            Some(path) => {
                let raw = read(path)?;
                // Credential files usually end with a newline the issuer never signed with.
                let secret = raw.trim_ascii_end();
                if secret.is_empty() {
                    return Err(IdentityError::EmptySecret { path: path.clone() });
                }
                Some(
                    DecodingKey::from_secret(secret)
                        .map_err(|_| IdentityError::EmptySecret { path: path.clone() })?,
                )
            }
        };
        let jwks = match &config.jwks_file {
            None => None,
            Some(path) => {
                let raw = read(path)?;
                let keys = parse_jwks(path, &raw)?;
                Some(Mutex::new(Jwks {
                    path: path.clone(),
                    keys,
                    raw,
                    checked: Instant::now(),
                    reloads: RELOADS.load(Ordering::Relaxed),
                }))
            }
        };
        Ok(Verifier {
            config: config.clone(),
            hs256,
            jwks,
        })
    }

    /// Verify a bearer JWT; `Err` is the 401's detail (a [`reason`]).
    pub fn verify(&self, token: &str) -> Result<Identity, &'static str> {
        let header = read_header(token)?;
        let alg: Algorithm = match header.alg.as_str() {
            a if a.eq_ignore_ascii_case("none") => return Err(reason::UNSIGNED),
            a => a.parse().map_err(|_| reason::ALGORITHM)?,
        };
        let validation = self.validation(alg);
        let claims = if alg == Algorithm::HS256 {
            let key = self.hs256.as_ref().ok_or(reason::ALGORITHM)?;
            decode(token, key, &validation)?
        } else {
            let jwks = self.jwks.as_ref().ok_or(reason::ALGORITHM)?;
            let mut jwks = jwks.lock().unwrap_or_else(|e| e.into_inner());
            jwks.refresh();
            let candidates: Vec<&Key> = jwks
                .keys
                .iter()
                .filter(|k| k.alg == alg)
                .filter(|k| header.kid.is_none() || k.kid == header.kid)
                .collect();
            if candidates.is_empty() {
                let kid_known = header
                    .kid
                    .as_ref()
                    .is_some_and(|kid| jwks.keys.iter().any(|k| k.kid.as_ref() == Some(kid)));
                return Err(if header.kid.is_some() && !kid_known {
                    reason::NO_KEY
                } else {
                    reason::ALGORITHM
                });
            }
            // Without a kid, any key of the algorithm may have signed it. The signature is
            // checked before the claims, so any other failure comes from the signing key.
            let mut outcome = Err(reason::SIGNATURE);
            for k in candidates {
                outcome = decode(token, &k.key, &validation);
                if outcome != Err(reason::SIGNATURE) {
                    break;
                }
            }
            outcome?
        };
        self.identity(&claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.config.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is not checked.
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn identity(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Identity, &'static str> {
        let customer = match claims.get(&self.config.customer_claim) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(reason::CUSTOMER),
        };
        if crate::extract::check_customer_id("customer", &customer).is_err() {
            return Err(reason::CUSTOMER);
        }
        let viewer = self
            .config
            .viewer_claim
            .as_ref()
            .is_some_and(|c| claims.get(c) == Some(&serde_json::Value::Bool(true)));
        Ok(if viewer {
            Identity::Viewer(customer)
        } else {
            Identity::Customer(customer)
        })
    }
}

/// The verifier for the router. A configuration whose keys cannot be read leaves JWTs
/// refused (fail closed) and says why; `zlhd` checks it with [`Verifier::load`] before
/// serving, so this only happens to embedders that did not.
pub(crate) fn from_config(config: Option<&IdentityConfig>) -> Option<Verifier> {
    match Verifier::load(config?) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "external identities disabled: JWTs are refused");
            None
        }
    }
}

/// The principal of a verified JWT: its limiter key is derived from who it names, so one
/// user's many tokens share one budget.
pub(crate) fn principal(
    verifier: &Verifier,
    token: &str,
) -> Result<crate::auth::Principal, crate::problem::ApiError> {
    let identity = verifier
        .verify(token)
        .map_err(|r| crate::problem::ApiError::Unauthorized(r.into()))?;
    let (role, scope, who) = match identity {
        Identity::Customer(c) => (model::Role::Customer, Some(c.clone()), c),
        Identity::Viewer(c) => (model::Role::Viewer, None, c),
    };
    let digest = model::customer::token_hash(&format!("jwt:{role}:{who}"));
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Ok(crate::auth::Principal {
        token_id: uuid::Uuid::from_bytes(id),
        token_name: format!("jwt:{who}"),
        role,
        scope,
    })
}

fn read_header(token: &str) -> Result<Header, &'static str> {
    let first = token.split('.').next().ok_or(reason::MALFORMED)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| reason::MALFORMED)?;
    serde_json::from_slice(&bytes).map_err(|_| reason::MALFORMED)
}

type Claims = serde_json::Map<String, serde_json::Value>;

fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<Claims, &'static str> {
    use jsonwebtoken::errors::ErrorKind as K;
    jsonwebtoken::decode::<Claims>(token, key, v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            K::InvalidSignature => reason::SIGNATURE,
            K::ExpiredSignature => reason::EXPIRED,
            K::ImmatureSignature => reason::NOT_YET_VALID,
            K::InvalidIssuer => reason::ISSUER,
            K::InvalidAudience => reason::AUDIENCE,
            K::InvalidAlgorithm | K::MissingAlgorithm => reason::ALGORITHM,
            K::MissingRequiredClaim(c) => match c.as_str() {
                "exp" => reason::MISSING_EXP,
                "iss" => reason::MISSING_ISS,
                "aud" => reason::MISSING_AUD,
                _ => reason::CLAIMS,
            },
            K::InvalidClaimFormat(_) | K::Json(_) | K::Utf8(_) => reason::CLAIMS,
            // A key that does not fit its algorithm (a bad JWKS entry) is not the token's
            // fault, but the caller learns no more than that it failed.
            K::InvalidRsaKey(_) | K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidKeyFormat => {
                reason::KEYS
            }
            _ => reason::MALFORMED,
        })
}

impl Jwks {
    /// Re-read the file when it changed; a file that no longer parses (or is gone) keeps
    /// the previous keys (logged, without its contents).
    fn refresh(&mut self) {
        let asked = RELOADS.load(Ordering::Relaxed);
        if !recheck_due(self.checked.elapsed(), self.reloads, asked) {
            return;
        }
        self.checked = Instant::now();
        self.reloads = asked;
        let raw = match read(&self.path) {
            Ok(raw) if raw == self.raw => return,
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS not reloaded; keeping the previous keys");
                return;
            }
        };
        match parse_jwks(&self.path, &raw) {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                self.keys = keys;
                self.raw = raw;
            }
            Err(e) => tracing::warn!(error = %e, "JWKS not reloaded; keeping the previous keys"),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The keys of a JWKS file; entries of other kinds (e.g. `oct`) are refused, so a shared
/// secret can never sneak in through it.
fn parse_jwks(path: &Path, text: &[u8]) -> Result<Vec<Key>, IdentityError> {
    let bad = |why: String| IdentityError::Jwks {
        path: path.to_path_buf(),
        why,
    };
    // serde_json's message names a position, never the file's contents.
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| bad(format!("{e}")))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, jwk) in set.keys.iter().enumerate() {
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                Algorithm::EdDSA
            }
            _ => {
                return Err(bad(format!(
                    "keys[{i}]: only RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA) keys are accepted"
                )));
            }
        };
        let key =
            DecodingKey::from_jwk(jwk).map_err(|_| bad(format!("keys[{i}]: not a usable key")))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err(bad("no keys".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_part_tokens_starting_like_json_are_jwts() {
        let cases = [
            ("a JWT", "eyJhbGciOi.eyJzdWIi.c2ln", true),
            (
                "zlh's own tokens have no dots",
                "zlh_0123456789abcdef",
                false,
            ),
            ("two parts", "eyJhbGciOi.eyJzdWIi", false),
        ];
        for (reason, token, want) in cases {
            assert_eq!(looks_like_jwt(token), want, "{reason}");
        }
    }

    /// A reload request (SIGHUP) re-reads within the recheck interval; without one, the
    /// interval decides.
    #[test]
    fn a_reload_request_rechecks_at_once() {
        let soon = JWKS_RECHECK / 2;
        assert!(
            !recheck_due(soon, 3, 3),
            "within the interval, no request: not yet"
        );
        assert!(
            recheck_due(soon, 3, 4),
            "a SIGHUP since the last check: now"
        );
        assert!(recheck_due(JWKS_RECHECK, 3, 3), "the interval is up: now");
    }

    #[test]
    fn loading_names_the_missing_piece() {
        let none = IdentityConfig::default();
        assert!(matches!(Verifier::load(&none), Err(IdentityError::NoKeys)));
        let missing = IdentityConfig {
            hs256_secret_file: Some("/nonexistent/zlh-secret".into()),
            ..Default::default()
        };
        let err = Verifier::load(&missing).err().expect("an unreadable file");
        assert!(err.to_string().contains("/nonexistent/zlh-secret"), "{err}");
    }
}
