//! `mcp-healthd report [--service T] [--month YYYY-MM | --since DUR] [--json | --csv]`: per
//! service over a period (`store::report`, whose doc comment defines every figure), as a table
//! (the database's text escaped for the terminal), JSON or CSV. Read-only: like `status`, it
//! refuses a database with pending migrations (`db::open_current`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{TimeDelta, Utc};
use serde::Serialize;

use crate::commands::cli::ReportArgs;
use crate::config::Config;
use crate::store::dashboard::service_width;
use crate::store::db;
use crate::store::report::{
    self, Period, ServiceReport, format_duration, format_uptime, month_name,
};
use crate::text::{echo, escape_control};

/// The period when neither `--month` nor `--since` is given.
const DEFAULT_SINCE_DAYS: i64 = 30;

pub async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let period = match args.month {
        Some(month) => month,
        None => Period::since(
            now,
            args.since
                .unwrap_or_else(|| TimeDelta::days(DEFAULT_SINCE_DAYS)),
        ),
    };
    let pool = db::open_current(&config.database).await?;
    let rows = report::report_at(&pool, &period, args.service.as_deref(), now).await;
    pool.close().await;
    let rows = rows?;
    if let Some(service) = &args.service
        && rows.is_empty()
    {
        anyhow::bail!("no service `{}` in service_registry", echo(service));
    }
    if args.json {
        let out = JsonReport {
            from: period.from,
            to: period.to,
            services: &rows,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if args.csv {
        print!("{}", csv(&rows));
    } else {
        print!("{}", render(&period, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    services: &'a [ServiceReport],
}

/// The table: a header naming the period in UTC, then one line per service.
fn render(period: &Period, rows: &[ServiceReport]) -> String {
    let mut out = String::new();
    let _ = match month_name(period) {
        Some(month) => writeln!(out, "report for {month}: {}", period.describe()),
        None => writeln!(out, "report for {}", period.describe()),
    };
    if rows.is_empty() {
        out.push_str("no available services\n");
        return out;
    }
    let names: Vec<Cow<str>> = rows
        .iter()
        .map(|r| escape_control(&r.service_type))
        .collect();
    let width = service_width(names.iter().map(|n| n.as_ref()));
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>8}  {:>8}",
        "SERVICE",
        "CHECKS",
        "FAILURES",
        "MAINT",
        "INCONCL",
        "UPTIME",
        "DOWNTIME",
        "INCIDENTS",
        "LONGEST",
        "MTTR"
    );
    let or_dash = |s: Option<i64>| s.map_or_else(|| "-".to_owned(), format_duration);
    for (r, name) in rows.iter().zip(&names) {
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>8}  {:>8}",
            name,
            r.checks,
            r.failures,
            r.maintenance_checks,
            r.inconclusive_checks,
            format_uptime(r.uptime_percent),
            format_duration(r.downtime_s),
            r.incidents,
            or_dash(r.longest_incident_s),
            or_dash(r.mttr_s),
        );
    }
    out
}

/// The CSV columns, in order.
const CSV_HEADER: &str = "service_type,display_name,checks,failures,maintenance_checks,\
inconclusive_checks,uptime_percent,downtime_s,incidents,longest_incident_s,mttr_s";

/// A text field as CSV holds it (RFC 4180): always quoted, quotes doubled, so no separator a
/// spreadsheet's locale uses (`,` or `;`) can split it; and a value a spreadsheet would run as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) prefixed with `'`
/// first (OWASP, "CSV injection").
fn csv_text(s: &str) -> Cow<'_, str> {
    let s: Cow<str> = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
}

/// A header line, then one line per service; numbers as they are, NULLs as empty fields.
fn csv(rows: &[ServiceReport]) -> String {
    let num = |n: Option<i64>| n.map_or_else(String::new, |n| n.to_string());
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            csv_text(&r.service_type),
            csv_text(&r.display_name),
            r.checks,
            r.failures,
            r.maintenance_checks,
            r.inconclusive_checks,
            r.uptime_percent.map_or_else(String::new, |u| u.to_string()),
            r.downtime_s,
            r.incidents,
            num(r.longest_incident_s),
            num(r.mttr_s),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str) -> ServiceReport {
        ServiceReport {
            service_type: service.into(),
            display_name: service.into(),
            checks: 120,
            failures: 3,
            maintenance_checks: 0,
            inconclusive_checks: 0,
            uptime_percent: Some(97.5),
            incidents: 1,
            downtime_s: 3900,
            longest_incident_s: Some(3900),
            mttr_s: None,
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_text("figma"), "\"figma\"");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("x;=HYPERLINK(1)"), "\"x;=HYPERLINK(1)\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=1+2"), "\"'=1+2\"");
        assert_eq!(csv_text("+x"), "\"'+x\"");
        assert_eq!(csv_text("-x"), "\"'-x\"");
        assert_eq!(csv_text("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(
            csv_text("=HYPERLINK(\"x\",1)"),
            "\"'=HYPERLINK(\"\"x\"\",1)\""
        );
        assert_eq!(csv_text("mid-dash"), "\"mid-dash\"");
    }

    #[test]
    fn csv_has_a_header_and_empty_fields_for_nulls() {
        let mut quiet = row("b,\"q\"");
        quiet.uptime_percent = None;
        quiet.longest_incident_s = None;
        let out = csv(&[row("a"), quiet]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[0].split(',').count(), 11);
        assert_eq!(lines[1], "\"a\",\"a\",120,3,0,0,97.5,3900,1,3900,");
        assert_eq!(
            lines[2],
            "\"b,\"\"q\"\"\",\"b,\"\"q\"\"\",120,3,0,0,,3900,1,,"
        );
    }

    #[test]
    fn the_table_names_the_period_and_escapes_the_database_text() {
        let march = Period::month(2026, 3).unwrap();
        let table = render(&march, &[row("fig\u{1b}[2Jma"), row("slack")]);
        assert!(!table.contains('\u{1b}'), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "report for March 2026: 2026-03-01 00:00:00 UTC to 2026-04-01 00:00:00 UTC (end excluded)"
        );
        assert!(lines[1].starts_with("SERVICE "), "{table}");
        assert!(lines[2].starts_with("fig\\u{1b}[2Jma"), "{table}");
        assert!(
            lines[3].contains("97.500%") && lines[3].contains("1h 05m"),
            "{table}"
        );
        assert!(lines[3].trim_end().ends_with('-'), "no MTTR: {table}");
        let empty = render(&march, &[]);
        assert!(empty.ends_with("no available services\n"), "{empty}");
    }
}
