//! Fault injection for the Proxmox simulator, in the vocabulary every simulator shares
//! (`model::faults`: `POST /_sim/faults`, `DELETE /_sim/faults`). Here an `endpoint` is an
//! endpoint name (see `proxmox_client::Endpoint`: `clone`, `config_put`, `status_current`,
//! `cluster_resources`, `task_status`, `start`, `stop`, `delete`, `interfaces`, ...) or `*`,
//! and an error's `message` is PVE's: status line reason = its first line, body
//! `{"data":null,"message":"...\n"}`, or empty for 401 and the proxy codes 595..599.
//! `task_errors` make the next task of a kind end with `TASK ERROR: <message>`, e.g.
//! `{"task_errors": [{"endpoint": "clone", "message": "clone failed: cfs-lock 'storage-local' error: got lock request timeout"}]}`.

pub use model::faults::{FaultAction, FaultRule, FaultSpec, Fired, Outage, TaskErrorSpec, Trigger};

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub rules: Vec<FaultRule>,
    pub outage: Option<Outage>,
    pub task_errors: Vec<TaskErrorSpec>,
}

impl Faults {
    pub fn evaluate(&mut self, endpoint: &str) -> Fired {
        model::faults::evaluate(&mut self.rules, |e| e == endpoint)
    }

    pub fn take_task_error(&mut self, endpoint: &str) -> Option<String> {
        let i = self
            .task_errors
            .iter()
            .position(|t| t.endpoint == endpoint)?;
        Some(self.task_errors.remove(i).message)
    }
}
