//! The demo's screen fits the terminal: banner, summary and footer always, what needs attention
//! first, names sorted, healthy categories folded when room is short, database text escaped.

use std::time::Duration;

use chrono::Utc;

use super::*;

fn row(service: &str, category: &str, status: &str, ms: i32) -> DashboardRow {
    DashboardRow {
        service_type: service.into(),
        display_name: service.into(),
        category: Some(category.into()),
        port: 1,
        status: status.into(),
        is_healthy: Some(status == "up"),
        last_health_check: None,
        response_time_ms: Some(ms),
        consecutive_failures: Some(0),
        uptime_percentage: Some(99.5),
        error_kind: None,
        error_message: (status == "down").then(|| "status: HTTP 500 (expected 200-299)".into()),
        active_users: 0,
        degraded_reason: None,
        flapping: false,
    }
}

fn banner() -> Banner {
    Banner {
        services: 51,
        interval: Duration::from_secs(2),
        database: "mcp_healthd_demo_0123456789ab on 127.0.0.1:5432".into(),
        log: "/tmp/mcp-healthd-demo-log-abcdef/daemon.log".into(),
        metrics: Some("127.0.0.1:9464".parse().unwrap()),
        degraded_after: Duration::from_millis(250),
    }
}

/// 51 services in 12 categories, as the samples: 10 down, 5 slow, 3 unknown, the rest up.
fn fleet() -> Vec<DashboardRow> {
    (0..51)
        .rev()
        .map(|i| {
            let (status, ms) = match i % 10 {
                6 => ("down", 0),
                7 => ("up", 402),
                _ if i >= 48 => ("unknown", 0),
                _ => ("up", 0),
            };
            row(
                &format!("svc{i:02}"),
                &format!("cat{:02}", i % 12),
                status,
                ms,
            )
        })
        .collect()
}

fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// The first two words of a row: its name and state.
fn name_state(line: &str) -> (&str, &str) {
    let mut words = line.split_whitespace();
    (words.next().unwrap_or(""), words.next().unwrap_or(""))
}

#[test]
fn at_80_by_24_the_screen_fits_with_banner_summary_attention_and_footer() {
    let lines = compose(&banner(), &fleet(), &[], Utc::now(), (80, 24));
    let shown = texts(&lines);
    assert_eq!(lines.len(), 24, "{shown:#?}");
    assert!(shown.iter().all(|l| l.chars().count() <= 80), "{shown:#?}");
    assert!(shown[0].starts_with("mcp-healthd demo: 51 sample services"));
    assert!(shown[1].starts_with("database mcp_healthd_demo_0123456789ab"));
    assert!(
        shown[2].starts_with("51 services: 38 up, 5 degraded, 5 down, 0 stale, 3 unknown"),
        "{}",
        shown[2]
    );
    assert!(shown[23].ends_with("Ctrl-C to stop"), "{}", shown[23]);
    assert!(shown[22].starts_with("daemon log /tmp/"));
    assert_eq!(shown[4], "needing attention (13)");
    // Down first, then degraded, then unknown, by name within each.
    assert_eq!(name_state(shown[5]), ("svc06", "down"), "{}", shown[5]);
    assert_eq!(name_state(shown[6]), ("svc16", "down"), "{}", shown[6]);
    assert_eq!(name_state(shown[10]), ("svc07", "degraded"));
    assert_eq!(name_state(shown[15]), ("svc48", "unknown"), "{}", shown[15]);
    // The healthy categories fold into what is left, the rest said in one line.
    assert_eq!(shown[21], "… 9 more categories", "{shown:#?}");
    // Shorter still: what needs attention is cut, with what is left said.
    let short = compose(&banner(), &fleet(), &[], Utc::now(), (80, 16));
    assert_eq!(short.len(), 16);
    assert_eq!(short[13].text, "  … and 5 more", "{:#?}", texts(&short));
    let down = &lines[5];
    let (range, state) = down.paint.clone().unwrap();
    assert_eq!((&down.text[range], state), ("down", State::Down));
}

#[test]
fn with_room_every_category_gets_a_row_per_service_sorted_by_name() {
    let rows = [
        row("trello", "productivity", "up", 0),
        row("monday", "productivity", "up", 3),
        row("slack", "chat", "up", 0),
        row("zoom", "chat", "down", 0),
    ];
    let lines = compose(&banner(), &rows, &[], Utc::now(), (160, 50));
    let shown = texts(&lines);
    assert_eq!(lines.len(), 50);
    let at = |s: &str| {
        shown
            .iter()
            .position(|l| l.starts_with(s))
            .unwrap_or(usize::MAX)
    };
    assert!(at("  zoom") < at("chat"), "{shown:#?}");
    assert!(at("chat") < at("  slack"), "{shown:#?}");
    assert!(at("productivity") < at("  monday"), "{shown:#?}");
    assert!(at("  monday") < at("  trello"), "{shown:#?}");
    assert!(shown[at("  slack")].contains("<1ms"), "{shown:#?}");
    assert!(shown[at("  monday")].contains("3ms"), "{shown:#?}");
}

#[test]
fn when_room_is_short_categories_fold_to_one_line_each() {
    let rows: Vec<_> = (0..30)
        .map(|i| row(&format!("s{i:02}"), &format!("c{}", i % 3), "up", 0))
        .collect();
    let lines = compose(&banner(), &rows, &[], Utc::now(), (100, 14));
    let shown = texts(&lines);
    assert_eq!(lines.len(), 14);
    assert!(
        shown.contains(&"c2 (10 up): s02 s05 s08 s11 s14 s17 s20 s23 s26 s29"),
        "{shown:#?}"
    );
    // A tiny terminal still gets the banner and the footer, never more lines than it has.
    let tiny = compose(&banner(), &rows, &[], Utc::now(), (20, 6));
    assert_eq!(tiny.len(), 6, "{:#?}", texts(&tiny));
    assert!(
        tiny[5].text.starts_with("status page"),
        "{:#?}",
        texts(&tiny)
    );
    assert!(texts(&tiny).iter().all(|l| l.chars().count() <= 20));
}

#[test]
fn database_text_is_escaped_and_latency_below_a_millisecond_reads_less_than_one() {
    let mut evil = row("clear\u{1b}[2J", "wipe\u{1b}]0;x\u{7}", "down", 0);
    evil.error_message = Some("boom\r\u{9b}31m".into());
    let lines = compose(&banner(), &[evil], &[], Utc::now(), (120, 30));
    let all: String = texts(&lines).join("\n");
    assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all:?}");
    assert!(all.contains("clear\\u{1b}[2J") && all.contains("boom\\u{d}\\u{9b}31m"));
    assert_eq!(latency(Some(0)), "<1ms");
    assert_eq!(latency(Some(12)), "12ms");
    assert_eq!(latency(Some(12_345)), "12.3s");
    assert_eq!(latency(None), "-");
    let slow = row("a", "b", "up", 251);
    assert_eq!(
        State::of(&slow, Duration::from_millis(250)),
        State::Degraded
    );
    assert_eq!(
        State::of(&row("a", "b", "up", 250), Duration::from_millis(250)),
        State::Up
    );
}
