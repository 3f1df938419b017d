//! `mcp-healthd report`: the real binary against a prepared month (March 2026, in the past
//! whatever today is: open incidents then last to the end of the month), with rows around its
//! boundaries that must not count, and a `--since` report relative to the database's `now()`.
//! The expected figures are worked out by hand below.

use serde_json::Value;

use crate::helpers::{TestDb, healthd, text};

const FORMULA: &str = "=cmd|' /C calc'!A0";

async fn march() -> TestDb {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        r#"
        INSERT INTO service_registry (service_type, name, display_name, port, is_available) VALUES
            ('figma', 'figma', 'Figma', 41001, true),
            ('slack', 'slack', 'Slack', 41002, true),
            ('acme, "quoted"', 'acme', 'Acme "Co", Ltd
second line', 41003, true),
            ('=cmd|'' /C calc''!A0', 'formula', '@SUM(1+1)', 41004, true),
            ('retired', 'retired', 'Retired', 41005, false);

        -- figma, hourly. Outside March: Feb 28 23:00 and Apr 1 00:00 (all failures, must not count).
        INSERT INTO service_health_rollups
            (service_type, hour, checks, failures, maintenance_checks, inconclusive_checks) VALUES
            ('figma', '2026-02-28 23:00Z', 120, 120, 0, 0),
            ('figma', '2026-03-01 00:00Z', 120, 2, 0, 0),
            ('figma', '2026-03-01 01:00Z', 120, 0, 60, 0),  -- half of it in the window below
            ('figma', '2026-03-15 12:00Z', 120, 1, 0, 10),  -- 10 during a monitor-side outage
            ('figma', '2026-03-20 23:00Z', 120, 0, 0, 0),   -- the rest of Mar 20 pruned
            ('figma', '2026-03-31 23:00Z', 120, 0, 0, 0),
            ('figma', '2026-04-01 00:00Z', 120, 120, 0, 0),
            ('acme, "quoted"', '2026-03-05 10:00Z', 60, 0, 0, 0),
            ('retired', '2026-03-02 08:00Z', 100, 50, 0, 0);
        INSERT INTO maintenance_windows (service_type, starts_at, ends_at, reason) VALUES
            ('figma', '2026-03-01 01:00Z', '2026-03-01 01:30Z', 'upgrade');

        -- figma, daily, as housekeeping left them (it last remade Mar 31 and Apr 1, so the days
        -- before Mar 31 are final and read from here). Mar 1 and Mar 15 also have their hours
        -- (not counted twice); Mar 10 has none left (older than uptime.retain); Mar 20 has one
        -- hour left, the daily row counts more; Feb 28 and Apr 1 are outside.
        INSERT INTO service_health_daily
            (service_type, day, checks, failures, maintenance_checks, inconclusive_checks) VALUES
            ('figma', '2026-02-28', 2880, 100, 0, 0),
            ('figma', '2026-03-01', 240, 2, 60, 0),
            ('figma', '2026-03-15', 120, 1, 0, 10),
            ('acme, "quoted"', '2026-03-05', 60, 0, 0, 0),
            ('retired', '2026-03-02', 100, 50, 0, 0),
            ('figma', '2026-03-10', 2880, 12, 0, 0),
            ('figma', '2026-03-20', 2880, 5, 0, 0),
            ('figma', '2026-04-01', 2880, 100, 0, 0);

        INSERT INTO service_incidents (service_type, started_at, ended_at, error_kind, failed_checks) VALUES
            ('figma', '2026-02-10 00:00Z', '2026-02-10 01:00Z', 'connect', 3),  -- before March
            ('figma', '2026-02-28 23:30Z', '2026-03-01 00:45Z', 'connect', 5),  -- across Feb/Mar
            ('figma', '2026-03-15 12:10Z', '2026-03-15 12:30Z', 'timeout', 4),  -- inside
            ('figma', '2026-03-31 23:00Z', '2026-04-01 02:00Z', 'status', 9),   -- across Mar/Apr
            ('figma', '2026-04-02 00:00Z', '2026-04-02 01:00Z', 'dns', 3),      -- after March
            ('slack', '2026-03-31 22:00Z', NULL, 'connect', 7);                 -- still open
        "#,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db
}

/// The integer figures of one service in `--json` output, nullable ones as `None`.
type Figures = (i64, i64, i64, i64, i64, i64, Option<i64>, Option<i64>);

fn figures(service: &Value) -> Figures {
    let n = |k: &str| {
        service[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k}: {service}"))
    };
    let opt = |k: &str| service[k].as_i64();
    (
        n("checks"),
        n("failures"),
        n("maintenance_checks"),
        n("inconclusive_checks"),
        n("incidents"),
        n("downtime_s"),
        opt("longest_incident_s"),
        opt("mttr_s"),
    )
}

fn find<'a>(json: &'a Value, service: &str) -> &'a Value {
    json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_type"] == service)
        .unwrap_or_else(|| panic!("no {service} in {json}"))
}

fn run_json(db: &TestDb, args: &[&str]) -> Value {
    let out = healthd(
        &[&["report", "--json"], args].concat(),
        &[("DATABASE_URL", db.url.expose())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// RFC 4180: records of fields, quoted fields may hold commas, `""` and line breaks.
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "unterminated: {s}"
    );
    records
}

#[tokio::test]
async fn a_month_from_hourly_and_daily_rollups_and_incidents() {
    let db = march().await;
    let env = [("DATABASE_URL", db.url.expose())];
    let json = run_json(&db, &["--month", "2026-03"]);
    assert_eq!(json["from"], "2026-03-01T00:00:00Z");
    assert_eq!(json["to"], "2026-04-01T00:00:00Z");
    let mut names: Vec<&str> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_type"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [FORMULA, "acme, \"quoted\"", "figma", "slack"],
        "every available service; not `retired`"
    );

    let figma = find(&json, "figma");
    assert_eq!(
        figures(figma),
        (
            // checks: hours Mar 1 00:00 + 01:00 + Mar 15 12:00 + Mar 31 23:00 = 4 × 120 = 480,
            // daily Mar 10 (no hours) 2880, daily Mar 20 (2880 > its one hour's 120) 2880:
            // 480 + 2880 + 2880 = 6240 (daily Mar 1 not added to its hours; Feb 28, Apr 1 out)
            6240,
            // failures: 2 + 0 + 1 + 0 + 12 + 5 = 20
            20,
            // maintenance: 60 (Mar 1 01:00); inconclusive: 10 (Mar 15 12:00)
            60,
            10,
            // incidents: Feb 28 23:30–Mar 1 00:45, Mar 15 12:10–12:30, Mar 31 23:00–Apr 1 02:00
            3,
            // downtime: 45 min + 20 min + 60 min = 125 min = 7500 s
            7500,
            // longest clipped: 60 min
            Some(3600),
            // MTTR: those that ended in March, full durations: (75 min + 20 min) / 2 = 47.5 min
            Some(2850),
        )
    );
    // uptime: 100 × (6240 − 60 − 10 − 20) / (6240 − 60 − 10) = 100 × 6150 / 6170
    let uptime = figma["uptime_percent"].as_f64().unwrap();
    assert!((uptime - 100.0 * 6150.0 / 6170.0).abs() < 1e-9, "{uptime}");

    // slack: no checks at all; an incident open since Mar 31 22:00 counts up to Apr 1 00:00.
    let slack = find(&json, "slack");
    assert_eq!(figures(slack), (0, 0, 0, 0, 1, 7200, Some(7200), None));
    assert!(slack["uptime_percent"].is_null(), "{slack}");
    let acme = find(&json, "acme, \"quoted\"");
    assert_eq!(acme["display_name"], "Acme \"Co\", Ltd\nsecond line");
    assert_eq!(acme["uptime_percent"], 100.0);
    assert_eq!(figures(acme), (60, 0, 0, 0, 0, 0, None, None));

    // One service, even an unavailable one.
    let retired = run_json(&db, &["--month", "2026-03", "--service", "retired"]);
    assert_eq!(retired["services"].as_array().unwrap().len(), 1);
    assert_eq!(retired["services"][0]["uptime_percent"], 50.0);

    // The table: the period in UTC, figures formatted, nothing raw from the database.
    let out = healthd(&["report", "--month", "2026-03"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "report for March 2026: 2026-03-01 00:00:00 UTC to 2026-04-01 00:00:00 UTC (end excluded)"
    );
    assert_eq!(
        lines.len(),
        2 + 4,
        "a header, column names, 4 services: {table}"
    );
    let line = |service: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{service} ")))
            .unwrap_or_else(|| panic!("no line for {service}: {table}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // CHECKS FAILURES MAINT INCONCL UPTIME DOWNTIME INCIDENTS LONGEST MTTR
    assert_eq!(
        line("figma"),
        "6240 20 60 10 99.675% 2h 05m 3 1h 00m 47m 30s"
    );
    assert_eq!(line("slack"), "0 0 0 0 - 2h 00m 1 2h 00m -");

    // CSV: 11 columns everywhere, the awkward names quoted and neutralised.
    let out = healthd(&["report", "--month", "2026-03", "--csv"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(
        csv.contains("\"acme, \"\"quoted\"\"\",\"Acme \"\"Co\"\", Ltd\nsecond line\","),
        "{csv}"
    );
    let records = parse_csv(&csv);
    assert_eq!(records.len(), 1 + 4, "{csv}");
    assert!(records.iter().all(|r| r.len() == 11), "{records:?}");
    assert_eq!(records[0][0], "service_type");
    assert_eq!(records[0][6], "uptime_percent");
    // Rows in the database's collation order: found by their first field.
    let record = |first: &str| {
        records
            .iter()
            .find(|r| r[0] == first)
            .unwrap_or_else(|| panic!("no record {first}: {records:?}"))
    };
    assert_eq!(
        record(&format!("'{FORMULA}"))[1],
        "'@SUM(1+1)",
        "formulas neutralised"
    );
    assert_eq!(
        record("acme, \"quoted\"")[1],
        "Acme \"Co\", Ltd\nsecond line"
    );
    let figma = record("figma");
    assert_eq!(figma[2..6], ["6240", "20", "60", "10"]);
    let csv_uptime: f64 = figma[6].parse().unwrap();
    assert!(
        (csv_uptime - 100.0 * 6150.0 / 6170.0).abs() < 1e-9,
        "{figma:?}"
    );
    assert_eq!(figma[7..], ["7500", "3", "3600", "2850"]);
    assert_eq!(record("slack")[6..], ["", "7200", "1", "7200", ""]);
}

#[tokio::test]
async fn since_a_short_while_and_usage_errors() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO service_registry (service_type, name, display_name, port) VALUES
            ('figma', 'figma', 'Figma', 41001), ('slack', 'slack', 'Slack', 41002);
         INSERT INTO service_health_rollups (service_type, hour, checks, failures) VALUES
            ('figma', date_trunc('hour', now()), 10, 1),
            ('figma', date_trunc('hour', now()) - interval '3 days', 10, 10);
         INSERT INTO service_incidents (service_type, started_at, ended_at) VALUES
            ('figma', now() - interval '5 days', now() - interval '5 days' + interval '1 hour'),
            ('figma', now() - interval '30 minutes', NULL);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let env = [("DATABASE_URL", db.url.expose())];

    let json = run_json(&db, &["--since", "2h", "--service", "figma"]);
    let from: chrono::DateTime<chrono::Utc> = json["from"].as_str().unwrap().parse().unwrap();
    let to: chrono::DateTime<chrono::Utc> = json["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(to - from, chrono::Duration::hours(2));
    let figma = &json["services"][0];
    assert_eq!(json["services"].as_array().unwrap().len(), 1);
    // Only the current hour (10 checks, 1 failure) and the open incident (about 30 minutes).
    let (checks, failures, _, _, incidents, downtime, longest, mttr) = figures(figma);
    assert_eq!((checks, failures, incidents, mttr), (10, 1, 1, None));
    assert!((1800..1800 + 120).contains(&downtime), "{figma}");
    assert_eq!(longest, Some(downtime));
    assert_eq!(figma["uptime_percent"], 90.0);

    // The default is the last 30 days: the hour 3 days ago and the closed incident count too.
    let json = run_json(&db, &[]);
    let to: chrono::DateTime<chrono::Utc> = json["to"].as_str().unwrap().parse().unwrap();
    let from: chrono::DateTime<chrono::Utc> = json["from"].as_str().unwrap().parse().unwrap();
    assert_eq!(to - from, chrono::Duration::days(30));
    let figma = find(&json, "figma");
    let (checks, failures, _, _, incidents, _, _, mttr) = figures(figma);
    assert_eq!((checks, failures, incidents, mttr), (20, 11, 2, Some(3600)));
    let table = text(&healthd(&["report", "--since", "1d"], &env).stdout);
    assert!(table.starts_with("report for 20"), "{table}");
    assert!(!table.contains("March"), "{table}");

    // Once housekeeping has made the daily rollups, whole days come from them; an hour in the
    // period's first day, only partly inside it, still counts (from the hourly rollups).
    sqlx::raw_sql(
        "INSERT INTO service_health_rollups (service_type, hour, checks, failures) VALUES
            ('figma', date_trunc('hour', now() - interval '4 days') + interval '1 hour', 10, 0)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ran = healthd(&["jobs", "run", "housekeeping"], &env);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let json = run_json(&db, &["--since", "4d", "--service", "figma"]);
    let (checks, failures, ..) = figures(&json["services"][0]);
    assert_eq!((checks, failures), (30, 11), "{json}");

    let out = healthd(&["report", "--service", "nosuch"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no service `nosuch` in service_registry"),
        "{}",
        text(&out.stderr)
    );
    for (args, says) in [
        (
            &["--month", "2026-03", "--since", "1d"][..],
            "cannot be used with",
        ),
        (&["--json", "--csv"], "cannot be used with"),
        (&["--month", "2026-13"], "the month must be 01 to 12"),
        (&["--month", "2026-3"], "use YYYY-MM"),
        (&["--since", "soon"], "not a duration"),
    ] {
        let out = healthd(&[&["report"], args].concat(), &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
