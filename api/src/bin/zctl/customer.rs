//! `zctl customer get|set`: a customer's quota and standing (`GET`/`PUT /api/customers/{id}`).

use crate::CliError;
use crate::cli::{CustomerSetArgs, Output, StandingArg};
use crate::output::{self, Color, data_format, paint, print_data};
use api::ApiClient;
use api::wire::CustomerUpdate;
use model::{Customer, Standing};

impl From<StandingArg> for Standing {
    fn from(s: StandingArg) -> Self {
        match s {
            StandingArg::Active => Standing::Active,
            StandingArg::Overdue => Standing::Overdue,
            StandingArg::Suspended => Standing::Suspended,
        }
    }
}

fn show(c: &Customer, out: Option<Output>) -> Result<(), CliError> {
    if let Some(f) = data_format(out) {
        return print_data(c, f);
    }
    let color = output::stdout_color();
    let standing_color = match c.standing {
        Standing::Active => Color::Green,
        Standing::Overdue => Color::Yellow,
        Standing::Suspended => Color::Red,
    };
    let q = &c.quota;
    let rows = [
        ("Customer", c.id.clone()),
        (
            "Standing",
            paint(c.standing.as_str(), Some(standing_color), color),
        ),
        ("Max servers", q.max_servers.to_string()),
        ("Max cores", q.max_cores.to_string()),
        ("Max memory", format!("{} MiB", q.max_memory_mib)),
        ("Max disk", format!("{} GiB", q.max_disk_gib)),
        ("Updated", output::when(c.updated_at, chrono::Utc::now())),
    ];
    for (k, v) in rows {
        println!(
            "{}  {v}",
            paint(&format!("{k:<12}"), Some(Color::Bold), color)
        );
    }
    Ok(())
}

/// `zctl customer get ID`.
pub async fn get(client: &ApiClient, id: &str, out: Option<Output>) -> Result<(), CliError> {
    show(&client.customer(id).await?, out)
}

/// `zctl customer set ID ...`: the quota fields given change, the others keep their value.
pub async fn set(
    client: &ApiClient,
    args: CustomerSetArgs,
    out: Option<Output>,
) -> Result<(), CliError> {
    let quota_given = args.max_servers.is_some()
        || args.max_cores.is_some()
        || args.max_memory_mib.is_some()
        || args.max_disk_gib.is_some();
    if !quota_given && args.standing.is_none() {
        return Err(CliError::usage(
            "nothing to change: give --standing or a --max-* quota field",
        ));
    }
    // The route replaces the quota whole: start from the current one.
    let quota = if quota_given {
        let mut q = client.customer(&args.id).await?.quota;
        q.max_servers = args.max_servers.unwrap_or(q.max_servers);
        q.max_cores = args.max_cores.unwrap_or(q.max_cores);
        q.max_memory_mib = args.max_memory_mib.unwrap_or(q.max_memory_mib);
        q.max_disk_gib = args.max_disk_gib.unwrap_or(q.max_disk_gib);
        Some(q)
    } else {
        None
    };
    let update = CustomerUpdate {
        quota,
        standing: args.standing.map(Standing::from),
    };
    let c = client.set_customer(&args.id, &update).await?;
    show(&c, out)
}
