//! Console tickets: HS256 JWTs (`jsonwebtoken` on aws-lc-rs), bound to one server and to
//! read or read-write, valid for `ticket_ttl`, and single-use: a verified ticket's id is
//! remembered until it expires, so a second use is refused (401).

use crate::auth::Principal;
use model::{Role, ServerId};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience of console tickets: no other JWT zlh might verify is one.
const AUDIENCE: &str = "zlh-console";
/// Permission names (what the ticket answer lists).
pub const READ: &str = "console.read";
pub const WRITE: &str = "console.write";

/// Why a ticket was refused (the 401's detail; never the ticket itself).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("the console ticket has expired; request a new one")]
    Expired,
    #[error("the console ticket was already used; request a new one")]
    Reused,
    #[error("the console ticket is not valid")]
    Invalid,
}

/// Shortest accepted signing key, in bytes (HS256's output size, RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// The key file's content (trimmed) must be at least [`MIN_KEY_BYTES`] long.
pub fn check_key(key: &[u8]) -> Result<(), String> {
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the console key must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The server id.
    pub sub: String,
    pub vmid: u32,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    /// The ticket's id (single use).
    pub jti: String,
    /// Read-write (`false`: read-only).
    pub rw: bool,
    /// Who it was issued to: token id, token name, role, customer scope.
    pub tid: uuid::Uuid,
    pub tnm: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cus: Option<String>,
}

impl Claims {
    /// The caller the ticket stands for.
    pub fn principal(&self) -> Principal {
        Principal {
            token_id: self.tid,
            token_name: self.tnm.clone(),
            role: self.role,
            scope: self.cus.clone(),
        }
    }

    pub fn server(&self) -> Option<ServerId> {
        self.sub.parse().ok()
    }
}

/// Signing and verifying keys, and the ids of tickets already used.
pub(crate) struct Tickets {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    /// jti → expiry (seconds since the epoch); pruned as they expire.
    used: Mutex<HashMap<String, u64>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tickets {
    /// With `key` (see [`check_key`]), or a random key of this process.
    pub(crate) fn new(key: Option<&SecretString>) -> Self {
        let configured = key.map(|k| k.expose_secret().trim().as_bytes().to_vec());
        let bytes = match configured {
            Some(b) if check_key(&b).is_ok() => b,
            other => {
                if other.is_some() {
                    // The application shell refuses such a key at start-up (`check_key`).
                    tracing::error!("console key too short; using a random key");
                }
                let mut b = vec![0u8; 32];
                rand::rng().fill_bytes(&mut b);
                b
            }
        };
        let keys = jsonwebtoken::EncodingKey::from_secret(&bytes)
            .and_then(|e| Ok((e, jsonwebtoken::DecodingKey::from_secret(&bytes)?)))
            .expect("a key of 32 bytes or more is a valid HMAC key");
        Tickets {
            encoding: keys.0,
            decoding: keys.1,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// A ticket for `p` on `server`; returns it and its expiry (seconds since the epoch).
    pub(crate) fn issue(
        &self,
        p: &Principal,
        server: ServerId,
        vmid: u32,
        rw: bool,
        ttl: Duration,
    ) -> (SecretString, u64) {
        self.issue_at(p, server, vmid, rw, ttl, now_secs())
    }

    fn issue_at(
        &self,
        p: &Principal,
        server: ServerId,
        vmid: u32,
        rw: bool,
        ttl: Duration,
        iat: u64,
    ) -> (SecretString, u64) {
        let exp = iat + ttl.as_secs().max(1);
        let claims = Claims {
            sub: server.to_string(),
            vmid,
            aud: AUDIENCE.into(),
            exp,
            iat,
            jti: uuid::Uuid::now_v7().to_string(),
            rw,
            tid: p.token_id,
            tnm: p.token_name.clone(),
            role: p.role,
            cus: p.scope.clone(),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("HS256 signing with a byte key does not fail");
        (SecretString::from(token), exp)
    }

    /// Check signature, audience and expiry, then spend the ticket.
    pub(crate) fn redeem(&self, ticket: &str) -> Result<Claims, TicketError> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(ticket, &self.decoding, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TicketError::Expired,
                _ => TicketError::Invalid,
            })?
            .claims;
        let now = now_secs();
        // `exp` is checked with whole seconds; the same second counts as expired.
        if claims.exp <= now {
            return Err(TicketError::Expired);
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, exp| *exp > now);
        if used.insert(claims.jti.clone(), claims.exp).is_some() {
            return Err(TicketError::Reused);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Principal {
        Principal {
            token_id: uuid::Uuid::nil(),
            token_name: "t".into(),
            role: Role::Customer,
            scope: Some("u1".into()),
        }
    }

    #[test]
    fn a_ticket_is_good_once_and_only_with_its_key() {
        let t = Tickets::new(None);
        let id = ServerId::new();
        let (ticket, _) = t.issue(&p(), id, 5208, true, Duration::from_secs(60));
        let c = t.redeem(ticket.expose_secret()).expect("fresh ticket");
        assert_eq!((c.server(), c.vmid, c.rw), (Some(id), 5208, true));
        assert_eq!(c.principal(), p(), "the ticket stands for its issuer");
        assert_eq!(
            t.redeem(ticket.expose_secret()),
            Err(TicketError::Reused),
            "single use"
        );
        let (other, _) = Tickets::new(None).issue(&p(), id, 5208, true, Duration::from_secs(60));
        assert_eq!(
            t.redeem(other.expose_secret()),
            Err(TicketError::Invalid),
            "another process's random key does not verify here"
        );
        assert_eq!(t.redeem("nonsense"), Err(TicketError::Invalid));
    }

    #[test]
    fn an_expired_ticket_is_refused_as_expired() {
        let t = Tickets::new(None);
        let (ticket, _) = t.issue_at(
            &p(),
            ServerId::new(),
            1,
            true,
            Duration::from_secs(60),
            now_secs() - 120,
        );
        assert_eq!(t.redeem(ticket.expose_secret()), Err(TicketError::Expired));
    }

    #[test]
    fn a_shared_key_verifies_across_processes() {
        let key = SecretString::from("k".repeat(32));
        let (ticket, _) = Tickets::new(Some(&key)).issue(
            &p(),
            ServerId::new(),
            1,
            false,
            Duration::from_secs(60),
        );
        let c = Tickets::new(Some(&key))
            .redeem(ticket.expose_secret())
            .expect("same key, another replica");
        assert!(!c.rw, "read-only stays read-only");
    }
}
