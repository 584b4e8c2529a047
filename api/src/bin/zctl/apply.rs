//! Declaring a server's spec from the CLI: `zctl apply -f FILE` (create, or update the server
//! the file names) and `zctl patch ID` (`--set path=value`, a JSON merge patch). Both edit
//! the spec on this side and send it whole through the existing routes (`POST` and `PATCH
//! /api/servers`); an edit that changes nothing sends nothing.

use crate::CliError;
use crate::cli::{ApplyArgs, Output, PatchArgs};
use crate::output::{self, Color, data_format, print_data};
use crate::resolve;
use crate::wait::{self, Goal};
use api::wire::{Accepted, CreateServerRequest};
use api::{ApiClient, ClientError};
use model::{Server, ServerId, ServerSpec};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// What `apply` did to a server (kubectl's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// An `apply` document: `{id?, customerId?, spec}`, or a bare spec.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyDoc {
    /// The server to update; without it the document creates one.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    spec: ServerSpec,
}

const APPLY_SHAPE: &str =
    "expected {id?, customerId?, spec} or a bare spec; see `zctl apply --help`";

/// Read a YAML or JSON document (`-` is standard input) as JSON.
pub fn read_document(path: &Path) -> Result<(String, Value), CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        ("stdin".to_string(), s)
    } else {
        let s = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), s)
    };
    let v = parse_document(&text).map_err(|e| CliError::usage(format!("{name}: {e}")))?;
    Ok((name, v))
}

fn parse_document(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    }
}

fn parse_apply(name: &str, value: Value) -> Result<ApplyDoc, CliError> {
    let bad = |msg: String| CliError::usage(format!("{name}: {msg}")).detail(APPLY_SHAPE);
    if !value.is_object() {
        return Err(bad("the document is not a mapping".into()));
    }
    if value.get("spec").is_some() {
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
    } else {
        let spec: ServerSpec = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        Ok(ApplyDoc {
            id: None,
            customer_id: None,
            spec,
        })
    }
}

/// The idempotency key of a create by `apply`: the same customer and spec give the same key,
/// so applying one file twice creates one server.
fn apply_key(customer: Option<&str>, spec: &ServerSpec) -> String {
    let mut h = Sha256::new();
    h.update(customer.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    format!("zctl-apply-{}", &hex::encode(h.finalize())[..32])
}

/// `spec` as the API will store it over `current`: restart counters never go down there.
fn as_stored(mut spec: ServerSpec, current: &ServerSpec) -> ServerSpec {
    spec.restarts.game = spec.restarts.game.max(current.restarts.game);
    spec.restarts.container = spec.restarts.container.max(current.restarts.container);
    spec
}

/// How many times a patch is tried again when the server changed between read and write.
const STALE_RETRIES: u32 = 3;

/// Send `edit(current spec)` unless it changes nothing; on a conflict (the server changed
/// meanwhile) read it again and redo the edit.
async fn update(
    client: &ApiClient,
    id: ServerId,
    edit: impl Fn(&ServerSpec) -> Result<ServerSpec, CliError>,
) -> Result<(Applied, Server), CliError> {
    let mut tries = 0;
    loop {
        let server = client.get(id).await?;
        let wanted = as_stored(edit(&server.spec)?, &server.spec);
        if wanted == server.spec {
            return Ok((Applied::Unchanged, server));
        }
        match client
            .patch(id, wanted, Some(server.resource_version))
            .await
        {
            Ok(Accepted { server, .. }) => return Ok((Applied::Configured, server)),
            Err(ClientError::Conflict(_)) if tries < STALE_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn report(what: Applied, server: &Server, out: Option<Output>) -> Result<(), CliError> {
    if let Some(f) = data_format(out) {
        let doc = serde_json::json!({
            "result": what.as_str(),
            "server": output::server_json(server),
        });
        return print_data(&doc, f);
    }
    let name = output::name_line(server.id);
    if out == Some(Output::Name) {
        println!("{name}");
        return Ok(());
    }
    let color = match what {
        Applied::Unchanged => None,
        Applied::Created | Applied::Configured => Some(Color::Green),
    };
    let line = format!("{name} {}", what.as_str());
    println!("{}", output::paint(&line, color, output::stdout_color()));
    Ok(())
}

async fn finish(
    client: &ApiClient,
    server: &Server,
    wait: &crate::cli::WaitArgs,
) -> Result<(), CliError> {
    if !wait.wait {
        return Ok(());
    }
    let outcomes = wait::wait(
        client,
        std::slice::from_ref(server),
        Goal::Ready,
        wait.timeout,
    )
    .await?;
    wait::summarize(&outcomes)
}

/// `zctl apply -f FILE`.
pub async fn apply(
    client: &ApiClient,
    args: ApplyArgs,
    out: Option<Output>,
) -> Result<(), CliError> {
    let (name, value) = read_document(&args.file)?;
    let doc = parse_apply(&name, value)?;
    let target = args.id.or(doc.id);
    let (what, server) = match target {
        Some(t) => {
            let current = resolve::server(client, &t).await?;
            if let Some(c) = &doc.customer_id
                && *c != current.customer_id
            {
                return Err(CliError::usage(format!(
                    "{name}: customerId {c} does not match server {}'s customer {}",
                    current.id, current.customer_id
                )));
            }
            let spec = doc.spec.clone();
            update(client, current.id, move |_| Ok(spec.clone())).await?
        }
        None => {
            let customer = args.customer.or(doc.customer_id);
            let key = apply_key(customer.as_deref(), &doc.spec);
            let req = CreateServerRequest {
                customer_id: customer,
                spec: doc.spec,
            };
            let accepted = client.create(&req, Some(&key)).await?;
            (Applied::Created, accepted.server)
        }
    };
    report(what, &server, out)?;
    finish(client, &server, &args.wait).await
}

/// `zctl patch ID`.
pub async fn patch(
    client: &ApiClient,
    args: PatchArgs,
    out: Option<Output>,
) -> Result<(), CliError> {
    let merge: Option<Value> = match &args.merge {
        Some(text) => {
            Some(parse_document(text).map_err(|e| CliError::usage(format!("--merge: {e}")))?)
        }
        None => None,
    };
    if let Some(m) = &merge
        && !m.is_object()
    {
        return Err(CliError::usage(
            "--merge: a merge patch of the spec is a JSON object",
        ));
    }
    let sets: Vec<Assignment> = args
        .set
        .iter()
        .map(|s| s.parse::<Assignment>().map_err(CliError::usage))
        .collect::<Result<_, _>>()?;
    if merge.is_none() && sets.is_empty() {
        return Err(CliError::usage(
            "nothing to change: give --set PATH=VALUE or --merge JSON",
        ));
    }
    let server = resolve::server(client, &args.id).await?;
    let (what, server) = update(client, server.id, |spec| {
        edit_spec(spec, merge.as_ref(), &sets).map_err(CliError::usage)
    })
    .await?;
    report(what, &server, out)?;
    finish(client, &server, &args.wait).await
}

/// The spec with the merge patch, then each assignment, applied.
fn edit_spec(
    spec: &ServerSpec,
    merge: Option<&Value>,
    sets: &[Assignment],
) -> Result<ServerSpec, String> {
    let mut v = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    if let Some(m) = merge {
        merge_patch(&mut v, m);
    }
    for a in sets {
        a.apply(&mut v)?;
    }
    serde_json::from_value(v).map_err(|e| format!("the edited spec is not valid: {e}"))
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// `--set resources.cores=4`: a dotted path into the spec (its JSON names) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    path: Vec<String>,
    value: String,
}

impl std::str::FromStr for Assignment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((path, value)) = s.split_once('=') else {
            return Err(format!(
                "--set {s}: expected PATH=VALUE, e.g. resources.cores=4"
            ));
        };
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|p| p.trim().to_string())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("--set {s}: the path has an empty part"));
        }
        Ok(Assignment {
            path,
            value: value.trim().to_string(),
        })
    }
}

impl Assignment {
    /// Set the value, typed like the value it replaces: a number stays a number, a string
    /// a string (`version=1.21` is the string "1.21"); a new field takes JSON, else a string.
    fn apply(&self, root: &mut Value) -> Result<(), String> {
        let dotted = self.path.join(".");
        let mut at = root;
        for part in &self.path[..self.path.len() - 1] {
            let obj = at.as_object_mut().ok_or_else(|| {
                format!("--set {dotted}: the value above {part} is not a mapping")
            })?;
            at = obj
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        let last = &self.path[self.path.len() - 1];
        let obj = at.as_object_mut().ok_or_else(|| {
            let parent = self.path[..self.path.len() - 1].join(".");
            format!("--set {dotted}: {parent} is not a mapping")
        })?;
        let raw = &self.value;
        let new = match obj.get(last) {
            Some(Value::String(_)) => Value::String(raw.clone()),
            Some(Value::Number(_)) => {
                let n: serde_json::Number = raw
                    .parse()
                    .map_err(|_| format!("--set {dotted}: expected a number, got '{raw}'"))?;
                Value::Number(n)
            }
            Some(Value::Bool(_)) => Value::Bool(
                raw.parse()
                    .map_err(|_| format!("--set {dotted}: expected true or false, got '{raw}'"))?,
            ),
            Some(Value::Object(_)) | Some(Value::Array(_)) => serde_json::from_str(raw)
                .map_err(|e| format!("--set {dotted}: expected JSON for a mapping or list: {e}"))?,
            Some(Value::Null) | None => {
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()))
            }
        };
        obj.insert(last.clone(), new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Variant;

    fn paper() -> ServerSpec {
        ServerSpec::minecraft(Variant::Paper, "1.21.7")
    }

    #[test]
    fn assignments_parse() {
        type Case = (
            &'static str,
            &'static str,
            Option<(&'static [&'static str], &'static str)>,
        );
        let cases: &[Case] = &[
            (
                "a nested path",
                "resources.cores=4",
                Some((&["resources", "cores"], "4")),
            ),
            (
                "spaces around are dropped",
                " power = stopped ",
                Some((&["power"], "stopped")),
            ),
            (
                "the value may hold =",
                "world=a=b",
                Some((&["world"], "a=b")),
            ),
            ("no = at all", "resources.cores", None),
            ("an empty part", "resources..cores=4", None),
            ("an empty path", "=4", None),
        ];
        for (reason, text, want) in cases {
            let got = text.parse::<Assignment>();
            match (want, got) {
                (Some((path, value)), Ok(a)) => {
                    assert_eq!(a.path, *path, "{reason}");
                    assert_eq!(a.value, *value, "{reason}");
                }
                (None, Err(_)) => {}
                (want, got) => panic!("{reason}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn spec_edits() {
        // (why, merge patch, --set values, Ok(check) or Err(part of the message))
        type Check = fn(&ServerSpec) -> bool;
        type Case = (
            &'static str,
            Option<&'static str>,
            &'static [&'static str],
            Result<Check, &'static str>,
        );
        let cases: &[Case] = &[
            (
                "a number stays a number",
                None,
                &["resources.cores=4"],
                Ok(|s| s.resources.cores == 4),
            ),
            (
                "a version that looks like a number is a string",
                None,
                &["version=1.21"],
                Ok(|s| s.version == "1.21"),
            ),
            (
                "power intent",
                None,
                &["power=stopped"],
                Ok(|s| s.power == model::Power::Stopped),
            ),
            (
                "a new optional field",
                None,
                &["world=survival"],
                Ok(|s| s.world.as_deref() == Some("survival")),
            ),
            (
                "a merge patch",
                Some(r#"{"resources":{"memoryMib":4096}}"#),
                &[],
                Ok(|s| s.resources.memory_mib == 4096 && s.resources.cores == 2),
            ),
            (
                "null removes an optional field",
                Some(r#"{"variant":null}"#),
                &[],
                Ok(|s| s.variant.is_none()),
            ),
            (
                "--set after the merge patch wins",
                Some(r#"{"resources":{"cores":8}}"#),
                &["resources.cores=3"],
                Ok(|s| s.resources.cores == 3),
            ),
            (
                "not a number",
                None,
                &["resources.cores=four"],
                Err("expected a number, got 'four'"),
            ),
            (
                "an unknown field is refused",
                None,
                &["resourcez.cores=4"],
                Err("unknown field `resourcez`"),
            ),
            (
                "a path through a scalar",
                None,
                &["version.major=1"],
                Err("not a mapping"),
            ),
            (
                "a bad enum value",
                None,
                &["power=sleeping"],
                Err("the edited spec is not valid"),
            ),
        ];
        for (reason, merge, sets, want) in cases {
            let merge: Option<Value> = merge.map(|m| serde_json::from_str(m).unwrap());
            let sets: Vec<Assignment> = sets.iter().map(|s| s.parse().unwrap()).collect();
            match (want, edit_spec(&paper(), merge.as_ref(), &sets)) {
                (Ok(check), Ok(spec)) => assert!(check(&spec), "{reason}: {spec:?}"),
                (Err(part), Err(msg)) => assert!(msg.contains(part), "{reason}: {msg}"),
                (_, got) => panic!("{reason}: got {got:?}"),
            }
        }
    }

    #[test]
    fn apply_documents_parse() {
        type Want = Result<(Option<&'static str>, Option<&'static str>), &'static str>;
        let cases: &[(&str, &str, Want)] = &[
            (
                "a bare spec",
                "kind: dev\nruntime: node\nversion: \"22\"\n",
                Ok((None, None)),
            ),
            (
                "with customer",
                "customerId: u1\nspec:\n  kind: dev\n  runtime: node\n  version: \"22\"\n",
                Ok((None, Some("u1"))),
            ),
            (
                "with the server to update",
                "id: mc-paper-101\nspec:\n  kind: dev\n  runtime: node\n  version: \"22\"\n",
                Ok((Some("mc-paper-101"), None)),
            ),
            (
                "status is not declared",
                "spec:\n  kind: dev\n  runtime: node\n  version: \"22\"\nstatus: {}\n",
                Err("unknown field `status`"),
            ),
            ("a list is not a document", "- a\n", Err("not a mapping")),
        ];
        for (reason, text, want) in cases {
            let got = parse_document(text)
                .map_err(CliError::usage)
                .and_then(|v| parse_apply("t", v));
            match (want, got) {
                (Ok((id, customer)), Ok(doc)) => {
                    assert_eq!(doc.id.as_deref(), *id, "{reason}");
                    assert_eq!(doc.customer_id.as_deref(), *customer, "{reason}");
                }
                (Err(part), Err(e)) => assert!(e.message.contains(part), "{reason}: {}", e.message),
                (want, got) => panic!("{reason}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_same_file_gives_the_same_key() {
        let a = apply_key(Some("u1"), &paper());
        assert_eq!(a, apply_key(Some("u1"), &paper()), "stable");
        assert_ne!(a, apply_key(Some("u2"), &paper()), "per customer");
        let mut other = paper();
        other.resources.cores = 4;
        assert_ne!(a, apply_key(Some("u1"), &other), "per spec");
    }
}
