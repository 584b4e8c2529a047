//! The narrow interface the controller depends on; `PveClient` implements it against a real
//! Proxmox (or the simulator), and tests may implement it in memory.

use crate::error::PveError;
use crate::types::*;
use crate::upid::Upid;
use std::future::Future;

/// Everything zlh asks of Proxmox. Every call returns at once (no waiting on tasks): long
/// operations return a [`Upid`] to check later with [`Proxmox::task_status`].
pub trait Proxmox: Send + Sync {
    /// `GET /version`.
    fn version(&self) -> impl Future<Output = Result<Version, PveError>> + Send;
    /// `GET /cluster/resources?type=vm`: every guest (lxc and qemu) in the cluster.
    fn cluster_resources(
        &self,
    ) -> impl Future<Output = Result<Vec<ClusterResource>, PveError>> + Send;
    /// `GET /cluster/nextid`: a free vmid. Reserves nothing (clone's `already exists` is the guard).
    fn next_id(&self) -> impl Future<Output = Result<u32, PveError>> + Send;
    /// `POST /nodes/{node}/lxc/{source}/clone`. The UPID's `id` is the SOURCE vmid.
    fn clone_ct(
        &self,
        node: &str,
        source_vmid: u32,
        req: &CloneRequest,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    fn ct_config(
        &self,
        node: &str,
        vmid: u32,
    ) -> impl Future<Output = Result<LxcConfig, PveError>> + Send;
    /// `PUT /nodes/{node}/lxc/{vmid}/config` (synchronous).
    fn update_ct_config(
        &self,
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> impl Future<Output = Result<(), PveError>> + Send;
    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    fn ct_status(
        &self,
        node: &str,
        vmid: u32,
    ) -> impl Future<Output = Result<CtStatus, PveError>> + Send;
    /// `POST .../status/start` (`CT N already running` → `PveError::is_already_running`).
    fn start_ct(
        &self,
        node: &str,
        vmid: u32,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `POST .../status/stop` (`CT N not running` → `PveError::is_not_running`).
    fn stop_ct(&self, node: &str, vmid: u32)
    -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `POST .../status/shutdown` with `timeout` and `forceStop`.
    fn shutdown_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
        force_stop: bool,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `POST .../status/reboot` with `timeout` (for the shutdown half; then the CT is killed):
    /// one task (`vzreboot`) that shuts the CT down and starts it again. On a stopped CT PVE
    /// answers `VM N not running` (sic) → `PveError::is_not_running`.
    fn reboot_ct(
        &self,
        node: &str,
        vmid: u32,
        timeout_s: Option<u32>,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `DELETE /nodes/{node}/lxc/{vmid}` (`purge`, `force`, `destroy-unreferenced-disks`).
    fn delete_ct(
        &self,
        node: &str,
        vmid: u32,
        opts: &DeleteOptions,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `GET .../interfaces`: `None` while the CT is not running.
    fn ct_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> impl Future<Output = Result<Option<Vec<Interface>>, PveError>> + Send;
    /// `GET /nodes/{upid.node}/tasks/{upid}/status`, at once. A 400 `no such task` (the task
    /// is not visible yet right after dispatch) is reported as `running: true,
    /// not_visible_yet: true`.
    fn task_status(&self, upid: &Upid)
    -> impl Future<Output = Result<TaskStatus, PveError>> + Send;
    /// `GET /nodes/{upid.node}/tasks/{upid}/log?start=&limit=`: the log lines in order.
    fn task_log(
        &self,
        upid: &Upid,
        start: u32,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<String>, PveError>> + Send;
    /// `PUT /nodes/{node}/lxc/{vmid}/resize` of the rootfs to `size_gib` GiB: a task on PVE
    /// 8+ (the schema returns its UPID). Growing only: PVE cannot shrink.
    fn resize_ct(
        &self,
        node: &str,
        vmid: u32,
        size_gib: u32,
    ) -> impl Future<Output = Result<Upid, PveError>> + Send;
    /// `GET /nodes/{node}/lxc`: the node's containers (as `cluster/resources` entries, of
    /// this node): `status` live, `lock` and `tags` from each config.
    fn node_cts(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<ClusterResource>, PveError>> + Send;
    /// `GET /nodes/{node}/tasks`: the node's tasks, filtered (`TaskFilter::since`: what runs
    /// and what ended since). One listing answers "still running, or how did it end?" for
    /// every task on the node.
    fn node_tasks(
        &self,
        node: &str,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<Vec<TaskEntry>, PveError>> + Send;
}
