//! Naming a server: full id, a unique start or end of the id, hostname or VMID.

use crate::CliError;
use api::ApiClient;
use api::ClientError;
use api::wire::ListFilter;
use model::{Server, ServerId};

/// Shortest id fragment accepted.
const MIN_FRAGMENT: usize = 4;

fn is_id_fragment(s: &str) -> bool {
    s.len() >= MIN_FRAGMENT && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The one server `name` refers to.
pub async fn server(client: &ApiClient, name: &str) -> Result<Server, CliError> {
    let name = name.trim();
    // `-o name` output names servers `server/ID`.
    let name = name
        .strip_prefix(crate::output::SERVER_PREFIX)
        .unwrap_or(name);
    if name.is_empty() {
        return Err(CliError::usage("a server name is empty"));
    }
    if let Ok(id) = name.parse::<ServerId>() {
        return client.get(id).await.map_err(|e| match e {
            ClientError::NotFound(_) => CliError::not_found(format!("server {id} not found")),
            e => e.into(),
        });
    }
    if let Ok(vmid) = name.parse::<u32>() {
        let found = client
            .list_all(&ListFilter {
                vmid: Some(vmid),
                ..Default::default()
            })
            .await?;
        if let Some(one) = pick(name, found, "VMID")? {
            return Ok(one);
        }
    } else {
        let found = client
            .list_all(&ListFilter {
                hostname: Some(name.to_string()),
                ..Default::default()
            })
            .await?;
        if let Some(one) = pick(name, found, "hostname")? {
            return Ok(one);
        }
    }
    if is_id_fragment(name) {
        let frag = name.to_ascii_lowercase();
        let all = client.list_all(&ListFilter::default()).await?;
        let found: Vec<Server> = all
            .into_iter()
            .filter(|s| {
                let id = s.id.to_string();
                id.starts_with(&frag) || id.ends_with(&frag)
            })
            .collect();
        if let Some(one) = pick(name, found, "id")? {
            return Ok(one);
        }
    }
    Err(CliError::not_found(format!(
        "no server matches '{name}' (by id, hostname or VMID)"
    ))
    .detail("list servers with: zctl get servers"))
}

fn pick(name: &str, mut found: Vec<Server>, by: &str) -> Result<Option<Server>, CliError> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => {
            let mut e = CliError::usage(format!(
                "'{name}' matches {n} servers by {by}; name one by its full id"
            ));
            for s in found.iter().take(10) {
                e = e.detail(format!(
                    "{}  {}",
                    s.id,
                    s.status.hostname.as_deref().unwrap_or("-")
                ));
            }
            Err(e)
        }
    }
}
