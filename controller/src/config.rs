//! zlhd configuration: a TOML file plus `ZLH_*` environment overrides
//! (`ZLH_CONTROLLER__WORKERS=32` sets `controller.workers`; `ZLH_DATABASE_URL` the top-level key).
//!
//! Every default lives in the `Default` impls below, each with its reason. Secrets are never in
//! the file or argv: `*_file` keys name a file (or a systemd credential under
//! `$CREDENTIALS_DIRECTORY`), read at start-up into `SecretString`s.

use model::{Catalog, Kind, Template};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Invalid(String),
    #[error("config: cannot read secret {key} from {path}: {reason}")]
    Secret {
        key: &'static str,
        path: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://path/zlh.db` (one controller) or `postgres://...` (any number of replicas).
    pub database_url: String,
    /// Read the URL from this file instead (a PostgreSQL URL carries a password): a path, or
    /// a systemd credential name.
    pub database_url_file: Option<PathBuf>,
    /// Names this process in leases and heartbeats; empty = `<hostname>-<pid>`.
    pub replica_id: String,
    /// Connection pools: sizes and timeouts (defaults documented in the model crate).
    pub database: model::store::StoreOptions,
    pub api: ApiSection,
    pub controller: ControllerSection,
    /// `[retention]`: how long history is kept (`controller/src/retention.rs`).
    pub retention: RetentionSection,
    pub vmids: VmidSection,
    pub network: NetworkSection,
    pub edge: EdgeSection,
    pub proxmox: ProxmoxSection,
    pub agent: AgentSection,
    pub technitium: Option<TechnitiumSection>,
    pub cloudflare: Option<CloudflareSection>,
    pub velocity: Option<VelocitySection>,
    /// What can be built, and from which template (also the Portal's catalog).
    pub templates: Vec<Template>,
    /// The exporters Prometheus service discovery lists (defaults in the api crate).
    pub sd: api::config::SdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // A file next to the working directory: the zero-set-up default.
            database_url: "sqlite://zlh-data/zlh.db".into(),
            database_url_file: None,
            replica_id: String::new(),
            database: model::store::StoreOptions::default(),
            api: ApiSection::default(),
            controller: ControllerSection::default(),
            retention: RetentionSection::default(),
            vmids: VmidSection::default(),
            network: NetworkSection::default(),
            edge: EdgeSection::default(),
            proxmox: ProxmoxSection::default(),
            agent: AgentSection::default(),
            technitium: None,
            cloudflare: None,
            velocity: None,
            templates: Catalog::example().templates,
            sd: api::config::SdConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Loopback by default: exposing the API is a deliberate choice.
    pub listen: SocketAddr,
    /// Body size, timeouts, rate limits, page sizes (defaults documented in the api crate).
    pub limits: api::config::ApiConfig,
    /// Browser origins allowed to call the API (CORS, `api/src/cors.rs`). Empty: no browser
    /// access, which is a deliberate choice to make.
    pub cors_origins: Vec<String>,
    /// The account service's JWTs (`api/src/identity.rs`); absent: zlh's own tokens only.
    pub identity: Option<api::identity::IdentityConfig>,
    /// Browser origins allowed to open a console (`api/src/console/mod.rs`); the API's own
    /// host is always allowed. Empty: only same-origin pages and clients that send no Origin.
    pub console_origins: Vec<String>,
    /// `[api.console]`: ticket lifetime and key, session limits (defaults with reasons in
    /// `api/src/console/mod.rs`).
    pub console: api::console::ConsoleConfig,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: api::config::ApiConfig::default(),
            cors_origins: Vec::new(),
            identity: None,
            console_origins: Vec::new(),
            console: Default::default(),
        }
    }
}

/// The engine's timings. Defaults are tuned for a real Proxmox cluster; `zlhd dev` and the
/// tests scale them down together with the simulators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerSection {
    /// Concurrent reconciles. Most time is spent waiting on Proxmox tasks (requeued, not
    /// blocking), so 16 keeps a large fleet moving without flooding pvedaemon.
    pub workers: usize,
    /// Full resync of every server (drift detection; covers lost notifications).
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    /// How often each Ready server's health is probed: the game's Server List Ping (its Agent
    /// is asked only when the game does not answer), a dev container's Agent status. A resync
    /// checks everything else about a Ready server in memory against the fleet snapshot; the
    /// probes are spread evenly over the resyncs of one interval, so each resync probes a
    /// fixed share of the fleet. 5 min bounds how long a crashed game still shows Ready.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Lease on a server while a replica works on it. Long enough to outlive a slow Proxmox
    /// call (30 s proxy timeout), short enough that a dead replica's servers move on quickly.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Per-server error backoff: first retry after `backoff_base`, doubling, capped at
    /// `backoff_max` (Crossplane uses 1 s → 60 s; Proxmox outages last minutes, so 5 min).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How often a running Proxmox task is checked (bpg and proxmoxer poll every 1-2 s).
    #[serde(with = "humantime_serde")]
    pub task_poll: Duration,
    /// How often the IP and the Agent are checked while waiting (the old system: 3 s).
    #[serde(with = "humantime_serde")]
    pub wait_poll: Duration,
    /// A template locked by another clone is retried after this (when the slot is not ours).
    #[serde(with = "humantime_serde")]
    pub lock_retry: Duration,
    /// How long after its start a container's DHCP client is expected to hold an address: the
    /// first `interfaces` read is made then, not right after the start.
    #[serde(with = "humantime_serde")]
    pub dhcp_expected: Duration,
    /// The longest pause between two `interfaces` reads while an address is late (the pause
    /// grows with the time since an address became plausible, up to this).
    #[serde(with = "humantime_serde")]
    pub ip_poll_max: Duration,
    /// Deadlines that turn a wait into a visible failure.
    #[serde(with = "humantime_serde")]
    pub clone_deadline: Duration,
    #[serde(with = "humantime_serde")]
    pub start_deadline: Duration,
    #[serde(with = "humantime_serde")]
    pub ip_deadline: Duration,
    #[serde(with = "humantime_serde")]
    pub agent_deadline: Duration,
    /// How long the game process may take to start (load its world) or stop (save it) before
    /// the wait turns into a failure.
    #[serde(with = "humantime_serde")]
    pub process_deadline: Duration,
    /// How long a teardown task (the stop, the destroy) may run before the server shows
    /// `Degraded` naming it. Teardown still waits for it: it never skips a step or forgets the
    /// container.
    #[serde(with = "humantime_serde")]
    pub teardown_deadline: Duration,
    /// Agent install errors retried in place before the server shows `failed`.
    pub agent_attempts: u32,
    /// Failed clone tasks (cleaned up each time) before the server shows `failed`.
    pub clone_attempts: u32,
    /// Untagged containers in zlh's VMID ranges whose config (description marker) a resync
    /// reads to find half-made clones that no server owns.
    pub orphan_config_reads: usize,
    /// Warm-pool members (docs/pools.md) older than this are replaced in the background,
    /// unless their template sets its own `pool_max_age`.
    #[serde(with = "humantime_serde")]
    pub pool_max_age: Duration,
    /// Graceful shutdown: how long in-flight reconciles may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long Proxmox lets a container shut down cleanly (the game saves its world) before
    /// it forces it off (`forceStop`). Passed to Proxmox, which runs on its own clock: not
    /// scaled by `scaled()`. Proxmox takes whole seconds.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `zlhd controller`'s own listener: `/metrics`, `/healthz` and `/readyz` (the split
    /// layout has no API in the process to serve them).
    pub metrics_listen: SocketAddr,
}

impl Default for ControllerSection {
    fn default() -> Self {
        ControllerSection {
            workers: 16,
            resync_interval: Duration::from_secs(60),
            health_interval: Duration::from_secs(5 * 60),
            lease_ttl: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            task_poll: Duration::from_secs(1),
            wait_poll: Duration::from_secs(3),
            lock_retry: Duration::from_secs(5),
            // A LAN DHCP server answers in well under a second; the container's init needs a
            // few seconds to bring eth0 up (the old system's first IP check came 3 s in).
            dhcp_expected: Duration::from_secs(5),
            // An address later than that is rare: a slow poll is enough, and bounded by
            // `ip_deadline` anyway.
            ip_poll_max: Duration::from_secs(15),
            // bpg allows 30 min for a full clone of a large template.
            clone_deadline: Duration::from_secs(30 * 60),
            start_deadline: Duration::from_secs(120),
            ip_deadline: Duration::from_secs(120),
            // The old system waited 10 min for the Agent; modded installs need more.
            agent_deadline: Duration::from_secs(15 * 60),
            // A large modded world loads in a few minutes.
            process_deadline: Duration::from_secs(10 * 60),
            // Destroying a large disk on slow storage takes minutes.
            teardown_deadline: Duration::from_secs(10 * 60),
            agent_attempts: 3,
            clone_attempts: 3,
            // A few calls per resync: a crash-left clone is found within a few minutes, and
            // a cluster full of foreign containers in our ranges does not cost much.
            orphan_config_reads: 16,
            // A stopped member misses the package updates a running server gets; a week
            // keeps the pool about as fresh as a weekly template rebuild, and replacing a
            // member costs one clone.
            pool_max_age: Duration::from_secs(7 * 24 * 3600),
            shutdown_grace: Duration::from_secs(20),
            // Proxmox's own default for a shutdown that may be forced; a Minecraft world
            // saves in seconds, a large modded one in well under a minute.
            shutdown_timeout: Duration::from_secs(60),
            // Loopback, next to the API's 8080: exposing it is a deliberate choice (a
            // Prometheus on another host needs the address set).
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

impl ControllerSection {
    /// Scale every timing by `factor` (for simulators running at scaled time). Deadlines are
    /// safety nets, not part of the pace: they never drop below `MIN_SCALED_DEADLINE`, so a
    /// busy machine running scaled simulators does not turn slowness into failures.
    ///
    /// Every field is named here, so a new one does not compile until it is either scaled or
    /// explicitly kept.
    pub fn scaled(&self, factor: f64) -> Self {
        const MIN_SCALED_DEADLINE: Duration = Duration::from_secs(10);
        let s = |d: Duration| d.mul_f64(factor);
        let deadline = |d: Duration| s(d).max(MIN_SCALED_DEADLINE.min(d));
        let ControllerSection {
            workers,
            resync_interval,
            health_interval,
            lease_ttl,
            backoff_base,
            backoff_max,
            task_poll,
            wait_poll,
            lock_retry,
            dhcp_expected,
            ip_poll_max,
            clone_deadline,
            start_deadline,
            ip_deadline,
            agent_deadline,
            process_deadline,
            teardown_deadline,
            agent_attempts,
            clone_attempts,
            orphan_config_reads,
            pool_max_age,
            shutdown_grace,
            shutdown_timeout,
            metrics_listen,
        } = *self;
        ControllerSection {
            // Counts, not timings.
            workers,
            agent_attempts,
            clone_attempts,
            orphan_config_reads,
            resync_interval: s(resync_interval),
            health_interval: s(health_interval),
            lease_ttl: s(lease_ttl),
            backoff_base: s(backoff_base),
            backoff_max: s(backoff_max),
            task_poll: s(task_poll),
            wait_poll: s(wait_poll),
            lock_retry: s(lock_retry),
            dhcp_expected: s(dhcp_expected),
            ip_poll_max: s(ip_poll_max),
            clone_deadline: deadline(clone_deadline),
            start_deadline: deadline(start_deadline),
            ip_deadline: deadline(ip_deadline),
            agent_deadline: deadline(agent_deadline),
            // An age on the engine's clock, like every timing.
            pool_max_age: s(pool_max_age),
            process_deadline: deadline(process_deadline),
            teardown_deadline: deadline(teardown_deadline),
            shutdown_grace: s(shutdown_grace),
            // Proxmox counts it on its own clock, which scaling ours does not change.
            shutdown_timeout,
            // An address.
            metrics_listen,
        }
    }

    /// How long a node's task listing answers "still running, or how did it end?" for every
    /// task waited on there: half a poll, so a task's end is seen at most half a poll later than a status
    /// read of its own would see it, for about two listings per poll per node.
    pub fn task_listing_max_age(&self) -> Duration {
        self.task_poll / 2
    }

    /// How often a task is looked at once it is due (what one like it took has passed) and
    /// still runs, and how fresh a listing must be to answer then: a quarter poll, so a clone
    /// hands its template on within about that of its end (a full poll would add up to one
    /// poll to every clone of a template's chain).
    pub fn task_near_end_poll(&self) -> Duration {
        self.task_poll / 4
    }

    /// How far past its expected duration a task's end may be seen and still count as "about
    /// as expected" (`TaskDurations`): half the near-end poll, so an end seen one near-end
    /// look later raises the expectation and one seen at the first look does not.
    pub fn task_learning_slack(&self) -> Duration {
        self.task_near_end_poll() / 2
    }

    /// The longest a task presumed running (not due by what one like it took) goes without a
    /// look: a third of the shortest hold on a template, so a long clone keeps renewing it.
    pub fn task_recheck_max(&self) -> Duration {
        self.template_hold_ttl().min(self.slot_holder_ttl()) / 3
    }

    /// How long one node's container listing answers for every server in flux there
    /// (presence, lock, tags, power): one wait poll, so a fleet of waiting servers costs one
    /// listing per node per poll instead of two reads per server.
    pub fn fleet_listing_max_age(&self) -> Duration {
        self.wait_poll
    }

    /// `/readyz` of the controller's listener fails once the last resync round (swept, or
    /// left to the replica holding the resync) is older than this: three intervals, so one
    /// slow round (a Proxmox call running into its timeout) does not take a replica out.
    pub fn readiness_resync_max_age(&self) -> Duration {
        self.resync_interval * 3
    }

    /// `shutdown_timeout` as Proxmox takes it (whole seconds; at least 1, since 0 would force
    /// the container off at once).
    pub fn shutdown_timeout_secs(&self) -> u32 {
        u32::try_from(self.shutdown_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// How long a fleet snapshot may stand in for per-server reads: two resync intervals, so
    /// one late or failed resync does not send the fleet back to per-server reads.
    pub fn snapshot_max_age(&self) -> Duration {
        self.resync_interval * 2
    }

    /// TTL of the fleet-wide hold on a template while a clone from it runs. The hold is
    /// renewed on every poll of the clone task, so it must outlive several polls and a lease
    /// hand-over to another replica; a holder lost without a release (its status wiped
    /// mid-clone) expires after it.
    pub fn template_hold_ttl(&self) -> Duration {
        (self.lease_ttl * 2).max(self.task_poll * 10)
    }

    /// The in-process `TemplateSlots`: a holder that has not asked for this long is presumed
    /// gone. Holders ask on every poll of their clone task; with several replicas the next
    /// poll may run elsewhere, so this outlives a lease hand-over and a few lock retries.
    pub fn slot_holder_ttl(&self) -> Duration {
        (self.lease_ttl * 2).max(self.lock_retry * 4)
    }

    /// The in-process `TemplateSlots`: a waiter that has not asked for this long is presumed
    /// gone. Waiters ask every `local_waiter_poll()`; three missed polls mean it is reconciled
    /// elsewhere (or deleted).
    pub fn slot_waiter_ttl(&self) -> Duration {
        self.local_waiter_poll() * 3
    }

    /// How often a server queued behind a clone in this process looks again on its own: only
    /// a safety net, since the slot's release wakes the next waiter. Polling faster would let
    /// a large queue of waiters crowd out the clone holders' own polls.
    pub fn local_waiter_poll(&self) -> Duration {
        self.lock_retry * 6
    }

    /// How often this replica heartbeats: three beats per lease TTL, so one late beat does not
    /// make a live replica look dead; at least 50 ms, so a scaled-down TTL does not turn the
    /// heartbeat into a busy loop on the store.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(50))
    }

    /// How often a server's lease is renewed while it is being reconciled: three renewals per
    /// TTL, so one slow store round-trip does not lose the lease.
    pub fn lease_renew_interval(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// TTL of the singleton claim of the resync: two intervals, so the claiming replica keeps
    /// it across one late round, and a dead replica's claim passes on within two.
    pub fn resync_claim_ttl(&self) -> Duration {
        self.resync_interval * 2
    }

    /// How often the warm-pool loop makes a pass (docs/pools.md): a task poll, since a pass
    /// mostly checks the clone tasks of refilling members, and a claim wakes it at once.
    pub fn pool_poll(&self) -> Duration {
        self.task_poll
    }

    /// How long a template's fingerprint (its config, read to find members made before it
    /// changed) is trusted: a resync interval, one config read per template per interval.
    pub fn template_fingerprint_max_age(&self) -> Duration {
        self.resync_interval
    }

    /// The longest a resync spends on health probes: a quarter of the interval, so a fleet of
    /// unreachable games cannot hold up the next resync (what is left over is reconciled
    /// instead).
    pub fn probe_budget(&self) -> Duration {
        self.resync_interval / 4
    }
}

/// `[retention]`: history the controller prunes (one replica at a time), in small batches so
/// no prune holds a lock for long. Server rows are never pruned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Off: nothing is ever pruned (the tables grow without bound).
    pub enabled: bool,
    /// How often a prune round runs. Growth between rounds is a few minutes' writes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows per batch (one short transaction each).
    pub batch: u32,
    /// Batches per table per round: bounds a round's work after a long pause; the rest
    /// waits for the next round.
    pub max_batches: u32,
    /// Change feed. A mirror or watch offline longer than this re-lists (SSE: 410 Gone). A
    /// week covers a long weekend of a stopped replica or a forgotten `zctl get -w`.
    #[serde(with = "humantime_serde")]
    pub change_feed: Duration,
    /// Newest events kept per server (`zctl describe` shows the last few dozen).
    pub events_per_server: u32,
    /// Newest events kept across all servers (a ceiling for a fleet of many short-lived
    /// servers: 200 events × 5,000 servers).
    pub events_total: u64,
    /// Finished operations (their server gone, or superseded). 30 days: far longer than an
    /// Idempotency-Key replays (24 h, which needs the operation) or a Portal polls one.
    #[serde(with = "humantime_serde")]
    pub operations: Duration,
    /// Events and operations of a deleted server, from its deletion (at most as long as
    /// the archive: its row leads the prune to them). 30 days, as finished operations: a
    /// month of questions about a deleted server's last days; without it they went only by
    /// `events_total`. At least 24h, as long as an Idempotency-Key replays.
    #[serde(with = "humantime_serde")]
    pub deleted_servers: Duration,
    /// Archived (deleted) servers: what support asks about a server deleted last month.
    #[serde(with = "humantime_serde")]
    pub archive: Duration,
    /// The audit log (who asked for which change): a year, for questions about last
    /// season's incidents and for yearly reviews.
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            enabled: true,
            interval: Duration::from_secs(5 * 60),
            batch: 500,
            max_batches: 20,
            change_feed: Duration::from_secs(7 * 24 * 3600),
            events_per_server: 200,
            events_total: 1_000_000,
            operations: Duration::from_secs(30 * 24 * 3600),
            deleted_servers: Duration::from_secs(30 * 24 * 3600),
            archive: Duration::from_secs(90 * 24 * 3600),
            audit: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

impl RetentionSection {
    /// The prune singleton outlives one round by a margin, so a live holder keeps it and a
    /// dead one's is taken over after two intervals.
    pub fn singleton_ttl(&self) -> Duration {
        self.interval * 2
    }

    /// A deleted server's events and operations go no later than its archive row, which
    /// leads the prune to them.
    pub fn deleted_servers_kept(&self) -> Duration {
        self.deleted_servers.min(self.archive)
    }

    /// What one round prunes, in order (a deleted server's events and operations before
    /// its archive row, which goes only once they have).
    pub fn targets(&self) -> [model::store::Prune; 8] {
        use model::store::Prune;
        [
            Prune::ChangeFeed {
                keep_for: self.change_feed,
            },
            Prune::EventsPerServer {
                keep: self.events_per_server,
            },
            Prune::Events {
                keep: self.events_total,
            },
            Prune::Operations {
                keep_for: self.operations,
            },
            Prune::EventsOfDeleted {
                keep_for: self.deleted_servers_kept(),
            },
            Prune::OperationsOfDeleted {
                keep_for: self.deleted_servers_kept(),
            },
            Prune::Archive {
                keep_for: self.archive,
            },
            Prune::Audit {
                keep_for: self.audit,
            },
        ]
    }
}

/// VMID ranges per kind, as in production today (game 5000s, dev 6000s).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmidSection {
    pub game: [u32; 2],
    pub dev: [u32; 2],
}

impl Default for VmidSection {
    fn default() -> Self {
        VmidSection {
            game: [5000, 5999],
            dev: [6000, 6999],
        }
    }
}

impl VmidSection {
    pub fn range(&self, kind: Kind) -> model::store::VmidRange {
        let [min, max] = match kind {
            Kind::Game => self.game,
            Kind::Dev => self.dev,
        };
        model::store::VmidRange { min, max }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Bridges per kind, as configured on the Proxmox nodes today.
    pub game_bridge: String,
    pub dev_bridge: String,
    /// Swap given to every container (MiB).
    pub swap_mib: u32,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            game_bridge: "vmbr3".into(),
            dev_bridge: "vmbr2".into(),
            swap_mib: 512,
        }
    }
}

impl NetworkSection {
    pub fn bridge(&self, kind: Kind) -> &str {
        match kind {
            Kind::Game => &self.game_bridge,
            Kind::Dev => &self.dev_bridge,
        }
    }
}

/// Where players reach game servers: DNS points at the proxy, the proxy at the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSection {
    pub zone: String,
    /// The Velocity proxy's address inside the network (Technitium A records).
    pub internal_ip: Ipv4Addr,
    /// The public edge address (Cloudflare A records).
    pub public_ip: Ipv4Addr,
    /// The proxy's public port (SRV records).
    pub proxy_port: u16,
}

impl Default for EdgeSection {
    fn default() -> Self {
        EdgeSection {
            zone: "zerolaghub.quest".into(),
            internal_ip: Ipv4Addr::new(127, 0, 0, 1),
            public_ip: Ipv4Addr::new(127, 0, 0, 1),
            proxy_port: 25565,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxmoxSection {
    /// Empty means "no Proxmox configured" (only valid with `zlhd dev`, which simulates it).
    pub url: String,
    /// `user@realm!tokenid`.
    pub token_id: String,
    pub token_secret_file: Option<PathBuf>,
    /// PEM file of the cluster CA (`/etc/pve/pve-root-ca.pem`).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the node certificate (`pvenode cert info`).
    pub fingerprint: Option<String>,
    /// Skip certificate checks. Logged loudly; never a default.
    pub insecure: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// pveproxy gives up on pvedaemon after 30 s; wait a little longer than that.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Outgoing requests per second per node.
    pub rate_per_node: u32,
}

impl Default for ProxmoxSection {
    fn default() -> Self {
        ProxmoxSection {
            url: String::new(),
            token_id: String::new(),
            token_secret_file: None,
            ca_file: None,
            fingerprint: None,
            insecure: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(35),
            rate_per_node: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// The in-container Agent's port (`ZLH_AGENT_PORT` in the container).
    pub port: u16,
    /// The Minecraft port inside the container (Server List Ping, proxy registration).
    pub game_port: u16,
    pub token_file: Option<PathBuf>,
    /// Key from which each server's admin password is derived (stable across restarts, so
    /// nothing secret is stored in the status).
    pub admin_secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Outgoing requests per second to all Agents together.
    pub requests_per_sec: u32,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            port: 18888,
            game_port: 25565,
            token_file: None,
            admin_secret_file: None,
            timeout: Duration::from_secs(5),
            // Status polls of a fleet in flux; each Agent is its own host, so this only
            // bounds the controller's own fan-out.
            requests_per_sec: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnitiumSection {
    pub url: String,
    pub token_file: PathBuf,
    /// Outgoing pacing; one DNS server also answers the whole network's queries.
    #[serde(default = "TechnitiumSection::default_requests_per_sec")]
    pub requests_per_sec: u32,
    /// Whole-request timeout of each call.
    #[serde(
        default = "TechnitiumSection::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

/// 50 requests/s: a burst of provisioning or a resync never floods a DNS server or the proxy
/// bridge, and a 1,000-server fleet still publishes in well under a minute.
const DEFAULT_EDGE_REQUESTS_PER_SEC: u32 = 50;

/// 10 s: a record change or a registration is one small request to a service on the local
/// network (or Cloudflare's API); one that takes longer is failing, and the reconcile retries
/// with backoff instead of holding a worker.
const DEFAULT_EDGE_TIMEOUT: Duration = Duration::from_secs(10);

impl TechnitiumSection {
    pub const DEFAULT_REQUESTS_PER_SEC: u32 = DEFAULT_EDGE_REQUESTS_PER_SEC;
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_EDGE_TIMEOUT;

    fn default_requests_per_sec() -> u32 {
        Self::DEFAULT_REQUESTS_PER_SEC
    }

    fn default_timeout() -> Duration {
        Self::DEFAULT_TIMEOUT
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudflareSection {
    #[serde(default = "CloudflareSection::default_url")]
    pub url: String,
    pub zone_id: String,
    pub token_file: PathBuf,
    /// Our share of Cloudflare's 1200 requests per 5 minutes (per user/token, shared with the
    /// dashboard and other tools); 900 leaves headroom.
    #[serde(default = "CloudflareSection::default_requests_per_5min")]
    pub requests_per_5min: u32,
    /// Whole-request timeout of each call.
    #[serde(
        default = "CloudflareSection::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl CloudflareSection {
    pub const DEFAULT_URL: &str = "https://api.cloudflare.com/client/v4";
    pub const DEFAULT_REQUESTS_PER_5MIN: u32 = 900;
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_EDGE_TIMEOUT;

    fn default_url() -> String {
        Self::DEFAULT_URL.into()
    }

    fn default_requests_per_5min() -> u32 {
        Self::DEFAULT_REQUESTS_PER_5MIN
    }

    fn default_timeout() -> Duration {
        Self::DEFAULT_TIMEOUT
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocitySection {
    pub url: String,
    pub secret_file: PathBuf,
    /// Outgoing pacing; the bridge is a plugin inside the proxy players are connected to.
    #[serde(default = "VelocitySection::default_requests_per_sec")]
    pub requests_per_sec: u32,
    /// Whole-request timeout of each call.
    #[serde(default = "VelocitySection::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl VelocitySection {
    pub const DEFAULT_REQUESTS_PER_SEC: u32 = DEFAULT_EDGE_REQUESTS_PER_SEC;
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_EDGE_TIMEOUT;

    fn default_requests_per_sec() -> u32 {
        Self::DEFAULT_REQUESTS_PER_SEC
    }

    fn default_timeout() -> Duration {
        Self::DEFAULT_TIMEOUT
    }
}

/// Top-level keys settable from the environment; section keys use `__`
/// (`ZLH_CONTROLLER__WORKERS`). Other `ZLH_*` variables (zctl's `ZLH_API_URL`/`ZLH_TOKEN`,
/// `ZLH_CONFIG`, test seeds) are not config and are ignored rather than refused.
const TOP_LEVEL_ENV: &[&str] = &["ZLH_DATABASE_URL", "ZLH_REPLICA_ID"];

impl Config {
    /// Load `path` (if given) and apply `ZLH_*` overrides. Errors name the key.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError::Invalid(format!(
                    "file {} does not exist",
                    p.display()
                )));
            }
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                TOP_LEVEL_ENV.contains(&k.as_str())
                    || k.strip_prefix("ZLH_")
                        .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("ZLH")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let built = b.build().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let cfg: Config = built
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::Invalid(format!("{key}: {why}")));
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return bad(
                "database_url",
                "must start with sqlite: or postgres:".into(),
            );
        }
        if let Err((key, why)) = self.database.validate() {
            return bad(&format!("database.{key}"), why.into());
        }
        if self.controller.workers == 0 {
            return bad("controller.workers", "must be at least 1".into());
        }
        let r = &self.retention;
        for (key, bad_value) in [
            ("retention.interval", r.interval.is_zero()),
            ("retention.batch", r.batch == 0),
            ("retention.max_batches", r.max_batches == 0),
        ] {
            if bad_value {
                return bad(key, "must be more than zero".into());
            }
        }
        // A keyed create's replay needs its operation for as long as the key replays.
        for (key, kept) in [
            ("retention.operations", r.operations),
            ("retention.deleted_servers", r.deleted_servers_kept()),
        ] {
            if kept < model::store::DEFAULT_IDEMPOTENCY_RETENTION {
                return bad(
                    key,
                    "must be at least 24h (Idempotency-Key replays need the operation)".into(),
                );
            }
        }
        for (key, [lo, hi]) in [
            ("vmids.game", self.vmids.game),
            ("vmids.dev", self.vmids.dev),
        ] {
            if lo < 100 || lo > hi {
                return bad(
                    key,
                    format!("[{lo}, {hi}] is not a range within 100..=999999999"),
                );
            }
        }
        let (g, d) = (self.vmids.game, self.vmids.dev);
        if g[0] <= d[1] && d[0] <= g[1] {
            return bad("vmids", "the game and dev ranges overlap".into());
        }
        if self.proxmox.insecure && self.proxmox.fingerprint.is_some() {
            return bad(
                "proxmox.insecure",
                "cannot be combined with proxmox.fingerprint".into(),
            );
        }
        self.sd.validate().map_err(ConfigError::Invalid)?;
        api::cors::validate(&self.api.cors_origins).map_err(ConfigError::Invalid)?;
        for (i, t) in self.templates.iter().enumerate() {
            if t.versions.is_empty() {
                return bad(&format!("templates[{i}].versions"), "is empty".into());
            }
            match t.kind {
                Kind::Game if t.variants.is_empty() => {
                    return bad(&format!("templates[{i}].variants"), "is empty".into());
                }
                Kind::Dev if t.runtime.is_none() => {
                    return bad(
                        &format!("templates[{i}].runtime"),
                        "is required for dev".into(),
                    );
                }
                _ => {}
            }
            let name = format!("templates[{i}] (template {} on {})", t.vmid, t.node);
            match (t.clone_mode, &t.storage) {
                // Proxmox: `parameter 'storage' not allowed for linked clones`.
                (model::CloneMode::Linked, Some(st)) => {
                    return bad(
                        &format!("{name}.storage"),
                        format!(
                            "'{st}' cannot be combined with clone = \"linked\": a linked clone \
                             lives on the template's own storage (use clone = \"full\" to \
                             copy to '{st}')"
                        ),
                    );
                }
                (model::CloneMode::Full, Some(st)) if !is_storage_id(st) => {
                    return bad(
                        &format!("{name}.storage"),
                        format!("'{st}' is not a Proxmox storage ID"),
                    );
                }
                _ => {}
            }
            let range = self.vmids.range(t.kind);
            let room = u64::from(range.max - range.min) + 1;
            if u64::from(t.pool) > room {
                return bad(
                    &format!("{name}.pool"),
                    format!(
                        "{} members cannot fit the {:?} VMID range ({room} VMIDs)",
                        t.pool, t.kind
                    ),
                );
            }
            if t.pool_max_age.is_some_and(|a| a.is_zero()) {
                return bad(
                    &format!("{name}.pool_max_age"),
                    "must be longer than 0 (every member would be replaced at once)".into(),
                );
            }
        }
        Ok(())
    }

    /// The database URL, from `database_url_file` when set. Never logged.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        use secrecy::ExposeSecret;
        match &self.database_url_file {
            Some(f) => Ok(read_secret("database_url_file", f)?
                .expose_secret()
                .to_string()),
            None => Ok(self.database_url.clone()),
        }
    }

    pub fn catalog(&self) -> Catalog {
        Catalog {
            templates: self.templates.clone(),
        }
    }

    pub fn replica_id(&self) -> String {
        if !self.replica_id.is_empty() {
            return self.replica_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "zlhd".into());
        format!("{host}-{}", std::process::id())
    }

    /// The effective config as TOML, complete (to write a config file for another process).
    /// Secrets kept in files appear as their file names; a credential written inline (a
    /// password in `database_url`, say) is kept: use [`Config::to_printable_toml`] to show it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The effective config as TOML for a person (`zlhd config print`): every credential is
    /// replaced by [`REDACTED`], wherever it came from (the file, `ZLH_DATABASE_URL`, ...).
    pub fn to_printable_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        redact_credentials(&mut value);
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// What a redacted credential is printed as.
pub const REDACTED: &str = "REDACTED";

/// Keys whose inline value is a credential. A `*_file` key names a file, which is no secret.
const CREDENTIAL_KEYS: &[&str] = &["password", "secret", "token", "key"];
/// URL query parameters that carry a credential (libpq accepts `?password=`).
const CREDENTIAL_QUERY_PARAMS: &[&str] = &["password", "sslpassword", "token", "secret"];

/// Replace every credential in `value`: the value of a credential-named key, and the password
/// in (or a credential query parameter of) any URL-shaped string.
fn redact_credentials(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let credential = !k.ends_with("_file")
                    && !k.ends_with("_id")
                    && CREDENTIAL_KEYS.iter().any(|c| k.contains(c));
                match v {
                    toml::Value::String(s) if credential && !s.is_empty() => *s = REDACTED.into(),
                    _ => redact_credentials(v),
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(redact_credentials),
        toml::Value::String(s) => *s = redact_url(s),
        _ => {}
    }
}

/// `scheme://user:password@host/...?password=...` with both passwords replaced; any other
/// string unchanged.
fn redact_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if CREDENTIAL_QUERY_PARAMS.contains(&k) => {
                        format!("{k}={REDACTED}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{}://{authority}{tail}", &s[..scheme_end])
}

/// PVE's `pve-storage-id`: a letter, then letters, digits, `-`, `_`, `.`.
fn is_storage_id(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Read a secret file; a relative name is looked up in `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`) first.
pub fn read_secret(key: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    let resolved = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() && Path::new(&dir).join(path).exists() => {
            Path::new(&dir).join(path)
        }
        _ => path.to_path_buf(),
    };
    let text = std::fs::read_to_string(&resolved).map_err(|e| ConfigError::Secret {
        key,
        path: resolved.display().to_string(),
        reason: e.kind().to_string(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::Secret {
            key,
            path: resolved.display().to_string(),
            reason: "file is empty".into(),
        });
    }
    Ok(SecretString::from(trimmed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("zlh-cfg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("zlh.toml");
        std::fs::write(&p, toml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let r = Config::load_with_env(Some(&p), env);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn retention_refuses_what_would_never_run_or_break_replays() {
        let cases = [
            (
                "operations must outlive an Idempotency-Key's replay",
                "[retention]\noperations = \"1h\"\n",
                "retention.operations",
            ),
            (
                "a deleted server's operations must outlive its Idempotency-Key's replay",
                "[retention]\ndeleted_servers = \"1h\"\n",
                "retention.deleted_servers",
            ),
            (
                "an archive shorter than a day takes the deleted servers' history with it",
                "[retention]\narchive = \"1h\"\n",
                "retention.deleted_servers",
            ),
            (
                "a zero batch prunes nothing",
                "[retention]\nbatch = 0\n",
                "retention.batch",
            ),
            (
                "a zero interval would spin",
                "[retention]\ninterval = \"0s\"\n",
                "retention.interval",
            ),
        ];
        for (why, toml, key) in cases {
            let e = match load_str(toml, &[]) {
                Ok(c) => c.validate().expect_err(why),
                Err(e) => e,
            };
            assert!(e.to_string().contains(key), "{why}: {e}");
        }
    }

    #[test]
    fn the_annotated_example_config_loads() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/zlh.toml"));
        let cfg = Config::load_with_env(Some(path), std::iter::empty()).unwrap();
        assert!(cfg.cloudflare.is_some() && cfg.technitium.is_some() && cfg.velocity.is_some());
        // The example shows the defaults of the observability keys.
        assert_eq!(cfg.sd, api::config::SdConfig::default());
        let defaults = ControllerSection::default();
        assert_eq!(cfg.controller.metrics_listen, defaults.metrics_listen);
    }

    #[test]
    fn scaled_halves_every_timing_and_keeps_the_rest() {
        /// (field, its value in nanoseconds or as a count, halved?, reason)
        type Case = (
            &'static str,
            fn(&ControllerSection) -> u128,
            bool,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "workers",
                |c| c.workers as u128,
                false,
                "a count, not a timing",
            ),
            (
                "resync_interval",
                |c| c.resync_interval.as_nanos(),
                true,
                "the engine's pace",
            ),
            (
                "health_interval",
                |c| c.health_interval.as_nanos(),
                true,
                "the engine's pace",
            ),
            (
                "lease_ttl",
                |c| c.lease_ttl.as_nanos(),
                true,
                "covers scaled reconciles",
            ),
            (
                "backoff_base",
                |c| c.backoff_base.as_nanos(),
                true,
                "backends recover sooner",
            ),
            (
                "backoff_max",
                |c| c.backoff_max.as_nanos(),
                true,
                "backends recover sooner",
            ),
            (
                "task_poll",
                |c| c.task_poll.as_nanos(),
                true,
                "simulated tasks end sooner",
            ),
            (
                "wait_poll",
                |c| c.wait_poll.as_nanos(),
                true,
                "IPs and Agents come sooner",
            ),
            (
                "lock_retry",
                |c| c.lock_retry.as_nanos(),
                true,
                "clones release sooner",
            ),
            (
                "dhcp_expected",
                |c| c.dhcp_expected.as_nanos(),
                true,
                "simulated addresses come sooner",
            ),
            (
                "ip_poll_max",
                |c| c.ip_poll_max.as_nanos(),
                true,
                "simulated addresses come sooner",
            ),
            (
                "clone_deadline",
                |c| c.clone_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "start_deadline",
                |c| c.start_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "ip_deadline",
                |c| c.ip_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "agent_deadline",
                |c| c.agent_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "process_deadline",
                |c| c.process_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "teardown_deadline",
                |c| c.teardown_deadline.as_nanos(),
                true,
                "above the 10 s floor",
            ),
            (
                "agent_attempts",
                |c| u128::from(c.agent_attempts),
                false,
                "a count",
            ),
            (
                "clone_attempts",
                |c| u128::from(c.clone_attempts),
                false,
                "a count",
            ),
            (
                "orphan_config_reads",
                |c| c.orphan_config_reads as u128,
                false,
                "a count",
            ),
            (
                "pool_max_age",
                |c| c.pool_max_age.as_nanos(),
                true,
                "an age on the engine's clock",
            ),
            (
                "shutdown_grace",
                |c| c.shutdown_grace.as_nanos(),
                true,
                "in-flight work is faster",
            ),
            (
                "shutdown_timeout",
                |c| c.shutdown_timeout.as_nanos(),
                false,
                "Proxmox counts it on its own clock",
            ),
            (
                "metrics_listen",
                |c| u128::from(c.metrics_listen.port()),
                false,
                "an address",
            ),
        ];
        let base = ControllerSection::default();
        let half = base.scaled(0.5);
        for (field, get, halved, reason) in cases {
            let want = if *halved { get(&base) / 2 } else { get(&base) };
            assert_eq!(get(&half), want, "{field}: {reason}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn config_error_table() {
        /// (reason, file, environment, text the error must name)
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "a typo is named",
                "[controller]\nwrkers = 3\n",
                &[],
                "wrkers",
            ),
            (
                "a wrong type names the key",
                "[controller]\nworkers = \"many\"\n",
                &[],
                "workers",
            ),
            (
                "a bad duration names the key",
                "[controller]\nlease_ttl = \"soon\"\n",
                &[],
                "lease_ttl",
            ),
            (
                "zero workers is refused",
                "[controller]\nworkers = 0\n",
                &[],
                "controller.workers",
            ),
            (
                "overlapping ranges are refused",
                "[vmids]\ngame = [5000, 6500]\n",
                &[],
                "vmids",
            ),
            (
                "an empty pool is refused",
                "",
                &[("ZLH_DATABASE__API_MAX_CONNECTIONS", "0")],
                "database.api_max_connections",
            ),
            (
                "a zero acquire timeout is refused",
                "[database]\nacquire_timeout = \"0s\"\n",
                &[],
                "database.acquire_timeout",
            ),
            (
                "a bad env override names the key",
                "",
                &[("ZLH_CONTROLLER__WORKERS", "x")],
                "workers",
            ),
            (
                "an unknown scheme is refused",
                "database_url = \"mysql://x\"\n",
                &[],
                "database_url",
            ),
            (
                "a bad exporter names its key",
                "[[sd.exporters]]\nname = \"node\"\nkinds = [\"game\"]\nport = 0\n",
                &[],
                "sd.exporters[0].port",
            ),
            (
                "a linked clone cannot target a storage: the template is named",
                "[[templates]]\nkind = \"dev\"\nruntime = \"node\"\nversions = [\"20\"]\nnode = \"pve\"\nvmid = 910\nclone = \"linked\"\nstorage = \"local-lvm\"\n",
                &[],
                "templates[0] (template 910 on pve).storage",
            ),
            (
                "a storage that is no storage ID is refused",
                "[[templates]]\nkind = \"dev\"\nruntime = \"node\"\nversions = [\"20\"]\nnode = \"pve\"\nvmid = 910\nstorage = \"local lvm\"\n",
                &[],
                "not a Proxmox storage ID",
            ),
            (
                "an unknown clone mode names the key",
                "[[templates]]\nkind = \"dev\"\nruntime = \"node\"\nversions = [\"20\"]\nnode = \"pve\"\nvmid = 910\nclone = \"thin\"\n",
                &[],
                "clone",
            ),
            (
                "a bad listen address names the key",
                "[controller]\nmetrics_listen = \"localhost\"\n",
                &[],
                "metrics_listen",
            ),
        ];
        for (reason, toml, env, needle) in cases {
            let err = load_str(toml, env).expect_err(reason).to_string();
            assert!(err.contains(needle), "{reason}: {err}");
        }
    }

    #[test]
    fn env_overrides_file_and_ignores_cli_vars() {
        let cfg = load_str(
            "[controller]\nworkers = 3\nlease_ttl = \"10s\"\n",
            &[
                ("ZLH_CONTROLLER__WORKERS", "7"),
                ("ZLH_TOKEN", "not-config"),
                ("ZLH_SEED", "42"),
                ("ZLH_API_URL", "http://127.0.0.1:1"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.controller.workers, 7);
        assert_eq!(cfg.controller.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn secrets_never_reach_the_printed_config() {
        let dir = std::env::temp_dir().join(format!("zlh-sec-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pve-token");
        std::fs::write(&f, "s3cr3t-value\n").unwrap();
        let mut cfg = Config::default();
        cfg.proxmox.token_secret_file = Some(f.clone());
        let secret = read_secret("proxmox.token_secret_file", &f).unwrap();
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        assert!(!cfg.to_toml().contains("s3cr3t"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_printed_config_redacts_inline_credentials_wherever_they_came_from() {
        let cfg = load_str(
            "[proxmox]\nurl = \"https://u:pw-in-file@127.0.0.1:8006\"\n",
            &[(
                "ZLH_DATABASE_URL",
                "postgres://zlh:pw-in-env@127.0.0.1/zlh?sslmode=require&password=pw-in-query",
            )],
        )
        .unwrap();
        let printed = cfg.to_printable_toml();
        for secret in ["pw-in-file", "pw-in-env", "pw-in-query"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(
            printed.contains(
                "postgres://zlh:REDACTED@127.0.0.1/zlh?sslmode=require&password=REDACTED"
            )
        );
        // What is not a credential stays readable.
        assert!(printed.contains("sslmode=require"));
    }

    #[test]
    fn redact_url_cases() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "no userinfo stays",
                "sqlite://zlh-data/zlh.db",
                "sqlite://zlh-data/zlh.db",
            ),
            (
                "a user without a password is no secret",
                "postgres://zlh@127.0.0.1/db",
                "postgres://zlh@127.0.0.1/db",
            ),
            (
                "the password goes",
                "postgres://zlh:p%40ss@127.0.0.1:5432/db",
                "postgres://zlh:REDACTED@127.0.0.1:5432/db",
            ),
            (
                "an @ in the password is still inside the userinfo",
                "postgres://zlh:a@b@127.0.0.1/db",
                "postgres://zlh:REDACTED@127.0.0.1/db",
            ),
            (
                "a credential query parameter goes",
                "postgres://127.0.0.1/db?password=x&application_name=zlh",
                "postgres://127.0.0.1/db?password=REDACTED&application_name=zlh",
            ),
            ("not a URL stays", "plain text: a:b@c", "plain text: a:b@c"),
        ];
        for (why, input, want) in cases {
            assert_eq!(redact_url(input), *want, "{why}");
        }
    }
}
