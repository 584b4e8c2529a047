//! Where the API is and which token to use: flags, environment, config file.

use crate::CliError;
use crate::cli::Cli;
use api::ApiClient;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The API URL when nothing else says (`zlhd dev`'s default listen address).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// `~/.config/zlh/zctl.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    api_url: Option<String>,
    /// A file holding only the token; `~/` is expanded, relative paths are relative to the
    /// config file.
    token_file: Option<PathBuf>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("zlh").join("zctl.toml"))
}

fn expand(p: &Path, relative_to: Option<&Path>) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    match relative_to {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

fn read_token_file(path: &Path) -> Result<SecretString, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(CliError::usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(t.to_string()))
}

/// The client the flags, environment and config file describe.
pub fn client(cli: &Cli) -> Result<ApiClient, CliError> {
    let (file, file_dir) = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::usage(format!(
                    "cannot read the config file {}: {e}",
                    path.display()
                ))
            })?;
            (parse(path, &text)?, path.parent().map(Path::to_path_buf))
        }
        None => match default_config_path() {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    CliError::usage(format!(
                        "cannot read the config file {}: {e}",
                        path.display()
                    ))
                })?;
                (parse(&path, &text)?, path.parent().map(Path::to_path_buf))
            }
            _ => (FileConfig::default(), None),
        },
    };
    let url = cli
        .api_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or(file.api_url)
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let token = match (&cli.token, &cli.token_file, &file.token_file) {
        (Some(t), _, _) if !t.trim().is_empty() => Some(SecretString::from(t.trim().to_string())),
        (_, Some(p), _) => Some(read_token_file(&expand(p, None))?),
        (_, None, Some(p)) => Some(read_token_file(&expand(p, file_dir.as_deref()))?),
        _ => None,
    };
    ApiClient::new(&url, token).map_err(|e| {
        CliError::usage(format!(
            "the API URL '{}' is not usable: {e}",
            crate::redact_url(&url)
        ))
        .detail("set --api-url or ZLH_API_URL, e.g. http://127.0.0.1:8080")
    })
}

fn parse(path: &Path, text: &str) -> Result<FileConfig, CliError> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        CliError::usage(format!("config file {}: {msg}", path.display()))
            .detail("expected keys: api_url = \"...\", token_file = \"...\"")
    })
}
