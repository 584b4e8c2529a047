//! One function per command.

use crate::cli::{
    Cli, Command, CreateArgs, CustomerCommand, DeleteArgs, DescribeWhat, FilterArgs, GetWhat,
    Output, PowerArgs, ReconcileArgs, WaitArgs, WaitForArgs,
};
use crate::output::{self, Cell, Color, Table, age, data_format, print_data};
use crate::wait::{self, Goal};
use crate::{CliError, config, describe, resolve};
use api::wire::{
    Accepted, CreateServerRequest, ListFilter, PowerRequest, PowerSignal, PowerTarget,
};
use api::{ApiClient, PowerOutcome};
use clap::CommandFactory;
use model::{Server, ServerId, ServerSpec};
use std::io::Read;
use std::path::Path;

pub async fn run(cli: Cli) -> Result<(), CliError> {
    output::init_color(cli.color);
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = Cli::command();
        // Into a buffer: clap_complete panics on a write error (`| head` closing the pipe).
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "zctl", &mut script);
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        return Ok(());
    }
    if let Command::Manpages { dir } = &cli.command {
        api::manpage::write_all(Cli::command(), dir).map_err(|e| {
            CliError::failed(format!(
                "cannot write the man pages to {}: {e}",
                dir.display()
            ))
        })?;
        return Ok(());
    }
    if let Command::Config { command } = &cli.command {
        return config::run(&cli, command, cli.output);
    }
    let client = config::client(&cli)?;
    let out = cli.output;
    match cli.command {
        Command::Get {
            what: GetWhat::Servers(args),
        } => {
            let filter = list_filter(&args.filter);
            if args.watch {
                wait::follow(&client, &filter, out).await
            } else {
                get_servers(&client, &filter, out).await
            }
        }
        Command::Get {
            what: GetWhat::Pools,
        } => pools(&client, out).await,
        Command::Describe {
            what: DescribeWhat::Server(arg),
        } => describe_server(&client, &arg.id, out).await,
        Command::Reconcile(args) => reconcile(&client, args, out).await,
        Command::Create(args) => create(&client, args, out).await,
        Command::Delete(args) => delete(&client, args, out).await,
        Command::Start(args) => power(&client, args, PowerSignal::Start, out).await,
        Command::Stop(args) => power(&client, args, PowerSignal::Stop, out).await,
        Command::Restart(args) => power(&client, args, PowerSignal::Restart, out).await,
        Command::Events(arg) => events(&client, &arg.id, out).await,
        Command::Pause(arg) => set_paused(&client, &arg.id, true, out).await,
        Command::Resume(arg) => set_paused(&client, &arg.id, false, out).await,
        Command::Orphans => orphans(&client, out).await,
        Command::Status => status(&client, out).await,
        Command::Console { target, read_only } => {
            crate::console::run(&client, &target.id, read_only).await
        }
        Command::Exec { target, command } => {
            crate::console::exec(&client, &target.id, &command).await
        }
        Command::Token { cmd } => crate::tokens::run(&client, cmd, out).await,
        Command::Audit(args) => crate::audit::run(&client, args, out).await,
        Command::Wait(args) => wait_servers(&client, args).await,
        Command::Apply(args) => crate::apply::apply(&client, args, out).await,
        Command::Patch(args) => crate::apply::patch(&client, args, out).await,
        Command::Customer { what } => match what {
            CustomerCommand::Get { id } => crate::customer::get(&client, &id, out).await,
            CustomerCommand::Set(args) => crate::customer::set(&client, args, out).await,
        },
        // Answered above, before a client is made.
        Command::Completions { .. } | Command::Manpages { .. } | Command::Config { .. } => Ok(()),
    }
}

fn list_filter(f: &FilterArgs) -> ListFilter {
    ListFilter {
        customer: f.customer.clone(),
        phase: f.phase,
        kind: f.kind,
        ..Default::default()
    }
}

fn items_json(servers: &[Server]) -> serde_json::Value {
    serde_json::json!({ "items": servers.iter().map(output::server_json).collect::<Vec<_>>() })
}

async fn get_servers(
    client: &ApiClient,
    filter: &ListFilter,
    out: Option<Output>,
) -> Result<(), CliError> {
    let servers = client.list_all(filter).await?;
    if let Some(f) = data_format(out) {
        return print_data(&items_json(&servers), f);
    }
    if servers.is_empty() {
        eprintln!("No servers found.");
        return Ok(());
    }
    if out == Some(Output::Name) {
        for s in &servers {
            println!("{}", output::name_line(s.id));
        }
        return Ok(());
    }
    output::servers_table(&servers, out == Some(Output::Wide), chrono::Utc::now()).print();
    Ok(())
}

async fn describe_server(
    client: &ApiClient,
    name: &str,
    out: Option<Output>,
) -> Result<(), CliError> {
    let server = resolve::server(client, name).await?;
    let events = client.events(server.id).await?;
    if let Some(f) = data_format(out) {
        let doc = serde_json::json!({
            "server": output::server_json(&server),
            "events": events,
        });
        return print_data(&doc, f);
    }
    print!(
        "{}",
        describe::render(&server, &events, chrono::Utc::now(), output::stdout_color())
    );
    Ok(())
}

async fn events(client: &ApiClient, name: &str, out: Option<Output>) -> Result<(), CliError> {
    let server = resolve::server(client, name).await?;
    let events = client.events(server.id).await?;
    if let Some(f) = data_format(out) {
        return print_data(&serde_json::json!({ "items": events }), f);
    }
    if events.is_empty() {
        eprintln!("No events for {}.", server.id);
        return Ok(());
    }
    let oldest_first: Vec<_> = events.iter().rev().collect();
    describe::events_table(&oldest_first, chrono::Utc::now()).print();
    Ok(())
}

fn ok_line(text: &str) {
    let color = output::stdout_color();
    println!("{}", output::paint(text, Some(Color::Green), color));
}

fn name_of(s: &Server) -> String {
    match s.status.hostname.as_deref() {
        Some(h) => format!("{} ({h})", s.id),
        None => s.id.to_string(),
    }
}

async fn reconcile(
    client: &ApiClient,
    args: ReconcileArgs,
    out: Option<Output>,
) -> Result<(), CliError> {
    if args.all {
        return reconcile_all(client, args, out).await;
    }
    let targets: Vec<Server> = {
        let mut v: Vec<Server> = Vec::new();
        for name in &args.ids {
            let s = resolve::server(client, name).await?;
            if !v.iter().any(|x| x.id == s.id) {
                v.push(s);
            }
        }
        v
    };
    if targets.is_empty() {
        eprintln!("No servers to reconcile.");
        return Ok(());
    }
    let mut done = Vec::with_capacity(targets.len());
    for s in &targets {
        let s = client.reconcile(s.id, args.retry).await?;
        if data_format(out).is_none() {
            ok_line(&format!(
                "reconcile{} requested: {}",
                if args.retry { " with retry" } else { "" },
                name_of(&s)
            ));
        }
        done.push(s);
    }
    if let Some(f) = data_format(out) {
        print_data(&items_json(&done), f)?;
    }
    if args.wait.wait {
        let outcomes = wait::wait(client, &done, Goal::Ready, args.wait.timeout).await?;
        return wait::summarize(&outcomes);
    }
    Ok(())
}

/// `reconcile --all`: one bulk call (`POST /api/servers:reconcile`), however large the fleet.
async fn reconcile_all(
    client: &ApiClient,
    args: ReconcileArgs,
    out: Option<Output>,
) -> Result<(), CliError> {
    let filter = ListFilter {
        customer: args.filter.customer.clone(),
        phase: args.filter.phase,
        kind: args.filter.kind,
        ..Default::default()
    };
    let done = client.reconcile_all(&filter, args.retry).await?;
    match data_format(out) {
        Some(f) => print_data(&done, f)?,
        None if done.queued == 0 => eprintln!("No servers to reconcile."),
        None => ok_line(&format!(
            "reconcile{} requested for {} server(s)",
            if args.retry { " with retry" } else { "" },
            done.queued
        )),
    }
    if args.wait.wait && !done.ids.is_empty() {
        // The filter may no longer match (a failed server retried is not failed any more):
        // wait for exactly the servers queued.
        let queued: std::collections::HashSet<_> = done.ids.iter().copied().collect();
        let servers: Vec<Server> = client
            .list_all(&ListFilter {
                phase: None,
                ..filter
            })
            .await?
            .into_iter()
            .filter(|s| queued.contains(&s.id))
            .collect();
        let outcomes = wait::wait(client, &servers, Goal::Ready, args.wait.timeout).await?;
        return wait::summarize(&outcomes);
    }
    Ok(())
}

/// The request a spec file describes: `{customerId?, spec}` or a bare spec, YAML or JSON.
fn load_request(path: &Path, customer: Option<String>) -> Result<CreateServerRequest, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("cannot read the spec from stdin: {e}")))?;
        ("stdin".to_string(), s)
    } else {
        let s = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!("cannot read the spec file {}: {e}", path.display()))
        })?;
        (path.display().to_string(), s)
    };
    parse_request(&name, &text, customer)
}

fn parse_request(
    name: &str,
    text: &str,
    customer: Option<String>,
) -> Result<CreateServerRequest, CliError> {
    let bad = |msg: String| {
        CliError::usage(format!("{name}: {msg}"))
            .detail("expected {customerId, spec} or a bare spec; see `zctl create --help`")
    };
    let trimmed = text.trim_start();
    let value: serde_json::Value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?
    };
    if !value.is_object() {
        return Err(bad("the document is not a mapping".into()));
    }
    let mut req: CreateServerRequest = if value.get("spec").is_some() {
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))?
    } else {
        let spec: ServerSpec = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        CreateServerRequest {
            customer_id: None,
            spec,
        }
    };
    if customer.is_some() {
        req.customer_id = customer;
    }
    Ok(req)
}

async fn create(client: &ApiClient, args: CreateArgs, out: Option<Output>) -> Result<(), CliError> {
    let req = load_request(&args.file, args.customer)?;
    let accepted = client.create(&req, args.idempotency_key.as_deref()).await?;
    let line = format!(
        "server {} accepted (customer {}, operation {})",
        accepted.server.id, accepted.server.customer_id, accepted.operation_id
    );
    report_accepted(client, &accepted, out, line, &args.wait, Goal::Ready).await
}

async fn delete(client: &ApiClient, args: DeleteArgs, out: Option<Output>) -> Result<(), CliError> {
    let server = resolve::server(client, &args.id).await?;
    let accepted = client.delete(server.id).await?;
    let line = format!(
        "deletion requested: {} (operation {})",
        name_of(&accepted.server),
        accepted.operation_id
    );
    report_accepted(client, &accepted, out, line, &args.wait, Goal::Gone).await
}

/// An accepted change: the document (with `--output`) or `line`, then, with `--wait`, wait
/// until the server reaches `goal`.
async fn report_accepted(
    client: &ApiClient,
    accepted: &Accepted,
    out: Option<Output>,
    line: String,
    wait: &WaitArgs,
    goal: Goal,
) -> Result<(), CliError> {
    match data_format(out) {
        Some(f) => {
            let doc = serde_json::json!({
                "server": output::server_json(&accepted.server),
                "operationId": accepted.operation_id,
                "statusUrl": accepted.status_url,
            });
            print_data(&doc, f)?;
        }
        None if out == Some(Output::Name) => println!("{}", output::name_line(accepted.server.id)),
        None => ok_line(&line),
    }
    wait_for(client, &accepted.server, goal, wait).await
}

/// With `--wait`, wait until the server reaches `goal`.
async fn wait_for(
    client: &ApiClient,
    server: &Server,
    goal: Goal,
    wait: &WaitArgs,
) -> Result<(), CliError> {
    if !wait.wait {
        return Ok(());
    }
    let outcomes = wait::wait(client, std::slice::from_ref(server), goal, wait.timeout).await?;
    wait::summarize(&outcomes)
}

/// `zctl start|stop|restart`: the power route, then (with `--wait`) until Ready for the new
/// generation, as `create --wait`.
async fn power(
    client: &ApiClient,
    args: PowerArgs,
    signal: PowerSignal,
    out: Option<Output>,
) -> Result<(), CliError> {
    let server = resolve::server(client, &args.id).await?;
    let target = args.container.then_some(PowerTarget::Container);
    let what = target.unwrap_or(PowerTarget::default_for(server.spec.kind));
    let req = PowerRequest { signal, target };
    match client.power(server.id, &req, None).await? {
        PowerOutcome::Changed(accepted) => {
            let line = format!(
                "{signal} {what} requested: {} (generation {}, operation {})",
                name_of(&accepted.server),
                accepted.server.generation,
                accepted.operation_id
            );
            if let Some(f) = data_format(out) {
                let doc = serde_json::json!({
                    "changed": true,
                    "server": output::server_json(&accepted.server),
                    "operationId": accepted.operation_id,
                    "statusUrl": accepted.status_url,
                });
                print_data(&doc, f)?;
            } else {
                ok_line(&line);
            }
            wait_for(client, &accepted.server, Goal::Ready, &args.wait).await
        }
        PowerOutcome::Unchanged(s) => {
            if let Some(f) = data_format(out) {
                let doc = serde_json::json!({
                    "changed": false,
                    "server": output::server_json(&s),
                });
                print_data(&doc, f)?;
            } else {
                let state = match signal {
                    PowerSignal::Stop => "stopped",
                    PowerSignal::Start | PowerSignal::Restart => "running",
                };
                ok_line(&format!(
                    "{}: {what} already {state}; nothing changed",
                    name_of(&s)
                ));
            }
            // Already so, but perhaps not yet carried out: --wait still waits for Ready.
            wait_for(client, &s, Goal::Ready, &args.wait).await
        }
    }
}

async fn set_paused(
    client: &ApiClient,
    name: &str,
    paused: bool,
    out: Option<Output>,
) -> Result<(), CliError> {
    let server = resolve::server(client, name).await?;
    let s = if paused {
        client.pause(server.id).await?
    } else {
        client.resume(server.id).await?
    };
    if let Some(f) = data_format(out) {
        return print_data(&output::server_json(&s), f);
    }
    ok_line(&format!(
        "{} {}",
        name_of(&s),
        if paused {
            "paused: the controller observes it but does not act (zctl resume ID)"
        } else {
            "resumed: the controller reconciles it now"
        }
    ));
    Ok(())
}

async fn pools(client: &ApiClient, out: Option<Output>) -> Result<(), CliError> {
    let items = client.pools().await?;
    if let Some(f) = data_format(out) {
        return print_data(&serde_json::json!({ "items": items }), f);
    }
    if items.is_empty() {
        eprintln!("No warm pools (set `pool = N` on a [[templates]] entry).");
        return Ok(());
    }
    let mut t = Table::new(vec![
        "TEMPLATE", "NODE", "DESIRED", "FREE", "CLONING", "RETIRING", "OLDEST",
    ]);
    for p in &items {
        let oldest = p.oldest_free_age_secs.map(output::duration_short);
        t.row(vec![
            p.template.to_string().into(),
            p.node.clone().into(),
            p.desired.to_string().into(),
            p.free.to_string().into(),
            p.cloning.to_string().into(),
            p.retiring.to_string().into(),
            output::dash(oldest.as_deref()).into(),
        ]);
    }
    t.print();
    Ok(())
}

async fn orphans(client: &ApiClient, out: Option<Output>) -> Result<(), CliError> {
    let items = client.orphans().await?;
    if let Some(f) = data_format(out) {
        return print_data(&serde_json::json!({ "items": items }), f);
    }
    if items.is_empty() {
        eprintln!("No orphans.");
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut t = Table::new(vec![
        "VMID",
        "NODE",
        "MARKER",
        "NAME",
        "FIRST SEEN",
        "LAST SEEN",
    ]);
    for o in &items {
        t.row(vec![
            o.vmid.to_string().into(),
            o.node.clone().into(),
            o.marker.clone().into(),
            output::dash(o.name.as_deref()).into(),
            age(o.first_seen, now).into(),
            age(o.last_seen, now).into(),
        ]);
    }
    t.print();
    Ok(())
}

async fn status(client: &ApiClient, out: Option<Output>) -> Result<(), CliError> {
    let st = client.controller_status().await?;
    if let Some(f) = data_format(out) {
        return print_data(&st, f);
    }
    let color = output::stdout_color();
    let summary = format!(
        "controller: {} replica(s) alive, {} lease(s) held, queue depth {}",
        st.replicas.len(),
        st.leases_held,
        st.queue_depth
    );
    if st.replicas.is_empty() {
        println!("{}", output::paint(&summary, Some(Color::Red), color));
        eprintln!(
            "no controller replica has sent a heartbeat recently: nothing is being reconciled"
        );
        return Ok(());
    }
    println!("{summary}");
    let now = chrono::Utc::now();
    let mut t = Table::new(vec![
        "REPLICA",
        "STARTED",
        "LAST SEEN",
        "LEASES",
        "QUEUE",
        "BUSY",
    ]);
    for r in &st.replicas {
        t.row(vec![
            r.id.clone().into(),
            age(r.started_at, now).into(),
            Cell::from(age(r.last_seen, now)),
            r.leases_held.to_string().into(),
            r.queue_depth.to_string().into(),
            r.workers_busy.to_string().into(),
        ]);
    }
    t.print();
    Ok(())
}

// --- wait --------------------------------------------------------------------------

/// `zctl wait ID... --for=...`: the display of `--wait`, then the summary.
/// With `--for=delete`, a server already gone (named by its full id) is done.
async fn wait_servers(client: &ApiClient, args: WaitForArgs) -> Result<(), CliError> {
    let mut targets: Vec<Server> = Vec::new();
    let mut gone: Vec<(ServerId, wait::Outcome)> = Vec::new();
    for name in &args.ids {
        let full_id = name
            .trim()
            .trim_start_matches(output::SERVER_PREFIX)
            .parse::<ServerId>();
        match resolve::server(client, name).await {
            Ok(s) if !targets.iter().any(|x| x.id == s.id) => targets.push(s),
            Ok(_) => {}
            Err(e) if e.code == crate::exit::NOT_FOUND && args.goal == Goal::Gone => {
                match full_id {
                    Ok(id) => gone.push((id, wait::Outcome::Gone)),
                    Err(_) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut outcomes = wait::wait(client, &targets, args.goal, args.timeout).await?;
    outcomes.extend(gone);
    wait::summarize(&outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_files_parse() {
        type Case = (&'static str, &'static str, Option<&'static str>, bool);
        let cases: &[Case] = &[
            (
                "a YAML document with customerId and spec",
                "customerId: u000\nspec:\n  kind: game\n  game: minecraft\n  variant: paper\n  version: \"1.21.7\"\n",
                Some("u000"),
                true,
            ),
            (
                "a bare YAML spec",
                "kind: dev\nruntime: node\nversion: \"22\"\n",
                None,
                true,
            ),
            (
                "a JSON document",
                r#"{"customerId":"u1","spec":{"kind":"game","game":"minecraft","variant":"paper","version":"1.21.7","resources":{"cores":2,"memoryMib":2048,"diskGib":16}}}"#,
                Some("u1"),
                true,
            ),
            (
                "an unknown field is refused",
                "kind: game\nversion: \"1\"\nmemory: 3\n",
                None,
                false,
            ),
            ("a scalar is not a spec", "hello", None, false),
        ];
        for (reason, text, customer, ok) in cases {
            let r = parse_request("t", text, None);
            assert_eq!(r.is_ok(), *ok, "{reason}: {r:?}");
            if let Ok(r) = r {
                assert_eq!(r.customer_id.as_deref(), *customer, "{reason}");
            }
        }
    }
}
