//! `mcp-healthd maintenance add|list|end`: maintenance windows (`store::maintenance`). `add`
//! prints only the new id on stdout, so scripts can capture it, and a one-line summary on
//! stderr; `list` prints the windows now and ahead, the database's text escaped for the
//! terminal; `end` ends one early. Like every command but `run` and `migrate`, they refuse a
//! database with pending migrations (`db::open_current`).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::commands::cli::MaintenanceAdd;
use crate::config::Config;
use crate::store::dashboard::service_width;
use crate::store::db;
use crate::store::maintenance::{self, EndOutcome, Window, show};
use crate::text::{escape_control, truncate};

/// How many characters of a reason the table shows.
const REASON_COLUMN: usize = 60;

/// TIME on the command line: RFC 3339 (any offset), or `YYYY-MM-DD HH:MM[:SS]` read as UTC.
pub fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!(
                "`{}` is not a time: use RFC 3339 (2026-12-03T10:00:00Z, offsets allowed) \
                 or YYYY-MM-DD HH:MM[:SS] in UTC",
                crate::text::echo(raw)
            )
        })
}

/// DUR on the command line: a positive humantime duration (`30m`, `1h`, `2h30m`).
pub fn parse_duration(raw: &str) -> Result<chrono::Duration, String> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| {
        format!(
            "`{}` is not a duration ({e}): use e.g. 30m, 1h, 2h30m",
            crate::text::echo(raw)
        )
    })?;
    if d.is_zero() {
        return Err("the duration must be more than 0".into());
    }
    chrono::Duration::from_std(d).map_err(|_| format!("`{}` is too long", crate::text::echo(raw)))
}

/// Which services a window is for, as the terminal shows it.
fn services(service_type: Option<&str>) -> String {
    service_type.map_or_else(
        || "all services".to_owned(),
        |s| escape_control(s).into_owned(),
    )
}

/// A length of time in whole seconds, humantime-style (`1h 30m`).
fn length(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let secs = u64::try_from((to - from).num_seconds()).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub async fn add(config: &Config, args: MaintenanceAdd) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let starts_at = args.starts.unwrap_or(now);
    let ends_at = match (args.duration, args.until) {
        (Some(d), None) => starts_at
            .checked_add_signed(d)
            .context("--for: the window would end beyond the last representable time")?,
        (None, Some(until)) => until,
        _ => anyhow::bail!("give exactly one of --for and --until"),
    };
    // A bad window needs no connection.
    maintenance::validate(starts_at, ends_at, &args.reason, now)?;
    let pool = db::open_current(&config.database).await?;
    let added = maintenance::add(
        &pool,
        args.service.as_deref(),
        starts_at,
        ends_at,
        &args.reason,
    )
    .await;
    pool.close().await;
    let id = added?;
    println!("{id}");
    eprintln!(
        "added maintenance window {id} for {}: {} to {} ({}, {}): {}",
        services(args.service.as_deref()),
        show(&starts_at),
        show(&ends_at),
        length(starts_at, ends_at),
        if starts_at <= Utc::now() {
            "active now"
        } else {
            "planned"
        },
        escape_control(&truncate(&args.reason, REASON_COLUMN))
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonWindow<'a> {
    #[serde(flatten)]
    window: &'a Window,
    state: &'static str,
}

fn state(w: &Window, now: DateTime<Utc>) -> &'static str {
    if w.active_at(now) {
        "active"
    } else {
        "planned"
    }
}

pub async fn list(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let pool = db::open_current(&config.database).await?;
    let windows = maintenance::current_and_ahead(&pool).await;
    pool.close().await;
    let windows = windows?;
    let now = Utc::now();
    if json {
        let rows: Vec<JsonWindow> = windows
            .iter()
            .map(|window| JsonWindow {
                window,
                state: state(window, now),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&windows, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table `list` prints: one line per window, the database's text escaped and the reason
/// cut to [`REASON_COLUMN`] characters.
fn render(windows: &[Window], now: DateTime<Utc>) -> String {
    if windows.is_empty() {
        return "no maintenance windows now or ahead\n".into();
    }
    let names: Vec<String> = windows
        .iter()
        .map(|w| services(w.service_type.as_deref()))
        .collect();
    let width = service_width(names.iter().map(String::as_str)).max("all services".len());
    let ids = windows
        .iter()
        .map(|w| w.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>ids$}  {:<width$}  {:<19}  {:<19}  {:<7}  REASON",
        "ID", "SERVICE", "STARTS (UTC)", "ENDS (UTC)", "STATE"
    );
    for (w, name) in windows.iter().zip(&names) {
        let _ = writeln!(
            out,
            "{:>ids$}  {:<width$}  {:<19}  {:<19}  {:<7}  {}",
            w.id,
            name,
            time(w.starts_at),
            time(w.ends_at),
            state(w, now),
            escape_control(&truncate(&w.reason, REASON_COLUMN))
        );
    }
    out
}

pub async fn end(config: &Config, id: i64) -> anyhow::Result<ExitCode> {
    let pool = db::open_current(&config.database).await?;
    let outcome = maintenance::end(&pool, id).await;
    pool.close().await;
    match outcome? {
        EndOutcome::Ended { starts_at, ends_at } if ends_at == starts_at => println!(
            "maintenance window {id} cancelled: it had not begun (it was to start at {})",
            show(&starts_at)
        ),
        EndOutcome::Ended { ends_at, .. } => {
            println!("maintenance window {id} ended at {}", show(&ends_at));
        }
        EndOutcome::AlreadyEnded { starts_at, ends_at } if ends_at == starts_at => {
            anyhow::bail!("maintenance window {id} was already cancelled before it began")
        }
        EndOutcome::AlreadyEnded { ends_at, .. } => {
            anyhow::bail!(
                "maintenance window {id} has already ended (at {})",
                show(&ends_at)
            )
        }
        EndOutcome::NotFound => anyhow::bail!("no maintenance window with id {id}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_plain_utc_date_and_time() {
        let ten = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        assert_eq!(parse_time("2026-12-03T10:00:00Z"), Ok(ten));
        assert_eq!(parse_time("2026-12-03T11:00:00+01:00"), Ok(ten));
        assert_eq!(parse_time("2026-12-03 10:00"), Ok(ten));
        assert_eq!(parse_time(" 2026-12-03 10:00:00 "), Ok(ten));
        for bad in ["tomorrow", "2026-12-03", "2026-13-03 10:00", "10:00", ""] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("is not a time: use RFC 3339"), "{bad}: {err}");
        }
        assert!(parse_time("x\u{1b}[2J").unwrap_err().contains("\\u{1b}"));
    }

    #[test]
    fn durations_are_positive_humantime() {
        assert_eq!(parse_duration("1h"), Ok(chrono::Duration::hours(1)));
        assert_eq!(parse_duration("2h30m"), Ok(chrono::Duration::minutes(150)));
        assert!(parse_duration("0s").unwrap_err().contains("more than 0"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn the_table_escapes_and_cuts_the_database_text() {
        let at = |h| Utc.with_ymd_and_hms(2026, 12, 3, h, 0, 0).unwrap();
        let windows = [
            Window {
                id: 7,
                service_type: Some("fig\u{1b}]0;x\u{7}ma".into()),
                starts_at: at(9),
                ends_at: at(11),
                reason: format!("clear\u{1b}[2J\nnext {}", "y".repeat(100)),
            },
            Window {
                id: 12,
                service_type: None,
                starts_at: at(12),
                ends_at: at(13),
                reason: "upgrade".into(),
            },
        ];
        let table = render(&windows, at(10));
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{7}'),
            "{table}"
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID  SERVICE"), "{table}");
        assert!(lines[1].contains("fig\\u{1b}]0;x\\u{7}ma"), "{table}");
        assert!(lines[1].contains("2026-12-03 09:00:00  2026-12-03 11:00:00  active "));
        assert!(
            lines[1].contains("clear\\u{1b}[2J\\u{a}next yyy"),
            "{table}"
        );
        assert!(lines[1].contains("… (115 bytes in all)"), "{table}");
        assert!(
            lines[2].contains("all services") && lines[2].contains("planned  upgrade"),
            "{table}"
        );
        assert_eq!(render(&[], at(10)), "no maintenance windows now or ahead\n");
    }
}
