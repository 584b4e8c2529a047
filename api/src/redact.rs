//! What principals other than operators and viewers may see of backend errors.
//!
//! Condition, `lastError`, `failure` and event messages quote backend errors, which name
//! internal systems (`error sending request for url (https://10.0.0.5:8006/api2/json/...)`).
//! Customers and the Portal get the same answers with every URL and network address replaced
//! by [`REDACTED`]; the error class and step stay, so they still learn what kind of trouble it
//! is. Operators and viewers see everything (they run those systems).

use crate::auth::Principal;
use model::{Event, Role, Server};
use std::net::{IpAddr, SocketAddr};

/// What stands in for a URL or an address.
pub const REDACTED: &str = "<internal address>";

impl Principal {
    /// Whether this caller sees backend errors as they are.
    pub fn sees_internals(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Viewer)
    }
}

/// The server as `p` may see it.
pub fn server(p: &Principal, mut s: Server) -> Server {
    if p.sees_internals() {
        return s;
    }
    let st = &mut s.status;
    for c in &mut st.conditions {
        scrub_in_place(&mut c.message);
    }
    if let Some(e) = &mut st.last_error {
        scrub_in_place(&mut e.message);
    }
    if let Some(f) = &mut st.failure {
        scrub_in_place(&mut f.message);
    }
    s
}

pub fn servers(p: &Principal, list: Vec<Server>) -> Vec<Server> {
    list.into_iter().map(|s| server(p, s)).collect()
}

/// The events as `p` may see them.
pub fn events(p: &Principal, mut list: Vec<Event>) -> Vec<Event> {
    if !p.sees_internals() {
        for e in &mut list {
            scrub_in_place(&mut e.message);
        }
    }
    list
}

fn scrub_in_place(m: &mut String) {
    if let Some(clean) = scrub(m) {
        *m = clean;
    }
}

/// `text` with URLs (`scheme://...`), IP addresses (with or without a port, IPv6 bare or in
/// brackets) and `host.name:port` replaced; `None` when there is nothing to replace.
pub fn scrub(text: &str) -> Option<String> {
    let no_urls = scrub_urls(text);
    let out = scrub_addresses(no_urls.as_deref().unwrap_or(text));
    out.or(no_urls)
}

/// Characters that end a URL in running text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ',' | ';' | '`')
}

fn scrub_urls(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` before `://`, starting with a letter.
        let head = &rest[..i];
        let start = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        let end = rest[i..].find(ends_url).map_or(rest.len(), |e| i + e);
        if start == i {
            // `://` without a scheme: not a URL; keep it and look further.
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Some(out)
}

/// Characters of an address token (`10.0.0.5:8006`, `[fe80::1]:8006`, `pve.example:8006`).
fn in_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-' | '%')
}

fn scrub_addresses(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(in_token).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let len = rest.find(|c| !in_token(c)).unwrap_or(rest.len());
        let token = &rest[..len];
        // A sentence's full stop or a label's colon is not part of the address.
        let core = token.trim_end_matches(['.', ':']);
        if is_address(core) {
            out.push_str(REDACTED);
            out.push_str(&token[core.len()..]);
            changed = true;
        } else {
            out.push_str(token);
        }
        rest = &rest[len..];
    }
    changed.then_some(out)
}

fn is_address(t: &str) -> bool {
    if t.is_empty() {
        return false;
    }
    let bare = t.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if t.parse::<IpAddr>().is_ok()
        || t.parse::<SocketAddr>().is_ok()
        || bare.is_some_and(|b| b.parse::<IpAddr>().is_ok())
    {
        return true;
    }
    // `host.name:port` (or `localhost:port`): a name with a dot and a letter, then a port.
    match t.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && (host == "localhost"
                    || (host.contains('.')
                        && host.bytes().any(|b| b.is_ascii_alphabetic())
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_replaced_and_the_rest_kept() {
        let r = REDACTED;
        let cases: &[(&str, &str, &str)] = &[
            (
                "a reqwest error names the Proxmox URL",
                "proxmox clone: error sending request for url (https://10.0.0.5:8006/api2/json/nodes/pve/lxc/900/clone) [transient]",
                "proxmox clone: error sending request for url (<internal address>) [transient]",
            ),
            (
                "a bare address with a port",
                "connection failed: tcp connect error: 192.0.2.7:8080: Connection refused",
                "connection failed: tcp connect error: <internal address>: Connection refused",
            ),
            (
                "IPv6 in brackets and bare",
                "dial [2001:db8::5]:8006 failed; fallback fe80::1 down.",
                "dial <internal address> failed; fallback <internal address> down.",
            ),
            (
                "a host name with a port",
                "proxy pve1.corp.example:8006 refused",
                "proxy <internal address> refused",
            ),
            (
                "an address at the end of a sentence",
                "agent at 10.1.2.3.",
                "agent at <internal address>.",
            ),
        ];
        for (reason, input, want) in cases {
            assert_eq!(scrub(input).as_deref(), Some(*want), "{reason}");
            assert!(want.contains(r), "{reason}");
        }
        let kept: &[(&str, &str)] = &[
            ("versions are not addresses", "paper 1.21.7 is not offered"),
            ("times are not addresses", "task ended at 12:34:56"),
            (
                "a public FQDN without a port is the customer's own name",
                "published mc-vanilla-5208.zerolaghub.quest",
            ),
            (
                "Proxmox lock text",
                "CT is locked (disk); can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout",
            ),
        ];
        for (reason, input) in kept {
            assert_eq!(scrub(input), None, "{reason}");
        }
    }

    #[test]
    fn only_operators_and_viewers_see_internals() {
        let p = |role| Principal {
            token_id: uuid::Uuid::nil(),
            token_name: "t".into(),
            role,
            scope: None,
        };
        for (role, sees) in [
            (Role::Operator, true),
            (Role::Viewer, true),
            (Role::Portal, false),
            (Role::Customer, false),
        ] {
            assert_eq!(p(role).sees_internals(), sees, "{role}");
        }
    }
}
