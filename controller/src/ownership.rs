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
    /// at our reserved VMID with the hostname we gave it.
    pub fn ownership(&self, d: &Desired) -> Ownership {
        if has_marker_tag(&self.tags, d.id) {
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
    }
}
