//! `ServerSpec`: what a customer wants, and its validation.
//!
//! Validation is pure and names the field of every problem, so the API can answer 422 with
//! all of them at once. Whether a variant/version is *offered* is the catalog's business
//! (configured templates); here we only check shape and bounds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Resource bounds, with the reason for each.
pub mod bounds {
    /// One core is the least a JVM server is usable with; 16 is the largest host plan.
    pub const CORES: (u32, u32) = (1, 16);
    /// Below 512 MiB Minecraft does not start; 64 GiB is the largest host plan.
    pub const MEMORY_MIB: (u32, u32) = (512, 65_536);
    /// Templates are 4 GiB; 1 TiB is the largest volume the storage pools are sized for.
    pub const DISK_GIB: (u32, u32) = (4, 1024);
    pub const WORLD_MAX_LEN: usize = 32;
    pub const RUNTIME_MAX_LEN: usize = 32;
    pub const VERSION_MAX_LEN: usize = 32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Game,
    Dev,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Game => "game",
            Kind::Dev => "dev",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "game" => Ok(Kind::Game),
            "dev" => Ok(Kind::Dev),
            other => Err(format!("unknown kind '{other}' (expected game or dev)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Vanilla,
    Paper,
    Purpur,
    Fabric,
    Forge,
    Neoforge,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::Vanilla,
        Variant::Paper,
        Variant::Purpur,
        Variant::Fabric,
        Variant::Forge,
        Variant::Neoforge,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Vanilla => "vanilla",
            Variant::Paper => "paper",
            Variant::Purpur => "purpur",
            Variant::Fabric => "fabric",
            Variant::Forge => "forge",
            Variant::Neoforge => "neoforge",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown variant '{s}'"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    #[default]
    Running,
    Stopped,
}

/// Whether the game process inside the container should run (game servers only); the
/// container's own power is [`Power`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    #[default]
    Running,
    Stopped,
}

/// Restart requests. Each increment asks for one restart, so a restart is a spec change:
/// idempotent and surviving crashes, like `kubectl rollout restart`. Only the API increments
/// them; the status records the counts already carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restarts {
    /// Game process restarts (the Agent's `POST /restart`).
    #[serde(default)]
    pub game: u64,
    /// Container reboots (Proxmox `status/reboot`).
    #[serde(default)]
    pub container: u64,
}

impl Restarts {
    pub fn is_zero(&self) -> bool {
        *self == Restarts::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
}

impl Default for Resources {
    /// The Portal's default plan: 2 cores, 2 GiB, 16 GiB disk.
    fn default() -> Self {
        Resources {
            cores: 2,
            memory_mib: 2048,
            disk_gib: 16,
        }
    }
}

/// The desired server. Flat (not a tagged enum) so that unknown fields are rejected by serde
/// and kind-specific fields are checked with field-named errors by `validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    pub kind: Kind,
    /// Game servers only: the game (`minecraft`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<String>,
    /// Game servers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
    /// Game version (`1.21.7`) or runtime version for dev containers.
    pub version: String,
    /// Game servers only: the world name (default `world`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    /// Dev containers only: the runtime (`node`, `python`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default)]
    pub resources: Resources,
    /// The container's power.
    #[serde(default)]
    pub power: Power,
    /// Game servers only: whether the game process runs (absent: `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Restarts::is_zero")]
    pub restarts: Restarts,
}

/// One problem with one field; `field` is the JSON path (`resources.memoryMib`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub const GAME_MINECRAFT: &str = "minecraft";

impl ServerSpec {
    pub fn minecraft(variant: Variant, version: &str) -> Self {
        ServerSpec {
            kind: Kind::Game,
            game: Some(GAME_MINECRAFT.into()),
            variant: Some(variant),
            version: version.into(),
            world: Some("world".into()),
            runtime: None,
            resources: Resources::default(),
            power: Power::Running,
            process: None,
            restarts: Restarts::default(),
        }
    }

    pub fn dev(runtime: &str, version: &str) -> Self {
        ServerSpec {
            kind: Kind::Dev,
            game: None,
            variant: None,
            version: version.into(),
            world: None,
            runtime: Some(runtime.into()),
            resources: Resources::default(),
            power: Power::Running,
            process: None,
            restarts: Restarts::default(),
        }
    }

    /// Whether the game process should run (a dev container's process always runs).
    pub fn process(&self) -> Process {
        self.process.unwrap_or_default()
    }

    /// The world name the Agent gets.
    pub fn world_or_default(&self) -> &str {
        self.world.as_deref().unwrap_or("world")
    }

    /// Every problem, field-named; empty means valid.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.into(),
                message,
            })
        };
        match self.kind {
            Kind::Game => {
                match self.game.as_deref() {
                    None => err("game", "is required for kind game".into()),
                    Some(GAME_MINECRAFT) => {}
                    Some(g) => err(
                        "game",
                        format!("unsupported game '{g}' (expected minecraft)"),
                    ),
                }
                if self.variant.is_none() {
                    err("variant", "is required for kind game".into());
                }
                if !is_minecraft_version(&self.version) {
                    err(
                        "version",
                        format!(
                            "'{}' is not a Minecraft release version like 1.21.7",
                            truncate(&self.version)
                        ),
                    );
                }
                if let Some(w) = &self.world
                    && !is_name(w, bounds::WORLD_MAX_LEN, |c| {
                        c.is_ascii_alphanumeric() || c == '_' || c == '-'
                    })
                {
                    err(
                        "world",
                        format!(
                            "must be 1-{} characters of letters, digits, '_' or '-'",
                            bounds::WORLD_MAX_LEN
                        ),
                    );
                }
                if self.runtime.is_some() {
                    err("runtime", "is only allowed for kind dev".into());
                }
            }
            Kind::Dev => {
                if self.process.is_some() {
                    err("process", "is only allowed for kind game".into());
                }
                match self.runtime.as_deref() {
                    None => err("runtime", "is required for kind dev".into()),
                    Some(r)
                        if !is_name(r, bounds::RUNTIME_MAX_LEN, |c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                        }) || !r.starts_with(|c: char| c.is_ascii_lowercase()) =>
                    {
                        err(
                            "runtime",
                            format!(
                                "must start with a lowercase letter and be 1-{} characters of a-z, 0-9 or '-'",
                                bounds::RUNTIME_MAX_LEN
                            ),
                        )
                    }
                    Some(_) => {}
                }
                if !is_name(&self.version, bounds::VERSION_MAX_LEN, |c| {
                    c.is_ascii_alphanumeric() || c == '.' || c == '-'
                }) {
                    err(
                        "version",
                        format!(
                            "must be 1-{} characters of letters, digits, '.' or '-'",
                            bounds::VERSION_MAX_LEN
                        ),
                    );
                }
                for (field, present) in [
                    ("game", self.game.is_some()),
                    ("variant", self.variant.is_some()),
                    ("world", self.world.is_some()),
                ] {
                    if present {
                        err(field, "is only allowed for kind game".into());
                    }
                }
            }
        }
        let r = &self.resources;
        for (field, value, (lo, hi)) in [
            ("resources.cores", r.cores, bounds::CORES),
            ("resources.memoryMib", r.memory_mib, bounds::MEMORY_MIB),
            ("resources.diskGib", r.disk_gib, bounds::DISK_GIB),
        ] {
            if value < lo || value > hi {
                err(field, format!("{value} is outside {lo}..={hi}"));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

fn is_name(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(allowed)
}

/// `1.N` or `1.N.M` with small numbers; snapshots and pre-releases are not offered.
fn is_minecraft_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts[0] == "1"
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

/// Echo at most a little of bad input back, so errors stay readable.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The Minecraft minor version (`21` for `1.21.7`), used to pick the Java runtime.
pub fn minecraft_minor(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn game() -> ServerSpec {
        ServerSpec::minecraft(Variant::Paper, "1.21.7")
    }

    #[test]
    fn validation_table() {
        type Case = (&'static str, fn(&mut ServerSpec), Option<&'static str>);
        let cases: &[Case] = &[
            ("a default game spec is valid", |_| {}, None),
            (
                "game requires variant",
                |s| s.variant = None,
                Some("variant"),
            ),
            (
                "only minecraft is offered",
                |s| s.game = Some("doom".into()),
                Some("game"),
            ),
            (
                "snapshots are not release versions",
                |s| s.version = "24w14a".into(),
                Some("version"),
            ),
            (
                "versions need a minor",
                |s| s.version = "1".into(),
                Some("version"),
            ),
            (
                "world names are path-safe",
                |s| s.world = Some("../etc".into()),
                Some("world"),
            ),
            (
                "runtime is dev-only",
                |s| s.runtime = Some("node".into()),
                Some("runtime"),
            ),
            (
                "memory has a floor",
                |s| s.resources.memory_mib = 128,
                Some("resources.memoryMib"),
            ),
            (
                "cores have a ceiling",
                |s| s.resources.cores = 99,
                Some("resources.cores"),
            ),
            (
                "disk has a floor",
                |s| s.resources.disk_gib = 1,
                Some("resources.diskGib"),
            ),
            (
                "dev needs a runtime",
                |s| {
                    *s = ServerSpec {
                        runtime: None,
                        ..ServerSpec::dev("node", "22")
                    }
                },
                Some("runtime"),
            ),
            (
                "dev rejects game fields",
                |s| {
                    *s = ServerSpec {
                        world: Some("w".into()),
                        ..ServerSpec::dev("node", "22")
                    }
                },
                Some("world"),
            ),
            (
                "dev runtime is lowercase",
                |s| *s = ServerSpec::dev("Node", "22"),
                Some("runtime"),
            ),
            (
                "a game's process may be stopped",
                |s| s.process = Some(Process::Stopped),
                None,
            ),
            (
                "a dev container has no game process to name",
                |s| {
                    *s = ServerSpec {
                        process: Some(Process::Running),
                        ..ServerSpec::dev("node", "22")
                    }
                },
                Some("process"),
            ),
        ];
        for (reason, mutate, field) in cases {
            let mut s = game();
            mutate(&mut s);
            let got = s.validate();
            match field {
                None => assert!(got.is_ok(), "{reason}: {got:?}"),
                Some(f) => {
                    let errs = got.expect_err(reason);
                    assert!(errs.iter().any(|e| e.field == *f), "{reason}: {errs:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<ServerSpec>(
            r#"{"kind":"game","game":"minecraft","variant":"paper","version":"1.21.7","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn json_is_camel_case() {
        let v = serde_json::to_value(game()).unwrap();
        assert_eq!(v["resources"]["memoryMib"], 2048);
        assert_eq!(v["power"], "running");
    }

    fn arb_spec() -> impl Strategy<Value = ServerSpec> {
        let game = (
            proptest::sample::select(Variant::ALL.to_vec()),
            1u32..30,
            0u32..12,
            "[a-z_]{1,12}",
            1u32..=16,
            512u32..=65536,
            4u32..=1024,
            any::<bool>(),
        )
            .prop_map(
                |(v, minor, patch, world, cores, mem, disk, on)| ServerSpec {
                    world: Some(world),
                    resources: Resources {
                        cores,
                        memory_mib: mem,
                        disk_gib: disk,
                    },
                    power: if on { Power::Running } else { Power::Stopped },
                    ..ServerSpec::minecraft(v, &format!("1.{minor}.{patch}"))
                },
            );
        let dev = ("[a-z][a-z0-9-]{0,10}", "[0-9]{1,2}(\\.[0-9]{1,2})?")
            .prop_map(|(rt, ver)| ServerSpec::dev(&rt, &ver));
        prop_oneof![game, dev]
    }

    proptest! {
        #[test]
        fn generated_valid_specs_validate_and_round_trip(spec in arb_spec()) {
            prop_assert!(spec.validate().is_ok(), "{:?}", spec.validate());
            let json = serde_json::to_string(&spec).unwrap();
            let back: ServerSpec = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, spec);
        }

        #[test]
        fn out_of_range_memory_is_always_named(mem in prop_oneof![0u32..512, 65537u32..u32::MAX]) {
            let mut s = game();
            s.resources.memory_mib = mem;
            let errs = s.validate().unwrap_err();
            prop_assert!(errs.iter().any(|e| e.field == "resources.memoryMib"));
        }

        #[test]
        fn arbitrary_json_never_panics(s in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ServerSpec>(&s).map(|spec| spec.validate());
        }
    }
}
