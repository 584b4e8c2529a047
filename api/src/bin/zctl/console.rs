//! `zctl console ID`: the console WebSocket in raw framing (`api/src/console/relay.rs`) with
//! the bearer token. Each stdin line is sent as `"<line>\n"`, each text frame printed as a
//! line; end of input closes the session. The exit code says how it closed. `--read-only`
//! asks zlh for a read-only session and reads no input.

use crate::{CliError, exit, resolve};
use api::ApiClient;
use api::console::close;
use futures::{SinkExt as _, StreamExt as _};
use std::io::Write as _;
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::{self, Message};

/// The exit code for a close code (`zctl console --help` lists them).
pub fn exit_code(code: u16) -> u8 {
    match code {
        close::NORMAL => exit::OK,
        close::TOKEN_REVOKED | close::PERMISSIONS_LOWERED => exit::NOT_ALLOWED,
        close::GOING_AWAY | close::RESTART | close::SESSION_EXPIRED => exit::CONSOLE_ENDED,
        _ => exit::FAILED,
    }
}

pub async fn run(client: &ApiClient, name: &str, read_only: bool) -> Result<(), CliError> {
    let server = resolve::server(client, name).await?;
    let req = client.console_request(server.id, read_only)?;
    let (ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(res)) => {
            let status = res.status().as_u16();
            let body = res
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
            let detail = body
                .as_ref()
                .and_then(|b| b["detail"].as_str())
                .unwrap_or("the console was refused")
                .to_string();
            let code = match status {
                401 | 403 => exit::NOT_ALLOWED,
                404 => exit::NOT_FOUND,
                502 => exit::UNREACHABLE,
                _ => exit::FAILED,
            };
            return Err(CliError::new(code, format!("{status}: {detail}")));
        }
        Err(e) => {
            return Err(CliError::new(
                exit::UNREACHABLE,
                format!("cannot open the console at {}: {e}", client.base_url()),
            ));
        }
    };
    let (mut tx, mut rx) = ws.split();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    let code = loop {
        tokio::select! {
            line = stdin.next_line(), if input_open && !read_only => match line {
                Ok(Some(l)) => {
                    if tx.send(Message::Text(format!("{l}\n").into())).await.is_err() {
                        input_open = false;
                    }
                }
                // End of input: close, then read until zlh's close frame.
                _ => {
                    input_open = false;
                    let _ = tx.send(Message::Close(None)).await;
                }
            },
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", t.as_str().trim_end_matches('\n'));
                    let _ = out.flush();
                }
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f.map_or((close::NORMAL, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    if code != close::NORMAL {
                        eprintln!("console closed: {code} {reason}");
                    }
                    break code;
                }
                Some(Ok(_)) => {}
                // After our close the connection may end without zlh's close frame.
                Some(Err(_)) | None if !input_open => break close::NORMAL,
                Some(Err(_)) | None => break close::AGENT_FAILED,
            },
        }
    };
    match exit_code(code) {
        exit::OK => Ok(()),
        c => Err(CliError::silent(c)),
    }
}

/// `zctl exec ID -- <command>`: one console line without a console.
pub async fn exec(client: &ApiClient, name: &str, words: &[String]) -> Result<(), CliError> {
    let server = resolve::server(client, name).await?;
    client.command(server.id, &words.join(" ")).await?;
    Ok(())
}
