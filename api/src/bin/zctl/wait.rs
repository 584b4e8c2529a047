//! Following the watch stream: `--wait` (until Ready, failed or gone, with live progress) and
//! `get servers -w`. Both reconnect after a disconnect, resuming from the last sequence seen,
//! so no change is missed.

use crate::CliError;
use crate::cli::Output;
use crate::output::{self, Color, Table, paint};
use api::ApiClient;
use api::ClientError;
use api::wire::{ListFilter, WatchEvent};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use model::{Phase, Server, ServerId};
use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::time::Instant;

/// Consecutive failed (re)connections before giving up with "unreachable".
const MAX_RECONNECTS: u32 = 6;

/// The pause before reconnect attempt `n` (0-based): 100 ms doubling, at most 3 s. Tests can
/// shorten it with `ZCTL_RECONNECT_DELAY_MS` (the first pause; doubling as usual).
fn reconnect_delay(n: u32) -> Duration {
    let base = std::env::var("ZCTL_RECONNECT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_millis((base << n.min(8)).min(3000))
}

fn stream_keeps_closing() -> CliError {
    CliError::new(crate::exit::UNREACHABLE, "the watch stream keeps closing")
}

/// Consecutive failed (re)connections of one watch.
#[derive(Default)]
struct Reconnects(u32);

impl Reconnects {
    /// Count one more failure; `true` once there were more than `MAX_RECONNECTS` in a row.
    fn exhausted(&mut self) -> bool {
        self.0 += 1;
        self.0 > MAX_RECONNECTS
    }
    /// The pause before the next attempt.
    async fn pause(&self) {
        tokio::time::sleep(reconnect_delay(self.0.saturating_sub(1))).await;
    }
    fn connected(&mut self) {
        self.0 = 0;
    }
}

/// What a wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Ready for the current generation (create, reconcile, `--for=phase=ready`).
    Ready,
    /// Deleted and archived: 404 on get (delete, `--for=delete`).
    Gone,
    /// In this phase, other than Ready (`zctl wait --for=phase=PHASE`).
    Phase(Phase),
}

/// `--for` expressions, as `zctl wait --help` lists them.
const FOR_EXPECTED: &str =
    "expected phase=PHASE (queued, provisioning, ready, degraded, failed, deleting) or delete";

impl std::str::FromStr for Goal {
    type Err = String;

    /// `phase=ready`, `phase=failed`, ..., or `delete` (kubectl's spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "delete" {
            return Ok(Goal::Gone);
        }
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!("'{s}' is not a wait condition; {FOR_EXPECTED}"));
        };
        match key.trim() {
            "phase" => {
                let phase: Phase = value
                    .trim()
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|e| format!("{e}; {FOR_EXPECTED}"))?;
                Ok(match phase {
                    Phase::Ready => Goal::Ready,
                    p => Goal::Phase(p),
                })
            }
            other => Err(format!("unknown wait condition '{other}'; {FOR_EXPECTED}")),
        }
    }
}

/// How one server's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// The phase a `--for=phase=PHASE` wait waited for.
    Reached(Phase),
    Gone,
    /// A terminal failure: `step: message`.
    Failed(String),
    /// Waiting for Ready, but the server is being deleted or is gone.
    Deleted,
    /// The deadline passed; the last state seen.
    TimedOut(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Ready | Outcome::Reached(_) | Outcome::Gone)
    }

    fn text(&self) -> String {
        match self {
            Outcome::Ready => "ready".into(),
            Outcome::Reached(p) => p.to_string(),
            Outcome::Gone => "deleted".into(),
            Outcome::Failed(m) => format!("failed: {m}"),
            Outcome::Deleted => "deleted before it got there".into(),
            Outcome::TimedOut(last) => format!("timed out ({last})"),
        }
    }

    fn color(&self) -> Color {
        if self.success() {
            Color::Green
        } else {
            Color::Red
        }
    }
}

enum Eval {
    Done(Outcome),
    Progress(String),
}

/// Whether a failure is being retried (`reconcile --retry` after the failure was recorded).
fn retrying(s: &Server) -> bool {
    matches!((&s.status.failure, s.retry_requested_at), (Some(f), Some(at)) if at > f.at)
}

fn state_text(s: &Server) -> String {
    let (mut text, phase) = output::phase_text(s);
    if s.paused {
        text.push_str(" (paused)");
    }
    if matches!(phase, Phase::Degraded | Phase::Deleting) {
        let m = output::message(s);
        if !m.is_empty() {
            text.push_str(": ");
            text.push_str(&m);
        }
    }
    text
}

fn evaluate(s: &Server, goal: Goal) -> Eval {
    let (phase, _) = s.phase();
    match goal {
        Goal::Gone => Eval::Progress(state_text(s)),
        Goal::Ready => match phase {
            Phase::Ready => Eval::Done(Outcome::Ready),
            Phase::Failed if retrying(s) => Eval::Progress("failed, retry requested".into()),
            Phase::Failed => Eval::Done(Outcome::Failed(output::message(s))),
            Phase::Deleting => Eval::Done(Outcome::Deleted),
            _ => Eval::Progress(state_text(s)),
        },
        Goal::Phase(want) if phase == want => Eval::Done(Outcome::Reached(want)),
        // A failure stays until someone acts; a deletion never comes back.
        Goal::Phase(_) => match phase {
            Phase::Failed if retrying(s) => Eval::Progress("failed, retry requested".into()),
            Phase::Failed => Eval::Done(Outcome::Failed(output::message(s))),
            Phase::Deleting => Eval::Done(Outcome::Deleted),
            _ => Eval::Progress(state_text(s)),
        },
    }
}

/// One server's line of the live display.
struct Line {
    label: String,
    state: String,
    outcome: Option<Outcome>,
    /// Its row on a terminal.
    bar: Option<ProgressBar>,
}

/// Live progress on stderr. On a terminal, indicatif keeps one row per server and redraws
/// them in place; each row is cut to the terminal's width with its colours counted as
/// zero-width (`{wide_msg}`), so no row wraps and the redraw leaves no ghost lines behind.
/// Otherwise (a pipe, a file) a line per change.
struct Progress {
    color: bool,
    started: Instant,
    lines: HashMap<ServerId, Line>,
    /// The display, on a terminal; kept until the wait ends.
    _live: Option<MultiProgress>,
}

impl Progress {
    fn new(targets: &[(ServerId, String)]) -> Self {
        let live = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let style = ProgressStyle::with_template("{wide_msg}").expect("a valid template");
        let mut p = Progress {
            color: output::stderr_color(),
            started: Instant::now(),
            lines: HashMap::new(),
            _live: None,
        };
        for (id, label) in targets {
            let bar = live
                .as_ref()
                .map(|mp| mp.add(ProgressBar::new_spinner().with_style(style.clone())));
            p.lines.insert(
                *id,
                Line {
                    label: label.clone(),
                    state: "waiting".into(),
                    outcome: None,
                    bar,
                },
            );
            if live.is_some() {
                p.show(*id);
            }
        }
        p._live = live;
        p
    }

    fn label(&mut self, id: ServerId, s: &Server) {
        if let Some(l) = self.lines.get_mut(&id) {
            l.label = label_of(s);
        }
    }

    fn set(&mut self, id: ServerId, state: String) {
        let changed = match self.lines.get_mut(&id) {
            Some(l) if l.outcome.is_none() && l.state != state => {
                l.state = state;
                true
            }
            _ => false,
        };
        if changed {
            self.show(id);
        }
    }

    fn done(&mut self, id: ServerId, outcome: Outcome) {
        if let Some(l) = self.lines.get_mut(&id)
            && l.outcome.is_none()
        {
            l.outcome = Some(outcome);
            self.show(id);
        }
    }

    fn text(&self, l: &Line) -> String {
        match &l.outcome {
            Some(o) => format!(
                "{}  {}",
                l.label,
                paint(&o.text(), Some(o.color()), self.color)
            ),
            None => {
                let elapsed = output::duration_short(self.started.elapsed().as_secs());
                format!(
                    "{}  {}  {}",
                    l.label,
                    l.state,
                    paint(&elapsed, Some(Color::Dim), self.color)
                )
            }
        }
    }

    fn show(&self, id: ServerId) {
        let Some(l) = self.lines.get(&id) else {
            return;
        };
        let text = self.text(l);
        match (&l.bar, &l.outcome) {
            (Some(bar), Some(_)) => bar.finish_with_message(text),
            (Some(bar), None) => bar.set_message(text),
            (None, _) => eprintln!("{text}"),
        }
    }

    /// Refresh the elapsed times on a terminal.
    fn tick(&self) {
        for l in self.lines.values() {
            if let (Some(bar), None) = (&l.bar, &l.outcome) {
                bar.set_message(self.text(l));
            }
        }
    }
}

pub fn label_of(s: &Server) -> String {
    format!(
        "{}  {:<16}",
        output::short_id(s),
        s.status.hostname.as_deref().unwrap_or("-")
    )
}

/// Wait for every target to reach `goal` (or fail, or time out) and print a live display.
/// Returns each server's outcome, in the order given.
pub async fn wait(
    client: &ApiClient,
    targets: &[Server],
    goal: Goal,
    timeout: Duration,
) -> Result<Vec<(ServerId, Outcome)>, CliError> {
    let labels: Vec<(ServerId, String)> = targets.iter().map(|s| (s.id, label_of(s))).collect();
    let mut progress = Progress::new(&labels);
    let mut outcomes: HashMap<ServerId, Outcome> = HashMap::new();
    let mut last_state: HashMap<ServerId, String> = HashMap::new();
    let deadline = Instant::now() + timeout;
    let mut resume: Option<i64> = None;
    let mut failures = Reconnects::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    let pending = |outcomes: &HashMap<ServerId, Outcome>| {
        targets
            .iter()
            .filter(|s| !outcomes.contains_key(&s.id))
            .count()
    };

    // Servers of one customer: watch only that customer (a smaller initial listing).
    let filter = ListFilter {
        customer: targets
            .first()
            .map(|s| s.customer_id.clone())
            .filter(|c| targets.iter().all(|s| &s.customer_id == c)),
        ..Default::default()
    };

    'connect: while pending(&outcomes) > 0 {
        let mut stream = Box::pin(client.watch(&filter, resume));
        let mut seen: HashSet<ServerId> = HashSet::new();
        loop {
            if pending(&outcomes) == 0 {
                break 'connect;
            }
            let item = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    for s in targets {
                        if let std::collections::hash_map::Entry::Vacant(v) = outcomes.entry(s.id) {
                            let last = last_state.get(&s.id).cloned().unwrap_or_else(|| "no news".into());
                            let o = Outcome::TimedOut(last);
                            progress.done(s.id, o.clone());
                            v.insert(o);
                        }
                    }
                    break 'connect;
                }
                _ = tick.tick() => {
                    progress.tick();
                    continue;
                }
                item = stream.next() => item,
            };
            match item {
                None => {
                    // The server closed the stream: reconnect from where we are.
                    if failures.exhausted() {
                        return Err(stream_keeps_closing());
                    }
                    failures.pause().await;
                    continue 'connect;
                }
                Some(Err(e @ ClientError::Unreachable { .. })) => {
                    if failures.exhausted() {
                        return Err(e.into());
                    }
                    failures.pause().await;
                    continue 'connect;
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(ev)) => {
                    failures.connected();
                    if let Some(seq) = ev.seq() {
                        resume = Some(seq);
                    }
                    match ev {
                        WatchEvent::Upsert { seq, server } => {
                            if outcomes.contains_key(&server.id)
                                || !progress.lines.contains_key(&server.id)
                            {
                                continue;
                            }
                            if seq.is_none() {
                                seen.insert(server.id);
                            }
                            progress.label(server.id, &server);
                            match evaluate(&server, goal) {
                                Eval::Done(o) => {
                                    progress.done(server.id, o.clone());
                                    outcomes.insert(server.id, o);
                                }
                                Eval::Progress(p) => {
                                    last_state.insert(server.id, p.clone());
                                    progress.set(server.id, p);
                                }
                            }
                        }
                        WatchEvent::Delete { id, .. } => {
                            if progress.lines.contains_key(&id) && !outcomes.contains_key(&id) {
                                let o = gone(client, id, goal).await?;
                                progress.done(id, o.clone());
                                outcomes.insert(id, o);
                            }
                        }
                        WatchEvent::Bookmark { .. } => {
                            // Targets missing from the initial listing are gone (or hidden).
                            for s in targets {
                                if !seen.contains(&s.id) && !outcomes.contains_key(&s.id) {
                                    let o = gone(client, s.id, goal).await?;
                                    progress.done(s.id, o.clone());
                                    outcomes.insert(s.id, o);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    drop(progress);
    Ok(targets
        .iter()
        .map(|s| {
            (
                s.id,
                outcomes
                    .remove(&s.id)
                    .unwrap_or(Outcome::TimedOut("no news".into())),
            )
        })
        .collect())
}

/// The outcome for a server the watch says is gone, confirmed with a get (404).
async fn gone(client: &ApiClient, id: ServerId, goal: Goal) -> Result<Outcome, CliError> {
    match client.get(id).await {
        Err(ClientError::NotFound(_)) => Ok(match goal {
            Goal::Gone => Outcome::Gone,
            Goal::Ready | Goal::Phase(_) => Outcome::Deleted,
        }),
        Err(e) => Err(e.into()),
        Ok(s) => Ok(match evaluate(&s, goal) {
            Eval::Done(o) => o,
            // Still there: not visible to the watch (should not happen); judge what we see.
            Eval::Progress(p) => Outcome::TimedOut(p),
        }),
    }
}

/// The summary after a wait, on stderr; `Err` (exit 1) unless every outcome is a success.
pub fn summarize(outcomes: &[(ServerId, Outcome)]) -> Result<(), CliError> {
    let ok = outcomes.iter().filter(|(_, o)| o.success()).count();
    let bad = outcomes.len() - ok;
    if bad == 0 {
        return Ok(());
    }
    let timed_out = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::TimedOut(_)))
        .count();
    let mut e = CliError::failed(format!(
        "{bad} of {} server(s) did not finish well ({timed_out} timed out)",
        outcomes.len()
    ));
    for (id, o) in outcomes.iter().filter(|(_, o)| !o.success()) {
        e = e.detail(format!("{id}: {}", o.text()));
    }
    Err(e.detail("see why with: zctl describe server ID"))
}

/// The API's answer to a watch position older than the change feed keeps.
const GONE: u16 = 410;

/// `get servers -w`: the table (or documents), then every change until interrupted; a
/// position the feed no longer reaches (410) re-lists and resumes.
pub async fn follow(
    client: &ApiClient,
    filter: &ListFilter,
    format: Option<Output>,
) -> Result<(), CliError> {
    let data = output::data_format(format);
    let wide = format == Some(Output::Wide);
    let tty = std::io::stdout().is_terminal();
    let color = output::stdout_color();
    let mut rows: Vec<Server> = Vec::new();
    let mut widths: Option<Vec<usize>> = None;
    let mut resume: Option<i64> = None;
    let mut failures = Reconnects::default();
    let mut ever_connected = false;
    'connect: loop {
        let mut stream = Box::pin(client.watch(filter, resume));
        let mut snapshot = resume.is_none();
        if snapshot {
            rows.clear();
        }
        while let Some(item) = stream.next().await {
            let ev = match item {
                Ok(ev) => ev,
                Err(e @ ClientError::Unreachable { .. }) if ever_connected => {
                    if failures.exhausted() {
                        return Err(e.into());
                    }
                    eprintln!("watch interrupted ({e}); reconnecting");
                    failures.pause().await;
                    continue 'connect;
                }
                // Behind the feed's retention (410): list again and follow from there.
                Err(e) if e.status() == Some(GONE) && resume.is_some() => {
                    eprintln!("watch position too old ({e}); listing again");
                    resume = None;
                    continue 'connect;
                }
                Err(e) => return Err(e.into()),
            };
            ever_connected = true;
            failures.connected();
            if let Some(seq) = ev.seq() {
                resume = Some(seq);
            }
            if let Some(f) = data {
                emit_doc(&ev, f)?;
                continue;
            }
            if format == Some(Output::Name) {
                match &ev {
                    WatchEvent::Upsert { server, .. } => {
                        println!("{}", output::name_line(server.id))
                    }
                    WatchEvent::Delete { id, .. } => println!("{}", output::name_line(*id)),
                    WatchEvent::Bookmark { .. } => {}
                }
                let _ = std::io::stdout().flush();
                continue;
            }
            match ev {
                WatchEvent::Upsert { server, .. } => {
                    let changed = *server;
                    match rows.iter_mut().find(|s| s.id == changed.id) {
                        Some(s) => *s = changed.clone(),
                        None => rows.push(changed.clone()),
                    }
                    if !snapshot {
                        show_change(&rows, Some(&changed), None, wide, tty, color, &mut widths);
                    }
                }
                WatchEvent::Delete { id, .. } => {
                    let gone = rows.iter().position(|s| s.id == id).map(|i| rows.remove(i));
                    if !snapshot {
                        show_change(&rows, None, gone.as_ref(), wide, tty, color, &mut widths);
                    }
                }
                WatchEvent::Bookmark { .. } => {
                    snapshot = false;
                    show_change(&rows, None, None, wide, tty, color, &mut widths);
                }
            }
        }
        // The stream ended (server shutdown or a proxy timeout): resume.
        if failures.exhausted() {
            return Err(stream_keeps_closing());
        }
        failures.pause().await;
    }
}

fn emit_doc(ev: &WatchEvent, format: Output) -> Result<(), CliError> {
    let doc = match ev {
        WatchEvent::Upsert { seq, server } => serde_json::json!({
            "type": "upsert", "seq": seq, "server": output::server_json(server),
        }),
        WatchEvent::Delete { seq, id } => serde_json::json!({
            "type": "delete", "seq": seq, "id": id,
        }),
        WatchEvent::Bookmark { .. } => return Ok(()),
    };
    match format {
        Output::Yaml => {
            println!("---");
            output::print_data(&doc, Output::Yaml)?;
        }
        _ => println!("{doc}"),
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Show the table (first time, or on a terminal: redraw all of it) or one changed row.
fn show_change(
    rows: &[Server],
    changed: Option<&Server>,
    deleted: Option<&Server>,
    wide: bool,
    tty: bool,
    color: bool,
    widths: &mut Option<Vec<usize>>,
) {
    let now = chrono::Utc::now();
    let mut out = std::io::stdout().lock();
    let table = output::servers_table(rows, wide, now);
    if tty {
        let _ = write!(out, "\x1b[H\x1b[2J");
        let _ = write!(out, "{}", table.render(output::terminal_width(), color));
        if rows.is_empty() {
            let _ = writeln!(out, "(no servers yet; watching)");
        }
        let _ = out.flush();
        return;
    }
    match widths {
        None => {
            // The first table fixes the column widths (generously, so later rows align).
            let mut w = table.widths(None);
            let last = w.len() - 1;
            for (i, x) in w.iter_mut().enumerate() {
                if i == last {
                    *x = if wide { usize::MAX } else { 80 };
                } else {
                    *x = (*x).max(min_width(table.headers[i]));
                }
            }
            let _ = writeln!(out, "{}", table.header_line(&w, color));
            for r in &table.rows {
                let _ = writeln!(out, "{}", Table::line(r, &w, color));
            }
            *widths = Some(w);
        }
        Some(w) => {
            if let Some(s) = changed {
                let row = output::server_row(s, wide, now);
                let _ = writeln!(out, "{}", Table::line(&row, w, color));
            }
            if let Some(s) = deleted {
                let mut row = output::server_row(s, wide, now);
                let phase_col = if wide { 7 } else { 3 };
                row[phase_col] = output::Cell::colored("deleted", Some(Color::Magenta));
                let _ = writeln!(out, "{}", Table::line(&row, w, color));
            }
        }
    }
    let _ = out.flush();
}

/// Column widths a following table starts with, so that later rows mostly stay aligned.
fn min_width(header: &str) -> usize {
    match header {
        "ID" => 8,
        "HOSTNAME" => 18,
        "PHASE" => 32,
        "VMID" | "AGE" | "GEN" => 6,
        "NODE" | "CUSTOMER" => 10,
        "IP" => 15,
        "KIND" => 24,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_conditions_parse() {
        let cases: &[(&str, &str, Result<Goal, &str>)] = &[
            ("ready is the usual wait", "phase=ready", Ok(Goal::Ready)),
            (
                "any phase may be waited for",
                "phase=failed",
                Ok(Goal::Phase(Phase::Failed)),
            ),
            (
                "case and spaces are forgiven",
                " phase = Degraded ",
                Ok(Goal::Phase(Phase::Degraded)),
            ),
            ("kubectl's spelling of gone", "delete", Ok(Goal::Gone)),
            (
                "an unknown phase names itself",
                "phase=running",
                Err("unknown phase 'running'"),
            ),
            (
                "an unknown key lists the keys",
                "condition=Ready",
                Err("unknown wait condition 'condition'"),
            ),
            (
                "no key at all",
                "ready",
                Err("'ready' is not a wait condition"),
            ),
            ("an empty phase", "phase=", Err("unknown phase ''")),
        ];
        for (reason, text, want) in cases {
            let got = text.parse::<Goal>();
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{reason}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{reason}: {g}"),
                _ => panic!("{reason}: {text} gave {got:?}"),
            }
        }
    }
}
