//! Warm pools (docs/pools.md): per template, a declared number of containers cloned ahead of
//! demand, stopped and marked as the pool's, so a new server claims one (`reconcile/vmid.rs`)
//! instead of waiting for the template's clone queue.
//!
//! One loop (on one replica at a time) makes a pass every `pool_poll()` and whenever a claim
//! or a freed clone slot wakes it. Each pass takes every member one step (its clone, its
//! tagging, its destroy), then sizes each pool toward its `pool`: one reservation at a time,
//! surplus unclaimed members retired, stale ones replaced. Every step observes before it acts
//! and records before it relies, as a server's reconcile does:
//! - a member is reserved in the store (its VMID from the servers' allocator) before its
//!   clone, and its clone task recorded after the call: a crash in between finds the
//!   container by its pool marker at the member's VMID and waits for it;
//! - only a member observed carrying the pool marker is ever destroyed, and only while
//!   `retiring` in the store, which a claim never takes: the one destroy without a server
//!   cannot hit a claimed container.

use crate::backends::Stack;
use crate::ownership::{FLEET_TAG, POOL_TAG, is_pool_member, pool_hostname, pool_marker_line};
use crate::reason as r;
use crate::reconcile::Context;
use model::store::{Store, StoreError};
use model::{EventType, MemberState, NewPoolMember, PoolMember, ServerId, Template};
use proxmox_client::{CtState, LxcConfig, Proxmox, PveError, Upid};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The store singleton of the pool loop: one replica at a time sizes the pools.
pub const SINGLETON_POOLS: &str = "pools";

/// The pool loop's state shared through the `Context`.
#[derive(Default)]
pub struct PoolState {
    /// Slot holder ids of members (a freed clone slot that wakes one wakes the pool loop).
    members: Mutex<HashSet<ServerId>>,
    wake: tokio::sync::Notify,
    /// Each template's fingerprint and when it was read.
    fingerprints: Mutex<HashMap<u32, (Instant, String)>>,
}

impl PoolState {
    pub fn is_member(&self, id: ServerId) -> bool {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    fn track(&self, id: ServerId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    fn forget(&self, id: ServerId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Make the pool loop pass again at once (a permit is kept if it is busy).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Until `wake` is called.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

pub use model::pool_event_id;

/// A template's fingerprint: its config without `digest` and `lock`. PVE's own digest covers
/// the whole file, and every clone writes and removes the template's `lock` line, so the
/// digest moves with each clone; the rest changes only when someone changes the template.
pub fn fingerprint(cfg: &LxcConfig) -> String {
    let mut keys: Vec<_> = cfg
        .raw
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "digest" | "lock"))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (k, v) in keys {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.to_string().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// Why a free member is replaced (`None`: it is fresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    TooOld,
    VersionChanged,
    TemplateChanged,
}

impl Staleness {
    fn describe(&self) -> &'static str {
        match self {
            Staleness::TooOld => "older than pool_max_age",
            Staleness::VersionChanged => "made under another template version",
            Staleness::TemplateChanged => "made before the template's config changed",
        }
    }
}

/// Whether free member `m` should be replaced: older than `max_age`, another configured
/// version, or another template fingerprint (compared only when both are known).
pub fn staleness(
    m: &PoolMember,
    t: &Template,
    max_age: std::time::Duration,
    fingerprint: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Staleness> {
    let age = (now - m.created_at).to_std().unwrap_or_default();
    if age > max_age {
        return Some(Staleness::TooOld);
    }
    if m.template_version != t.version {
        return Some(Staleness::VersionChanged);
    }
    match fingerprint {
        Some(f) if !m.template_digest.is_empty() && f != m.template_digest => {
            Some(Staleness::TemplateChanged)
        }
        _ => None,
    }
}

/// What a pool's size asks for this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sizing {
    /// Reserve one more member (clones are one at a time per template anyway).
    Grow,
    /// Retire these members (surplus: not yet cloned first, then the oldest free ones).
    Shrink(Vec<u32>),
    /// Replace this stale member (one at a time, only while the pool is otherwise full).
    Replace(u32, Staleness),
    Steady,
}

/// The sizing decision for a pool of `want` from its members (pure, table-tested).
pub fn sizing(
    members: &[PoolMember],
    want: usize,
    stale: impl Fn(&PoolMember) -> Option<Staleness>,
) -> Sizing {
    let live: Vec<&PoolMember> = members
        .iter()
        .filter(|m| m.state != MemberState::Retiring)
        .collect();
    let cloning = live.iter().any(|m| m.state == MemberState::Cloning);
    if live.len() > want {
        let surplus = live.len() - want;
        // A clone in flight is left to finish (Proxmox holds the template meanwhile); what is
        // not cloned yet goes first, then the oldest free members.
        let mut order: Vec<&PoolMember> = live
            .iter()
            .copied()
            .filter(|m| m.state == MemberState::Cloning && m.upid.is_none())
            .collect();
        order.extend(
            live.iter()
                .copied()
                .filter(|m| m.state == MemberState::Free),
        );
        return Sizing::Shrink(order.iter().take(surplus).map(|m| m.vmid).collect());
    }
    if live.len() < want {
        return if cloning {
            Sizing::Steady
        } else {
            Sizing::Grow
        };
    }
    if cloning || members.iter().any(|m| m.state == MemberState::Retiring) {
        return Sizing::Steady;
    }
    live.iter()
        .find_map(|m| stale(m).map(|s| Sizing::Replace(m.vmid, s)))
        .unwrap_or(Sizing::Steady)
}

/// One pass over every pool: each member one step, then each pool sized. Answers how many
/// members there were.
pub async fn pass<S: Stack>(ctx: &Context<S>) -> Result<usize, StoreError> {
    let members = ctx.store.list_pool_members().await?;
    let count = members.len();
    let mut pools: BTreeMap<u32, Vec<PoolMember>> = BTreeMap::new();
    for t in ctx.catalog.templates.iter().filter(|t| t.pool > 0) {
        pools.entry(t.vmid).or_default();
    }
    for m in members {
        pools.entry(m.template).or_default().push(m);
    }
    for (tpl, members) in pools {
        let template = ctx.catalog.templates.iter().find(|t| t.vmid == tpl);
        let pool = Pool { ctx, tpl, template };
        pool.record(&members);
        pool.reconcile(members).await?;
    }
    Ok(count)
}

/// One pool in one pass.
struct Pool<'c, S: Stack> {
    ctx: &'c Context<S>,
    tpl: u32,
    /// `None`: the catalog no longer has the template (the pool drains).
    template: Option<&'c Template>,
}

/// How a member's step ended (for the log; the next pass looks again anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stepped {
    Waiting,
    Progressed,
    Gone,
}

impl<S: Stack> Pool<'_, S> {
    fn want(&self) -> usize {
        self.template.map_or(0, |t| t.pool as usize)
    }

    fn record(&self, members: &[PoolMember]) {
        let tpl = self.tpl.to_string();
        for state in [
            MemberState::Cloning,
            MemberState::Free,
            MemberState::Retiring,
        ] {
            let n = members.iter().filter(|m| m.state == state).count();
            metrics::gauge!(crate::metrics::POOL_MEMBERS, "template" => tpl.clone(), "state" => state.as_str())
                .set(n as f64);
        }
        metrics::gauge!(crate::metrics::POOL_DESIRED, "template" => tpl).set(self.want() as f64);
    }

    async fn event(&self, reason: r::EventReason, message: String) {
        info!(template = self.tpl, reason = %reason, "{message}");
        let id = pool_event_id(self.tpl);
        let _ = self
            .ctx
            .store
            .append_event(id, EventType::Normal, reason.as_str(), &message)
            .await;
    }

    async fn reconcile(&self, mut members: Vec<PoolMember>) -> Result<(), StoreError> {
        for m in &members {
            let stepped = self.step(m).await?;
            debug!(template = self.tpl, vmid = m.vmid, ?stepped, "pool member");
        }
        members = self
            .ctx
            .store
            .list_pool_members()
            .await?
            .into_iter()
            .filter(|m| m.template == self.tpl)
            .collect();
        let fingerprint = self.fingerprint().await;
        let now = self.ctx.clock.now();
        let max_age = self
            .template
            .and_then(|t| t.pool_max_age)
            .unwrap_or(self.ctx.timing().pool_max_age);
        let stale = |m: &PoolMember| {
            self.template
                .and_then(|t| staleness(m, t, max_age, fingerprint.as_deref(), now))
        };
        match sizing(&members, self.want(), stale) {
            Sizing::Steady => {}
            Sizing::Grow => {
                if let Some(t) = self.template {
                    self.grow(t, fingerprint).await?;
                }
            }
            Sizing::Shrink(vmids) => {
                for vmid in vmids {
                    if self.ctx.store.retire_member(vmid).await? {
                        let what = format!("retiring surplus member CT {vmid}");
                        self.event(r::EV_POOL_SHRUNK, what).await;
                    }
                }
            }
            Sizing::Replace(vmid, why) => {
                if self.ctx.store.retire_member(vmid).await? {
                    let what = format!("replacing member CT {vmid}: {}", why.describe());
                    self.event(r::EV_POOL_MEMBER_REPLACED, what).await;
                }
            }
        }
        Ok(())
    }

    /// The template's fingerprint, read at most once per `template_fingerprint_max_age`.
    async fn fingerprint(&self) -> Option<String> {
        let t = self.template?;
        let max_age = self.ctx.timing().template_fingerprint_max_age();
        {
            let cache = self
                .ctx
                .pools
                .fingerprints
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((at, f)) = cache.get(&t.vmid)
                && at.elapsed() < max_age
            {
                return Some(f.clone());
            }
        }
        match self.ctx.backends.pve.ct_config(&t.node, t.vmid).await {
            Ok(cfg) => {
                let f = fingerprint(&cfg);
                self.ctx
                    .pools
                    .fingerprints
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(t.vmid, (Instant::now(), f.clone()));
                Some(f)
            }
            Err(e) => {
                warn!(template = t.vmid, error = %e, "pool: cannot read the template's config");
                None
            }
        }
    }

    /// Reserve one member and take its first step at once.
    async fn grow(&self, t: &Template, fingerprint: Option<String>) -> Result<(), StoreError> {
        if self.yields() {
            return Ok(());
        }
        let ctx = self.ctx;
        let taken = match ctx.snapshot().taken_vmids(ctx.timing().snapshot_max_age()) {
            Some(taken) => taken,
            None => match ctx.backends.pve.cluster_resources().await {
                Ok(list) => list.iter().map(|c| c.vmid).collect(),
                Err(e) => {
                    warn!(template = t.vmid, error = %e, "pool: cannot list the cluster's VMIDs");
                    return Ok(());
                }
            },
        };
        let new = NewPoolMember {
            template: t.vmid,
            node: t.node.clone(),
            template_digest: fingerprint.unwrap_or_default(),
            template_version: t.version.clone(),
        };
        let range = ctx.cfg.vmids.range(t.kind);
        let m = match ctx
            .store
            .reserve_pool_member(&new, t.kind, range, &taken)
            .await
        {
            Ok(m) => m,
            Err(StoreError::RangeExhausted { .. }) => {
                warn!(template = t.vmid, "pool: the VMID range is exhausted");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.step(&m).await?;
        Ok(())
    }

    /// Servers wait for this template's clone slot: they go first (a refill would only delay
    /// the customers in the queue; the pool refills when it drains).
    fn yields(&self) -> bool {
        self.ctx.slots.queued(self.tpl) > 0
    }

    /// One step of one member.
    async fn step(&self, m: &PoolMember) -> Result<Stepped, StoreError> {
        match (m.state, &m.upid) {
            (MemberState::Cloning, Some(upid)) => self.clone_task(m, upid).await,
            (MemberState::Cloning, None) => self.cloning(m).await,
            (MemberState::Free, _) => Ok(Stepped::Waiting),
            (MemberState::Retiring, Some(upid)) => self.destroy_task(m, upid).await,
            (MemberState::Retiring, None) => self.retiring(m).await,
        }
    }

    fn slot_id(m: &PoolMember) -> ServerId {
        ServerId(m.id)
    }

    async fn release_slot(&self, m: &PoolMember) {
        let id = Self::slot_id(m);
        self.ctx.release_slot(id, Some(self.tpl)).await;
        self.ctx.pools.forget(id);
    }

    /// The member's recorded clone task: renew the template's hold while it runs; once done,
    /// forget it and go on from the container.
    async fn clone_task(&self, m: &PoolMember, upid: &str) -> Result<Stepped, StoreError> {
        match self.task(upid).await {
            TaskEnd::Running => {
                self.ctx.pools.track(Self::slot_id(m));
                self.ctx.acquire_slot(self.tpl, Self::slot_id(m)).await;
                Ok(Stepped::Waiting)
            }
            TaskEnd::Unknown => Ok(Stepped::Waiting),
            TaskEnd::Succeeded => {
                self.ctx
                    .store
                    .set_member_task(m.vmid, MemberState::Cloning, None)
                    .await?;
                self.cloning(m).await
            }
            TaskEnd::Failed(why) => {
                self.release_slot(m).await;
                let what = format!("clone of member CT {} failed: {why}", m.vmid);
                self.event(r::EV_POOL_CLONE_FAILED, what).await;
                // Retiring destroys what the failed clone left (if ours) and forgets it; the
                // pool then reserves a new member.
                self.ctx.store.retire_member(m.vmid).await?;
                Ok(Stepped::Progressed)
            }
        }
    }

    /// A member without a task: clone it if absent (when the slot is ours), wait while its
    /// clone runs, tag it once done, then it is free.
    async fn cloning(&self, m: &PoolMember) -> Result<Stepped, StoreError> {
        let cfg = match self.observe(m).await {
            Seen::Unknown => return Ok(Stepped::Waiting),
            Seen::Absent => return self.start_clone(m).await,
            Seen::Foreign => {
                // Someone else's container at the member's VMID: never touched; the member
                // is forgotten (its VMID is in Proxmox's listing, which reservations skip).
                warn!(
                    vmid = m.vmid,
                    "pool: a foreign container holds a member's VMID"
                );
                self.release_slot(m).await;
                self.ctx.store.delete_pool_member(m.vmid).await?;
                return Ok(Stepped::Gone);
            }
            Seen::Member(cfg) => cfg,
        };
        if cfg.lock.is_some() {
            // `create` while the copy runs (its task lost in a crash, or still recorded
            // elsewhere): keep the template's hold if it is ours.
            if self.ctx.slots.holds(Self::slot_id(m)) {
                self.ctx.acquire_slot(self.tpl, Self::slot_id(m)).await;
            }
            return Ok(Stepped::Waiting);
        }
        // The clone is over (observed, not remembered): free the template.
        self.release_slot(m).await;
        let tagged =
            cfg.tags.iter().any(|t| t == POOL_TAG) && cfg.tags.iter().any(|t| t == FLEET_TAG);
        if !tagged {
            let req = proxmox_client::ConfigUpdate {
                tags: Some(vec![FLEET_TAG.to_string(), POOL_TAG.to_string()]),
                ..Default::default()
            };
            if let Err(e) = self
                .ctx
                .backends
                .pve
                .update_ct_config(&m.node, m.vmid, &req)
                .await
            {
                warn!(vmid = m.vmid, error = %e, "pool: cannot tag a member");
                return Ok(Stepped::Waiting);
            }
        }
        if self.ctx.store.member_ready(m.vmid).await? {
            let took = (self.ctx.clock.now() - m.created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!(crate::metrics::POOL_REFILL).record(took.as_secs_f64());
            let what = format!(
                "member CT {} ready after {:.1} s",
                m.vmid,
                took.as_secs_f64()
            );
            self.event(r::EV_POOL_REFILLED, what).await;
        }
        Ok(Stepped::Progressed)
    }

    /// Clone a member confirmed absent, once the template's slot is ours.
    async fn start_clone(&self, m: &PoolMember) -> Result<Stepped, StoreError> {
        let Some(t) = self.template else {
            // The pool is drained: a member not cloned yet is simply forgotten.
            self.ctx.store.retire_member(m.vmid).await?;
            return Ok(Stepped::Progressed);
        };
        let id = Self::slot_id(m);
        if !self.ctx.slots.waits(id) && !self.ctx.slots.holds(id) && self.yields() {
            return Ok(Stepped::Waiting);
        }
        self.ctx.pools.track(id);
        if !self.ctx.acquire_slot(self.tpl, id).await {
            return Ok(Stepped::Waiting);
        }
        let req = crate::reconcile::clone_request_for(
            t.clone_mode,
            t.storage.as_deref(),
            m.vmid,
            Some(pool_hostname(m.vmid)),
            pool_marker_line(self.tpl),
        );
        match self.ctx.backends.pve.clone_ct(&t.node, t.vmid, &req).await {
            Ok(upid) => {
                let upid = upid.to_string();
                self.ctx
                    .store
                    .set_member_task(m.vmid, MemberState::Cloning, Some(&upid))
                    .await?;
                Ok(Stepped::Progressed)
            }
            // `CT N already exists`: observed again next pass (ours, or foreign).
            Err(e) if e.class == model::ErrorClass::Conflict => Ok(Stepped::Waiting),
            Err(e) => {
                // Locked by a clone we do not know of (a human), or a failing Proxmox: the
                // template goes to whoever is next, and this member asks again.
                self.release_slot(m).await;
                warn!(vmid = m.vmid, error = %e, "pool: clone call failed");
                Ok(Stepped::Waiting)
            }
        }
    }

    async fn destroy_task(&self, m: &PoolMember, upid: &str) -> Result<Stepped, StoreError> {
        match self.task(upid).await {
            TaskEnd::Running | TaskEnd::Unknown => Ok(Stepped::Waiting),
            TaskEnd::Succeeded => {
                self.ctx
                    .store
                    .set_member_task(m.vmid, MemberState::Retiring, None)
                    .await?;
                self.retiring(m).await
            }
            TaskEnd::Failed(why) => {
                warn!(
                    vmid = m.vmid,
                    why, "pool: destroying a member failed; retrying"
                );
                self.ctx
                    .store
                    .set_member_task(m.vmid, MemberState::Retiring, None)
                    .await?;
                Ok(Stepped::Waiting)
            }
        }
    }

    /// A retiring member: destroyed if it is there and ours, forgotten once absent.
    async fn retiring(&self, m: &PoolMember) -> Result<Stepped, StoreError> {
        let cfg = match self.observe(m).await {
            Seen::Unknown => return Ok(Stepped::Waiting),
            Seen::Absent | Seen::Foreign => {
                self.release_slot(m).await;
                self.ctx.store.delete_pool_member(m.vmid).await?;
                return Ok(Stepped::Gone);
            }
            Seen::Member(cfg) => cfg,
        };
        if cfg.lock.is_some() {
            return Ok(Stepped::Waiting);
        }
        self.release_slot(m).await;
        let pve = &self.ctx.backends.pve;
        let running = matches!(
            pve.ct_status(&m.node, m.vmid).await.map(|s| s.status),
            Ok(CtState::Running)
        );
        let call = if running {
            // Members are never started; one running was started by hand: stop it first.
            pve.stop_ct(&m.node, m.vmid).await
        } else {
            pve.delete_ct(&m.node, m.vmid, &DESTROY).await
        };
        match call {
            Ok(upid) => {
                self.ctx
                    .store
                    .set_member_task(m.vmid, MemberState::Retiring, Some(&upid.to_string()))
                    .await?;
                Ok(Stepped::Progressed)
            }
            Err(e) => {
                warn!(vmid = m.vmid, error = %e, "pool: cannot destroy a member");
                Ok(Stepped::Waiting)
            }
        }
    }

    /// The container at a member's VMID.
    async fn observe(&self, m: &PoolMember) -> Seen {
        match self.ctx.backends.pve.ct_config(&m.node, m.vmid).await {
            Ok(cfg) => {
                let desc = cfg.description.as_deref().unwrap_or("");
                let member = !cfg.template
                    && is_pool_member(&cfg.tags, desc, cfg.hostname.as_deref(), m.vmid);
                if member {
                    Seen::Member(Box::new(cfg))
                } else {
                    Seen::Foreign
                }
            }
            // Only a confirmed "does not exist" is absent (docs/reconcile-contract.md, rule 4).
            Err(e) if e.is_not_found() => Seen::Absent,
            Err(e) => {
                warn!(vmid = m.vmid, error = %e, "pool: cannot read a member's config");
                Seen::Unknown
            }
        }
    }

    async fn task(&self, upid: &str) -> TaskEnd {
        let Ok(parsed) = upid.parse::<Upid>() else {
            // Unparseable: forget it, the container is observed next anyway.
            return TaskEnd::Succeeded;
        };
        match self.ctx.backends.pve.task_status(&parsed).await {
            Ok(s) if s.running => TaskEnd::Running,
            Ok(s) => match s.exit {
                Some(proxmox_client::TaskExit::Error(why)) => TaskEnd::Failed(why),
                _ => TaskEnd::Succeeded,
            },
            Err(e) => {
                log_task_error(&e);
                TaskEnd::Unknown
            }
        }
    }
}

fn log_task_error(e: &PveError) {
    warn!(error = %e, "pool: cannot read a task's status");
}

/// What a member's VMID holds.
enum Seen {
    Absent,
    Member(Box<LxcConfig>),
    Foreign,
    Unknown,
}

/// How a recorded task stands.
enum TaskEnd {
    Running,
    Succeeded,
    Failed(String),
    Unknown,
}

/// As a server's destroy (`reconcile/act.rs`): the member's volumes go with it.
const DESTROY: proxmox_client::DeleteOptions = proxmox_client::DeleteOptions {
    purge: true,
    force: false,
    destroy_unreferenced_disks: true,
};

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as Age, Utc};

    fn member(vmid: u32, state: MemberState, upid: Option<&str>, age_s: i64) -> PoolMember {
        PoolMember {
            vmid,
            template: 900,
            node: "pve".into(),
            state,
            id: uuid::Uuid::now_v7(),
            upid: upid.map(str::to_string),
            template_digest: "f1".into(),
            template_version: None,
            created_at: Utc::now() - Age::seconds(age_s),
            ready_at: None,
        }
    }

    #[test]
    fn sizing_table() {
        use MemberState::*;
        let fresh = |_: &PoolMember| None;
        let stale_5001 = |m: &PoolMember| (m.vmid == 5001).then_some(Staleness::TooOld);
        type Case = (&'static str, Vec<PoolMember>, usize, bool, Sizing);
        let cases: Vec<Case> = vec![
            ("an empty pool grows", vec![], 2, false, Sizing::Grow),
            (
                "one clone at a time: a cloning member holds growth back",
                vec![member(5000, Cloning, Some("u"), 1)],
                2,
                false,
                Sizing::Steady,
            ),
            (
                "a full pool of fresh members is steady",
                vec![member(5000, Free, None, 1), member(5001, Free, None, 1)],
                2,
                false,
                Sizing::Steady,
            ),
            (
                "shrink retires the not-yet-cloned first, then the oldest free; never a clone in flight",
                vec![
                    member(5000, Free, None, 9),
                    member(5001, Cloning, Some("u"), 1),
                    member(5002, Cloning, None, 1),
                    member(5003, Free, None, 5),
                ],
                1,
                false,
                Sizing::Shrink(vec![5002, 5000, 5003]),
            ),
            (
                "a drained pool (0) retires every free member",
                vec![member(5000, Free, None, 1)],
                0,
                false,
                Sizing::Shrink(vec![5000]),
            ),
            (
                "retiring members do not count toward the size",
                vec![member(5000, Retiring, None, 1)],
                1,
                false,
                Sizing::Grow,
            ),
            (
                "a stale member of a full pool is replaced",
                vec![member(5000, Free, None, 1), member(5001, Free, None, 1)],
                2,
                true,
                Sizing::Replace(5001, Staleness::TooOld),
            ),
            (
                "no replacement while another is being destroyed (one at a time)",
                vec![
                    member(5000, Retiring, Some("u"), 1),
                    member(5001, Free, None, 1),
                    member(5002, Free, None, 1),
                ],
                2,
                true,
                Sizing::Steady,
            ),
        ];
        for (why, members, want, stale, expect) in cases {
            let got = if stale {
                sizing(&members, want, stale_5001)
            } else {
                sizing(&members, want, fresh)
            };
            assert_eq!(got, expect, "{why}");
        }
    }

    #[test]
    fn staleness_table() {
        let mut t = model::Catalog::example().templates[0].clone();
        let day = std::time::Duration::from_secs(86_400);
        let now = Utc::now();
        let m = member(5000, MemberState::Free, None, 60);
        let old = member(5000, MemberState::Free, None, 2 * 86_400);
        type Case<'a> = (
            &'static str,
            &'a PoolMember,
            Option<&'a str>,
            Option<Staleness>,
        );
        let cases: Vec<Case> = vec![
            ("fresh and same fingerprint", &m, Some("f1"), None),
            ("fingerprint unknown: not stale", &m, None, None),
            (
                "older than the max age",
                &old,
                Some("f1"),
                Some(Staleness::TooOld),
            ),
            (
                "the template's config changed",
                &m,
                Some("f2"),
                Some(Staleness::TemplateChanged),
            ),
        ];
        for (why, m, f, want) in cases {
            assert_eq!(staleness(m, &t, day, f, now), want, "{why}");
        }
        t.version = Some("2026-12".into());
        assert_eq!(
            staleness(&m, &t, day, Some("f1"), now),
            Some(Staleness::VersionChanged),
            "a configured version the member was not made under"
        );
    }
}
