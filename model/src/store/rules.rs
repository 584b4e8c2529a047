//! The pure rules of the store: launch guard, quota, VMID choice, lease decisions, keyset
//! paging. No SQL: each takes what the transaction read and answers.

use super::rows::LeaseRow;
use super::sql::PAGE_MAX;
use super::*;
use crate::{OperationKind, Resources};
use std::collections::BTreeSet;
use uuid::Uuid;

pub(crate) fn new_operation(
    server_id: ServerId,
    generation: i64,
    kind: OperationKind,
    now: DateTime<Utc>,
) -> Operation {
    Operation {
        id: OperationId::new(),
        server_id,
        generation,
        kind,
        created_at: now,
    }
}

/// Anything stamped before this is older than `retention` (an idempotency key expired: it
/// neither replays nor conflicts; a row retention may prune).
pub(crate) fn age_cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// At most `max` bytes, cut at a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What `claim_lease` does with the existing lease row.
pub(crate) enum ClaimDecision {
    /// Held by someone else.
    Refuse,
    /// Ours already: extend, same token.
    Renew(i64),
    /// Free or expired: take it over with the next token.
    TakeOver(i64),
}

pub(crate) fn claim_decision(row: &LeaseRow, holder: &str, now: DateTime<Utc>) -> ClaimDecision {
    if row.is_held(now) {
        if row.holder == holder {
            ClaimDecision::Renew(row.token)
        } else {
            ClaimDecision::Refuse
        }
    } else {
        ClaimDecision::TakeOver(row.token + 1)
    }
}

/// A status write or archive with `fence` may proceed only if the fence is the newest token
/// and that lease was not released. An expired but unreleased lease still fences correctly:
/// nobody newer has claimed it (a claim would have bumped the token).
pub(crate) fn check_fence(lease: Option<&LeaseRow>, fence: Option<Fence>) -> Result<()> {
    match fence {
        None => Ok(()),
        Some(f) => match lease {
            Some(l) if l.token == f.token && !l.released => Ok(()),
            _ => Err(StoreError::Fenced),
        },
    }
}

pub(crate) fn lease_of(
    server_id: ServerId,
    holder: &str,
    token: i64,
    expires_at: DateTime<Utc>,
) -> Lease {
    Lease {
        server_id,
        holder: holder.to_owned(),
        token,
        expires_at,
    }
}

pub(crate) fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX / 2)
}

pub(crate) fn default_customer(id: &str, now: DateTime<Utc>) -> Customer {
    Customer {
        id: id.to_owned(),
        quota: Quota::default(),
        standing: Standing::Active,
        updated_at: now,
    }
}

/// Stored orphans not in this scan's findings.
pub(crate) fn vanished_orphans(stored: &[i64], found: &[Orphan]) -> Vec<i64> {
    let found: BTreeSet<i64> = found.iter().map(|o| i64::from(o.vmid)).collect();
    stored
        .iter()
        .copied()
        .filter(|v| !found.contains(v))
        .collect()
}

/// Free VMIDs read per query while reserving: the ones skipped are those Proxmox shows taken
/// although we never reserved them (intruders), so one page almost always answers.
pub(crate) const VMID_PAGE: i64 = 16;

/// What a page of free VMIDs (lowest first, at most [`VMID_PAGE`]) offers a reservation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VmidPick {
    /// The lowest one not skipped.
    Take(u32),
    /// A full page, every one skipped: read on after this one.
    ReadOn(i64),
    /// Nothing free that is not skipped.
    Nothing,
}

pub(crate) fn pick_vmid(free: &[i64], skip: &BTreeSet<u32>) -> VmidPick {
    if let Some(v) = free
        .iter()
        .filter_map(|v| u32::try_from(*v).ok())
        .find(|v| !skip.contains(v))
    {
        return VmidPick::Take(v);
    }
    match free.last() {
        Some(last) if free.len() as i64 >= VMID_PAGE => VmidPick::ReadOn(*last),
        _ => VmidPick::Nothing,
    }
}

pub(crate) fn range_exhausted(kind: Kind, range: VmidRange) -> StoreError {
    StoreError::RangeExhausted {
        kind,
        min: range.min,
        max: range.max,
    }
}

/// "In progress" for the no-key launch guard: not deleting, not Ready, not failed.
pub(crate) fn in_progress(s: &Server) -> bool {
    matches!(
        s.phase().0,
        Phase::Queued | Phase::Provisioning | Phase::Degraded
    )
}

/// The customer's in-progress server the guard applies to: one with an identical spec if
/// any (a replay), else any other (a conflict).
pub(crate) fn guard_match<'a>(live: &'a [Server], spec: &ServerSpec) -> Option<&'a Server> {
    let mut busy = live.iter().filter(|s| in_progress(s));
    let first = busy.clone().next();
    busy.find(|s| &s.spec == spec).or(first)
}

fn check_standing(customer: &Customer) -> Result<()> {
    if customer.standing != Standing::Active {
        return Err(StoreError::CustomerNotActive {
            customer: customer.id.clone(),
            standing: customer.standing,
        });
    }
    Ok(())
}

/// The summed resources a quota bounds: (what, unit, the amount in `r`, the quota's maximum).
fn dimensions(r: &Resources, q: &Quota) -> [(&'static str, &'static str, u64, u64); 3] {
    [
        (
            msg::QUOTA_MEMORY,
            " MiB",
            u64::from(r.memory_mib),
            q.max_memory_mib,
        ),
        (
            msg::QUOTA_CORES,
            "",
            u64::from(r.cores),
            u64::from(q.max_cores),
        ),
        (
            msg::QUOTA_DISK,
            " GiB",
            u64::from(r.disk_gib),
            q.max_disk_gib,
        ),
    ]
}

/// Each summed resource of `others` plus `want` must fit the quota; only the dimensions
/// `check` selects are checked.
fn check_sums(
    customer: &Customer,
    others: &[&Server],
    want: &Resources,
    check: impl Fn(usize) -> bool,
) -> Result<()> {
    let mut used = [0u64; 3];
    for s in others {
        for (i, (.., n, _)) in dimensions(&s.spec.resources, &customer.quota)
            .into_iter()
            .enumerate()
        {
            used[i] += n;
        }
    }
    for (i, (what, unit, want, max)) in dimensions(want, &customer.quota).into_iter().enumerate() {
        if check(i) && used[i] + want > max {
            return Err(StoreError::QuotaExceeded(format!(
                "customer {} uses {}{unit} of {max}{unit} {what}; {want}{unit} {}",
                customer.id,
                used[i],
                msg::QUOTA_DOES_NOT_FIT
            )));
        }
    }
    Ok(())
}

/// Standing and quota for one more server with `spec`, given the customer's live servers.
pub(crate) fn check_quota(customer: &Customer, live: &[Server], spec: &ServerSpec) -> Result<()> {
    check_standing(customer)?;
    let q = customer.quota;
    let count = live.len() as u64;
    if count >= u64::from(q.max_servers) {
        return Err(StoreError::QuotaExceeded(format!(
            "customer {} already has {count} of at most {} servers",
            customer.id, q.max_servers
        )));
    }
    let others: Vec<&Server> = live.iter().collect();
    check_sums(customer, &others, &spec.resources, |_| true)
}

/// Standing and quota for `server`'s spec becoming `spec`, given the customer's live servers
/// (which may include `server`). Only resources that grow are checked: a change that grows
/// nothing (power, restarts, a smaller plan) is never refused, even over a lowered quota.
pub(crate) fn check_update_quota(
    customer: &Customer,
    live: &[Server],
    server: &Server,
    spec: &ServerSpec,
) -> Result<()> {
    check_standing(customer)?;
    let others: Vec<&Server> = live.iter().filter(|s| s.id != server.id).collect();
    let old = dimensions(&server.spec.resources, &customer.quota);
    let new = dimensions(&spec.resources, &customer.quota);
    check_sums(customer, &others, &spec.resources, |i| new[i].2 > old[i].2)
}

/// A fresh server row as `create_server` writes it (resource_version set by the caller).
pub(crate) fn new_server(
    id: ServerId,
    customer_id: &str,
    spec: ServerSpec,
    now: DateTime<Utc>,
) -> Server {
    Server {
        id,
        customer_id: customer_id.to_owned(),
        spec,
        generation: 1,
        resource_version: 0,
        reserved_vmid: None,
        deletion_requested_at: None,
        paused: false,
        retry_requested_at: None,
        created_at: now,
        updated_at: now,
        status: ServerStatus::default(),
    }
}

/// Keyset paging with a phase filter applied in Rust: `fetch(after, n)` returns up to `n`
/// rows after `after`; keep fetching until `limit` matches (plus one, to know whether more
/// exist) or the rows run out.
pub(crate) async fn page_servers<F, Fut>(
    phase: Option<Phase>,
    page: PageRequest,
    mut fetch: F,
) -> Result<Page<Server>>
where
    F: FnMut(Uuid, i64) -> Fut,
    Fut: Future<Output = Result<Vec<Server>>>,
{
    let limit = page.limit.clamp(1, PAGE_MAX) as usize;
    // Without a phase filter one fetch of limit+1 answers; with one, read bigger batches.
    let batch = if phase.is_some() {
        (limit + 1).max(100)
    } else {
        limit + 1
    };
    let mut after = page.after.map_or(Uuid::nil(), |a| a.0);
    let mut items = Vec::with_capacity(limit + 1);
    loop {
        let rows = fetch(after, batch as i64).await?;
        let exhausted = rows.len() < batch;
        if let Some(last) = rows.last() {
            after = last.id.0;
        }
        items.extend(
            rows.into_iter()
                .filter(|s| phase.is_none_or(|p| s.phase().0 == p)),
        );
        if items.len() > limit || exhausted {
            break;
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|s| s.id)
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Hide a URL's password in a message (a connect error may echo its input).
pub(crate) fn scrub(msg: String, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => msg.replace(p, "***"),
        None => msg,
    }
}

pub(crate) fn connect_error(e: sqlx::Error, url: &str) -> StoreError {
    StoreError::Database(scrub(e.to_string(), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_the_password() {
        let url = "postgres://zlh:s3cret@db.example:5432/zlh";
        assert_eq!(
            scrub(format!("failed: {url}"), url),
            "failed: postgres://zlh:***@db.example:5432/zlh"
        );
        assert_eq!(scrub("plain".into(), "sqlite:zlh.db"), "plain");
    }

    #[test]
    fn pick_vmid_takes_the_lowest_free_not_skipped() {
        let full: Vec<i64> = (200..200 + VMID_PAGE).collect();
        let all_of_it: BTreeSet<u32> = (200..200 + VMID_PAGE as u32).collect();
        let cases: &[(&str, &[i64], BTreeSet<u32>, VmidPick)] = &[
            (
                "the lowest free",
                &[101, 103],
                [].into(),
                VmidPick::Take(101),
            ),
            (
                "a skipped one is passed",
                &[101, 103],
                [101].into(),
                VmidPick::Take(103),
            ),
            (
                "a short page, all skipped: none",
                &[101],
                [101].into(),
                VmidPick::Nothing,
            ),
            ("nothing free", &[], [].into(), VmidPick::Nothing),
            (
                "a full page, all skipped: read on",
                &full,
                all_of_it,
                VmidPick::ReadOn(200 + VMID_PAGE - 1),
            ),
        ];
        for (why, free, skip, want) in cases {
            assert_eq!(pick_vmid(free, skip), *want, "{why}");
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
