//! `zctl`: the operator and on-call CLI of zlh. It talks only to the API, through
//! [`api::client::ApiClient`]; it never touches the database or Proxmox.
//!
//! Exit codes are the constants in [`exit`]; every error is printed as one line (plus the
//! problem's field errors and a hint) on stderr. The token is never printed.

mod apply;
mod audit;
mod cli;
mod commands;
mod config;
mod console;
mod customer;
mod describe;
mod output;
mod resolve;
mod tokens;
mod wait;

use api::ClientError;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

/// Exit codes a script can rely on (also listed in `zctl --help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation failed: a server ended `failed`, a wait timed out, the API refused the
    /// request (conflict, invalid spec, rate limit, server error).
    pub const FAILED: u8 = 1;
    /// Usage or configuration error (bad flags, unreadable config, token or spec file).
    pub const USAGE: u8 = 2;
    /// The API could not be reached.
    pub const UNREACHABLE: u8 = 3;
    /// Not found (no such server).
    pub const NOT_FOUND: u8 = 4;
    /// Not allowed: a missing or wrong token (401), or a role without the right (403).
    pub const NOT_ALLOWED: u8 = 5;
    /// `zctl console`: zlh ended the session (server deleted or stopped, shutdown, address
    /// changed, maximum age); opening it again may work.
    pub const CONSOLE_ENDED: u8 = 6;
}

/// An error that ends the command: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    /// One line.
    pub message: String,
    /// Further lines (field errors, hints), printed indented.
    pub details: Vec<String>,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(exit::FAILED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(exit::NOT_FOUND, message)
    }

    /// An error already reported (e.g. a wait's summary): only the exit code is left.
    pub fn silent(code: u8) -> Self {
        Self::new(code, "")
    }

    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            ClientError::NotFound(_) => exit::NOT_FOUND,
            ClientError::Unauthorized(_) | ClientError::Forbidden(_) => exit::NOT_ALLOWED,
            ClientError::BadUrl(_) => exit::USAGE,
            ClientError::Conflict(_)
            | ClientError::Invalid(_)
            | ClientError::RateLimited { .. }
            | ClientError::Server(_)
            | ClientError::Protocol(_) => exit::FAILED,
        };
        let mut err = match e.problem() {
            Some(p) => {
                let mut line = format!("{} (HTTP {})", p.title, p.status);
                if let Some(d) = &p.detail {
                    line.push_str(": ");
                    line.push_str(d);
                }
                if let ClientError::RateLimited {
                    retry_after_secs, ..
                } = &e
                {
                    line.push_str(&format!(" (retry after {retry_after_secs}s)"));
                }
                let mut err = CliError::new(code, line);
                for f in &p.errors {
                    err = err.detail(format!("{}: {}", f.field, f.message));
                }
                if let Some(op) = &p.operation_id {
                    err = err.detail(format!("operation: {op}"));
                }
                if let Some(id) = &p.request_id {
                    err = err.detail(format!("request id: {id}"));
                }
                err
            }
            None => match &e {
                ClientError::Unreachable { url, reason } => CliError::new(
                    code,
                    format!("cannot reach the API at {}: {reason}", redact_url(url)),
                ),
                other => CliError::new(code, other.to_string()),
            },
        };
        err = match &e {
            ClientError::Unreachable { .. } => err.detail(
                "check --api-url / ZLH_API_URL (or api_url in the config file) and that the API is running",
            ),
            ClientError::Unauthorized(_) => err.detail(
                "check the token: ZLH_TOKEN, --token-file / ZLH_TOKEN_FILE, or token_file in the config file (tokens come from `zlhd token create`)",
            ),
            ClientError::Forbidden(_) => {
                err.detail("this token's role may not do this (operators may do everything)")
            }
            _ => err,
        };
        err
    }
}

/// A URL without user info (a password in a URL is a secret too).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        _ => url.to_string(),
    }
}

fn report(e: &CliError) {
    if e.message.is_empty() {
        return;
    }
    let label = output::paint("error:", Some(output::Color::Red), output::stderr_color());
    eprintln!("{label} {}", e.message);
    for d in &e.details {
        eprintln!("  {d}");
    }
}

fn main() -> ExitCode {
    let parsed = cli::Cli::command()
        .try_get_matches()
        .and_then(|m| cli::Cli::from_arg_matches(&m).map(|c| (c, m)));
    let cli = match parsed {
        Ok((mut c, m)) => {
            let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
            c.explicit = cli::Explicit {
                api_url: given("api_url"),
                token: given("token"),
                token_file: given("token_file"),
            };
            c
        }
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = rt.block_on(commands::run(cli));
    // `zctl console`'s stdin read runs on a blocking thread that returns only with a line:
    // dropping the runtime would wait for it, so a console zlh closed would hang until the
    // user pressed Enter. Nothing else is left running once `run` has returned.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            report(&e);
            ExitCode::from(e.code)
        }
    }
}
