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
        // The reservation wrote the row: continue from the fresh version.
        if let Some(fresh) = ctx.store.get_server(id).await? {
            self.server = fresh;
        }
        debug_assert_eq!(self.server.reserved_vmid, Some(vmid));
        self.desired = ctx.desired(&self.server);
        ctx.identity(&mut self.status, &self.desired);
        self.obs = Observed::default();
        Ok(ControlFlow::Continue(()))
    }
}
