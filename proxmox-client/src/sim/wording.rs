//! PVE's wording, verbatim (docs/proxmox-api.md §2, §4).

// PVE's wording (docs/proxmox-api.md §2, §4).
pub(crate) const E_NOT_DEFINED: &str =
    "property is not defined in schema and the schema does not allow additional properties";
pub(crate) const E_MISSING: &str = "property is missing and it is not optional";
pub(crate) const E_PARAM_VERIFICATION: &str = "Parameter verification failed.";
pub(crate) const E_AUTH_FAILED: &str = "Authentication failed!";
pub(crate) const E_NO_SUCH_TASK: &str = "no such task";
pub(crate) const E_UNPARSABLE_UPID: &str = "unable to parse worker upid";
pub(crate) const E_MODIFIED: &str =
    "detected modified configuration - file changed by other user? Try again.";
pub(crate) const E_NO_OPTIONS: &str = "no options specified";
pub(crate) const E_TEMPLATE_START: &str = "you can't start a CT if it's a template";
pub(crate) const E_STORAGE_LINKED: &str = "parameter 'storage' not allowed for linked clones";
pub(crate) const E_NAME_MISSING: &str =
    "invalid format - missing key in comma-separated list property";

pub(crate) fn e_config_missing(node: &str, vmid: u32) -> String {
    format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
}
pub(crate) fn e_locked(lock: &str) -> String {
    // Quirk: no vmid in this message.
    format!("CT is locked ({lock})")
}
pub(crate) fn e_exists(vmid: u32, node: &str) -> String {
    format!("CT {vmid} already exists on node '{node}'")
}
