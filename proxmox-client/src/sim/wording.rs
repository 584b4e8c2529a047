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
    "invalid format - missing key in comma-separated list property\n";
pub(crate) const E_BAD_VMID: &str = "invalid format - value does not look like a valid VM ID\n";
pub(crate) const E_BAD_DNS_NAME: &str =
    "invalid format - value does not look like a valid DNS name\n";
pub(crate) const E_BAD_PATTERN: &str = "value does not match the regex pattern";
pub(crate) const E_SHRINK: &str = "unable to shrink disk size";
pub(crate) const E_SAME_SIZE: &str = "disk is already at specified size";

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
pub(crate) const E_FULL_CLONE_RUNNING: &str =
    "Cannot do full clones on a running container without snapshots";

pub(crate) fn e_no_storage(sid: &str) -> String {
    format!("storage '{sid}' does not exist")
}
pub(crate) fn e_no_linked_clone(volid: &str) -> String {
    format!("Linked clone feature for '{volid}' is not available")
}
/// Not PVE's verified wording: the simulator has no mount points, so resizing one fails so.
pub(crate) fn e_no_disk(disk: &str) -> String {
    format!("unable to parse {disk} - volume '{disk}' is not configured")
}
pub(crate) fn e_bad_tag(tag: &str) -> String {
    format!("invalid format - invalid characters in tag '{tag}'\n")
}
pub(crate) fn e_no_snapshot(name: &str) -> String {
    format!("snapshot '{name}' does not exist")
}
