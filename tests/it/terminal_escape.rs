//! Registry text reaching the terminal: rows whose `service_type` and `category` carry an OSC
//! title sequence, `ESC[2J`, a bare carriage return, a C1 CSI and a bidi override come out of
//! `status` and `check` escaped (`\u{1b}`…), with no raw control byte but the newlines.

use crate::fleet;
use crate::helpers::{TestDb, healthd, text};

/// Each hostile row's service_type and category (`check` shows no category).
const ROWS: [(&str, &str); 4] = [
    ("osc\u{1b}]0;pwned\u{7}", "retitle\u{1b}]0;owned\u{7}"),
    ("clear\u{1b}[2J\u{1b}[H", "wipe\u{1b}[2J"),
    ("cr\rhidden", "c1\u{9b}31m"),
    ("bidi\u{202e}txt", "plain"),
];

/// Every character of `output` that could drive a terminal: C0 controls but the newline, DEL,
/// C1 controls, and the bidirectional overrides.
fn raw_controls(output: &str) -> Vec<char> {
    output
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_check_escape_what_the_registry_holds() {
    let db = TestDb::migrated().await;
    let mut ports: Vec<i32> = Vec::new();
    let mut held = Vec::new();
    while ports.len() < ROWS.len() {
        // Closed ports: every check fails at once.
        let closed = fleet::closed_port().await.unwrap();
        let port = i32::from(closed.port);
        if !ports.contains(&port) {
            ports.push(port);
        }
        held.push(closed);
    }
    for ((service, category), port) in ROWS.iter().zip(ports) {
        sqlx::query(
            "INSERT INTO service_registry (service_type, name, display_name, port, category)
             VALUES ($1, $1, $1, $2, $3)",
        )
        .bind(service)
        .bind(port)
        .bind(category)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let env = [("DATABASE_URL", db.url.expose())];

    // `check --record` also stores an error for each, so `status` shows the error column too.
    for args in [&["check", "--record"][..], &["status"]] {
        let out = healthd(args, &env);
        let shown = text(&out.stdout) + &text(&out.stderr);
        let what = args[0];
        assert_eq!(
            raw_controls(&shown),
            [] as [char; 0],
            "{what} printed raw controls:\n{shown:?}"
        );
        for escaped in [
            "osc\\u{1b}]0;pwned\\u{7}",
            "clear\\u{1b}[2J\\u{1b}[H",
            "cr\\u{d}hidden",
            "bidi\\u{202e}txt",
        ] {
            assert!(shown.contains(escaped), "{what} lacks {escaped}:\n{shown}");
        }
        if what == "status" {
            for escaped in [
                "retitle\\u{1b}]0;owned\\u{7}",
                "wipe\\u{1b}[2J",
                "c1\\u{9b}31m",
            ] {
                assert!(shown.contains(escaped), "status lacks {escaped}:\n{shown}");
            }
        }
    }

    // JSON stays JSON: the same text, escaped by JSON itself.
    let out = healthd(&["status", "--json"], &env);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["service_type"].as_str())
        .collect();
    for (service, _) in ROWS {
        assert!(services.contains(&service), "{services:?}");
    }
}
