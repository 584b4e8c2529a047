//! VMID reservation: in the store, before anything exists in Proxmox
//! (docs/reconcile-contract.md, rule 2), skipping what Proxmox already has.

use super::{ReconcileError, Run};
use crate::backends::Stack;
use crate::decide::{Observed, Unavailable};
use crate::reason as r;
use model::store::{Store, StoreError};
use model::{EventType, Step};
use proxmox_client::Proxmox;
use std::ops::ControlFlow;

impl<S: Stack> Run<'_, S> {
    /// Reserve a VMID (`replace`: the reserved one holds a container that is not ours) and go
    /// on with the fresh row; Degraded when Proxmox cannot say what it has, failed when the
    /// range is exhausted.
    pub(super) async fn reserve_vmid(
        &mut self,
        replace: bool,
    ) -> Result<ControlFlow<super::Requeue>, ReconcileError> {
        let ctx = self.ctx;
        if !replace && self.server.reserved_vmid.is_none() && self.claim_member().await? {
            return Ok(ControlFlow::Continue(()));
        }
        // The DB only knows our own reservations. The fresh fleet snapshot says what Proxmox
        // has without a call: listing the cluster per reservation would make each declared
        // server cost O(fleet).
        let taken = match self.snapshot.taken_vmids(ctx.timing().snapshot_max_age()) {
            Some(taken) => taken,
            None => match ctx.backends.pve.cluster_resources().await {
                Ok(list) => list.iter().map(|c| c.vmid).collect(),
                Err(e) => {
                    let e = Unavailable::from(&e);
                    return Ok(self.degrade(Step::AllocateVmid, &e).flow());
                }
            },
        };
        let id = self.server.id;
        let range = ctx.cfg.vmids.range(self.desired.kind);
        let old = self.server.reserved_vmid;
        let vmid = match ctx.store.reserve_vmid(id, range, &taken, replace).await {
            Ok(vmid) => vmid,
            Err(StoreError::RangeExhausted { .. }) => {
                let msg = model::store::msg::RANGE_EXHAUSTED.to_string();
                return Ok(self.fail(Step::AllocateVmid, msg).flow());
            }
            Err(e) => return Err(e.into()),
        };
        if replace {
            let msg = format!(
                "VMID {} holds a container that is not ours; left untouched, reserved {vmid}",
                old.unwrap_or_default()
            );
            self.event(EventType::Warning, r::EV_VMID_CONFLICT, msg);
        } else if old != Some(vmid) {
            self.event(
                EventType::Normal,
                r::EV_VMID_RESERVED,
                format!("VMID {vmid}"),
            );
        }
        self.continue_reserved(vmid).await?;
        Ok(ControlFlow::Continue(()))
    }

    /// The reservation wrote the row: continue from the fresh version.
    async fn continue_reserved(&mut self, vmid: u32) -> Result<(), ReconcileError> {
        let ctx = self.ctx;
        if let Some(fresh) = ctx.store.get_server(self.server.id).await? {
            self.server = fresh;
        }
        debug_assert_eq!(self.server.reserved_vmid, Some(vmid));
        // A claim recorded itself in the row's status; the status this reconcile writes must
        // keep it.
        self.status.progress.pool_claim = self.server.status.progress.pool_claim;
        self.desired = ctx.desired(&self.server);
        ctx.identity(&mut self.status, &self.desired);
        self.obs = Observed::default();
        Ok(())
    }

    /// Take a free member of the template's warm pool instead of reserving a VMID to clone
    /// into (docs/pools.md): one store transaction moves the member's VMID to this server
    /// and records the claim; the container's marker is rewritten next (`ClaimMarker`).
    /// False when the template keeps no pool or none is free.
    async fn claim_member(&mut self) -> Result<bool, ReconcileError> {
        let ctx = self.ctx;
        let Some(t) = ctx.catalog.template_for(&self.server.spec) else {
            return Ok(false);
        };
        if t.pool == 0 {
            return Ok(false);
        }
        let (tpl, id) = (t.vmid, self.server.id);
        let Some(vmid) = ctx.store.claim_pool_member(id, tpl).await? else {
            metrics::counter!(crate::metrics::POOL_CLAIMS, "result" => "empty").increment(1);
            return Ok(false);
        };
        metrics::counter!(crate::metrics::POOL_CLAIMS, "result" => "claimed").increment(1);
        ctx.pool_changed();
        self.event(
            EventType::Normal,
            r::EV_POOL_MEMBER_CLAIMED,
            format!("claimed CT {vmid} from the pool of template {tpl}"),
        );
        // Ours by the claim, not found: no adoption to announce.
        self.may_adopt = false;
        self.continue_reserved(vmid).await?;
        Ok(true)
    }
}
