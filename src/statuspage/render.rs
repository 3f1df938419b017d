//! The status page's HTML, rendered with maud (every string from the database is escaped by the
//! template). One self-contained page: CSS inline, no script, no external asset; it refreshes
//! itself every 30 s (`<meta http-equiv="refresh">`), and its layout folds to one column on a
//! phone. Open incidents and maintenance windows come first, then the services by category,
//! each with its state, latency, uptime and a 90-day bar (one cell per UTC day, coloured by that
//! day's uptime, its figure in the cell's tooltip).

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use chrono::NaiveDate;

use crate::store::status_page::{ServiceLine, Snapshot};

const STYLE: &str = r#"
:root{--up:#1a7f37;--degraded:#b58100;--down:#c62828;--maint:#1f6feb;--grey:#8c959f;--fg:#1f2328;--bg:#fff;--line:#d0d7de}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:980px;margin:0 auto;padding:16px}
h1{font-size:1.4em;margin:0 0 4px}
h2{font-size:1.1em;margin:24px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
.summary{color:#57606a;margin:0 0 12px}
.banner{border-radius:6px;padding:10px 14px;margin:8px 0;font-weight:600;color:#fff}
.banner.ok{background:var(--up)} .banner.bad{background:var(--down)} .banner.warn{background:var(--degraded)}
.notice{border:1px solid var(--line);border-left:4px solid var(--down);border-radius:6px;padding:8px 12px;margin:6px 0}
.notice.maint{border-left-color:var(--maint)}
.notice small{color:#57606a;display:block;overflow-wrap:anywhere}
.svc{display:grid;grid-template-columns:minmax(160px,1.2fr) 110px 80px 80px;gap:4px 12px;align-items:center;padding:8px 0;border-bottom:1px solid var(--line)}
.svc .name{font-weight:600;overflow-wrap:anywhere}
.svc .why{grid-column:1/-1;color:#57606a;font-size:.9em;overflow-wrap:anywhere}
.bar{grid-column:1/-1;display:grid;grid-template-columns:repeat(90,1fr);gap:1px;height:22px}
.bar span{display:block;border-radius:1px;background:var(--grey);opacity:.35}
.bar span.c100{background:var(--up);opacity:1} .bar span.c99{background:#4caf50;opacity:1}
.bar span.c95{background:var(--degraded);opacity:1} .bar span.clow{background:var(--down);opacity:1}
.state{display:inline-block;min-width:7.5em;text-align:center;border-radius:10px;padding:1px 8px;color:#fff;font-size:.85em;font-weight:600}
.state.up{background:var(--up)} .state.degraded{background:var(--degraded)} .state.down{background:var(--down)}
.state.maintenance{background:var(--maint)} .state.stale,.state.unknown{background:var(--grey)}
.num{text-align:right;font-variant-numeric:tabular-nums}
.legend{color:#57606a;font-size:.85em;display:flex;justify-content:space-between}
footer{color:#57606a;font-size:.85em;margin-top:24px}
@media (max-width:600px){.svc{grid-template-columns:1fr auto;}.svc .lat,.svc .upt{text-align:left}}
"#;

/// The whole page. `stale`: the database did not answer and this snapshot is older.
pub fn page(snap: &Snapshot, stale: bool, now: DateTime<Utc>) -> Markup {
    let down = snap.services.iter().filter(|s| s.status == "down").count();
    let degraded = snap
        .services
        .iter()
        .filter(|s| s.status == "degraded")
        .count();
    let (banner_class, banner) = match (down, degraded) {
        (0, 0) => ("ok", "All services operational".to_owned()),
        (0, n) => ("warn", format!("{n} degraded")),
        (d, _) => ("bad", format!("{d} of {} down", snap.services.len())),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Service status"))
            body { main {
                h1 { "Service status" }
                p.summary {
                    (snap.services.len()) " services · updated "
                    (snap.generated_at.format("%Y-%m-%d %H:%M:%S UTC"))
                    @if stale { " · the database does not answer; this is the last known state" }
                }
                div class={ "banner " (banner_class) } { (banner) }
                @if !snap.incidents.is_empty() {
                    h2 { "Open incidents" }
                    @for i in &snap.incidents {
                        div.notice {
                            strong { (i.display_name) } " is down since "
                            (i.started_at.format("%Y-%m-%d %H:%M UTC"))
                            " (" (ago(now, i.started_at)) ")"
                            @if let Some(k) = &i.error_kind { small { "failing: " (k) } }
                        }
                    }
                }
                @if !snap.maintenance.is_empty() {
                    h2 { "Maintenance" }
                    @for w in &snap.maintenance {
                        div.notice.maint {
                            strong { (w.service_type.as_deref().unwrap_or("All services")) }
                            @if w.active { " · in progress until " } @else { " · planned from " (w.starts_at.format("%Y-%m-%d %H:%M UTC")) " to " }
                            (w.ends_at.format("%Y-%m-%d %H:%M UTC"))
                            small { (w.reason) }
                        }
                    }
                }
                @for (category, services) in by_category(&snap.services) {
                    h2 { (category) }
                    @for s in services { (service(s, snap.first_day)) }
                }
                footer {
                    "Each bar is 90 days, one cell per UTC day, coloured by that day's uptime "
                    "(maintenance and checks the monitor could not make are left out). "
                    "This page refreshes every 30 s; its data is at "
                    a href="api/status.json" { "api/status.json" } "."
                }
            } }
        }
    }
}

fn service(s: &ServiceLine, first_day: NaiveDate) -> Markup {
    html! {
        div.svc {
            span.name { (s.display_name) @if s.flapping { " · flapping" } }
            span { span class={ "state " (s.status) } { (s.status) } }
            span.num.lat title="latest response time" { (latency(s.response_time_ms)) }
            span.num.upt title="uptime over the dashboard's window" {
                @match s.uptime_percentage { Some(u) => (format!("{u:.2}%")), None => "–" }
            }
            @if let Some(why) = &s.degraded_reason { span.why { (why) } }
            @else if s.status == "down" { @if let Some(k) = &s.error_kind { span.why { "failing: " (k) } } }
            div.bar role="img" aria-label={ (s.display_name) ": uptime over 90 days" } {
                @for (i, (&checks, &uptime)) in s.day_checks.iter().zip(&s.day_uptime).enumerate() {
                    span class=(cell_class(uptime)) title=(cell_title(first_day + chrono::Days::new(i as u64), checks, uptime)) {}
                }
            }
            div.legend style="grid-column:1/-1" { span { "90 days ago" } span { "today" } }
        }
    }
}

/// Services grouped by category, in the snapshot's order (category, then name).
fn by_category(services: &[ServiceLine]) -> Vec<(String, Vec<&ServiceLine>)> {
    let mut groups: Vec<(String, Vec<&ServiceLine>)> = Vec::new();
    for s in services {
        let category = s.category.clone().unwrap_or_else(|| "Other".into());
        match groups.last_mut() {
            Some((c, list)) if *c == category => list.push(s),
            _ => groups.push((category, vec![s])),
        }
    }
    groups
}

fn cell_class(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => "none",
        Some(u) if u >= 99.95 => "c100",
        Some(u) if u >= 99.0 => "c99",
        Some(u) if u >= 95.0 => "c95",
        Some(_) => "clow",
    }
}

fn cell_title(day: NaiveDate, checks: i64, uptime: Option<f64>) -> String {
    match uptime {
        None => format!("{day}: no data"),
        Some(u) => format!("{day}: {u:.2}% of {checks} checks"),
    }
}

fn latency(ms: Option<i32>) -> String {
    crate::store::dashboard::latency(ms)
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Both pages' `<head>`: phone-sized, reloading every 30 s, the CSS inline.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta http-equiv="refresh" content="30";
            title { (title) }
            style { (maud::PreEscaped(STYLE)) }
        }
    }
}

/// The page served when there is no snapshot at all (the database never answered). The cause
/// is in the daemon's log, not on a public page.
pub fn unavailable() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Service status unavailable"))
            body { h1 { "Service status is unavailable" } p { "The status database does not answer; this page retries every 30 s." } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(name: &str, category: &str, status: &str) -> ServiceLine {
        ServiceLine {
            service_type: name.into(),
            display_name: name.into(),
            category: Some(category.into()),
            status: status.into(),
            response_time_ms: Some(12),
            uptime_percentage: Some(99.5),
            error_kind: None,
            degraded_reason: None,
            flapping: false,
            last_health_check: None,
            day_checks: vec![100; 90],
            day_uptime: (0..90)
                .map(|i| Some(if i == 3 { 50.0 } else { 100.0 }))
                .collect(),
        }
    }

    #[test]
    fn strings_from_the_database_are_escaped() {
        let now = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
        let snap = Snapshot {
            generated_at: now,
            first_day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            services: vec![line("<script>alert(1)</script>", "a&b", "down")],
            incidents: vec![],
            maintenance: vec![],
        };
        let html = page(&snap, false, now).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("1 of 1 down"));
        assert_eq!(html.matches("<span class=\"c100\"").count(), 89);
        assert!(html.contains("title=\"2026-01-04: 50.00% of 100 checks\""));
    }

    #[test]
    fn services_are_grouped_by_category_in_order() {
        let services = vec![
            line("a", "x", "up"),
            line("b", "x", "up"),
            line("c", "y", "up"),
        ];
        let groups = by_category(&services);
        let names: Vec<(&str, usize)> = groups.iter().map(|(c, l)| (c.as_str(), l.len())).collect();
        assert_eq!(names, [("x", 2), ("y", 1)]);
    }
}
