//! Where the API is and which token to use: flags, environment, config file. The config file
//! may name several installations as contexts, the way kubectl does:
//!
//! ```toml
//! current_context = "prod"
//! [contexts.prod]
//! api_url = "https://zlh.example.net"
//! token_file = "~/.config/zlh/prod.token"
//! ```
//!
//! The flat keys (`api_url`, `token_file` at the top) keep working: a context's keys take
//! their place when a context is in use, and fields a context leaves out come from them.

use crate::CliError;
use crate::cli::{Cli, ConfigCommand, Output, SetContextArgs};
use crate::output::{self, Table, data_format, print_data};
use api::ApiClient;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The API URL when nothing else says (`zlhd dev`'s default listen address).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// The keys a config file may hold, for error messages.
const EXPECTED_KEYS: &str = "expected keys: api_url, token_file, current_context, [contexts.NAME] with api_url and token_file";

/// `~/.config/zlh/zctl.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    api_url: Option<String>,
    /// A file holding only the token; `~/` is expanded, relative paths are relative to the
    /// config file.
    token_file: Option<PathBuf>,
    /// The context used when neither `--context` nor `ZCTL_CONTEXT` names one.
    current_context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

/// One installation: where its API is and which token file to use.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Context {
    api_url: Option<String>,
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

/// The config file in use: `--config`/`ZCTL_CONFIG`, else the default path.
fn config_path(cli: &Cli) -> Option<PathBuf> {
    cli.config.clone().or_else(default_config_path)
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

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })
}

/// The config file: `--config` must exist; the default one may be missing.
fn load(cli: &Cli) -> Result<(FileConfig, Option<PathBuf>), CliError> {
    match &cli.config {
        Some(path) => Ok((parse(path, &read_text(path)?)?, Some(path.clone()))),
        None => match default_config_path() {
            Some(path) if path.exists() => Ok((parse(&path, &read_text(&path)?)?, Some(path))),
            _ => Ok((FileConfig::default(), None)),
        },
    }
}

/// The context in use: `--context`/`ZCTL_CONTEXT`, else `current_context`; `None` for the
/// flat keys.
fn selected<'a>(
    cli: &'a Cli,
    file: &'a FileConfig,
    path: Option<&Path>,
) -> Result<Option<(&'a str, &'a Context)>, CliError> {
    let name = cli
        .context
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .or(file.current_context.as_deref());
    let Some(name) = name else {
        return Ok(None);
    };
    match file.contexts.get(name) {
        Some(c) => Ok(Some((name, c))),
        None => Err(unknown_context(name, file, path)),
    }
}

fn unknown_context(name: &str, file: &FileConfig, path: Option<&Path>) -> CliError {
    let where_ = path
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default();
    let known: Vec<&str> = file.contexts.keys().map(String::as_str).collect();
    CliError::usage(format!("no context named '{name}'{where_}")).detail(if known.is_empty() {
        "no contexts are defined; add one with: zctl config set-context NAME --api-url URL --token-file FILE".to_string()
    } else {
        format!("contexts: {}", known.join(", "))
    })
}

/// The client the flags, environment and config file describe.
pub fn client(cli: &Cli) -> Result<ApiClient, CliError> {
    let (file, path) = load(cli)?;
    let file_dir = path
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let ctx = selected(cli, &file, path.as_deref())?.map(|(_, c)| c);
    let file_url = ctx.and_then(|c| c.api_url.clone()).or(file.api_url.clone());
    let file_token = ctx
        .and_then(|c| c.token_file.clone())
        .or(file.token_file.clone());
    let url = cli
        .api_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or(file_url)
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let token = match (&cli.token, &cli.token_file, &file_token) {
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
        CliError::usage(format!("config file {}: {msg}", path.display())).detail(EXPECTED_KEYS)
    })
}

// --- zctl config ---------------------------------------------------------------------

/// `zctl config ...`: reads and edits the config file only (no API call).
pub fn run(cli: &Cli, cmd: &ConfigCommand, out: Option<Output>) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::GetContexts => get_contexts(cli, out),
        ConfigCommand::CurrentContext => {
            let (file, path) = load(cli)?;
            match selected(cli, &file, path.as_deref())? {
                Some((name, _)) => {
                    println!("{name}");
                    Ok(())
                }
                None => Err(CliError::failed(
                    "no context is in use (the config file's flat keys apply)",
                )),
            }
        }
        ConfigCommand::UseContext { name } => use_context(cli, name),
        ConfigCommand::SetContext(args) => set_context(cli, args),
    }
}

fn get_contexts(cli: &Cli, out: Option<Output>) -> Result<(), CliError> {
    let (file, path) = load(cli)?;
    // A bad current context is shown, not an error: this is where one looks to fix it.
    let current = cli
        .context
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or(file.current_context.clone());
    if let Some(f) = data_format(out) {
        let items: Vec<serde_json::Value> = file
            .contexts
            .iter()
            .map(|(name, c)| {
                serde_json::json!({
                    "name": name,
                    "current": current.as_deref() == Some(name.as_str()),
                    "apiUrl": c.api_url.as_deref().map(crate::redact_url),
                    "tokenFile": c.token_file,
                })
            })
            .collect();
        return print_data(&serde_json::json!({ "items": items }), f);
    }
    if out == Some(Output::Name) {
        for name in file.contexts.keys() {
            println!("{name}");
        }
        return Ok(());
    }
    if file.contexts.is_empty() {
        let where_ = path
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        eprintln!("No contexts{where_}.");
        return Ok(());
    }
    let mut t = Table::new(vec!["CURRENT", "NAME", "API URL", "TOKEN FILE"]);
    for (name, c) in &file.contexts {
        let mark = if current.as_deref() == Some(name.as_str()) {
            "*"
        } else {
            ""
        };
        t.row(vec![
            mark.into(),
            name.clone().into(),
            output::dash(c.api_url.as_deref().map(crate::redact_url).as_deref()).into(),
            output::dash(c.token_file.as_deref().and_then(Path::to_str)).into(),
        ]);
    }
    t.print();
    Ok(())
}

/// The config file to edit and its current text (empty when it does not exist yet).
fn editable(cli: &Cli) -> Result<(PathBuf, toml_edit::DocumentMut), CliError> {
    let path = config_path(cli).ok_or_else(|| {
        CliError::usage("no config file: set HOME, XDG_CONFIG_HOME or --config FILE")
    })?;
    let text = if path.exists() {
        let t = read_text(&path)?;
        // The file must already be one zctl understands.
        parse(&path, &t)?;
        t
    } else {
        String::new()
    };
    let doc = text
        .parse::<toml_edit::DocumentMut>()
        .map_err(|e| CliError::usage(format!("config file {}: {e}", path.display())))?;
    Ok((path, doc))
}

/// Write the edited file; a new one is created readable by its owner only (it names token
/// files, and users put tokens next to it).
fn save(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::usage(format!(
            "cannot write the config file {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(doc.to_string().as_bytes()).map_err(fail)
}

fn use_context(cli: &Cli, name: &str) -> Result<(), CliError> {
    let (path, mut doc) = editable(cli)?;
    let file = parse(&path, &doc.to_string())?;
    if !file.contexts.contains_key(name) {
        return Err(unknown_context(name, &file, Some(&path)));
    }
    doc["current_context"] = toml_edit::value(name);
    save(&path, &doc)?;
    println!("Switched to context \"{name}\".");
    Ok(())
}

/// Context names are TOML bare keys, so the file stays plain.
fn valid_context_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn set_context(cli: &Cli, args: &SetContextArgs) -> Result<(), CliError> {
    let name = args.name.trim();
    if !valid_context_name(name) {
        return Err(CliError::usage(format!(
            "'{name}' is not a context name: use letters, digits, - and _"
        )));
    }
    let api_url = cli.explicit.api_url.then(|| cli.api_url.clone()).flatten();
    let token_file = cli
        .explicit
        .token_file
        .then(|| cli.token_file.clone())
        .flatten();
    if let Some(u) = &api_url {
        ApiClient::new(u, None).map_err(|e| {
            CliError::usage(format!(
                "the API URL '{}' is not usable: {e}",
                crate::redact_url(u)
            ))
        })?;
        if reqwest::Url::parse(u).is_ok_and(|p| p.password().is_some() || !p.username().is_empty())
        {
            return Err(CliError::usage(
                "an API URL with a user or password would keep a secret in the config file; use --token-file",
            ));
        }
    }
    if cli.explicit.token {
        return Err(CliError::usage(
            "a context keeps a token file, never a token: use --token-file FILE",
        ));
    }
    let (path, mut doc) = editable(cli)?;
    let contexts = doc
        .entry("contexts")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| {
            CliError::usage(format!(
                "config file {}: contexts is not a table",
                path.display()
            ))
        })?;
    let existed = contexts.contains_key(name);
    let entry = contexts
        .entry(name)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .ok_or_else(|| {
            CliError::usage(format!(
                "config file {}: contexts.{name} is not a table",
                path.display()
            ))
        })?;
    if let Some(u) = api_url {
        entry["api_url"] = toml_edit::value(u);
    }
    if let Some(p) = token_file {
        // Relative to where the command runs, as the user meant it (the file would read it
        // relative to itself).
        let p = if p.is_relative() && !p.starts_with("~") {
            std::path::absolute(&p).unwrap_or(p)
        } else {
            p
        };
        let text = p.to_str().ok_or_else(|| {
            CliError::usage(format!("the token file path {} is not UTF-8", p.display()))
        })?;
        entry["token_file"] = toml_edit::value(text);
    }
    save(&path, &doc)?;
    println!(
        "Context \"{name}\" {}.",
        if existed { "modified" } else { "created" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_parse() {
        // (why, file, Ok(context names) or Err(part of the message))
        type Want = Result<&'static [&'static str], &'static str>;
        let cases: &[(&str, &str, Want)] = &[
            (
                "flat keys as before",
                "api_url = \"http://127.0.0.1:1\"\ntoken_file = \"t\"\n",
                Ok(&[]),
            ),
            (
                "contexts beside flat keys",
                "api_url = \"http://127.0.0.1:1\"\ncurrent_context = \"a\"\n[contexts.a]\napi_url = \"http://127.0.0.1:2\"\n[contexts.b]\ntoken_file = \"b.token\"\n",
                Ok(&["a", "b"]),
            ),
            (
                "an unknown top key",
                "url = \"x\"\n",
                Err("unknown field `url`"),
            ),
            (
                "an unknown context key",
                "[contexts.a]\ntoken = \"secret\"\n",
                Err("unknown field `token`"),
            ),
        ];
        for (reason, text, want) in cases {
            let got = parse(Path::new("zctl.toml"), text);
            match (want, got) {
                (Ok(names), Ok(f)) => {
                    let have: Vec<&str> = f.contexts.keys().map(String::as_str).collect();
                    assert_eq!(have, *names, "{reason}");
                }
                (Err(part), Err(e)) => assert!(e.message.contains(part), "{reason}: {}", e.message),
                (want, got) => panic!("{reason}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn context_names() {
        let cases: &[(&str, bool, &str)] = &[
            ("prod", true, "a word"),
            ("eu-west_2", true, "dashes, underscores, digits"),
            ("", false, "empty"),
            ("a.b", false, "a dot would nest the TOML key"),
            ("a b", false, "a space"),
        ];
        for (name, ok, reason) in cases {
            assert_eq!(valid_context_name(name), *ok, "{reason}");
        }
    }
}
