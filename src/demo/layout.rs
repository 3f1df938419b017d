//! The demo's screen as lines, fitted to the terminal (pure: `screen` draws them). From the top:
//! the banner and the summary line; the services that need attention (down, degraded, stale,
//! unknown); the other services by category, each category one line of names when there is not
//! room for a row per service; recent alerts if room is left; and the footer (log file,
//! metrics, "Ctrl-C to stop"). Banner, summary and footer are always there; every line is cut
//! to the width. Text from the database is escaped (`escape_control`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::dashboard::{DashboardRow, latency};
use crate::text::escape_control;

/// What the banner and footer say.
pub struct Banner {
    pub services: usize,
    pub interval: Duration,
    /// The database's name and where it is.
    pub database: String,
    pub log: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
    /// Successful checks slower than this show as degraded.
    pub degraded_after: Duration,
}

/// How a row is judged on the screen, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Down,
    Degraded,
    Stale,
    Maintenance,
    Unknown,
    Up,
    Unavailable,
}

impl State {
    pub fn of(r: &DashboardRow, degraded_after: Duration) -> Self {
        match r.status.as_str() {
            "up" if r
                .response_time_ms
                .is_some_and(|ms| i64::from(ms) > degraded_after.as_millis() as i64) =>
            {
                Self::Degraded
            }
            "up" => Self::Up,
            "degraded" => Self::Degraded,
            "maintenance" => Self::Maintenance,
            "down" => Self::Down,
            "stale" => Self::Stale,
            "unavailable" => Self::Unavailable,
            _ => Self::Unknown,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Degraded => "degraded",
            Self::Stale => "stale",
            Self::Maintenance => "maintenance",
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One screen line, at most the width; `paint` is the byte range of a state word to colour.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub paint: Option<(Range<usize>, State)>,
}

impl Line {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            paint: None,
        }
    }

    /// Cut to `width` characters, the last one `…` when something was cut.
    fn fit(mut self, width: usize) -> Self {
        if let Some((end, _)) = self.text.char_indices().nth(width) {
            let keep = self.text[..end].char_indices().last().map_or(0, |(i, _)| i);
            self.text.truncate(keep);
            self.text.push('…');
            if self.paint.as_ref().is_some_and(|(r, _)| r.end > keep) {
                self.paint = None;
            }
        }
        self
    }
}

struct Shown<'a> {
    row: &'a DashboardRow,
    name: String,
    state: State,
}

/// `N services: U up, …`, and the time if there is room for it.
fn summary(shown: &[Shown], now: DateTime<Utc>, width: usize) -> String {
    let n = |s: State| shown.iter().filter(|r| r.state == s).count();
    let counts = format!(
        "{} services: {} up, {} degraded, {} down, {} stale, {} unknown, {} unavailable",
        shown.len(),
        n(State::Up),
        n(State::Degraded),
        n(State::Down),
        n(State::Stale),
        n(State::Unknown),
        n(State::Unavailable),
    );
    let counts = match n(State::Maintenance) {
        0 => counts,
        m => format!("{counts}, {m} in maintenance"),
    };
    let time = now.format("%H:%M:%S").to_string();
    match counts.len() + 2 + time.len() <= width {
        true => format!("{counts}  {time}"),
        false => counts,
    }
}

fn row_line(s: &Shown, name_width: usize, banner: &Banner) -> Line {
    let r = s.row;
    let why = match s.state {
        State::Degraded => match r.degraded_reason.as_deref() {
            Some(why) => escape_control(why).into_owned(),
            None => format!("slower than {}ms", banner.degraded_after.as_millis()),
        },
        State::Up | State::Unavailable => String::new(),
        _ => escape_control(r.error_message.as_deref().unwrap_or("")).into_owned(),
    };
    let uptime = r
        .uptime_percentage
        .map_or("-".into(), |u| format!("{u:.1}%"));
    let head = format!("  {:<name_width$}  ", s.name);
    let start = head.len();
    let word = s.state.word();
    let text = format!(
        "{head}{word:<8} {:>6} {:>6}  {why}",
        latency(r.response_time_ms),
        uptime
    );
    Line {
        text: text.trim_end().to_owned(),
        paint: Some((start..start + word.len(), s.state)),
    }
}

/// The services of one category that need no attention, as one line of names.
fn folded(category: &str, members: &[&Shown]) -> Line {
    let up = members.iter().filter(|s| s.state == State::Up).count();
    let off = members.len() - up;
    let names: Vec<&str> = members.iter().map(|s| s.name.as_str()).collect();
    let off = if off > 0 {
        format!(", {off} unavailable")
    } else {
        String::new()
    };
    Line::plain(format!("{category} ({up} up{off}): {}", names.join(" ")))
}

/// The screen for `rows` at `width` × `height`: exactly `height` lines (fewer only on a
/// screen too small for the banner and footer), none wider than `width`.
pub fn compose(
    banner: &Banner,
    rows: &[DashboardRow],
    alerts: &[String],
    now: DateTime<Utc>,
    (width, height): (usize, usize),
) -> Vec<Line> {
    let mut shown: Vec<Shown> = rows
        .iter()
        .map(|row| Shown {
            row,
            name: escape_control(&row.service_type).into_owned(),
            state: State::of(row, banner.degraded_after),
        })
        .collect();
    shown.sort_by(|a, b| a.name.cmp(&b.name));
    let name_width = shown
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 24);
    let top = vec![
        Line::plain(format!(
            "mcp-healthd demo: {} sample services on 127.0.0.1, checked every {}s",
            banner.services,
            banner.interval.as_secs()
        )),
        Line::plain(format!("database {}", banner.database)),
        Line::plain(summary(&shown, now, width)),
    ];
    let metrics = banner
        .metrics
        .map_or("no status page (address in use or disabled)".into(), |a| {
            format!("status page http://{a}/")
        });
    let bottom = vec![
        Line::plain(format!("daemon log {}", banner.log.display())),
        Line::plain(format!("{metrics}  ·  Ctrl-C to stop")),
    ];
    let room = height.saturating_sub(top.len() + bottom.len() + 1);
    let mut body = attention(&shown, name_width, banner, room);
    let left = room.saturating_sub(body.len());
    body.extend(by_category(&shown, name_width, banner, left));
    let left = room.saturating_sub(body.len());
    if left >= 3 && !alerts.is_empty() {
        body.push(Line::plain("recent alerts"));
        let take = alerts.len().min(left - 1);
        body.extend(
            alerts[alerts.len() - take..]
                .iter()
                .map(|a| Line::plain(format!("  {a}"))),
        );
    }
    let mut screen = top;
    screen.push(Line::default());
    screen.extend(body);
    let pad = height.saturating_sub(screen.len() + bottom.len());
    screen.extend(std::iter::repeat_n(Line::default(), pad));
    screen.extend(bottom);
    screen.into_iter().map(|l| l.fit(width)).collect()
}

/// Down, degraded, stale and unknown services, most urgent first, in at most `room` lines.
fn attention(shown: &[Shown], name_width: usize, banner: &Banner, room: usize) -> Vec<Line> {
    let mut urgent: Vec<&Shown> = shown.iter().filter(|s| s.state < State::Up).collect();
    if urgent.is_empty() || room < 2 {
        return Vec::new();
    }
    urgent.sort_by_key(|s| s.state); // stable: by name within a state
    let mut lines = vec![Line::plain(format!("needing attention ({})", urgent.len()))];
    let fits = room - 1;
    let cut = urgent.len() > fits;
    let show = if cut { fits - 1 } else { urgent.len() };
    lines.extend(
        urgent[..show]
            .iter()
            .map(|s| row_line(s, name_width, banner)),
    );
    if cut {
        lines.push(Line::plain(format!("  … and {} more", urgent.len() - show)));
    }
    lines
}

/// The other services by category: a row each while room lasts, else one line per category.
fn by_category(shown: &[Shown], name_width: usize, banner: &Banner, room: usize) -> Vec<Line> {
    let mut groups: BTreeMap<String, Vec<&Shown>> = BTreeMap::new();
    for s in shown.iter().filter(|s| s.state >= State::Up) {
        let category = s.row.category.as_deref().unwrap_or("(no category)");
        groups
            .entry(escape_control(category).into_owned())
            .or_default()
            .push(s);
    }
    let mut lines = Vec::new();
    let mut left = room;
    let count = groups.len();
    for (i, (category, members)) in groups.iter().enumerate() {
        let later = count - i - 1;
        if left == 0 {
            break;
        }
        if left == 1 && later > 0 {
            lines.push(Line::plain(format!("… {} more categories", count - i)));
            break;
        }
        if 1 + members.len() + later <= left {
            lines.push(Line::plain(category.clone()));
            lines.extend(members.iter().map(|s| row_line(s, name_width, banner)));
            left -= 1 + members.len();
        } else {
            lines.push(folded(category, members));
            left -= 1;
        }
    }
    lines
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
