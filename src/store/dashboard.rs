//! The `service_health_dashboard` view as the terminal shows it: read once, rendered as a table
//! grouped by category. `status` and the demo's live table both use it.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::text::escape_control;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DashboardRow {
    pub service_type: String,
    pub display_name: String,
    pub category: Option<String>,
    pub port: i32,
    pub status: String,
    pub is_healthy: Option<bool>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub response_time_ms: Option<i32>,
    pub consecutive_failures: Option<i32>,
    pub uptime_percentage: Option<f64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub active_users: i64,
    /// Why a healthy service is degraded (status `degraded`).
    pub degraded_reason: Option<String>,
    pub flapping: bool,
}

pub async fn load(pool: &PgPool) -> sqlx::Result<Vec<DashboardRow>> {
    sqlx::query_as(
        "SELECT service_type::text, display_name::text, category::text, port, status, is_healthy,
                last_health_check, response_time_ms, consecutive_failures, uptime_percentage,
                error_kind, error_message, active_users::bigint, degraded_reason, flapping
           FROM service_health_dashboard",
    )
    .fetch_all(pool)
    .await
}

/// Below one millisecond (all loopback answers) as `<1ms`, rather than `0ms`.
pub fn latency(ms: Option<i32>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1 => "<1ms".into(),
        Some(ms) if ms < 10_000 => format!("{ms}ms"),
        Some(ms) => format!("{:.1}s", f64::from(ms) / 1000.0),
    }
}

/// When every checked service is stale, the likeliest cause is that no daemon runs: says so,
/// with the newest check time. `None` otherwise.
pub fn no_daemon_hint(rows: &[DashboardRow]) -> Option<String> {
    let checked: Vec<&DashboardRow> = rows.iter().filter(|r| r.status != "unavailable").collect();
    if checked.is_empty() || checked.iter().any(|r| r.status != "stale") {
        return None;
    }
    let newest = checked.iter().filter_map(|r| r.last_health_check).max()?;
    Some(format!(
        "no daemon appears to be running: every status is stale (the newest check was at {})",
        newest.format("%Y-%m-%d %H:%M:%S UTC")
    ))
}

/// Every service that is supposed to be checked is up.
pub fn all_up(rows: &[DashboardRow]) -> bool {
    rows.iter()
        .all(|r| matches!(r.status.as_str(), "up" | "degraded" | "unavailable"))
}

fn paint(status: &str, color: bool) -> String {
    let padded = format!("{status:<11}");
    if !color {
        return padded;
    }
    let code = match status {
        "up" => "32",
        "down" => "31;1",
        "stale" | "degraded" => "33",
        "maintenance" => "36",
        _ => "90",
    };
    format!("\x1b[{code}m{padded}\x1b[0m")
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).num_seconds().max(0);
            match s {
                0..=119 => format!("{s}s ago"),
                120..=7199 => format!("{}m ago", s / 60),
                _ => format!("{}h ago", s / 3600),
            }
        }
    }
}

/// The width of a terminal table's SERVICE column: its longest service name, and never less
/// than the header. `status`, the demo and `check` all print one.
pub fn service_width<'a>(services: impl IntoIterator<Item = &'a str>) -> usize {
    services.into_iter().map(str::len).max().unwrap_or(7).max(7)
}

/// The table, grouped by category, with a one-line summary at the end. The database's text is
/// escaped: a registry row must not be able to drive the reader's terminal.
pub fn render(rows: &[DashboardRow], now: DateTime<Utc>, color: bool) -> String {
    let services: Vec<_> = rows
        .iter()
        .map(|r| escape_control(&r.service_type))
        .collect();
    let width = service_width(services.iter().map(|s| s.as_ref()));
    let mut out = String::new();
    let mut category: Option<&str> = None;
    for (r, service) in rows.iter().zip(&services) {
        let this = r.category.as_deref().unwrap_or("(no category)");
        if category != Some(this) {
            let gap = if category.is_some() { "\n" } else { "" };
            let _ = writeln!(out, "{gap}{}", escape_control(this));
            let _ = writeln!(
                out,
                "  {:<width$}  {:<11}  {:>8}  {:>8}  {:>10}  ERROR",
                "SERVICE", "STATUS", "LATENCY", "UPTIME", "CHECKED"
            );
            category = Some(this);
        }
        let latency = latency(r.response_time_ms);
        let uptime = r
            .uptime_percentage
            .map_or("-".into(), |u| format!("{u:.2}%"));
        let _ = writeln!(
            out,
            "  {:<width$}  {}  {:>8}  {:>8}  {:>10}  {}",
            service,
            paint(&escape_control(&r.status), color),
            latency,
            uptime,
            ago(r.last_health_check, now),
            escape_control(match r.status.as_str() {
                "up" => "",
                _ => r.error_message.as_deref().unwrap_or(""),
            })
        );
    }
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let _ = writeln!(
        out,
        "\n{} services: {} up, {} down, {} stale, {} unknown, {} unavailable",
        rows.len(),
        count("up"),
        count("down"),
        count("stale"),
        count("unknown"),
        count("unavailable")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, category: &str, status: &str) -> DashboardRow {
        DashboardRow {
            service_type: service.into(),
            display_name: service.into(),
            category: Some(category.into()),
            port: 1,
            status: status.into(),
            is_healthy: Some(status == "up"),
            last_health_check: None,
            response_time_ms: Some(12),
            consecutive_failures: Some(0),
            uptime_percentage: Some(99.5),
            error_kind: None,
            error_message: (status == "down").then(|| "connect: refused".into()),
            active_users: 0,
            degraded_reason: None,
            flapping: false,
        }
    }

    #[test]
    fn all_stale_hints_that_no_daemon_runs_with_the_newest_check() {
        use chrono::TimeZone;
        let at = |h| Some(Utc.with_ymd_and_hms(2026, 3, 4, h, 0, 0).unwrap());
        let mut a = row("figma", "design", "stale");
        a.last_health_check = at(9);
        let mut b = row("slack", "chat", "stale");
        b.last_health_check = at(11);
        let off = row("miro", "design", "unavailable");
        assert_eq!(
            no_daemon_hint(&[a.clone(), b.clone(), off]).as_deref(),
            Some(
                "no daemon appears to be running: every status is stale (the newest check was at 2026-03-04 11:00:00 UTC)"
            )
        );
        assert_eq!(no_daemon_hint(&[a, row("x", "y", "up")]), None);
        assert_eq!(no_daemon_hint(&[]), None);
    }

    #[test]
    fn groups_by_category_and_colours_only_when_asked() {
        let rows = [
            row("figma", "design", "up"),
            row("miro", "design", "down"),
            row("slack", "chat", "stale"),
        ];
        let plain = render(&rows, Utc::now(), false);
        assert!(plain.starts_with("design\n"), "{plain}");
        assert!(plain.contains("\nchat\n"), "{plain}");
        assert!(plain.contains("connect: refused"));
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("3 services: 1 up, 1 down, 1 stale, 0 unknown, 0 unavailable"));
        assert!(render(&rows, Utc::now(), true).contains("\x1b[31;1mdown"));
        assert!(!all_up(&rows));
        assert!(all_up(&[row("a", "x", "up"), row("b", "x", "unavailable")]));
    }
}
