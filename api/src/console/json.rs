//! The `zlh.console.v1` subprotocol: every frame is a JSON text frame
//! `{"event": ..., "args": [...]}`, with Pterodactyl's event names where the meaning is the
//! same (issue 19). The relay (`relay.rs`) acts on what [`parse`] returns.

use serde::{Deserialize, Serialize};

/// Events a client sends.
pub mod client {
    /// `args: [ticket]`: renew the session with a fresh ticket (no reconnect).
    pub const AUTH: &str = "auth";
    /// `args: [line]`: one console line (zlh adds the newline).
    pub const SEND_COMMAND: &str = "send command";
    /// `args: [text]`: sent to the Agent unchanged.
    pub const SEND_INPUT: &str = "send input";
    /// `args: ["start" | "stop" | "restart"]`: the power route's spec change (game servers).
    pub const SET_STATE: &str = "set state";
}

/// Events zlh sends.
pub mod server {
    /// `args: [line]`: one frame of the Agent's output.
    pub const CONSOLE_OUTPUT: &str = "console output";
    /// `args: [{"phase", "power", "process"}]`: on open and on every change.
    pub const STATUS: &str = "status";
    /// `args: []`: an `auth` renewed the session.
    pub const AUTH_SUCCESS: &str = "auth success";
    /// `args: [seconds left]`: renew with `auth` before the session ends (4001).
    pub const TOKEN_EXPIRING: &str = "token expiring";
    /// `args: []`: the session is over its maximum age; the close (4001) follows.
    pub const TOKEN_EXPIRED: &str = "token expired";
    /// `args: [why]`: an `auth` ticket was refused (the session goes on as it was).
    pub const JWT_ERROR: &str = "jwt error";
    /// `args: [why]`: a client event could not be carried out.
    pub const DAEMON_ERROR: &str = "daemon error";
}

/// Texts of `daemon error` and `jwt error`.
pub mod err {
    pub const NOT_JSON: &str = "frames are JSON {\"event\": ..., \"args\": [...]}";
    pub const UNKNOWN_EVENT: &str = "unknown event";
    pub const BAD_ARGS: &str = "this event takes one string argument";
    pub const BAD_STATE: &str = "set state takes start, stop or restart";
    pub const DEV_STATE: &str =
        "set state is for game servers; power a dev container with POST .../power";
    pub const READ_ONLY: &str = "this console is read-only";
    pub const WRONG_SERVER: &str = "the ticket is for another server";
    pub const NEWLINE: &str = "a command is one line";
}

/// One frame either way.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame {
    pub event: String,
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
}

/// A server frame's text.
pub fn frame(event: &str, args: Vec<serde_json::Value>) -> String {
    let f = Frame {
        event: event.into(),
        args,
    };
    serde_json::to_string(&f).unwrap_or_default()
}

/// What a client frame asks for.
#[derive(PartialEq, Eq)]
pub enum Request {
    Auth(String),
    Command(String),
    Input(String),
    SetState(crate::wire::PowerSignal),
    /// Answer `daemon error` with this.
    Invalid(&'static str),
}

// A ticket is a secret: never print it.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Auth(_) => f.write_str("Auth(<redacted>)"),
            Request::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Request::Input(i) => f.debug_tuple("Input").field(i).finish(),
            Request::SetState(s) => write!(f, "SetState({s})"),
            Request::Invalid(e) => f.debug_tuple("Invalid").field(e).finish(),
        }
    }
}

/// Parse a client text frame.
pub fn parse(text: &str) -> Request {
    let Ok(f) = serde_json::from_str::<Frame>(text) else {
        return Request::Invalid(err::NOT_JSON);
    };
    let arg = match f.args.as_slice() {
        [serde_json::Value::String(s)] => s.clone(),
        _ => return Request::Invalid(err::BAD_ARGS),
    };
    match f.event.as_str() {
        client::AUTH => Request::Auth(arg),
        client::SEND_COMMAND if arg.contains(['\n', '\r']) => Request::Invalid(err::NEWLINE),
        client::SEND_COMMAND => Request::Command(arg),
        client::SEND_INPUT => Request::Input(arg),
        client::SET_STATE => match arg.parse() {
            Ok(s) => Request::SetState(s),
            Err(_) => Request::Invalid(err::BAD_STATE),
        },
        _ => Request::Invalid(err::UNKNOWN_EVENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PowerSignal;

    #[test]
    fn client_frames_parse_and_a_ticket_is_not_printed() {
        let f = |e: &str, a: &str| format!(r#"{{"event":"{e}","args":["{a}"]}}"#);
        // (reason, frame, expected)
        let cases = [
            (
                "a command",
                f("send command", "list"),
                Request::Command("list".into()),
            ),
            (
                "raw input",
                f("send input", "x"),
                Request::Input("x".into()),
            ),
            (
                "power",
                f("set state", "stop"),
                Request::SetState(PowerSignal::Stop),
            ),
            ("renewal", f("auth", "t"), Request::Auth("t".into())),
            (
                "no such state",
                f("set state", "kill"),
                Request::Invalid(err::BAD_STATE),
            ),
            (
                "no such event",
                f("nope", "x"),
                Request::Invalid(err::UNKNOWN_EVENT),
            ),
            (
                "a newline in a command",
                f("send command", "a\\nb"),
                Request::Invalid(err::NEWLINE),
            ),
            ("not JSON", "list".into(), Request::Invalid(err::NOT_JSON)),
        ];
        for (reason, text, want) in cases {
            assert_eq!(parse(&text), want, "{reason}");
        }
        let secret = format!("{:?}", parse(&f("auth", "s3cret")));
        assert!(
            !secret.contains("s3cret"),
            "Debug prints the ticket: {secret}"
        );
    }
}
