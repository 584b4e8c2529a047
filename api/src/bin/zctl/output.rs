//! Formatting: tables that fit the terminal, ages, colours (`--color`), JSON and YAML.

use crate::CliError;
use crate::cli::{ColorWhen, Output};
use anstream::{AutoStream, ColorChoice};
use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use model::{ConditionStatus, ConditionType, Phase, Server};
use serde::Serialize;
use std::io::IsTerminal;

/// Decide colours once, from `--color`: anstream then applies NO_COLOR, CLICOLOR_FORCE,
/// CLICOLOR and TERM for `auto`, and an explicit `always` or `never` wins over them.
pub fn init_color(when: ColorWhen) {
    match when {
        ColorWhen::Auto => ColorChoice::Auto,
        ColorWhen::Always => ColorChoice::Always,
        ColorWhen::Never => ColorChoice::Never,
    }
    .write_global();
}

/// Colour on stdout (see [`init_color`]).
pub fn stdout_color() -> bool {
    AutoStream::choice(&std::io::stdout()) != ColorChoice::Never
}

/// Colour on stderr (see [`init_color`]).
pub fn stderr_color() -> bool {
    AutoStream::choice(&std::io::stderr()) != ColorChoice::Never
}

/// The few colours zctl uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Green,
    Yellow,
    Red,
    Cyan,
    Magenta,
    Dim,
    Bold,
}

impl Color {
    fn style(self) -> Style {
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        match self {
            Color::Green => fg(AnsiColor::Green),
            Color::Yellow => fg(AnsiColor::Yellow),
            Color::Red => fg(AnsiColor::Red),
            Color::Cyan => fg(AnsiColor::Cyan),
            Color::Magenta => fg(AnsiColor::Magenta),
            Color::Dim => Style::new().dimmed(),
            Color::Bold => Style::new().bold(),
        }
    }
}

pub fn paint(s: &str, c: Option<Color>, enabled: bool) -> String {
    match c {
        Some(c) if enabled && !s.is_empty() => {
            let st = c.style();
            format!("{st}{s}{st:#}")
        }
        _ => s.to_string(),
    }
}

/// One table cell: text and an optional color (applied after padding, so columns align).
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl Cell {
    pub fn colored(text: impl Into<String>, color: Option<Color>) -> Self {
        Cell {
            text: text.into(),
            color,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell {
            text: text.into(),
            color: None,
        }
    }
}

/// The terminal's width, when stdout is a terminal.
pub fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        return Some(c);
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_rows, cols)| usize::from(cols))
}

const GAP: &str = "   ";

/// Truncate to `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= max {
        return s;
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A plain-text table, kubectl-style: a header line, columns separated by three spaces.
#[derive(Debug, Clone)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Column widths; the last column is cut so that lines fit `max_width` (never below
    /// 20 characters).
    pub fn widths(&self, max_width: Option<usize>) -> Vec<usize> {
        let n = self.headers.len();
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.text.chars().count());
            }
        }
        if let Some(max) = max_width
            && n > 0
        {
            let fixed: usize = w[..n - 1].iter().sum::<usize>() + GAP.len() * (n - 1);
            let room = max.saturating_sub(fixed).max(20);
            w[n - 1] = w[n - 1].min(room);
        }
        w
    }

    /// One line with these widths (the last column is not padded, but cut to its width).
    pub fn line(cells: &[Cell], widths: &[usize], color: bool) -> String {
        let mut out = String::new();
        let n = widths.len();
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).cloned().unwrap_or_default();
            let last = i + 1 == n;
            let text = truncate(&c.text, *w);
            let pad = if last {
                0
            } else {
                w.saturating_sub(text.chars().count())
            };
            out.push_str(&paint(&text, c.color, color));
            if !last {
                out.push_str(&" ".repeat(pad));
                out.push_str(GAP);
            }
        }
        out.trim_end().to_string()
    }

    pub fn header_line(&self, widths: &[usize], color: bool) -> String {
        let cells: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::colored(*h, Some(Color::Bold)))
            .collect();
        Self::line(&cells, widths, color)
    }

    /// The whole table, fitted to `max_width`.
    pub fn render(&self, max_width: Option<usize>, color: bool) -> String {
        let widths = self.widths(max_width);
        let mut out = self.header_line(&widths, color);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&Self::line(r, &widths, color));
            out.push('\n');
        }
        out
    }

    /// Print to stdout, fitted to the terminal.
    pub fn print(&self) {
        print!("{}", self.render(terminal_width(), stdout_color()));
    }
}

/// kubectl-style age: `45s`, `3m12s`, `2h5m`, `4d3h`, `120d`.
pub fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    if secs < 0 {
        return format!("in {}", duration_short((-secs) as u64));
    }
    duration_short(secs as u64)
}

pub fn duration_short(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d >= 10 {
        format!("{d}d")
    } else if d > 0 {
        if h > 0 {
            format!("{d}d{h}h")
        } else {
            format!("{d}d")
        }
    } else if secs >= 3600 {
        if m > 0 {
            format!("{}h{m}m", secs / 3600)
        } else {
            format!("{}h", secs / 3600)
        }
    } else if secs >= 60 {
        if s > 0 && secs < 600 {
            format!("{m}m{s}s")
        } else {
            format!("{m}m")
        }
    } else {
        format!("{s}s")
    }
}

/// `2026-01-02 03:04:05 UTC (5m ago)`.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = t.format("%Y-%m-%d %H:%M:%S UTC");
    if t > now {
        format!(
            "{stamp} (in {})",
            duration_short((t - now).num_seconds() as u64)
        )
    } else {
        format!("{stamp} ({} ago)", age(t, now))
    }
}

pub fn phase_color(p: Phase) -> Color {
    match p {
        Phase::Ready => Color::Green,
        Phase::Degraded => Color::Yellow,
        Phase::Failed => Color::Red,
        Phase::Queued | Phase::Provisioning => Color::Cyan,
        Phase::Deleting => Color::Magenta,
    }
}

/// `provisioning/clone-container`, `degraded/wait-for-ip`, `ready`, `failed`, `deleting`.
pub fn phase_text(server: &Server) -> (String, Phase) {
    let (phase, step) = server.phase();
    let text = match (phase, step) {
        (Phase::Provisioning | Phase::Degraded, Some(s)) => format!("{phase}/{s}"),
        _ => phase.to_string(),
    };
    (text, phase)
}

/// `True` when the server is Ready for its current generation; else the Ready condition's
/// status (`False`, `Unknown`), `False` without one.
pub fn ready_text(server: &Server) -> &'static str {
    let (phase, _) = server.phase();
    if phase == Phase::Ready {
        return "True";
    }
    match server.status.condition(ConditionType::Ready) {
        Some(c) if c.status == ConditionStatus::Unknown => "Unknown",
        _ => "False",
    }
}

/// Why the server is not (yet) Ready, in one line: the terminal failure, the last error, a
/// Degraded condition, then the first condition of the chain that is not True.
pub fn message(server: &Server) -> String {
    let (phase, _) = server.phase();
    if phase == Phase::Failed
        && let Some(f) = &server.status.failure
    {
        return format!("{}: {}", f.step, f.message);
    }
    if phase == Phase::Ready {
        return server
            .status
            .condition(ConditionType::Ready)
            .map(|c| c.message.clone())
            .unwrap_or_default();
    }
    if let Some(e) = &server.status.last_error {
        return format!("{}: {}", e.step, e.message);
    }
    if let Some(c) = server.status.condition(ConditionType::Degraded)
        && c.status == ConditionStatus::True
    {
        return c.message.clone();
    }
    let chain = ConditionType::CHAIN
        .iter()
        .chain([ConditionType::Ready].iter())
        .filter_map(|t| server.status.condition(*t))
        .find(|c| c.status != ConditionStatus::True && !c.message.is_empty());
    if let Some(c) = chain {
        return c.message.clone();
    }
    if server.paused {
        return "paused".into();
    }
    String::new()
}

/// The last 8 characters of the id (its random part; the start of a v7 id is a timestamp
/// that servers created together share).
pub fn short_id(server: &Server) -> String {
    let s = server.id.to_string();
    s[s.len() - 8..].to_string()
}

pub fn vmid_text(server: &Server) -> String {
    server
        .status
        .vmid
        .or(server.reserved_vmid)
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".into(),
    }
}

pub fn kind_text(server: &Server) -> String {
    let s = &server.spec;
    match s.kind {
        model::Kind::Game => format!(
            "{}/{} {}",
            s.game.as_deref().unwrap_or("game"),
            s.variant.map(|v| v.as_str()).unwrap_or("?"),
            s.version
        ),
        model::Kind::Dev => format!("dev/{} {}", s.runtime.as_deref().unwrap_or("?"), s.version),
    }
}

/// The servers table.
pub fn servers_table(servers: &[Server], wide: bool, now: DateTime<Utc>) -> Table {
    let headers = if wide {
        vec![
            "ID", "CUSTOMER", "HOSTNAME", "VMID", "NODE", "IP", "KIND", "PHASE", "READY", "GEN",
            "AGE", "MESSAGE",
        ]
    } else {
        vec!["ID", "HOSTNAME", "VMID", "PHASE", "READY", "AGE", "MESSAGE"]
    };
    let mut t = Table::new(headers);
    for s in servers {
        t.row(server_row(s, wide, now));
    }
    t
}

pub fn server_row(s: &Server, wide: bool, now: DateTime<Utc>) -> Vec<Cell> {
    let (phase_s, phase) = phase_text(s);
    let mut phase_s = phase_s;
    if s.paused {
        phase_s.push_str(",paused");
    }
    let ready = ready_text(s);
    let ready_cell = Cell::colored(
        ready,
        Some(if ready == "True" {
            Color::Green
        } else {
            Color::Dim
        }),
    );
    let msg = message(s);
    let msg_color = match phase {
        Phase::Failed => Some(Color::Red),
        Phase::Degraded => Some(Color::Yellow),
        _ => None,
    };
    if wide {
        vec![
            s.id.to_string().into(),
            s.customer_id.clone().into(),
            dash(s.status.hostname.as_deref()).into(),
            vmid_text(s).into(),
            dash(s.status.node.as_deref()).into(),
            dash(s.status.ip.as_deref()).into(),
            kind_text(s).into(),
            Cell::colored(phase_s, Some(phase_color(phase))),
            ready_cell,
            format!("{}/{}", s.status.observed_generation, s.generation).into(),
            age(s.created_at, now).into(),
            Cell::colored(msg, msg_color),
        ]
    } else {
        vec![
            short_id(s).into(),
            dash(s.status.hostname.as_deref()).into(),
            vmid_text(s).into(),
            Cell::colored(phase_s, Some(phase_color(phase))),
            ready_cell,
            age(s.created_at, now).into(),
            Cell::colored(truncate(&msg, MESSAGE_MAX), msg_color),
        ]
    }
}

/// The MESSAGE column of the default table is cut to this (and to the terminal's width);
/// `-o wide` shows it whole.
const MESSAGE_MAX: usize = 80;

/// The API's server JSON (which carries `phase` and `step`) plus `ready`.
pub fn server_json(s: &Server) -> serde_json::Value {
    // The server's JSON carries `phase` and `step` itself; zctl adds only `ready`.
    let mut v = serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("ready".into(), (s.phase().0 == Phase::Ready).into());
    }
    v
}

/// Print a value as JSON (pretty) or YAML.
pub fn print_data<T: Serialize>(value: &T, format: Output) -> Result<(), CliError> {
    match format {
        Output::Yaml => {
            let s = serde_saphyr::to_string(value)
                .map_err(|e| CliError::failed(format!("cannot write YAML: {e}")))?;
            print!("{s}");
            if !s.ends_with('\n') {
                println!();
            }
        }
        _ => {
            let s = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::failed(format!("cannot write JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(())
}

/// A server's name as `-o name` prints it (and every ID argument accepts).
pub fn name_line(id: model::ServerId) -> String {
    format!("{SERVER_PREFIX}{id}")
}

/// The kind prefix of `-o name`.
pub const SERVER_PREFIX: &str = "server/";

/// Whether `-o` asks for data (json or yaml) rather than a table.
pub fn data_format(o: Option<Output>) -> Option<Output> {
    o.filter(|o| matches!(o, Output::Json | Output::Yaml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases: &[(&str, u64, &str)] = &[
            ("seconds alone", 45, "45s"),
            ("minutes with seconds while short", 192, "3m12s"),
            ("whole minutes after ten", 725, "12m"),
            ("hours with minutes", 7500, "2h5m"),
            ("days with hours", 4 * 86_400 + 3 * 3600, "4d3h"),
            ("many days alone", 120 * 86_400 + 5, "120d"),
        ];
        for (reason, secs, want) in cases {
            assert_eq!(duration_short(*secs), *want, "{reason}");
        }
    }

    #[test]
    fn the_last_column_is_cut_to_fit() {
        let mut t = Table::new(vec!["A", "MESSAGE"]);
        t.row(vec!["x".into(), "m".repeat(100).into()]);
        let out = t.render(Some(30), false);
        for l in out.lines() {
            assert!(l.chars().count() <= 30, "{l}");
        }
        assert!(out.contains('…'));
    }
}
