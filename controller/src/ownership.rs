//! Ownership markers and hostnames (docs/reconcile-contract.md, rule 2): every container zlh
//! creates names its server, in its description from the clone call on (the clone endpoint
//! takes no tags) and in its tags from the first config write on, so `cluster/resources`
//! shows ownership fleet-wide. Nothing is changed or destroyed without this proof.

use crate::decide::{ContainerObs, Desired};
use model::{Kind, ServerId, Variant};

/// Tag on every container we create, so `cluster/resources` shows the fleet.
pub const FLEET_TAG: &str = "zlh";
const MARKER_TAG_PREFIX: &str = "zlh-";
pub const MARKER_PREFIX: &str = "zlh-server-id: ";

/// Tag on every warm-pool member (next to the fleet tag): a container kept for the pool of
/// its template, owned by no server yet (docs/pools.md).
pub const POOL_TAG: &str = "zlh-pool";
/// The description line of a pool member, naming its template, from the clone call on.
pub const POOL_MARKER_PREFIX: &str = "zlh-pool-template: ";

/// The description line that marks a container as a member of `template`'s pool.
pub fn pool_marker_line(template: u32) -> String {
    format!("{POOL_MARKER_PREFIX}{template}")
}

/// A pool member's hostname until it is claimed (a claim renames it after its server).
pub fn pool_hostname(vmid: u32) -> String {
    format!("zlh-pool-{vmid}")
}

/// The template named by a pool marker: the description line, present from the clone call on
/// (the tag alone does not name the template).
pub fn pool_marker_in(description: &str) -> Option<u32> {
    description
        .lines()
        .find_map(|l| l.trim().strip_prefix(POOL_MARKER_PREFIX.trim_end()))
        .and_then(|s| s.trim().parse().ok())
}

/// Whether the container at `vmid` is a pool member of ours: the pool tag, or (before the
/// first config write) the pool's description marker with the pool hostname of that VMID.
pub fn is_pool_member(
    tags: &[String],
    description: &str,
    hostname: Option<&str>,
    vmid: u32,
) -> bool {
    if pool_marker_in(description).is_none() {
        return false;
    }
    tags.iter().any(|t| t == POOL_TAG) || hostname == Some(pool_hostname(vmid).as_str())
}

/// The tag that marks a container as `id`'s.
pub fn marker_tag(id: ServerId) -> String {
    format!("{MARKER_TAG_PREFIX}{}", id.0.hyphenated())
}

/// Whether `tags` hold `id`'s marker tag, without building it: the resync asks this of every
/// server each time.
pub fn has_marker_tag(tags: &[String], id: ServerId) -> bool {
    let mut buf = uuid::Uuid::encode_buffer();
    let want = id.0.hyphenated().encode_lower(&mut buf);
    tags.iter()
        .any(|t| t.strip_prefix(MARKER_TAG_PREFIX) == Some(want))
}

/// The description line that marks a container as `id`'s.
pub fn marker_line(id: ServerId) -> String {
    format!("{MARKER_PREFIX}{id}")
}

/// The server id named by a container's tags or description, if any.
pub fn marker_in(tags: &[String], description: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(MARKER_TAG_PREFIX).filter(|s| s.len() == 36))
        .map(str::to_string)
        .or_else(|| {
            description
                .lines()
                .find_map(|l| l.trim().strip_prefix(MARKER_PREFIX.trim_end()))
                .map(|s| s.trim().to_string())
        })
}

/// A container's hostname follows its kind, variant and VMID.
pub fn hostname(kind: Kind, variant: Option<Variant>, vmid: u32) -> String {
    match (kind, variant) {
        (Kind::Game, Some(v)) => format!("mc-{v}-{vmid}"),
        (Kind::Game, None) => format!("mc-{vmid}"),
        (Kind::Dev, _) => format!("dev-{vmid}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    Foreign,
}

impl ContainerObs {
    /// Ours if it carries our tag, or (before the first config write) our description marker
    /// at our reserved VMID with the hostname we gave it, or it is the pool member this
    /// server claimed (the store moved its VMID to us) still carrying the pool's marker.
    pub fn ownership(&self, d: &Desired) -> Ownership {
        if has_marker_tag(&self.tags, d.id) {
            return Ownership::Ours;
        }
        if let Some(vmid) = d.pool_claim
            && d.vmid == Some(vmid)
            && is_pool_member(
                &self.tags,
                &self.description,
                self.hostname.as_deref(),
                vmid,
            )
        {
            return Ownership::Ours;
        }
        let line = marker_line(d.id);
        let described = self.description.lines().any(|l| l.trim() == line);
        if described && self.hostname.is_some() && self.hostname == d.hostname {
            Ownership::Ours
        } else {
            Ownership::Foreign
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ServerId {
        "0190f0f0-0000-7000-8000-000000000001".parse().unwrap()
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(marker_in(&[marker_tag(id())], ""), Some(id().to_string()));
        assert!(has_marker_tag(&["zlh".into(), marker_tag(id())], id()));
        let other = ServerId(uuid::Uuid::now_v7());
        assert!(
            !has_marker_tag(&[marker_tag(other)], id()),
            "another server's marker is not ours"
        );
        assert_eq!(
            marker_in(&[], &format!("{}\n", marker_line(id()))),
            Some(id().to_string())
        );
        assert_eq!(marker_in(&["zlh".into()], "hello"), None);
        assert_eq!(
            marker_in(&["zlh".into(), POOL_TAG.into()], &pool_marker_line(900)),
            None,
            "a pool member names no server"
        );
    }

    #[test]
    fn pool_membership_table() {
        let line = pool_marker_line(900);
        let host = pool_hostname(5000);
        let tagged = vec![FLEET_TAG.to_string(), POOL_TAG.to_string()];
        /// (why, tags, description, hostname, a pool member?)
        type Case<'a> = (&'a str, &'a [String], &'a str, Option<&'a str>, bool);
        let cases: &[Case] = &[
            ("tagged and described", &tagged, &line, None, true),
            (
                "before the first config write: marker and hostname",
                &[],
                &line,
                Some(&host),
                true,
            ),
            (
                "marker with another hostname is not proof",
                &[],
                &line,
                Some("mc-5000"),
                false,
            ),
            (
                "the tag without the marker line is not proof",
                &tagged,
                "",
                Some(&host),
                false,
            ),
            (
                "a server's marker is not a pool's",
                &[],
                "zlh-server-id: x",
                Some(&host),
                false,
            ),
        ];
        for (why, tags, desc, hostname, want) in cases {
            assert_eq!(is_pool_member(tags, desc, *hostname, 5000), *want, "{why}");
        }
        assert_eq!(pool_marker_in(&format!("x\n{line}\n")), Some(900));
    }
}
