//! `Server`: one desired server with its observed status.

use crate::{Phase, ServerId, ServerSpec, ServerStatus, Step};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Serialised with the derived, read-only `phase` and `step` ([`Server::phase`]) besides the
/// stored fields, so no client re-derives them; both are ignored when read back. (`remote =
/// "Self"` makes the derives inherent functions that the impls below wrap; the OpenAPI
/// schema gains both fields in `api/src/openapi.rs`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Server {
    pub id: ServerId,
    pub customer_id: String,
    pub spec: ServerSpec,
    /// Bumped on every spec change.
    pub generation: i64,
    /// Bumped on every write of the row (the change-feed sequence of that write); used for
    /// optimistic concurrency and to resume a watch.
    pub resource_version: i64,
    /// The VMID reserved for this server in the store (the source of truth for identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_requested_at: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Set by `reconcile?retry=true`: clears a terminal failure older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: ServerStatus,
}

impl Serialize for Server {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WithDerived<'a> {
            #[serde(flatten, serialize_with = "stored")]
            server: &'a Server,
            phase: Phase,
            #[serde(skip_serializing_if = "Option::is_none")]
            step: Option<Step>,
        }
        fn stored<S: serde::Serializer>(server: &&Server, s: S) -> Result<S::Ok, S::Error> {
            Server::serialize(server, s)
        }
        let (phase, step) = self.phase();
        WithDerived {
            server: self,
            phase,
            step,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Server {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Server::deserialize(d)
    }
}

impl Server {
    pub fn phase(&self) -> (Phase, Option<Step>) {
        self.status
            .phase(self.generation, self.deletion_requested_at.is_some())
    }

    pub fn is_deleting(&self) -> bool {
        self.deletion_requested_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConditionStatus, ConditionType, Variant};

    fn server(deleting: bool) -> Server {
        let t = Utc::now();
        Server {
            id: ServerId::new(),
            customer_id: "u1".into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            generation: 1,
            resource_version: 3,
            reserved_vmid: None,
            deletion_requested_at: deleting.then_some(t),
            paused: false,
            retry_requested_at: None,
            created_at: t,
            updated_at: t,
            status: ServerStatus::default(),
        }
    }

    #[test]
    fn json_carries_the_derived_phase_and_step_and_reads_back() {
        type Case = (&'static str, Server, &'static str, Option<&'static str>);
        let mut ready = server(false);
        ready.status.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "Ready",
            "",
            1,
            Utc::now(),
        );
        let cases: Vec<Case> = vec![
            (
                "no conditions: queued, allocating",
                server(false),
                "queued",
                Some("allocate-vmid"),
            ),
            (
                "deleting: teardown",
                server(true),
                "deleting",
                Some("teardown"),
            ),
            ("ready: no step", ready, "ready", None),
        ];
        for (reason, s, phase, step) in cases {
            let v = serde_json::to_value(&s).unwrap();
            assert_eq!(v["phase"], phase, "{reason}: {v}");
            assert_eq!(v["step"].as_str(), step, "{reason}: {v}");
            assert_eq!(v["resourceVersion"], 3, "{reason}: the stored fields stay");
            let back: Server = serde_json::from_value(v).unwrap();
            assert_eq!(
                back, s,
                "{reason}: the derived fields are ignored when read"
            );
        }
    }
}
