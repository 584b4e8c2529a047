//! External identities (`[api.identity]`): the account service's JWTs, each case with its
//! reason, against an API configured with an HS256 secret and a JWKS of two keys (RSA and
//! Ed25519, `kid` selects), and one with the JWKS alone (algorithm confusion).

use crate::common::{Harness, expect_problem, paper};
use api::ApiConfig;
use api::identity::{IdentityConfig, reason};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use model::Role;
use serde_json::{Value, json};
use std::path::Path;

const ISSUER: &str = "https://accounts.example.test";
const AUDIENCE: &str = "zlh";
const HS_SECRET: &[u8] = b"a-shared-secret-of-the-account-service-0123456789";

/// The signing side of the test: what the account service holds.
pub struct Issuer {
    hs: EncodingKey,
    rsa: EncodingKey,
    /// An RSA key not in the JWKS.
    rsa_other: EncodingKey,
    ed: EncodingKey,
    /// The RSA key's public half as a JWK (the HMAC secret of an algorithm-confusion attack).
    rsa_public_jwk: String,
}

/// The inner `RSAPrivateKey` (PKCS#1) of a PKCS#8 document, which jsonwebtoken signs with.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, mut len, mut at) = (b[0], b[1] as usize, 2);
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = b[2..2 + n].iter().fold(0, |a, x| (a << 8) | *x as usize);
            at += n;
        }
        (tag, &b[at..at + len], &b[at + len..])
    }
    let (_, seq, _) = tlv(pkcs8);
    let (_, _, rest) = tlv(seq); // version
    let (_, _, rest) = tlv(rest); // algorithm
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey is an OCTET STRING");
    key.to_vec()
}

fn rsa_key() -> EncodingKey {
    use aws_lc_rs::encoding::AsDer;
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
    EncodingKey::from_rsa_der(&pkcs1_of(der.as_ref()))
}

impl Issuer {
    /// New keys, and the JWKS file of the RSA (`rsa-1`) and Ed25519 (`ed-1`) public keys.
    pub fn new(jwks_path: &Path) -> Self {
        let rsa = rsa_key();
        let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
        rsa_jwk.common.key_id = Some("rsa-1".into());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let ed_jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "ed-1",
            "x": B64.encode(ed_pair.public_key().as_ref()),
        });
        let rsa_public_jwk = serde_json::to_string(&rsa_jwk).unwrap();
        let jwks = json!({"keys": [serde_json::to_value(&rsa_jwk).unwrap(), ed_jwk]});
        std::fs::write(jwks_path, jwks.to_string()).unwrap();
        Issuer {
            hs: EncodingKey::from_secret(HS_SECRET).unwrap(),
            rsa,
            rsa_other: rsa_key(),
            ed: EncodingKey::from_ed_der(doc.as_ref()),
            rsa_public_jwk,
        }
    }

    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let key = match alg {
            Algorithm::HS256 => &self.hs,
            Algorithm::RS256 => &self.rsa,
            Algorithm::EdDSA => &self.ed,
            other => panic!("no test key for {other:?}"),
        };
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// A customer's login token, valid for an hour.
    pub fn hs256_for(&self, customer: &str) -> String {
        self.sign(Algorithm::HS256, None, &claims(customer, 0))
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The account service's claims for `sub`, shifted `offset` seconds in time.
fn claims(sub: &str, offset: i64) -> Value {
    let t = now() + offset;
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": t, "nbf": t - 1, "exp": t + 3600})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        v.as_object_mut().unwrap().remove(key);
    } else {
        v[key] = value;
    }
    v
}

/// The identity section for these files.
pub fn identity(dir: &Path, hs256: bool) -> IdentityConfig {
    let secret = dir.join("jwt_secret");
    // A credential file's trailing newline is not part of the secret.
    std::fs::write(&secret, [HS_SECRET, b"\n"].concat()).unwrap();
    IdentityConfig {
        hs256_secret_file: hs256.then_some(secret),
        jwks_file: Some(dir.join("jwks.json")),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        viewer_claim: Some("zlh_support".into()),
        ..Default::default()
    }
}

/// A scratch directory for the key files.
pub fn key_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zlh-jwt-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A harness whose API verifies the JWTs of the issuer whose keys are in `dir`.
pub async fn start_in(dir: &Path, hs256: bool) -> Harness {
    Harness::start_with(ApiConfig {
        identity: Some(identity(dir, hs256)),
        ..ApiConfig::default()
    })
    .await
}

async fn list_as(h: &Harness, token: &str) -> reqwest::Response {
    h.http
        .get(h.url("/api/servers"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn jwts_are_verified_check_by_check() {
    let dir = key_dir();
    let iss = Issuer::new(&dir.join("jwks.json"));
    let both = start_in(&dir, true).await;
    let jwks_only = start_in(&dir, false).await;
    let mine = both.seed("u1", paper()).await;
    // Another customer's server, which no u1 token may list.
    both.seed("u2", paper()).await;

    let valid = claims("u1", 0);
    let hs = iss.hs256_for("u1");
    let (h, p, _) = split(&hs);
    let u2 = iss.hs256_for("u2");
    let (_, p2, _) = split(&u2);
    // The classic confusion: HMAC keyed with the RSA public key, which anyone can read.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid,
        &EncodingKey::from_secret(iss.rsa_public_jwk.as_bytes()).unwrap(),
    )
    .unwrap();
    let other_rsa = jsonwebtoken::encode(
        &{
            let mut hd = Header::new(Algorithm::RS256);
            hd.kid = Some("rsa-1".into());
            hd
        },
        &valid,
        &iss.rsa_other,
    )
    .unwrap();

    enum Api {
        Both,
        JwksOnly,
    }
    // (reason, which API, token, Ok(()) = accepted / Err(the 401's detail))
    let cases: Vec<(&str, Api, String, Result<(), &str>)> = vec![
        ("a valid HS256 login token", Api::Both, hs.clone(), Ok(())),
        (
            "a valid RS256 token, kid rsa-1",
            Api::Both,
            iss.sign(Algorithm::RS256, Some("rsa-1"), &valid),
            Ok(()),
        ),
        (
            "a valid EdDSA token, kid ed-1",
            Api::Both,
            iss.sign(Algorithm::EdDSA, Some("ed-1"), &valid),
            Ok(()),
        ),
        (
            "a valid EdDSA token without kid: the Ed25519 key is tried",
            Api::JwksOnly,
            iss.sign(Algorithm::EdDSA, None, &valid),
            Ok(()),
        ),
        (
            "kid selects the key: rsa-1 does not verify another RSA key's signature",
            Api::Both,
            other_rsa,
            Err(reason::SIGNATURE),
        ),
        (
            "a kid no key has",
            Api::Both,
            iss.sign(Algorithm::RS256, Some("rsa-9"), &valid),
            Err(reason::NO_KEY),
        ),
        (
            "expired an hour ago (beyond the leeway)",
            Api::Both,
            iss.sign(Algorithm::HS256, None, &claims("u1", -7200)),
            Err(reason::EXPIRED),
        ),
        (
            "not valid for another hour",
            Api::Both,
            iss.sign(
                Algorithm::HS256,
                None,
                &with(valid.clone(), "nbf", json!(now() + 3600)),
            ),
            Err(reason::NOT_YET_VALID),
        ),
        (
            "another issuer",
            Api::Both,
            iss.sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &with(valid.clone(), "iss", json!("https://evil.test")),
            ),
            Err(reason::ISSUER),
        ),
        (
            "another audience",
            Api::Both,
            iss.sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &with(valid.clone(), "aud", json!("other")),
            ),
            Err(reason::AUDIENCE),
        ),
        (
            "no exp at all",
            Api::Both,
            iss.sign(
                Algorithm::HS256,
                None,
                &with(valid.clone(), "exp", Value::Null),
            ),
            Err(reason::MISSING_EXP),
        ),
        (
            "alg none with a valid payload",
            Api::Both,
            format!("{}.{p}.", B64.encode(br#"{"alg":"none","typ":"JWT"}"#)),
            Err(reason::UNSIGNED),
        ),
        (
            "alg None, capitalised",
            Api::Both,
            format!("{}.{p}.", B64.encode(br#"{"alg":"None"}"#)),
            Err(reason::UNSIGNED),
        ),
        (
            "HS256 against an RSA JWKS (keyed with the public key)",
            Api::JwksOnly,
            confused.clone(),
            Err(reason::ALGORITHM),
        ),
        (
            "the same with a shared secret configured: it is not the secret",
            Api::Both,
            confused,
            Err(reason::SIGNATURE),
        ),
        (
            "no customer claim",
            Api::Both,
            iss.sign(
                Algorithm::HS256,
                None,
                &with(valid.clone(), "sub", Value::Null),
            ),
            Err(reason::CUSTOMER),
        ),
        (
            "a customer claim that is no customer id",
            Api::Both,
            iss.sign(
                Algorithm::HS256,
                None,
                &with(valid.clone(), "sub", json!("../u2")),
            ),
            Err(reason::CUSTOMER),
        ),
        (
            "a tampered payload (u2's claims under u1's signature)",
            Api::Both,
            format!("{h}.{p2}.{}", split(&hs).2),
            Err(reason::SIGNATURE),
        ),
        (
            "a header that is not JSON",
            Api::Both,
            format!("eyJub3Q.{p}.c2ln"),
            Err(reason::MALFORMED),
        ),
        (
            "an algorithm nobody uses",
            Api::Both,
            format!("{}.{p}.c2ln", B64.encode(br#"{"alg":"XS999"}"#)),
            Err(reason::ALGORITHM),
        ),
    ];
    for (reason, api, token, want) in cases {
        let h = match api {
            Api::Both => &both,
            Api::JwksOnly => &jwks_only,
        };
        let res = list_as(h, &token).await;
        match want {
            Ok(()) => {
                assert_eq!(res.status(), 200, "{reason}");
                if matches!(api, Api::Both) {
                    let body: Value = res.json().await.unwrap();
                    let ids: Vec<&str> = body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["id"].as_str().unwrap())
                        .collect();
                    assert_eq!(ids, [mine.id.to_string()], "{reason}: only u1's servers");
                }
            }
            Err(detail) => {
                let v = expect_problem(res, 401, reason).await;
                assert_eq!(v["detail"], detail, "{reason}");
                let text = v.to_string();
                for secret in ["rsa-1", "ed-1", "rsa-9"] {
                    assert!(
                        !text.contains(secret),
                        "{reason}: the problem names a key: {text}"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn split(t: &str) -> (&str, &str, &str) {
    let mut it = t.split('.');
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

#[tokio::test]
async fn a_jwt_is_a_customer_or_with_the_viewer_claim_a_viewer_and_own_tokens_still_work() {
    let dir = key_dir();
    let iss = Issuer::new(&dir.join("jwks.json"));
    let h = start_in(&dir, true).await;
    let other = h.seed("u2", paper()).await;
    let u1 = iss.hs256_for("u1");
    // A customer JWT creates for its own customer, whatever the body names.
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&u1)
        .json(&json!({"spec": paper()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "a customer JWT may create");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["server"]["customerId"], "u1", "scoped to the sub");
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&u1)
        .json(&json!({"customerId": "u2", "spec": paper()}))
        .send()
        .await
        .unwrap();
    expect_problem(
        res,
        403,
        "a customer JWT may not create for another customer",
    )
    .await;
    let res = h
        .http
        .get(h.url(&format!("/api/servers/{}", other.id)))
        .bearer_auth(&u1)
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "another customer's server does not exist for it").await;

    let support = iss.sign(
        Algorithm::EdDSA,
        Some("ed-1"),
        &with(claims("staff7", 0), "zlh_support", json!(true)),
    );
    let body: Value = list_as(&h, &support).await.json().await.unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        2,
        "the viewer claim sees every customer: {body}"
    );
    let res = h
        .http
        .post(h.url("/api/servers"))
        .bearer_auth(&support)
        .json(&json!({"customerId": "u2", "spec": paper()}))
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, "a viewer may not create").await;
    let not_true = iss.sign(
        Algorithm::HS256,
        None,
        &with(claims("u1", 0), "zlh_support", json!("yes")),
    );
    let body: Value = list_as(&h, &not_true).await.json().await.unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        1,
        "only `true` grants viewer: {body}"
    );

    let own = h.token(Role::Operator, None).await;
    assert_eq!(
        list_as(&h, &own).await.status(),
        200,
        "zlh's own tokens work beside JWTs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rotated_jwks_is_picked_up_without_a_restart() {
    let dir = key_dir();
    let old = Issuer::new(&dir.join("jwks.json"));
    let h = start_in(&dir, false).await;
    let by_old = old.sign(Algorithm::EdDSA, Some("ed-1"), &claims("u1", 0));
    assert_eq!(
        list_as(&h, &by_old).await.status(),
        200,
        "the first keys work"
    );
    // The account service rotates: a new JWKS (new keys, same kids) replaces the file.
    let new = Issuer::new(&dir.join("jwks.json"));
    let by_new = new.sign(Algorithm::EdDSA, Some("ed-1"), &claims("u1", 0));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = list_as(&h, &by_new).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401, "until the reload, the new key does not verify");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new JWKS was never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let v = expect_problem(list_as(&h, &by_old).await, 401, "the old key is gone").await;
    assert_eq!(v["detail"], reason::SIGNATURE);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP (`api::identity::reload`) makes the next request re-read a replaced JWKS at once,
/// without waiting for the change to be noticed: the new key verifies on the first try.
#[tokio::test]
async fn a_reload_request_picks_up_a_replaced_jwks_at_once() {
    let dir = key_dir();
    let old = Issuer::new(&dir.join("jwks.json"));
    let h = start_in(&dir, false).await;
    let by_old = old.sign(Algorithm::EdDSA, Some("ed-1"), &claims("u1", 0));
    assert_eq!(
        list_as(&h, &by_old).await.status(),
        200,
        "the first keys work"
    );
    let new = Issuer::new(&dir.join("jwks.json"));
    api::identity::reload();
    let by_new = new.sign(Algorithm::EdDSA, Some("ed-1"), &claims("u1", 0));
    assert_eq!(
        list_as(&h, &by_new).await.status(),
        200,
        "the first request after the reload has the new key"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
