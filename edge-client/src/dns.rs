//! The DNS provider interface the controller uses for both Technitium (internal view) and
//! Cloudflare (public view). Each host has one A record and, for game servers, one SRV record
//! `_minecraft._tcp.<host>` (docs/edge-apis.md §4).

use crate::error::EdgeError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;

/// Service label of the Minecraft SRV record.
pub const SRV_PREFIX: &str = "_minecraft._tcp.";
/// TTL of every record we write (the previous publisher used 60; Cloudflare's minimum).
pub const RECORD_TTL: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Host name (never an IP), without trailing dot.
    pub target: String,
}

impl SrvRecord {
    /// Compare ignoring case and a trailing dot on the target.
    pub fn same_as(&self, other: &SrvRecord) -> bool {
        self.priority == other.priority
            && self.weight == other.weight
            && self.port == other.port
            && normalize(&self.target) == normalize(&other.target)
    }
}

/// What exists for one host: all A records of `host` and all SRV records of
/// `_minecraft._tcp.<host>` (several when someone created duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRecords {
    pub a: Vec<Ipv4Addr>,
    pub srv: Vec<SrvRecord>,
}

impl ObservedRecords {
    pub fn is_empty(&self) -> bool {
        self.a.is_empty() && self.srv.is_empty()
    }

    /// Exactly the desired records: one A with the desired address, and exactly one equal SRV
    /// when one is desired (none otherwise).
    pub fn matches(&self, d: &DesiredRecords) -> bool {
        self.a.as_slice() == [d.a]
            && match &d.srv {
                Some(s) => self.srv.len() == 1 && self.srv[0].same_as(s),
                None => self.srv.is_empty(),
            }
    }
}

/// What should exist for one host. `srv: None` means "no SRV record" (dev containers):
/// `ensure` deletes a stray one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRecords {
    pub a: Ipv4Addr,
    pub srv: Option<SrvRecord>,
}

/// A DNS backend. All methods are idempotent; names are FQDNs (a trailing dot and upper case
/// are accepted and normalized).
pub trait DnsProvider: Send + Sync {
    /// `"technitium"` or `"cloudflare"` (for logs, conditions and metrics).
    fn name(&self) -> &'static str;

    /// The A records of `host_fqdn` and the SRV records of `_minecraft._tcp.<host_fqdn>`.
    /// An absent name is `Ok` with empty vectors.
    fn observe(
        &self,
        host_fqdn: &str,
    ) -> impl Future<Output = Result<ObservedRecords, EdgeError>> + Send;

    /// Batched observation of the whole zone (fleet resync): host FQDN → its records. SRV
    /// records `_minecraft._tcp.<host>` are keyed under `<host>`; other record types and
    /// names are ignored. Hosts with no A/SRV record do not appear.
    fn list_zone(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, ObservedRecords>, EdgeError>> + Send;

    /// Make the records of `host_fqdn` exactly `desired`: create, repair drift, collapse
    /// duplicates to one, and do nothing when already equal. Returns whether anything changed.
    fn ensure(
        &self,
        host_fqdn: &str,
        desired: &DesiredRecords,
    ) -> impl Future<Output = Result<bool, EdgeError>> + Send;

    /// Delete the A and SRV records of `host_fqdn`. Absent records are success. Returns
    /// whether anything was deleted.
    fn remove(&self, host_fqdn: &str) -> impl Future<Output = Result<bool, EdgeError>> + Send;
}

/// Lower case, no trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `_minecraft._tcp.<host>` (normalized).
pub fn srv_name(host_fqdn: &str) -> String {
    format!("{SRV_PREFIX}{}", normalize(host_fqdn))
}

/// The host an SRV record name belongs to, if it is a Minecraft SRV name.
pub fn host_of_srv(name: &str) -> Option<String> {
    let n = normalize(name);
    n.strip_prefix(SRV_PREFIX).map(str::to_string)
}

/// Insert an observed record into a zone listing keyed by host.
pub(crate) fn add_to_listing(
    out: &mut HashMap<String, ObservedRecords>,
    name: &str,
    a: Option<Ipv4Addr>,
    srv: Option<SrvRecord>,
) {
    if let Some(ip) = a {
        out.entry(normalize(name)).or_default().a.push(ip);
    }
    if let Some(s) = srv
        && let Some(host) = host_of_srv(name)
    {
        out.entry(host).or_default().srv.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority: 0,
            weight: 0,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn matches_table() {
        let ip = Ipv4Addr::new(127, 0, 0, 9);
        let other = Ipv4Addr::new(127, 0, 0, 10);
        let d = DesiredRecords {
            a: ip,
            srv: Some(srv(25565, "mc-a.zlh.test")),
        };
        let cases = [
            (
                ObservedRecords {
                    a: vec![ip],
                    srv: vec![srv(25565, "MC-A.zlh.test.")],
                },
                true,
                "case and trailing dot are ignored",
            ),
            (
                ObservedRecords {
                    a: vec![],
                    srv: vec![srv(25565, "mc-a.zlh.test")],
                },
                false,
                "missing A",
            ),
            (
                ObservedRecords {
                    a: vec![other],
                    srv: vec![srv(25565, "mc-a.zlh.test")],
                },
                false,
                "wrong A",
            ),
            (
                ObservedRecords {
                    a: vec![ip, ip],
                    srv: vec![srv(25565, "mc-a.zlh.test")],
                },
                false,
                "duplicate A",
            ),
            (
                ObservedRecords {
                    a: vec![ip],
                    srv: vec![],
                },
                false,
                "missing SRV",
            ),
            (
                ObservedRecords {
                    a: vec![ip],
                    srv: vec![srv(25566, "mc-a.zlh.test")],
                },
                false,
                "wrong port",
            ),
        ];
        for (obs, want, reason) in cases {
            assert_eq!(obs.matches(&d), want, "{reason}");
        }
        let no_srv = DesiredRecords { a: ip, srv: None };
        assert!(
            !ObservedRecords {
                a: vec![ip],
                srv: vec![srv(1, "x")]
            }
            .matches(&no_srv)
        );
    }

    #[test]
    fn srv_names() {
        assert_eq!(srv_name("MC-A.zlh.test."), "_minecraft._tcp.mc-a.zlh.test");
        assert_eq!(
            host_of_srv("_minecraft._tcp.mc-a.zlh.test").as_deref(),
            Some("mc-a.zlh.test")
        );
        assert_eq!(host_of_srv("mc-a.zlh.test"), None);
    }
}
