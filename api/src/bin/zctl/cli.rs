//! Command-line definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use model::{Kind, Phase};
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str = "The operator and on-call CLI of zlh: see the fleet, find out why a server is not Ready, and push it along";

const LONG_ABOUT: &str = "\
The operator and on-call CLI of zlh: see the fleet, find out why a server is not Ready,
and push it along. zctl talks only to the zlh API.

Configuration (first found wins):
  API URL  --api-url, ZLH_API_URL, api_url in the config file, http://127.0.0.1:8080
  token    ZLH_TOKEN, --token-file / ZLH_TOKEN_FILE, token_file in the config file
The config file is ~/.config/zlh/zctl.toml (or --config FILE / ZCTL_CONFIG):
  api_url = \"https://zlh.example.net\"
  token_file = \"~/.config/zlh/token\"     # a file holding only the token, mode 0600
or names several installations as contexts (zctl config --help): the context's keys
(--context / ZCTL_CONTEXT, else current_context) take the place of these.
Prefer ZLH_TOKEN or a token file to --token: arguments are visible to every user of the
machine (ps) and end up in shell history. The token is never printed.

A server (ID) is named by its full id (or server/ID, as -o name prints it), a unique start
or end of it (the ID column of `zctl get servers` shows its last 8 characters), its
hostname or its VMID.";

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (a server ended failed, a wait timed out, the API refused)
  2  usage or configuration error
  3  the API is unreachable
  4  not found
  5  not allowed (missing or wrong token, or a role without the right)
  6  zctl console: zlh ended the session (see zctl console --help)

Examples:
  export ZLH_API_URL=http://127.0.0.1:8080 ZLH_TOKEN=...   # as printed by `zlhd dev`
  zctl get servers -w
  zctl describe server mc-paper-101
  zctl reconcile 3f9c2a1b --retry --wait
  zctl restart mc-paper-101 --wait";

#[derive(Debug, Parser)]
#[command(
    name = "zctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Base URL of the zlh API.
    #[arg(
        long,
        env = "ZLH_API_URL",
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub api_url: Option<String>,

    /// API token. Prefer the ZLH_TOKEN environment variable or a token file: arguments are
    /// visible to other users (ps) and kept in shell history.
    #[arg(
        long,
        env = "ZLH_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN",
        help_heading = "Global options"
    )]
    pub token: Option<String>,

    /// Read the API token from this file (only the token, surrounding whitespace ignored).
    #[arg(
        long,
        env = "ZLH_TOKEN_FILE",
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub token_file: Option<PathBuf>,

    /// Config file with `api_url` and `token_file`, or contexts [default: ~/.config/zlh/zctl.toml].
    #[arg(
        long,
        env = "ZCTL_CONFIG",
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,

    /// Output format. Default: a table (or text) for humans; json and yaml are stable for
    /// scripts (servers carry the derived `phase`, `step` and `ready` besides the API's fields);
    /// name prints `server/ID` lines.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_name = "FORMAT",
        help_heading = "Global options"
    )]
    pub output: Option<Output>,

    /// Use this context of the config file (see `zctl config --help`).
    #[arg(
        long,
        env = "ZCTL_CONTEXT",
        global = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub context: Option<String>,

    /// Which of the global options were given on the command line (not from the
    /// environment): `config set-context` stores only those.
    #[arg(skip)]
    pub explicit: Explicit,

    /// When to colour: auto (a terminal, unless NO_COLOR is set or CLICOLOR_FORCE forces it),
    /// always or never.
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        help_heading = "Global options"
    )]
    pub color: ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

const CONSOLE_HELP: &str = "\
Example:
  zctl console mc-paper-101
  echo list | zctl console 101

End of input closes the console. Exit codes by how the console closed:
  0  normal close (1000)
  1  the Agent failed (1011), this client was too slow (1013) or another code
  5  the token was revoked (4401) or the permissions lowered (4403)
  6  the server was deleted or stopped, zlh shut down (1001), its address changed
     (1012) or the session reached its maximum age (4001): open it again";

const TOKEN_HELP: &str = "\
Examples:
  zctl token list
  zctl token create --name ci --role viewer --expires 30d > ci.token
  zctl token create --name u123-portal --role customer --customer u123
  zctl token revoke ci

A revoked or expired token is refused (401) on its next request, by every API replica.";

const AUDIT_HELP: &str = "\
Examples:
  zctl audit
  zctl audit --server mc-paper-101
  zctl audit --actor oncall --action server.delete -o json

Actions: server.create, server.patch, server.delete, server.reconcile, servers.reconcile,
server.pause, server.resume, server.power, server.command, customer.set, token.create,
token.revoke.";

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Every token: name, role, state, created, last used, expiry.
    List,
    /// Create a token; its secret goes to stdout, once.
    Create {
        /// How the audit log and events will name its requests.
        #[arg(long)]
        name: String,
        /// portal, operator, viewer or customer.
        #[arg(long)]
        role: model::Role,
        /// The customer a `customer` token is scoped to (required with --role customer).
        #[arg(long, value_name = "CUSTOMER")]
        customer: Option<String>,
        /// Refused after this long (e.g. 30d, 12h); without it the token never expires.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Revoke a token, named by its id or its (unique) name.
    Revoke {
        // Not `token`: that id is the global `--token`.
        #[arg(value_name = "TOKEN")]
        which: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about this server (id, unique start or end of it, hostname or VMID).
    #[arg(long, value_name = "ID")]
    pub server: Option<String>,
    /// Only this actor's (a token name, or jwt:<subject>).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Only this action (e.g. server.delete).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// At most this many entries (the newest).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
}

/// Global options given on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Explicit {
    pub api_url: bool,
    pub token: bool,
    pub token_file: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set; CLICOLOR_FORCE colours a pipe too.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// More columns in tables.
    Wide,
    Json,
    Yaml,
    /// `server/ID`, one a line (zctl takes these names back: `zctl wait $(zctl get servers -o name)`).
    Name,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List resources.
    #[command(
        after_help = "Examples:\n  zctl get servers\n  zctl get servers --phase failed -o wide\n  zctl get servers --customer u000 -w"
    )]
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Show one resource in detail: why it is (not) Ready.
    #[command(
        after_help = "Examples:\n  zctl describe server mc-paper-101\n  zctl describe server 101 -o yaml"
    )]
    Describe {
        #[command(subcommand)]
        what: DescribeWhat,
    },
    /// Ask the controller to look at servers now (and optionally retry failed ones).
    #[command(after_help = "\
Examples:
  zctl reconcile mc-paper-101 --wait
  zctl reconcile 3f9c2a1b --retry --wait --timeout 10m
  zctl reconcile --all --phase failed --retry

--wait exits 0 only if every server ends Ready, 1 if any failed, was deleted or timed out.
A server that is already Ready counts as Ready at once.")]
    Reconcile(ReconcileArgs),
    /// Declare a new server from a spec file (YAML or JSON).
    #[command(after_help = "\
Examples:
  zctl create -f spec.yaml --wait
  zctl create -f - --customer u000 < spec.json
  zctl create -f spec.yaml --idempotency-key deploy-42

The file holds either {customerId, spec} or a bare spec:
  customerId: u000
  spec:
    kind: game
    game: minecraft
    variant: paper
    version: \"1.21.7\"
    resources: { cores: 2, memoryMib: 2048, diskGib: 16 }")]
    Create(CreateArgs),
    /// Delete a server (teardown is reconciled step by step).
    #[command(
        after_help = "Examples:\n  zctl delete mc-paper-101\n  zctl delete 3f9c2a1b --wait --timeout 5m"
    )]
    Delete(DeleteArgs),
    /// A server's events, oldest first (repeats folded, with counts).
    #[command(after_help = "Examples:\n  zctl events mc-paper-101\n  zctl events 101 -o json")]
    Events(IdArg),
    /// Start a server's game (or, with --container, its container).
    #[command(after_help = POWER_HELP_START)]
    Start(PowerArgs),
    /// Stop a server's game (or, with --container, its container); it stays stopped until started.
    #[command(after_help = POWER_HELP_STOP)]
    Stop(PowerArgs),
    /// Restart a server's game (or, with --container, reboot its container), exactly once.
    #[command(after_help = POWER_HELP_RESTART)]
    Restart(PowerArgs),
    /// Stop reconciling a server (operators only); nothing is torn down.
    #[command(after_help = "Example:\n  zctl pause mc-paper-101")]
    Pause(IdArg),
    /// Reconcile a paused server again (operators only).
    #[command(after_help = "Example:\n  zctl resume mc-paper-101")]
    Resume(IdArg),
    /// Containers carrying our ownership marker that no server owns (never destroyed automatically).
    #[command(after_help = "Example:\n  zctl orphans -o json")]
    Orphans,
    /// Controller replicas, the leases they hold and their queue depth.
    #[command(after_help = "Example:\n  zctl status")]
    Status,
    /// Open a server's console: stdin lines go to it, its output to stdout.
    #[command(after_help = CONSOLE_HELP)]
    Console {
        #[command(flatten)]
        target: IdArg,
        /// Watch only: zlh makes the session read-only and no input is read.
        #[arg(long)]
        read_only: bool,
    },
    /// Send one console line to a server (no console session).
    #[command(after_help = "Example:\n  zctl exec mc-paper-101 -- say hello")]
    Exec {
        #[command(flatten)]
        target: IdArg,
        /// The command line (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    // --- tokens and audit (operators) ---------------------------------------------------
    /// API tokens (operators only): list, create (the secret is shown once), revoke.
    #[command(after_help = TOKEN_HELP)]
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Who asked for which change, newest first (operators only).
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
    // --- end of tokens and audit ------------------------------------------------------------
    /// Wait until servers reach a phase (or are deleted), showing live progress.
    #[command(after_help = WAIT_HELP)]
    Wait(WaitForArgs),
    /// Create or update a server from a spec file (YAML or JSON); unchanged, nothing is sent.
    #[command(after_help = APPLY_HELP)]
    Apply(ApplyArgs),
    /// Change fields of a server's spec (resources, version, power intent, ...).
    #[command(after_help = PATCH_HELP)]
    Patch(PatchArgs),
    /// A customer's quota and standing.
    #[command(
        after_help = "Examples:\n  zctl customer get u000\n  zctl customer set u000 --max-servers 10 --max-cores 24\n  zctl customer set u000 --standing suspended"
    )]
    Customer {
        #[command(subcommand)]
        what: CustomerCommand,
    },
    /// zctl's config file: contexts for several installations, the way kubectl has them.
    #[command(after_help = CONFIG_HELP)]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  zctl completions bash > ~/.local/share/bash-completion/completions/zctl\n  zctl completions zsh > ~/.zfunc/_zctl"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (zctl.1 and one per subcommand) into a directory.
    #[command(after_help = "Example:\n  zctl manpages /usr/local/share/man/man1")]
    Manpages {
        /// Where to write them (created if missing).
        dir: std::path::PathBuf,
    },
}

const WAIT_HELP: &str = "\
Examples:
  zctl wait mc-paper-101                        # until Ready
  zctl wait 3f9c2a1b 6088 --for=phase=ready --timeout 10m
  zctl wait mc-paper-101 --for=phase=degraded
  zctl wait 3f9c2a1b --for=delete

--for is phase=PHASE (queued, provisioning, ready, degraded, failed, deleting) or delete.
Exit 0 once every server is there; 1 if one failed (unless failed was asked for), was
deleted before it got there, or the timeout passed.";

/// `zctl wait`.
#[derive(Debug, Args)]
pub struct WaitForArgs {
    /// Servers: full id, a unique start or end of it, hostname or VMID.
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// What to wait for: phase=PHASE or delete.
    #[arg(long = "for", value_name = "CONDITION", default_value = "phase=ready", value_parser = parse_goal)]
    pub goal: crate::wait::Goal,
    /// Give up after this long (e.g. 90s, 10m); exit 1.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

fn parse_goal(s: &str) -> Result<crate::wait::Goal, String> {
    s.parse()
}

const APPLY_HELP: &str = "\
Examples:
  zctl apply -f spec.yaml --wait
  zctl apply -f spec.yaml --id mc-paper-101     # update that server to the file's spec

The file holds {id?, customerId?, spec} or a bare spec. With an id (in the file or --id)
the server's spec becomes the file's (a field left out takes its default: power running);
prints `server/ID configured`, or `unchanged` when it already is. Without one, it creates
a server: applying the same file again returns the same server (`created` both times).";

const PATCH_HELP: &str = "\
Examples:
  zctl patch mc-paper-101 --set resources.cores=4 --set resources.memoryMib=4096
  zctl patch 101 --set power=stopped             # the container's power intent
  zctl patch 101 --set process=stopped           # the game's
  zctl patch 3f9c2a1b --merge '{\"version\": \"1.21.8\"}' --wait

Paths use the spec's JSON names (zctl describe server ID -o json). A value is typed like
the one it replaces. The merge patch (RFC 7386) is applied first, then each --set; the
edited spec is sent only if it differs, at the version read (a concurrent change is
re-read and the edit redone).";

const CONFIG_HELP: &str = "\
Examples:
  zctl config set-context prod --api-url https://zlh.example.net --token-file ~/.config/zlh/prod.token
  zctl config set-context dev --api-url http://127.0.0.1:8080 --token-file dev.token
  zctl config use-context prod
  zctl config get-contexts
  zctl --context dev get servers                # one command in another context

The file (~/.config/zlh/zctl.toml, or --config / ZCTL_CONFIG):
  current_context = \"prod\"
  [contexts.prod]
  api_url = \"https://zlh.example.net\"
  token_file = \"~/.config/zlh/prod.token\"    # relative paths: to the config file
The context is --context / ZCTL_CONTEXT, else current_context. The flat keys api_url and
token_file still work: they apply without a context, and fill what a context leaves out.
Flags and environment (--api-url, ZLH_API_URL, ZLH_TOKEN, ...) win over the file.";

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List the contexts (the current one marked *).
    GetContexts,
    /// Print the name of the context in use.
    CurrentContext,
    /// Make NAME the current context.
    UseContext {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Create or change context NAME from --api-url and --token-file (given on the command line).
    SetContext(SetContextArgs),
}

#[derive(Debug, Args)]
pub struct SetContextArgs {
    /// Letters, digits, - and _.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `zctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Spec file (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Update this server (overrides `id` in the file).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The customer of a new server (overrides customerId in the file).
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `zctl patch`.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// Server: full id, a unique start or end of it, hostname or VMID.
    #[arg(value_name = "ID")]
    pub id: String,
    /// PATH=VALUE, e.g. resources.cores=4 (repeatable).
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// A JSON (or YAML) merge patch of the spec.
    #[arg(long, value_name = "JSON")]
    pub merge: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Quota and standing (defaults if never set).
    Get {
        #[arg(value_name = "CUSTOMER")]
        id: String,
    },
    /// Change quota fields and/or the standing (operators only); the rest keeps its value.
    Set(CustomerSetArgs),
}

#[derive(Debug, Args)]
pub struct CustomerSetArgs {
    #[arg(value_name = "CUSTOMER")]
    pub id: String,
    #[arg(long, value_name = "N")]
    pub max_servers: Option<u32>,
    #[arg(long, value_name = "N")]
    pub max_cores: Option<u32>,
    #[arg(long, value_name = "MIB")]
    pub max_memory_mib: Option<u64>,
    #[arg(long, value_name = "GIB")]
    pub max_disk_gib: Option<u64>,
    /// active, overdue (no new servers) or suspended (servers stopped).
    #[arg(long, value_name = "STANDING")]
    pub standing: Option<StandingArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StandingArg {
    Active,
    Overdue,
    Suspended,
}

const POWER_HELP_START: &str = "\
Examples:
  zctl start mc-paper-101 --wait
  zctl start 6088 --container

This records the wish in the spec; the controller carries it out. Already running: nothing
changes (exit 0). Dev containers have no game: their target is always the container.";

const POWER_HELP_STOP: &str = "\
Examples:
  zctl stop mc-paper-101
  zctl stop 3f9c2a1b --container --wait

This records the wish in the spec; the controller keeps it so (a game started by hand is
stopped again). Already stopped: nothing changes (exit 0).";

const POWER_HELP_RESTART: &str = "\
Examples:
  zctl restart mc-paper-101 --wait
  zctl restart 101 --container

Each restart is counted in the spec, so it happens once even if the controller restarts.";

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// Server: full id, a unique start or end of it, hostname or VMID.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Act on the container instead of the game process (dev containers: always the container).
    #[arg(long)]
    pub container: bool,
    /// With --wait: wait until the server is Ready with the change carried out.
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// The fleet as a table: ID, HOSTNAME, VMID, PHASE (with the step), READY, AGE, MESSAGE.
    #[command(
        visible_alias = "server",
        after_help = "\
Examples:
  zctl get servers
  zctl get servers --phase provisioning -w
  zctl get servers -o json | jq -r '.items[] | select(.phase == \"failed\") | .id'

-w prints the table, then a row for every change (on a terminal the table is redrawn);
with -o json or yaml, one {type, seq, server} or {type, seq, id} document per change."
    )]
    Servers(GetServersArgs),
    /// The warm pools (operators): TEMPLATE, NODE, DESIRED, FREE, CLONING, RETIRING, OLDEST.
    #[command(
        visible_alias = "pool",
        after_help = "\
Examples:
  zctl get pools
  zctl get pools -o json | jq '.items[] | {template, free, desired}'

A pool that stays below DESIRED with CLONING 1 for long is a stuck refill: see the README's
runbook (\"Warm pools\")."
    )]
    Pools,
}

#[derive(Debug, Args)]
pub struct GetServersArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep watching and show changes as they happen (Ctrl-C to stop).
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Only this customer's servers.
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Option<String>,
    /// Only servers in this phase (queued, provisioning, ready, degraded, failed, deleting).
    #[arg(long, value_name = "PHASE")]
    pub phase: Option<Phase>,
    /// Only game or dev servers.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<Kind>,
}

#[derive(Debug, Subcommand)]
pub enum DescribeWhat {
    /// Spec, status, every condition, last error, failure, attempts, in-flight task, events.
    #[command(
        visible_alias = "servers",
        after_help = "Examples:\n  zctl describe server mc-paper-101\n  zctl describe server 101\n  zctl describe server 3f9c2a1b -o json"
    )]
    Server(IdArg),
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Server: full id, a unique start or end of it, hostname or VMID.
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait, showing live progress, until the operation is done.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 90s, 10m); exit 1.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Servers: full id, a unique start or end of it, hostname or VMID.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub ids: Vec<String>,
    /// Every server (narrow with --customer, --phase, --kind).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: AllFilterArgs,
    /// Also clear a terminal failure, so the controller tries again (attempts start from zero).
    #[arg(long)]
    pub retry: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The filters of `reconcile --all`.
#[derive(Debug, Args, Default, Clone)]
pub struct AllFilterArgs {
    /// With --all: only this customer's servers.
    #[arg(long, value_name = "CUSTOMER", requires = "all")]
    pub customer: Option<String>,
    /// With --all: only servers in this phase.
    #[arg(long, value_name = "PHASE", requires = "all")]
    pub phase: Option<Phase>,
    /// With --all: only game or dev servers.
    #[arg(long, value_name = "KIND", requires = "all")]
    pub kind: Option<Kind>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Spec file (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// The customer (overrides customerId in the file; customer tokens may omit it).
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Option<String>,
    /// Makes retries safe: the same key with the same spec returns the same server.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Server: full id, a unique start or end of it, hostname or VMID.
    #[arg(value_name = "ID")]
    pub id: String,
    /// With --wait: wait until the server is gone (archived).
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
