//! `zctl token list|create|revoke`: the API's `/api/tokens` (operators only).

use crate::CliError;
use crate::cli::{Output, TokenCmd};
use crate::output::{Table, age, dash, data_format, print_data};
use api::ApiClient;
use api::wire::{CreateTokenRequest, TokenInfo};

pub async fn run(client: &ApiClient, cmd: TokenCmd, out: Option<Output>) -> Result<(), CliError> {
    match cmd {
        TokenCmd::List => list(client, out).await,
        TokenCmd::Create {
            name,
            role,
            customer,
            expires,
        } => {
            let req = CreateTokenRequest {
                name,
                role,
                customer_id: customer,
                expires_in: expires,
            };
            let created = client.create_token(&req).await?;
            if let Some(f) = data_format(out) {
                return print_data(&created, f);
            }
            // Only the secret on stdout, so `> file` keeps just it.
            println!("{}", created.secret);
            let until = match created.token.expires_at {
                Some(t) => format!(
                    ", expires {}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => String::new(),
            };
            eprintln!(
                "token '{}' ({}{until}) created; the secret above is shown only once",
                created.token.name, created.token.role
            );
            Ok(())
        }
        TokenCmd::Revoke { which } => {
            let t = find(client, &which).await?;
            let t = client.revoke_token(t.id).await?;
            if let Some(f) = data_format(out) {
                return print_data(&t, f);
            }
            println!("token '{}' ({}) revoked: refused from now on", t.name, t.id);
            Ok(())
        }
    }
}

/// The token `name` names: its id, or a name only one token has.
async fn find(client: &ApiClient, name: &str) -> Result<TokenInfo, CliError> {
    let all = client.tokens().await?;
    if let Ok(id) = name.parse::<uuid::Uuid>() {
        return all
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| CliError::not_found(format!("no token with id {id}")));
    }
    let mut named: Vec<TokenInfo> = all.into_iter().filter(|t| t.name == name).collect();
    match named.len() {
        0 => Err(CliError::not_found(format!("no token named '{name}'"))),
        1 => Ok(named.remove(0)),
        n => {
            let mut e = CliError::usage(format!("{n} tokens are named '{name}': name one by id"));
            for t in &named {
                e = e.detail(format!("{} ({}, {})", t.id, t.role, t.state));
            }
            Err(e)
        }
    }
}

async fn list(client: &ApiClient, out: Option<Output>) -> Result<(), CliError> {
    let items = client.tokens().await?;
    if let Some(f) = data_format(out) {
        return print_data(&serde_json::json!({ "items": items }), f);
    }
    if items.is_empty() {
        eprintln!("No tokens.");
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut t = Table::new(vec![
        "ID",
        "NAME",
        "ROLE",
        "CUSTOMER",
        "STATE",
        "CREATED",
        "LAST USED",
        "EXPIRES",
    ]);
    for x in &items {
        t.row(vec![
            x.id.to_string().into(),
            x.name.clone().into(),
            x.role.to_string().into(),
            dash(x.customer_id.as_deref()).into(),
            x.state.clone().into(),
            age(x.created_at, now).into(),
            x.last_used_at
                .map_or_else(|| "never".to_string(), |u| age(u, now))
                .into(),
            x.expires_at
                .map_or_else(
                    || "never".to_string(),
                    |e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
                .into(),
        ]);
    }
    t.print();
    Ok(())
}
