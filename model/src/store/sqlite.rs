//! Placeholder: being implemented.
#![allow(unused_variables)]
use super::*;

#[derive(Clone)]
pub struct SqliteStore {}

impl Store for SqliteStore {
    async fn create_server(&self, new: NewServer) -> Result<Created> {
        todo!("create_server")
    }
    async fn get_server(&self, id: ServerId) -> Result<Option<Server>> {
        todo!("get_server")
    }
    async fn list_servers(&self, filter: &ServerFilter, page: PageRequest,) -> Result<Page<Server>> {
        todo!("list_servers")
    }
    async fn all_server_ids(&self) -> Result<Vec<ServerId>> {
        todo!("all_server_ids")
    }
    async fn update_spec(&self, id: ServerId, spec: ServerSpec, expected_rv: Option<i64>,) -> Result<(Server, Operation)> {
        todo!("update_spec")
    }
    async fn write_status(&self, id: ServerId, status: &ServerStatus, expected_rv: i64, fence: Option<Fence>,) -> Result<Server> {
        todo!("write_status")
    }
    async fn set_paused(&self, id: ServerId, paused: bool) -> Result<Server> {
        todo!("set_paused")
    }
    async fn request_reconcile(&self, id: ServerId, retry: bool,) -> Result<Server> {
        todo!("request_reconcile")
    }
    async fn request_deletion(&self, id: ServerId,) -> Result<(Server, Operation)> {
        todo!("request_deletion")
    }
    async fn archive_and_delete(&self, id: ServerId, fence: Option<Fence>,) -> Result<()> {
        todo!("archive_and_delete")
    }
    async fn get_archived(&self, id: ServerId) -> Result<Option<Archived>> {
        todo!("get_archived")
    }
    async fn get_operation(&self, id: OperationId,) -> Result<Option<Operation>> {
        todo!("get_operation")
    }
    async fn reserve_vmid(&self, id: ServerId, range: VmidRange, taken: &[u32], replace: bool,) -> Result<u32> {
        todo!("reserve_vmid")
    }
    async fn release_vmid(&self, id: ServerId) -> Result<()> {
        todo!("release_vmid")
    }
    async fn list_reservations(&self) -> Result<Vec<(u32, ServerId)>> {
        todo!("list_reservations")
    }
    async fn append_event(&self, id: ServerId, type_: EventType, reason: &str, message: &str,) -> Result<()> {
        todo!("append_event")
    }
    async fn list_events(&self, id: ServerId, limit: u32) -> Result<Vec<Event>> {
        todo!("list_events")
    }
    async fn claim_lease(&self, id: ServerId, holder: &str, ttl: Duration,) -> Result<Option<Lease>> {
        todo!("claim_lease")
    }
    async fn renew_lease(&self, id: ServerId, holder: &str, fence: Fence, ttl: Duration,) -> Result<Lease> {
        todo!("renew_lease")
    }
    async fn release_lease(&self, id: ServerId, holder: &str, fence: Fence,) -> Result<()> {
        todo!("release_lease")
    }
    async fn release_all_leases(&self, holder: &str) -> Result<u64> {
        todo!("release_all_leases")
    }
    async fn try_singleton(&self, name: &str, holder: &str, ttl: Duration,) -> Result<bool> {
        todo!("try_singleton")
    }
    async fn changes_since(&self, after: i64, limit: u32,) -> Result<Vec<Change>> {
        todo!("changes_since")
    }
    async fn latest_seq(&self) -> Result<i64> {
        todo!("latest_seq")
    }
    async fn get_customer(&self, id: &str) -> Result<Customer> {
        todo!("get_customer")
    }
    async fn upsert_customer(&self, id: &str, quota: Option<Quota>, standing: Option<Standing>,) -> Result<Customer> {
        todo!("upsert_customer")
    }
    async fn create_token(&self, name: &str, hash: &str, role: Role, customer_id: Option<&str>,) -> Result<ApiToken> {
        todo!("create_token")
    }
    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
        todo!("find_token")
    }
    async fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
        todo!("heartbeat")
    }
    async fn list_replicas(&self, alive_within: Duration,) -> Result<Vec<ReplicaInfo>> {
        todo!("list_replicas")
    }
    async fn replace_orphans(&self, found: &[Orphan]) -> Result<()> {
        todo!("replace_orphans")
    }
    async fn list_orphans(&self) -> Result<Vec<Orphan>> {
        todo!("list_orphans")
    }
    async fn ping(&self) -> Result<()> {
        todo!("ping")
    }
}
