//! `mcp-healthd maintenance add|list|end`: the real binary against a fresh database with two
//! services. Times are checked against the database's `now()`, never a fixed date.

use chrono::{DateTime, Duration, Utc};

use crate::helpers::{TestDb, healthd, text};

async fn with_services() -> TestDb {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO service_registry (service_type, name, display_name, port, category) VALUES
            ('figma', 'figma', 'Figma', 41001, 'design'),
            ('slack', 'slack', 'Slack', 41003, 'communication');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db
}

async fn db_now(db: &TestDb) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

type Row = (Option<String>, DateTime<Utc>, DateTime<Utc>, String);

async fn window(db: &TestDb, id: i64) -> Row {
    sqlx::query_as(
        "SELECT service_type::text, starts_at, ends_at, reason FROM maintenance_windows WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Runs `maintenance add ARGS`, expects success, and returns the id it printed.
fn add(db: &TestDb, args: &[&str]) -> i64 {
    let out = healthd(
        &[&["maintenance", "add"], args].concat(),
        &[("DATABASE_URL", db.url.expose())],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "add {args:?}: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    stdout
        .trim_end_matches('\n')
        .parse()
        .unwrap_or_else(|_| panic!("stdout is just the id: {stdout:?}"))
}

fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_milliseconds().abs() < 5_000
}

#[tokio::test]
async fn add_list_and_end_windows() {
    let db = with_services().await;
    let env = [("DATABASE_URL", db.url.expose())];

    // One service, from now, for an hour.
    let before = db_now(&db).await;
    let out = healthd(
        &[
            "maintenance",
            "add",
            "--service",
            "figma",
            "--for",
            "1h",
            "--reason",
            "database upgrade",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let figma: i64 = text(&out.stdout).trim_end().parse().unwrap();
    let summary = text(&out.stderr);
    assert!(
        summary.contains(&format!("maintenance window {figma} for figma"))
            && summary.contains("(1h, active now): database upgrade"),
        "{summary}"
    );
    let (service, starts, ends, reason) = window(&db, figma).await;
    assert_eq!(service.as_deref(), Some("figma"));
    assert!(close(starts, before), "starts {starts}, now was {before}");
    assert_eq!(ends - starts, Duration::hours(1));
    assert_eq!(reason, "database upgrade");

    // Every service, with a reason that would clear the screen.
    let all = add(&db, &["--for", "30m", "--reason", "net\x1b[2J\nwork"]);
    let (service, starts, ends, reason) = window(&db, all).await;
    assert_eq!(service, None, "no --service: all services");
    assert!(close(starts, before));
    assert_eq!(ends - starts, Duration::minutes(30));
    assert_eq!(reason, "net\x1b[2J\nwork", "stored as given");

    // Planned: starts tomorrow (RFC 3339 with an offset), ends a plain UTC time after it.
    let now = db_now(&db).await;
    let from =
        (now + Duration::days(1)).with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    let to = (now + Duration::days(1) + Duration::hours(2)).naive_utc();
    let planned = add(
        &db,
        &[
            "--service",
            "slack",
            "--starts",
            &from.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            "--until",
            &to.format("%Y-%m-%d %H:%M:%S").to_string(),
            "--reason",
            "move",
        ],
    );
    let (_, starts, ends, _) = window(&db, planned).await;
    assert_eq!(starts.timestamp(), (now + Duration::days(1)).timestamp());
    assert_eq!(
        ends.timestamp(),
        (now + Duration::days(1) + Duration::hours(2)).timestamp()
    );

    // The table: all three, active or planned, nothing raw from the database.
    let out = healthd(&["maintenance", "list"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!out.stdout.contains(&0x1b), "a raw ESC reached stdout");
    let table = text(&out.stdout);
    let line = |id: i64| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
            .unwrap_or_else(|| panic!("no line for window {id}: {table}"))
            .to_owned()
    };
    assert!(
        line(figma).contains("figma") && line(figma).contains("active"),
        "{table}"
    );
    assert!(
        line(all).contains("all services")
            && line(all).contains("active")
            && line(all).contains("net\\u{1b}[2J\\u{a}work"),
        "{table}"
    );
    assert!(
        line(planned).contains("slack") && line(planned).contains("planned"),
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        4,
        "a header and three windows: {table}"
    );

    let out = healthd(&["maintenance", "list", "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let json = json.as_array().unwrap();
    assert_eq!(json.len(), 3);
    let planned_json = json.iter().find(|w| w["id"] == planned).unwrap();
    assert_eq!(planned_json["state"], "planned");
    assert_eq!(planned_json["service_type"], "slack");
    assert!(json.iter().any(|w| w["id"] == all
        && w["service_type"].is_null()
        && w["reason"] == "net\x1b[2J\nwork"));

    // End the active one: it ends now, leaves the list, and cannot be ended twice.
    let out = healthd(&["maintenance", "end", &figma.to_string()], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("maintenance window {figma} ended at")),
        "{}",
        text(&out.stdout)
    );
    let (_, _, ends, _) = window(&db, figma).await;
    assert!(ends <= db_now(&db).await);
    let again = healthd(&["maintenance", "end", &figma.to_string()], &env);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains(&format!("maintenance window {figma} has already ended")),
        "{}",
        text(&again.stderr)
    );

    // End the planned one: cancelled, an empty window, no longer listed either.
    let out = healthd(&["maintenance", "end", &planned.to_string()], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
    let (_, starts, ends, _) = window(&db, planned).await;
    assert_eq!(starts, ends);
    let again = healthd(&["maintenance", "end", &planned.to_string()], &env);
    assert_eq!(again.status.code(), Some(1));

    let table = text(&healthd(&["maintenance", "list"], &env).stdout);
    assert_eq!(
        table.lines().count(),
        2,
        "only the all-services window: {table}"
    );
    assert!(table.contains("all services"), "{table}");

    let unknown = healthd(&["maintenance", "end", "999999"], &env);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("no maintenance window with id 999999"),
        "{}",
        text(&unknown.stderr)
    );
}

#[tokio::test]
async fn bad_windows_are_refused_naming_the_cause() {
    let db = with_services().await;
    let env = [("DATABASE_URL", db.url.expose())];
    let run = |args: &[&str]| healthd(&[&["maintenance", "add"], args].concat(), &env);

    let out = run(&["--service", "nosuch", "--for", "1h", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no service `nosuch` in service_registry"),
        "{}",
        text(&out.stderr)
    );

    let past = (db_now(&db).await - Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = run(&["--until", &past, "--reason", "x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("the window would end in the past"),
        "{}",
        text(&out.stderr)
    );

    let soon = (db_now(&db).await + Duration::hours(1))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let later = (db_now(&db).await + Duration::hours(2))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let out = run(&["--starts", &later, "--until", &soon, "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("must end after it starts"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["--for", "1h", "--reason", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the reason is empty"));
    let long = "x".repeat(501);
    let out = run(&["--for", "1h", "--reason", &long]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("501 characters long; at most 500"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        add(&db, &["--for", "1h", "--reason", &"x".repeat(500)]) > 0,
        "500 characters is allowed"
    );

    // Usage errors, as clap reports them.
    for args in [
        &["--reason", "x"][..],
        &["--for", "1h", "--until", &soon, "--reason", "x"],
        &["--for", "soon", "--reason", "x"],
        &["--until", "tomorrow", "--reason", "x"],
        &["--for", "1h"],
    ] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM maintenance_windows")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "only the valid window was written");
}
