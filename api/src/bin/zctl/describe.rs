//! `zctl describe server`: everything on-call needs to see why a server is not Ready.

use crate::output::{self, Cell, Color, Table, age, dash, paint, when};
use chrono::{DateTime, Utc};
use model::status::reason;
use model::{ConditionStatus, ConditionType, Event, EventType, Phase, Server};
use std::fmt::Write;

/// Events shown by describe (newest ones, oldest first); `zctl events` shows all.
pub const DESCRIBE_EVENTS: usize = 20;

fn field(out: &mut String, indent: usize, name: &str, value: impl AsRef<str>, color: bool) {
    let label = format!("{name}:");
    let _ = writeln!(
        out,
        "{}{:<w$} {}",
        " ".repeat(indent),
        paint(&label, Some(Color::Bold), color),
        value.as_ref(),
        // Bold codes add 8 invisible characters.
        w = if color { 20 + 8 } else { 20 } - indent,
    );
}

fn section(out: &mut String, name: &str, color: bool) {
    let _ = writeln!(
        out,
        "{}",
        paint(&format!("{name}:"), Some(Color::Bold), color)
    );
}

fn status_color(s: ConditionStatus, t: ConditionType) -> Color {
    let good = match t {
        ConditionType::Degraded => s == ConditionStatus::False,
        _ => s == ConditionStatus::True,
    };
    match (good, s) {
        (true, _) => Color::Green,
        (false, ConditionStatus::Unknown) => Color::Yellow,
        (false, _) if t == ConditionType::Degraded => Color::Yellow,
        (false, _) => Color::Red,
    }
}

/// Ready with the game stopped because the spec says so (not a fault).
fn stopped_as_asked(s: &Server) -> bool {
    s.status
        .condition(ConditionType::ProcessRunning)
        .is_some_and(|c| c.status == ConditionStatus::False && c.reason == reason::STOPPED_AS_ASKED)
}

/// The text of `zctl describe server`.
pub fn render(s: &Server, events: &[Event], now: DateTime<Utc>, color: bool) -> String {
    let mut out = String::new();
    let st = &s.status;
    let (phase, step) = s.phase();

    field(&mut out, 0, "ID", s.id.to_string(), color);
    field(&mut out, 0, "Hostname", dash(st.hostname.as_deref()), color);
    field(&mut out, 0, "Customer", &s.customer_id, color);
    let mut phase_s = paint(phase.as_str(), Some(output::phase_color(phase)), color);
    if let Some(step) = step {
        phase_s.push_str(&format!(" (step {step})"));
    } else if phase == Phase::Ready && stopped_as_asked(s) {
        phase_s.push_str(" (game stopped as asked)");
    }
    field(&mut out, 0, "Phase", phase_s, color);
    field(
        &mut out,
        0,
        "Generation",
        format!(
            "{} (observed {}{})",
            s.generation,
            st.observed_generation,
            if st.observed_generation < s.generation {
                ", the controller has not caught up"
            } else {
                ""
            }
        ),
        color,
    );
    field(
        &mut out,
        0,
        "Resource version",
        s.resource_version.to_string(),
        color,
    );
    field(&mut out, 0, "Created", when(s.created_at, now), color);
    field(&mut out, 0, "Updated", when(s.updated_at, now), color);
    field(
        &mut out,
        0,
        "Paused",
        if s.paused {
            paint(
                "yes (observed, not acted on; zctl resume ID)",
                Some(Color::Yellow),
                color,
            )
        } else {
            "no".into()
        },
        color,
    );
    field(
        &mut out,
        0,
        "Deleting",
        match s.deletion_requested_at {
            Some(t) => paint(
                &format!("since {}", when(t, now)),
                Some(Color::Magenta),
                color,
            ),
            None => "no".into(),
        },
        color,
    );
    if let Some(t) = s.retry_requested_at {
        field(&mut out, 0, "Retry requested", when(t, now), color);
    }

    section(&mut out, "Spec", color);
    let spec = serde_saphyr::to_string(&s.spec).unwrap_or_else(|e| format!("({e})\n"));
    for l in spec.lines() {
        let _ = writeln!(out, "  {l}");
    }

    section(&mut out, "Status", color);
    let vmid = match (st.vmid, s.reserved_vmid) {
        (Some(v), Some(r)) if v != r => format!("{v} (reserved {r})"),
        (Some(v), _) => v.to_string(),
        (None, Some(r)) => format!("{r} (reserved, not yet observed)"),
        (None, None) => "-".into(),
    };
    field(&mut out, 2, "VMID", vmid, color);
    field(&mut out, 2, "Node", dash(st.node.as_deref()), color);
    field(&mut out, 2, "FQDN", dash(st.fqdn.as_deref()), color);
    field(&mut out, 2, "IP", dash(st.ip.as_deref()), color);
    field(
        &mut out,
        2,
        "Last reconcile",
        st.last_reconcile_at
            .map(|t| when(t, now))
            .unwrap_or_else(|| "never".into()),
        color,
    );
    field(&mut out, 2, "Attempts", st.attempts.to_string(), color);
    field(
        &mut out,
        2,
        "Next retry",
        st.next_retry_at
            .map(|t| when(t, now))
            .unwrap_or_else(|| "-".into()),
        color,
    );
    field(
        &mut out,
        2,
        "In-flight task",
        match &st.in_flight_task {
            Some(t) => format!(
                "{} {} (started {} ago)",
                t.action,
                t.upid,
                age(t.started_at, now)
            ),
            None => "-".into(),
        },
        color,
    );

    section(&mut out, "Conditions", color);
    if st.conditions.is_empty() {
        let _ = writeln!(out, "  <none: the controller has not looked at it yet>");
    } else {
        let mut t = Table::new(vec!["TYPE", "STATUS", "REASON", "AGE", "GEN", "MESSAGE"]);
        for c in &st.conditions {
            let stale = c.observed_generation < s.generation;
            t.row(vec![
                c.type_.to_string().into(),
                Cell::colored(
                    format!("{:?}", c.status),
                    Some(status_color(c.status, c.type_)),
                ),
                dash(Some(&c.reason)).into(),
                age(c.last_transition_time, now).into(),
                Cell::colored(
                    c.observed_generation.to_string(),
                    stale.then_some(Color::Yellow),
                ),
                c.message.clone().into(),
            ]);
        }
        indent(&mut out, &t, color);
    }

    section(&mut out, "Last error", color);
    match &st.last_error {
        Some(e) => {
            field(&mut out, 2, "Class", e.class.as_str(), color);
            field(&mut out, 2, "Step", &e.step, color);
            field(
                &mut out,
                2,
                "Message",
                paint(&e.message, Some(Color::Yellow), color),
                color,
            );
            field(&mut out, 2, "When", when(e.at, now), color);
        }
        None => {
            let _ = writeln!(out, "  <none>");
        }
    }

    section(&mut out, "Failure", color);
    match &st.failure {
        Some(f) => {
            let current = f.generation == s.generation;
            field(&mut out, 2, "Step", &f.step, color);
            field(
                &mut out,
                2,
                "Message",
                paint(&f.message, Some(Color::Red), color),
                color,
            );
            field(&mut out, 2, "When", when(f.at, now), color);
            field(
                &mut out,
                2,
                "Generation",
                format!(
                    "{}{}",
                    f.generation,
                    if current {
                        " (current: terminal until the spec changes or `zctl reconcile ID --retry`)"
                    } else {
                        " (older than the spec; cleared at the next reconcile)"
                    }
                ),
                color,
            );
        }
        None => {
            let _ = writeln!(out, "  <none>");
        }
    }

    section(&mut out, "Events", color);
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        // The API answers newest first; show the newest ones, oldest first.
        let shown: Vec<&Event> = events.iter().take(DESCRIBE_EVENTS).rev().collect();
        indent(&mut out, &events_table(&shown, now), color);
        if events.len() > DESCRIBE_EVENTS {
            let _ = writeln!(
                out,
                "  ({} older: zctl events {})",
                events.len() - DESCRIBE_EVENTS,
                s.id
            );
        }
    }
    out
}

fn indent(out: &mut String, t: &Table, color: bool) {
    let width = output::terminal_width().map(|w| w.saturating_sub(2));
    for l in t.render(width, color).lines() {
        let _ = writeln!(out, "  {l}");
    }
}

/// TYPE, REASON, COUNT, FIRST SEEN, LAST SEEN, MESSAGE; in the order given.
pub fn events_table(events: &[&Event], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        "TYPE",
        "REASON",
        "COUNT",
        "FIRST SEEN",
        "LAST SEEN",
        "MESSAGE",
    ]);
    for e in events {
        t.row(vec![
            Cell::colored(
                e.type_.as_str(),
                (e.type_ == EventType::Warning).then_some(Color::Yellow),
            ),
            e.reason.clone().into(),
            e.count.to_string().into(),
            age(e.first_seen, now).into(),
            age(e.last_seen, now).into(),
            e.message.clone().into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ServerId, ServerSpec, ServerStatus, Variant};

    /// A game server at generation 1 with every chain condition True, then `change`.
    fn server(change: impl FnOnce(&mut ServerStatus)) -> Server {
        let now = Utc::now();
        let mut st = ServerStatus {
            observed_generation: 1,
            ..Default::default()
        };
        for t in ConditionType::CHAIN {
            st.set_condition(t, ConditionStatus::True, "Done", "", 1, now);
        }
        st.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "Ready",
            "",
            1,
            now,
        );
        change(&mut st);
        Server {
            id: ServerId::new(),
            customer_id: "u1".into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            generation: 1,
            resource_version: 1,
            reserved_vmid: None,
            deletion_requested_at: None,
            paused: false,
            retry_requested_at: None,
            created_at: now,
            updated_at: now,
            status: st,
        }
    }

    fn phase_line(s: &Server) -> String {
        render(s, &[], Utc::now(), false)
            .lines()
            .find(|l| l.starts_with("Phase:"))
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_phase_line_says_why_the_game_is_stopped_and_names_power_steps() {
        let stopped = server(|st| {
            st.set_condition(
                ConditionType::ProcessRunning,
                ConditionStatus::False,
                reason::STOPPED_AS_ASKED,
                "",
                1,
                Utc::now(),
            );
        });
        assert!(
            phase_line(&stopped).ends_with("ready (game stopped as asked)"),
            "{}",
            phase_line(&stopped)
        );
        assert!(
            !phase_line(&server(|_| {})).contains("stopped"),
            "a running game is plainly ready"
        );
        let cases = [
            (reason::RESTARTING, "restart-game"),
            (reason::GAME_STOPPING, "stop-game"),
            ("Starting", "start-game"),
        ];
        for (why, step) in cases {
            let s = server(|st| {
                st.set_condition(
                    ConditionType::ProcessRunning,
                    ConditionStatus::False,
                    why,
                    "",
                    1,
                    Utc::now(),
                );
                st.set_condition(
                    ConditionType::Ready,
                    ConditionStatus::False,
                    "NotReady",
                    "",
                    1,
                    Utc::now(),
                );
            });
            assert!(
                phase_line(&s).ends_with(&format!("provisioning (step {step})")),
                "{why}: {}",
                phase_line(&s)
            );
        }
        let rebooting = server(|st| {
            st.set_condition(
                ConditionType::ContainerRunning,
                ConditionStatus::False,
                reason::REBOOTING,
                "",
                1,
                Utc::now(),
            );
            st.set_condition(
                ConditionType::Ready,
                ConditionStatus::False,
                "NotReady",
                "",
                1,
                Utc::now(),
            );
        });
        assert!(
            phase_line(&rebooting).ends_with("provisioning (step restart-container)"),
            "{}",
            phase_line(&rebooting)
        );
    }
}
