//! Observation: fill one layer of `Observed` for one server, from the fleet snapshot when it
//! confirms the server is fine, otherwise from the backend directly. Observations report
//! facts ([`EdgeObs`]: what is desired, what is there), never a verdict that depends on what
//! the reconcile is doing.

use crate::backends::{Backends, Stack};
use crate::decide::{
    AgentObs, ContainerObs, Desired, EdgeObs, Layer, Observed, PowerObs, ProcessObs, Seen, TaskObs,
    Unavailable,
};
use crate::ownership::has_marker_tag;
use crate::snapshot::Snapshot;
use crate::task_listing::Listed;
use edge_client::dns::{DesiredRecords, DnsProvider, SrvRecord};
use edge_client::{Agent, AgentState, Proxy};
use model::{ErrorClass, Process};
use proxmox_client::Proxmox;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What the edge must look like for a game server.
pub struct EdgeTarget<'a> {
    pub fqdn: &'a str,
    pub hostname: &'a str,
    pub internal_ip: Ipv4Addr,
    pub public_ip: Ipv4Addr,
    pub proxy_port: u16,
    pub game_port: u16,
}

impl EdgeTarget<'_> {
    pub fn records(&self, public: bool) -> DesiredRecords {
        DesiredRecords {
            a: if public {
                self.public_ip
            } else {
                self.internal_ip
            },
            srv: Some(SrvRecord {
                priority: 0,
                weight: 0,
                port: self.proxy_port,
                target: self.fqdn.to_string(),
            }),
        }
    }
}

/// Where observations may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Every layer from its backend: a server in flux, or being deleted.
    Backends,
    /// A Ready server with an unchanged spec and a fresh snapshot: the snapshot confirms what
    /// it can, the rest is read; a game that answers its Server List Ping needs no Agent call.
    Snapshot,
    /// The resync's in-memory check of a settled server: the snapshot only, the Agent and the
    /// game taken as healthy (they are probed in their own turn).
    SnapshotAssumingHealthy,
}

impl Source {
    fn steady(self) -> bool {
        matches!(self, Source::Snapshot | Source::SnapshotAssumingHealthy)
    }
}

/// Inputs an observation may need beyond the desired state.
pub struct ObserveCtx<'a, S: Stack> {
    pub backends: &'a Backends<S>,
    pub task_listings: &'a crate::task_listing::TaskListings,
    pub durations: &'a crate::task_listing::TaskDurations,
    /// The shared listing a server in flux may wait on (`presume`); `None`: every layer is
    /// read on its own (a deletion, a confirmation before acting, right after a task ended
    /// or a change of ours).
    pub fleet: Option<&'a crate::snapshot::FleetListings>,
    /// Whether anything may be presumed at all (`presume`): not while confirming what a
    /// decision was made on, nor in a teardown.
    pub presume: bool,
    pub status: &'a model::ServerStatus,
    pub timing: &'a crate::config::ControllerSection,
    pub now: chrono::DateTime<chrono::Utc>,
    pub snapshot: &'a Snapshot,
    pub source: Source,
    pub upid: Option<&'a str>,
    pub known_ip: Option<&'a str>,
    pub edge: Option<EdgeTarget<'a>>,
    pub slp_timeout: Duration,
}

pub fn pve_seen<T>(r: Result<T, proxmox_client::PveError>) -> Seen<T> {
    r.map_err(|e| Unavailable::from(&e))
}

/// Fill `layer` without calling anything, when the fleet snapshot (or what needs no call)
/// confirms it; `false` means it must be observed on the backend.
pub fn from_snapshot<S: Stack>(
    layer: Layer,
    d: &Desired,
    o: &mut Observed,
    cx: &ObserveCtx<'_, S>,
) -> bool {
    let steady = cx.source.steady();
    let assume_healthy = cx.source == Source::SnapshotAssumingHealthy;
    match layer {
        Layer::Task if cx.upid.is_none() => o.task = Some(Ok(TaskObs::Succeeded)),
        Layer::Container if steady => {
            let Some(e) = cx.snapshot.containers.get(&d.vmid.unwrap_or_default()) else {
                return false;
            };
            if e.lock.is_some() || !has_marker_tag(&e.tags, d.id) {
                return false;
            }
            // cluster/resources carries no config: the rest is as the spec has it. The snapshot
            // is used only while the spec is unchanged; a spec change leaves steady mode, so
            // drift and a grown disk are caught and applied by the next in-flux reconcile.
            o.container = Some(Ok(Some(ContainerObs {
                hostname: e.name.clone().or_else(|| d.hostname.clone()),
                tags: e.tags.clone(),
                ..presumed_container(d)
            })));
            if e.running {
                o.power = Some(Ok(PowerObs::Running));
            }
        }
        Layer::Ip if steady && cx.known_ip.is_some() => {
            o.ip = Some(Ok(cx.known_ip.map(str::to_string)));
        }
        // As the spec asks: whether it is so is the health probe's to find out.
        Layer::Agent if assume_healthy => {
            o.agent = Some(Ok(AgentObs::Process(match d.process {
                Process::Running => ProcessObs::Running,
                Process::Stopped => ProcessObs::Stopped,
            })));
        }
        Layer::Slp if cx.edge.is_none() || assume_healthy => o.slp = Some(Ok(true)),
        Layer::Dns if cx.edge.is_none() => o.dns = Some(Ok(EdgeObs::NOT_REQUIRED)),
        Layer::Dns if steady => {
            let Some(edge) = &cx.edge else { return false };
            let b = cx.backends;
            let providers = [
                b.technitium.as_ref().map(|t| (t.name(), false)),
                b.cloudflare.as_ref().map(|c| (c.name(), true)),
            ];
            let confirmed = providers.into_iter().flatten().all(|(name, public)| {
                cx.snapshot
                    .dns
                    .get(name)
                    .and_then(|z| z.get(edge.fqdn))
                    .is_some_and(|s| s.matches(&edge.records(public)))
            });
            if !confirmed {
                return false;
            }
            o.dns = Some(Ok(EdgeObs {
                desired_present: true,
                any_ours_present: true,
            }));
        }
        Layer::Proxy if cx.edge.is_none() || cx.backends.velocity.is_none() => {
            o.proxy = Some(Ok(EdgeObs::NOT_REQUIRED));
        }
        Layer::Proxy if steady => {
            let (Some(edge), Some(regs)) = (&cx.edge, &cx.snapshot.proxy) else {
                return false;
            };
            let ip = o.ip().or(cx.known_ip);
            match regs.get(&edge.hostname.to_lowercase()) {
                Some((addr, port))
                    if Some(addr.as_str()) == ip && *port == Some(edge.game_port) =>
                {
                    o.proxy = Some(Ok(EdgeObs {
                        desired_present: true,
                        any_ours_present: true,
                    }));
                }
                _ => return false,
            }
        }
        _ => return false,
    }
    true
}

pub async fn fill<S: Stack>(layer: Layer, d: &Desired, o: &mut Observed, cx: &ObserveCtx<'_, S>) {
    if from_snapshot(layer, d, o, cx) {
        return;
    }
    if cx.source == Source::Backends && presume(layer, d, o, cx).await {
        o.mark_tentative(layer);
        return;
    }
    let pve = &cx.backends.pve;
    let node = d.node().unwrap_or_default();
    let vmid = d.vmid.unwrap_or_default();
    match layer {
        Layer::Task => {
            let Some(upid) = cx.upid else {
                // Filled by `from_snapshot`.
                return;
            };
            let parsed: Result<proxmox_client::Upid, _> = upid.parse();
            o.task = Some(match parsed {
                // An unparsable UPID can never finish: forget it (the container is observed
                // next anyway).
                Err(_) => Ok(TaskObs::Succeeded),
                // The node's listing answers for every task waited on there: running (a
                // wait) or ended, with its exit status. One it does not show is read. Past
                // its expected end a task is looked at more often, through a fresher listing.
                Ok(u) => match cx
                    .task_listings
                    .lookup(pve, &u, cx.now, listing_age(d, cx))
                    .await
                {
                    Listed::Running => {
                        if task_due(d, cx) {
                            o.task_recheck = Some(cx.timing.task_near_end_poll());
                        }
                        Ok(TaskObs::Running)
                    }
                    Listed::Ended(exit) => Ok(ended(exit, d, cx)),
                    Listed::ReadStatus => {
                        pve_seen(pve.task_status(&u).await).map(|t| match t.exit {
                            Some(exit) => ended(exit, d, cx),
                            None => TaskObs::Running,
                        })
                    }
                },
            });
        }
        Layer::Container if d.resize_decided(cx.status) => {
            // After a resize decided on a config read of this generation, only the disk size
            // and the lock are in question: `status/current` carries both (`maxdisk`, `lock`),
            // with tags and the power, so one read stands in for `config` + `status/current`.
            match pve.ct_status(node, vmid).await {
                Ok(s) => match status_container(&s, d) {
                    Some(c) => {
                        o.container = Some(Ok(Some(c)));
                        o.power = Some(Ok(power_of(&s)));
                    }
                    // No size in the answer: the config says it.
                    None => o.container = Some(config_seen(pve.ct_config(node, vmid).await)),
                },
                Err(e) => o.container = Some(absent_or(e)),
            }
        }
        Layer::Container => {
            o.container = Some(config_seen(pve.ct_config(node, vmid).await));
        }
        Layer::Power => {
            o.power = Some(pve_seen(pve.ct_status(node, vmid).await).map(|s| power_of(&s)));
        }
        Layer::Ip => {
            if let Some(since) = address_plausible_since(cx) {
                // Not there yet: look again later the longer it is late (the IP schedule).
                let late = (cx.now - since).to_std().unwrap_or_default();
                o.ip_recheck = Some(late.clamp(cx.timing.wait_poll, cx.timing.ip_poll_max));
            }
            o.ip = Some(pve_seen(pve.ct_interfaces(node, vmid).await).map(|ifs| {
                // `null` while stopped; match the clone's MAC when we know it.
                let mac = o
                    .container()
                    .and_then(|c| c.net0.as_deref())
                    .and_then(|n| net_param(n, "hwaddr"));
                proxmox_client::primary_ipv4(&ifs.unwrap_or_default(), mac.as_deref())
                    .map(|ip| ip.to_string())
            }));
        }
        Layer::Agent => {
            let Some(ip) = o.ip().or(cx.known_ip).map(str::to_string) else {
                o.agent = Some(Ok(AgentObs::Idle));
                return;
            };
            // A steady game server whose game answers Server List Ping is running: its Agent
            // is asked only when the game does not answer (to learn why). One connection per
            // health probe instead of two.
            if cx.source.steady()
                && let Some(edge) = &cx.edge
                && slp_answers(&ip, edge, cx.slp_timeout).await
            {
                o.agent = Some(Ok(AgentObs::RUNNING));
                o.slp = Some(Ok(true));
                return;
            }
            let answer = cx.backends.agent.status(&ip).await;
            if let Ok(s) = &answer {
                o.agent_detail = Some(agent_detail(&s.state));
            }
            o.agent = Some(
                answer
                    .map(|s| agent_obs(s.state))
                    .map_err(|e| Unavailable::from(&e)),
            );
        }
        Layer::Dns => {
            if let Some(edge) = &cx.edge {
                o.dns = Some(dns_state(cx.backends, edge).await);
            }
        }
        Layer::Proxy => {
            let (Some(edge), Some(v)) = (&cx.edge, &cx.backends.velocity) else {
                return;
            };
            let ip = o.ip().or(cx.known_ip);
            o.proxy = Some(
                v.observe(edge.hostname)
                    .await
                    .map(|r| EdgeObs {
                        desired_present: r.as_ref().is_some_and(|r| {
                            Some(r.address.as_str()) == ip && r.port == Some(edge.game_port)
                        }),
                        any_ours_present: r.is_some(),
                    })
                    .map_err(|e| Unavailable::from(&e)),
            );
        }
        Layer::Slp => {
            // (No edge: answered by `from_snapshot`.) No IP yet: nothing to ping.
            let (Some(edge), Some(ip)) = (&cx.edge, o.ip()) else {
                o.slp = Some(Ok(true));
                return;
            };
            o.slp = Some(Ok(slp_answers(ip, edge, cx.slp_timeout).await));
        }
        // Clone slots are bookkeeping of this process, observed by the reconcile itself.
        Layer::CloneSlot => {}
    }
}

/// The container as its config read shows it.
fn config_seen(
    r: Result<proxmox_client::LxcConfig, proxmox_client::PveError>,
) -> Seen<Option<ContainerObs>> {
    r.map(|c| Some(container_obs(&c))).or_else(absent_or)
}

/// Only a confirmed "does not exist" means absent (docs/reconcile-contract.md, rule 4).
fn absent_or<T>(e: proxmox_client::PveError) -> Seen<Option<T>> {
    if e.class == ErrorClass::NotFound {
        Ok(None)
    } else {
        Err(Unavailable::from(&e))
    }
}

/// A task seen ended: how long it took is learned (when the next one like it is looked at).
fn ended<S: Stack>(exit: proxmox_client::TaskExit, d: &Desired, cx: &ObserveCtx<'_, S>) -> TaskObs {
    if let Some(key) = task_key(d, cx)
        && let Some(t) = cx.status.in_flight_task.as_ref()
    {
        let took = (cx.now - t.started_at).to_std().unwrap_or_default();
        cx.durations.learn(key, took);
    }
    match exit {
        proxmox_client::TaskExit::Ok | proxmox_client::TaskExit::Warnings(_) => TaskObs::Succeeded,
        proxmox_client::TaskExit::Error(msg) => TaskObs::Failed(msg),
    }
}

/// Which tasks the in-flight one is like (for its expected duration).
fn task_key<'a, S: Stack>(
    d: &'a Desired,
    cx: &ObserveCtx<'a, S>,
) -> Option<crate::task_listing::TaskKey<'a>> {
    let t = cx.status.in_flight_task.as_ref()?;
    Some(crate::task_listing::TaskKey {
        node: d.node()?,
        kind: t.action,
        template: d.template_vmid(),
    })
}

/// The in-flight task's age, and how long one like it took last time.
fn task_age_and_expected<S: Stack>(
    d: &Desired,
    cx: &ObserveCtx<'_, S>,
) -> Option<(Duration, Duration)> {
    let expected = cx.durations.expected(task_key(d, cx)?)?;
    let t = cx.status.in_flight_task.as_ref()?;
    let age = (cx.now - t.started_at).to_std().unwrap_or_default();
    Some((age, expected))
}

/// Whether the in-flight task has run as long as one like it took.
fn task_due<S: Stack>(d: &Desired, cx: &ObserveCtx<'_, S>) -> bool {
    task_age_and_expected(d, cx).is_some_and(|(age, expected)| age >= expected)
}

/// How old a task listing may be to answer for the in-flight task.
fn listing_age<S: Stack>(d: &Desired, cx: &ObserveCtx<'_, S>) -> Duration {
    if task_due(d, cx) {
        cx.timing.task_near_end_poll()
    } else {
        cx.timing.task_listing_max_age()
    }
}

/// Since when an address is plausible: the container was seen running (our start ended, or
/// drift found it running) `dhcp_expected` ago. `None` when it is not known to run.
fn address_plausible_since<S: Stack>(
    cx: &ObserveCtx<'_, S>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let running = cx
        .status
        .condition(model::ConditionType::ContainerRunning)
        .filter(|c| c.status == model::ConditionStatus::True)?;
    let dhcp = chrono::Duration::from_std(cx.timing.dhcp_expected).ok()?;
    Some(running.last_transition_time + dhcp)
}

/// When the server last changed as far as its status knows (its latest condition
/// transition): a listing older than that cannot speak for it.
fn last_change(status: &model::ServerStatus) -> Option<chrono::DateTime<chrono::Utc>> {
    status
        .conditions
        .iter()
        .map(|c| c.last_transition_time)
        .max()
}

/// Fill `layer` of a server in flux without a read of its own, where a wait is all that can
/// come of it: a task not due yet, the address before it is plausible, lock/tags/presence and
/// power from the node's shared container listing. `false`: read it. What this fills is tentative
/// (`Observed::tentative`): the reconcile confirms it with a read of its own before it acts on
/// anything but a wait.
async fn presume<S: Stack>(
    layer: Layer,
    d: &Desired,
    o: &mut Observed,
    cx: &ObserveCtx<'_, S>,
) -> bool {
    if !cx.presume {
        return false;
    }
    match layer {
        Layer::Task => {
            // Not due yet: presumed running until one like it took (`TaskDurations`),
            // renewed at least every `task_recheck_max` (the template holds want renewing).
            let Some((age, expected)) = task_age_and_expected(d, cx) else {
                return false;
            };
            if age >= expected {
                return false;
            }
            o.task = Some(Ok(TaskObs::Running));
            o.task_recheck = Some((expected - age).min(cx.timing.task_recheck_max()));
            true
        }
        Layer::Ip => {
            // A recorded address, while the network is ready: the Agent is asked at it next,
            // directly, which is what proves it.
            if cx.status.is_true(model::ConditionType::NetworkReady)
                && let Some(ip) = cx.known_ip
            {
                o.ip = Some(Ok(Some(ip.to_string())));
                return true;
            }
            match address_plausible_since(cx) {
                Some(since) if cx.now < since => {
                    o.ip = Some(Ok(None));
                    o.ip_recheck = Some((since - cx.now).to_std().unwrap_or_default());
                    true
                }
                _ => false,
            }
        }
        // Not published yet (or found missing): the write is its own look (each provider
        // lists what is there and converges it to exactly the desired records), so a look
        // first would only repeat it.
        Layer::Dns if !cx.status.is_true(model::ConditionType::DnsPublished) => {
            o.dns = Some(Ok(EdgeObs::ABSENT));
            true
        }
        Layer::Proxy if !cx.status.is_true(model::ConditionType::ProxyRegistered) => {
            o.proxy = Some(Ok(EdgeObs::ABSENT));
            true
        }
        Layer::Container if d.is_new(cx.status) && !clone_unanswered(cx.status) => {
            // A new server has never sent a clone: its container is presumed absent, for the
            // clone alone, which is its own check (Proxmox refuses a taken `newid` with
            // `CT N already exists`, which is then read: `act::needs_confirmation`).
            o.container = Some(Ok(None));
            true
        }
        Layer::Container | Layer::Power if in_dhcp_wait(d, o, cx) => {
            // Our start ended moments ago, on a container read built for this generation:
            // nothing but the address is awaited until one is plausible (the IP schedule), so
            // the container is presumed as the spec has it and running, only to wait.
            if layer == Layer::Container {
                o.container = Some(Ok(Some(presumed_container(d))));
            } else {
                o.power = Some(Ok(PowerObs::Running));
            }
            true
        }
        Layer::Container | Layer::Power => {
            let Some(fleet) = cx.fleet else { return false };
            let Some(since) = last_change(cx.status) else {
                return false;
            };
            // The listing has no config: it stands in only once a read of its own found the
            // container built as this generation of the spec asks (ContainerCreated True for
            // it); a spec change is read, so it is applied.
            if !d.built(cx.status) {
                return false;
            }
            let vmid = d.vmid.unwrap_or_default();
            let node = d.node().unwrap_or_default();
            let Some(listing) = fleet.get(&cx.backends.pve, node, since, cx.now).await else {
                return false;
            };
            // Only a container carrying our tag: an untagged or absent one is read on its own
            // (ownership and absence are decided on a read, never on a listing).
            let Some(e) = listing
                .containers
                .get(&vmid)
                .filter(|e| has_marker_tag(&e.tags, d.id))
            else {
                return false;
            };
            if layer == Layer::Container {
                o.container = Some(Ok(Some(listed_container(e, d))));
                return true;
            }
            // The node's list reads the state live (not `cluster/resources`: its status
            // lags, see `FleetListings`).
            if !e.status_known {
                return false;
            }
            let running = e.running;
            o.power = Some(Ok(if running {
                PowerObs::Running
            } else {
                PowerObs::Stopped
            }));
            true
        }
        _ => false,
    }
}

/// A clone attempt ended in an error (a lost answer among them): the clone may run, and a
/// second one would only be refused for the template's lock (PVE checks it before the
/// `newid`), so the container is read.
fn clone_unanswered(status: &model::ServerStatus) -> bool {
    status
        .last_error
        .as_ref()
        .is_some_and(|e| e.step == model::Step::CloneContainer.as_str())
}

/// Whether the server waits for its first address right after our start ended: built for
/// this generation, seen running (by our start's end in this reconcile, or recorded less than
/// `dhcp_expected` ago), no address recorded yet.
fn in_dhcp_wait<S: Stack>(d: &Desired, o: &Observed, cx: &ObserveCtx<'_, S>) -> bool {
    if !d.built(cx.status) || cx.status.is_true(model::ConditionType::NetworkReady) {
        return false;
    }
    let started_now =
        matches!(o.power, Some(Ok(PowerObs::Running))) && !o.is_tentative(Layer::Power);
    started_now || address_plausible_since(cx).is_some_and(|since| cx.now < since)
}

/// The container as the spec has it, carrying our tags, unlocked: what a read of its own
/// found for this generation (`in_dhcp_wait`); the base the listings and the status read
/// fill in.
fn presumed_container(d: &Desired) -> ContainerObs {
    ContainerObs {
        hostname: d.hostname.clone(),
        description: String::new(),
        tags: vec![
            crate::ownership::FLEET_TAG.to_string(),
            crate::ownership::marker_tag(d.id),
        ],
        lock: None,
        cores: Some(d.cores),
        memory_mib: Some(d.memory_mib),
        swap_mib: Some(d.swap_mib),
        bridge: Some(d.bridge.clone()),
        net0: None,
        rootfs_gib: Some(d.disk_gib),
    }
}

/// A disk size in bytes (`maxdisk`) as whole GiB; `None` below one (not a size PVE reports
/// for a real rootfs).
fn disk_gib(maxdisk: u64) -> Option<u32> {
    const GIB: u64 = 1 << 30;
    (maxdisk >= GIB)
        .then(|| u32::try_from(maxdisk / GIB).ok())
        .flatten()
}

/// The container as a listing shows it: lock, tags and the disk size as listed; the rest of
/// the config is not in `cluster/resources` and taken as the spec has it (a change of ours
/// is always made on a read of its own, which sees any drift).
fn listed_container(e: &crate::snapshot::CtEntry, d: &Desired) -> ContainerObs {
    ContainerObs {
        hostname: e.name.clone().or_else(|| d.hostname.clone()),
        tags: e.tags.clone(),
        lock: e.lock.clone(),
        rootfs_gib: Some(disk_gib(e.usage.maxdisk).unwrap_or(d.disk_gib)),
        ..presumed_container(d)
    }
}

/// The container as `status/current` shows it after a resize (`Desired::resize_decided`):
/// lock, tags, name and disk size read; cores, memory, swap and bridge as the config read
/// that decided the resize found them, which is as the spec asks.
/// `None` without a disk size in the answer.
fn status_container(s: &proxmox_client::CtStatus, d: &Desired) -> Option<ContainerObs> {
    Some(ContainerObs {
        hostname: s.name.clone().or_else(|| d.hostname.clone()),
        tags: s.tags.clone(),
        lock: s.lock.clone(),
        rootfs_gib: Some(disk_gib(s.maxdisk?)?),
        ..presumed_container(d)
    })
}

fn power_of(s: &proxmox_client::CtStatus) -> PowerObs {
    if s.status == proxmox_client::CtState::Running {
        PowerObs::Running
    } else {
        PowerObs::Stopped
    }
}

/// Whether the game at `ip` answers Server List Ping.
async fn slp_answers(ip: &str, edge: &EdgeTarget<'_>, timeout: Duration) -> bool {
    match game_addr(ip, edge.game_port) {
        Some(addr) => game_answers(addr, edge.fqdn, timeout).await,
        None => false,
    }
}

/// The game's socket at a container's IP.
pub fn game_addr(ip: &str, port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

/// Whether the game at `addr` answers Server List Ping, greeted with its `fqdn` (proxies
/// route on it). A failed ping is "not connectable (yet)", not an outage of anything.
async fn game_answers(addr: SocketAddr, fqdn: &str, timeout: Duration) -> bool {
    edge_client::slp::ping(addr, fqdn, timeout).await.is_ok()
}

/// The players part of a Server List Ping answer.
pub fn players(s: &edge_client::slp::SlpStatus) -> model::Players {
    model::Players {
        online: s.players_online,
        max: s.players_max,
        sample: s.players_sample.clone(),
    }
}

/// A settled game's health probe, run by the resync (see `reconcile::Context::game_probe`).
#[derive(Debug, Clone)]
pub struct GameProbe {
    pub addr: SocketAddr,
    pub fqdn: String,
}

impl GameProbe {
    /// The players it reports, if it answers in time.
    pub async fn players(&self, timeout: Duration) -> Option<model::Players> {
        let s = edge_client::slp::ping(self.addr, &self.fqdn, timeout)
            .await
            .ok()?;
        Some(players(&s))
    }
}

/// Every provider has exactly the desired records; any provider has anything of ours.
async fn dns_state<S: Stack>(b: &Backends<S>, edge: &EdgeTarget<'_>) -> Seen<EdgeObs> {
    let mut seen = EdgeObs {
        desired_present: true,
        any_ours_present: false,
    };
    if let Some(t) = &b.technitium {
        let r = t
            .observe(edge.fqdn)
            .await
            .map_err(|e| Unavailable::from(&e))?;
        seen.desired_present &= r.matches(&edge.records(false));
        seen.any_ours_present |= !r.is_empty();
    }
    if let Some(c) = &b.cloudflare {
        let r = c
            .observe(edge.fqdn)
            .await
            .map_err(|e| Unavailable::from(&e))?;
        seen.desired_present &= r.matches(&edge.records(true));
        seen.any_ours_present |= !r.is_empty();
    }
    Ok(seen)
}

/// The Agent's answer, as a server card shows it.
fn agent_detail(state: &AgentState) -> model::AgentDetail {
    let mut d = model::AgentDetail {
        state: state.as_str().to_string(),
        ..Default::default()
    };
    match state {
        AgentState::Installing { step, progress } => {
            d.step = step.clone();
            d.progress = *progress;
        }
        AgentState::Crashed { count, .. } => d.crash_count = *count,
        _ => {}
    }
    d
}

/// The Agent's answer, as `decide` reads it.
fn agent_obs(state: AgentState) -> AgentObs {
    let process = match state {
        AgentState::Idle => return AgentObs::Idle,
        AgentState::Installing { .. } => return AgentObs::Installing,
        AgentState::Error { message } => return AgentObs::Error(message),
        AgentState::Running => ProcessObs::Running,
        AgentState::Starting => ProcessObs::Starting,
        AgentState::Stopping => ProcessObs::Stopping,
        AgentState::Stopped => ProcessObs::Stopped,
        AgentState::Crashed { count, message } => ProcessObs::Crashed { count, message },
    };
    AgentObs::Process(process)
}

pub fn container_obs(c: &proxmox_client::LxcConfig) -> ContainerObs {
    ContainerObs {
        hostname: c.hostname.clone(),
        description: c.description.clone().unwrap_or_default(),
        tags: c.tags.clone(),
        lock: c.lock.clone(),
        cores: c.cores,
        memory_mib: c.memory.and_then(|m| u32::try_from(m).ok()),
        swap_mib: c.swap.and_then(|m| u32::try_from(m).ok()),
        bridge: c.net0.as_deref().and_then(|n| net_param(n, "bridge")),
        net0: c.net0.clone(),
        rootfs_gib: c.rootfs_gib,
    }
}

/// One `key=value` of a PVE property string like `name=eth0,bridge=vmbr3,hwaddr=..`.
pub fn net_param(net: &str, key: &str) -> Option<String> {
    net.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// The net0 we want: our bridge, DHCP, and the MAC Proxmox gave the clone (kept, so the
/// DHCP lease and any MAC-based matching stay stable).
pub fn desired_net0(current: Option<&str>, bridge: &str) -> String {
    let mut s = format!("name=eth0,bridge={bridge},ip=dhcp,type=veth");
    if let Some(mac) = current.and_then(|n| net_param(n, "hwaddr")) {
        s.push_str(&format!(",hwaddr={mac}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net0_keeps_the_mac_and_sets_the_bridge() {
        let cur = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth";
        assert_eq!(net_param(cur, "bridge").as_deref(), Some("vmbr0"));
        let want = desired_net0(Some(cur), "vmbr3");
        assert_eq!(net_param(&want, "bridge").as_deref(), Some("vmbr3"));
        assert_eq!(
            net_param(&want, "hwaddr").as_deref(),
            Some("BC:24:11:AA:BB:CC")
        );
    }
}
