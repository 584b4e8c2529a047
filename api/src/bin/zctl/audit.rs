//! `zctl audit`: the API's audit log (operators only), newest first.

use crate::cli::{AuditArgs, Output};
use crate::output::{Table, age, dash, data_format, print_data};
use crate::{CliError, resolve};
use api::ApiClient;
use api::client::AuditParams;

pub async fn run(client: &ApiClient, args: AuditArgs, out: Option<Output>) -> Result<(), CliError> {
    let server = match &args.server {
        Some(name) => Some(resolve::server(client, name).await?.id),
        None => None,
    };
    let page = client
        .audit(&AuditParams {
            server,
            actor: args.actor,
            action: args.action,
            before: None,
            limit: Some(args.limit),
        })
        .await?;
    if let Some(f) = data_format(out) {
        return print_data(&page, f);
    }
    if page.items.is_empty() {
        eprintln!("No audit entries.");
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut t = Table::new(vec!["AGE", "ACTOR", "ROLE", "ACTION", "SERVER", "DETAIL"]);
    for e in &page.items {
        t.row(vec![
            age(e.at, now).into(),
            e.actor.clone().into(),
            e.role.to_string().into(),
            e.action.clone().into(),
            dash(e.server_id.map(|s| s.to_string()).as_deref()).into(),
            e.detail.clone().into(),
        ]);
    }
    t.print();
    Ok(())
}
