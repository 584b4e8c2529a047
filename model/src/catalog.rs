//! The catalog: what can be built, and from which Proxmox template. Configured once (the
//! controller's `[[templates]]`), served to the Portal's create form by the API, and used by the
//! controller to pick the template to clone.

use crate::{Kind, ServerSpec, Variant};
use serde::{Deserialize, Serialize};

/// One template container and what it can become.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Template {
    pub kind: Kind,
    /// Game templates: the variants this template serves.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Dev templates: the runtime it serves.
    #[serde(default)]
    pub runtime: Option<String>,
    /// Versions offered (game versions or runtime versions).
    pub versions: Vec<String>,
    pub node: String,
    pub vmid: u32,
    /// How Proxmox copies the template (TOML key `clone`): `full` (the default, as the
    /// previous system) or `linked` (storage with snapshots only; docs/proxmox-api.md).
    #[serde(rename = "clone", default)]
    pub clone_mode: CloneMode,
    /// Target storage of a full clone; absent: the template's own storage. Proxmox refuses it
    /// with a linked clone (`Config::validate` does too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Warm pool (docs/pools.md): containers kept cloned from this template, stopped, for new
    /// servers to claim at once. 0 (the default): every server clones on demand; lowering it
    /// destroys surplus unclaimed members, removing it drains the pool.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pool: u32,
    /// Members older than this are replaced in the background; absent: the controller's
    /// `pool_max_age` (`[controller]`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub pool_max_age: Option<std::time::Duration>,
    /// The template's image version as the operator names it: members made under another
    /// version are replaced (as are members made before the template's config changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How a container is cloned from its template.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CloneMode {
    /// A copy of every disk: works on any storage, holds the template's `disk` lock for the
    /// whole copy (about 20 s for a game template).
    #[default]
    Full,
    /// A copy-on-write clone of the template's base volume: seconds, but only on storage with
    /// snapshot support (LVM-thin, ZFS, Ceph RBD, ...), and always on the template's storage.
    Linked,
}

impl CloneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CloneMode::Full => "full",
            CloneMode::Linked => "linked",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub templates: Vec<Template>,
}

impl Catalog {
    /// The template that builds this spec, if the catalog offers it.
    pub fn template_for(&self, spec: &ServerSpec) -> Option<&Template> {
        self.templates.iter().find(|t| {
            t.kind == spec.kind
                && t.versions.iter().any(|v| v == &spec.version)
                && match spec.kind {
                    Kind::Game => spec.variant.is_some_and(|v| t.variants.contains(&v)),
                    Kind::Dev => t.runtime.is_some() && t.runtime == spec.runtime,
                }
        })
    }

    /// Game variants with their versions, in catalog order, merged across templates.
    pub fn game_variants(&self) -> Vec<(Variant, Vec<String>)> {
        let mut out: Vec<(Variant, Vec<String>)> = Vec::new();
        for t in self.templates.iter().filter(|t| t.kind == Kind::Game) {
            for v in &t.variants {
                let entry = match out.iter_mut().find(|(x, _)| x == v) {
                    Some(e) => e,
                    None => {
                        out.push((*v, Vec::new()));
                        out.last_mut().expect("just pushed")
                    }
                };
                for ver in &t.versions {
                    if !entry.1.contains(ver) {
                        entry.1.push(ver.clone());
                    }
                }
            }
        }
        out
    }

    /// Dev runtimes with their versions.
    pub fn dev_runtimes(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.templates.iter().filter(|t| t.kind == Kind::Dev) {
            let Some(rt) = &t.runtime else { continue };
            match out.iter_mut().find(|(x, _)| x == rt) {
                Some(e) => {
                    for ver in &t.versions {
                        if !e.1.contains(ver) {
                            e.1.push(ver.clone());
                        }
                    }
                }
                None => out.push((rt.clone(), t.versions.clone())),
            }
        }
        out
    }

    /// A small catalog for `zlhd dev`, tests and simulators: one game template per variant
    /// group and two dev runtimes on node `pve`.
    pub fn example() -> Self {
        let mc: Vec<String> = ["1.20.4", "1.21.1", "1.21.7"].map(String::from).to_vec();
        Catalog {
            templates: vec![
                Template {
                    kind: Kind::Game,
                    variants: vec![Variant::Vanilla, Variant::Paper, Variant::Purpur],
                    runtime: None,
                    versions: mc.clone(),
                    node: "pve".into(),
                    clone_mode: CloneMode::Full,
                    storage: None,
                    pool: 0,
                    pool_max_age: None,
                    version: None,
                    vmid: 900,
                },
                Template {
                    kind: Kind::Game,
                    variants: vec![Variant::Fabric, Variant::Forge, Variant::Neoforge],
                    runtime: None,
                    versions: mc,
                    node: "pve".into(),
                    clone_mode: CloneMode::Full,
                    storage: None,
                    pool: 0,
                    pool_max_age: None,
                    version: None,
                    vmid: 901,
                },
                Template {
                    kind: Kind::Dev,
                    variants: vec![],
                    runtime: Some("node".into()),
                    versions: vec!["20".into(), "22".into()],
                    node: "pve".into(),
                    clone_mode: CloneMode::Full,
                    storage: None,
                    pool: 0,
                    pool_max_age: None,
                    version: None,
                    vmid: 910,
                },
                Template {
                    kind: Kind::Dev,
                    variants: vec![],
                    runtime: Some("python".into()),
                    versions: vec!["3.12".into(), "3.13".into()],
                    node: "pve".into(),
                    clone_mode: CloneMode::Full,
                    storage: None,
                    pool: 0,
                    pool_max_age: None,
                    version: None,
                    vmid: 911,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_lookup_table() {
        let c = Catalog::example();
        let cases: &[(&str, ServerSpec, Option<u32>)] = &[
            (
                "paper comes from the first game template",
                ServerSpec::minecraft(Variant::Paper, "1.21.7"),
                Some(900),
            ),
            (
                "forge comes from the modded template",
                ServerSpec::minecraft(Variant::Forge, "1.20.4"),
                Some(901),
            ),
            (
                "an unoffered version has no template",
                ServerSpec::minecraft(Variant::Paper, "1.8.9"),
                None,
            ),
            (
                "dev runtimes match by name and version",
                ServerSpec::dev("python", "3.12"),
                Some(911),
            ),
            (
                "an unknown runtime has no template",
                ServerSpec::dev("ruby", "3"),
                None,
            ),
        ];
        for (reason, spec, want) in cases {
            assert_eq!(c.template_for(spec).map(|t| t.vmid), *want, "{reason}");
        }
    }

    #[test]
    fn variants_merge_versions() {
        let v = Catalog::example().game_variants();
        assert_eq!(v.len(), 6);
        assert!(v.iter().all(|(_, vers)| vers.len() == 3));
    }
}
