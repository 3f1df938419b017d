//! `dashboards/grafana/mcp-healthd.json`: every SQL query of the dashboard (panels, the
//! `service` variable, annotations), with Grafana's macros and variables replaced the way Grafana
//! would, runs against a migrated database filled with a small fleet, as the read-only dashboard
//! role of `sql/app-roles.sql`, and returns rows with sane values.

use std::path::Path;

use serde_json::Value;
use sqlx::PgPool;

use crate::app_roles::{pool_as, run_script};
use crate::helpers::TestDb;

/// The relations the panels (and annotations) may read; the `service` variable also reads
/// `service_registry`.
const PANEL_RELATIONS: &[&str] = &[
    "service_health_dashboard",
    "service_uptime_report",
    "service_incidents",
    "service_health_rollups",
    "service_health_daily",
    "maintenance_windows",
];

/// What `$service` expands to: Grafana quotes each selected value of a multi-value variable.
/// `svc-x` is in the fleet but not selected.
const SELECTED: &str = "'svc-a','svc-b','svc-c','svc-d','svc-e'";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Panel,
    Variable,
    Annotation,
}

/// One query of the dashboard: where it comes from, a name to report, its SQL.
struct Query {
    source: Source,
    name: String,
    sql: String,
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/grafana/mcp-healthd.json");
    let raw = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&raw).expect("the dashboard is JSON")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Every SQL query in the dashboard, panels in rows included.
fn queries(dash: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        panels.push(p);
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
    }
    for p in panels {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("a panel without targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["rawQuery"], true, "panel {}: raw SQL", p["title"]);
            assert_eq!(
                t["datasource"]["uid"], "${DS_POSTGRES}",
                "panel {}: the data source variable",
                p["title"]
            );
            out.push(Query {
                source: Source::Panel,
                name: format!("panel {:?}", str_of(p, "title")),
                sql: str_of(t, "rawSql").to_owned(),
            });
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if v["type"] != "query" {
            continue;
        }
        let sql = match &v["query"] {
            Value::String(s) => s.clone(),
            q => str_of(q, "rawSql").to_owned(),
        };
        out.push(Query {
            source: Source::Variable,
            name: format!("variable {:?}", str_of(v, "name")),
            sql,
        });
    }
    for a in dash["annotations"]["list"].as_array().expect("annotations") {
        if a["builtIn"] == 1 {
            continue;
        }
        out.push(Query {
            source: Source::Annotation,
            name: format!("annotation {:?}", str_of(a, "name")),
            sql: str_of(&a["target"], "rawSql").to_owned(),
        });
    }
    for q in &out {
        assert!(!q.sql.trim().is_empty(), "{}: empty SQL", q.name);
    }
    out
}

/// The arguments of the macro call whose `(` is at `open`, and the index just past its `)`.
fn macro_args(sql: &str, open: usize) -> (Vec<String>, usize) {
    let mut depth = 0;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, c) in sql[open..].char_indices() {
        let i = open + i;
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    args.push(sql[start..i].trim().to_owned());
                    return (args, i + 1);
                }
            }
            ',' if depth == 1 => {
                args.push(sql[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    panic!("unbalanced macro call in {sql}");
}

/// Replaces Grafana's macros and the `service` variable with plain SQL: the time range becomes
/// `from`..`to` (quoted timestamps, as Grafana renders them), a time group the UTC hour.
fn expand(sql: &str, from: &str, to: &str) -> String {
    let mut out = sql.to_owned();
    while let Some(at) = out.find("$__") {
        let name_end = out[at + 3..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(out.len(), |n| at + 3 + n);
        let name = &out[at + 3..name_end];
        if !out[name_end..].starts_with('(') {
            break; // not a macro call: left for the check below
        }
        let (args, end) = macro_args(&out, name_end);
        let with = match (name, args.as_slice()) {
            ("timeFilter", [col]) => format!("{col} BETWEEN '{from}' AND '{to}'"),
            ("timeFrom", [a]) if a.is_empty() => format!("'{from}'"),
            ("timeTo", [a]) if a.is_empty() => format!("'{to}'"),
            ("timeGroupAlias", [col, ..]) => format!("date_trunc('hour', {col}) AS \"time\""),
            ("timeGroup", [col, ..]) => format!("date_trunc('hour', {col})"),
            _ => panic!("unexpected macro ${name}({args:?}) in {sql}"),
        };
        out.replace_range(at..end, &with);
    }
    for form in [
        "${service:sqlstring}",
        "${service:singlequote}",
        "${service}",
    ] {
        out = out.replace(form, SELECTED);
    }
    // `$service`, not a longer name that starts with it.
    let mut rest = out.as_str();
    let mut done = String::new();
    while let Some(at) = rest.find("$service") {
        let after = &rest[at + "$service".len()..];
        assert!(
            !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'),
            "an unknown variable in {sql}"
        );
        done.push_str(&rest[..at]);
        done.push_str(SELECTED);
        rest = after;
    }
    done.push_str(rest);
    assert!(
        !done.contains("$__") && !done.contains("$service") && !done.contains("${"),
        "a Grafana macro or variable is left in:\n{done}"
    );
    done
}

/// The relation names that follow FROM or JOIN (function calls and subqueries skipped).
fn relations(sql: &str) -> Vec<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0].eq_ignore_ascii_case("from") || w[0].eq_ignore_ascii_case("join"))
        .map(|w| w[1].trim_end_matches([')', ',']))
        .filter(|r| !r.contains('(') && !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A small fleet, everything relative to the current UTC hour (the views use now()):
///   svc-a up and flapping; svc-b down with an open incident; svc-c degraded (slow);
///   svc-d unavailable; svc-e healthy inside an active maintenance window; svc-x down, not
///   selected. Hourly rollups for the last 48 hours (and one bad hour 10 days ago, outside the
///   range), daily rollups for 60 days, incidents open, closed and old, windows active, upcoming
///   and ended.
async fn seed(pool: &PgPool) {
    sqlx::raw_sql(
        "INSERT INTO service_registry (service_type, name, display_name, port, category, is_available) VALUES
            ('svc-a', 'svc-a', 'Service A', 42101, 'core', true),
            ('svc-b', 'svc-b', 'Service B', 42102, 'core', true),
            ('svc-c', 'svc-c', 'Service C', 42103, 'edge', true),
            ('svc-d', 'svc-d', 'Service D', 42104, 'edge', false),
            ('svc-e', 'svc-e', 'Service E', 42105, 'edge', true),
            ('svc-x', 'svc-x', 'Service X', 42106, 'other', true);
         UPDATE service_health_status
            SET is_healthy = true, last_health_check = now(), check_interval_ms = 30000,
                response_time_ms = 40, uptime_percentage = 99.5, consecutive_successes = 10,
                last_success_at = now(), state_changed_at = now() - interval '2 days';
         UPDATE service_health_status SET flapping = true WHERE service_type = 'svc-a';
         UPDATE service_health_status
            SET is_healthy = false, error_kind = 'timeout', error_message = 'timeout: no answer within 5s',
                consecutive_failures = 4, consecutive_successes = 0, uptime_percentage = 97.0,
                state_changed_at = now() - interval '20 minutes'
          WHERE service_type IN ('svc-b', 'svc-x');
         UPDATE service_health_status
            SET degraded_reason = 'slow: 1200 ms', response_time_ms = 1200,
                tls_not_after = now() + interval '5 days'
          WHERE service_type = 'svc-c';
         UPDATE service_health_status SET is_healthy = NULL, last_health_check = NULL
          WHERE service_type = 'svc-d';

         INSERT INTO maintenance_windows (service_type, starts_at, ends_at, reason) VALUES
            ('svc-e', now() - interval '1 hour', now() + interval '2 hours', 'database upgrade'),
            (NULL, now() + interval '1 day', now() + interval '1 day 1 hour', 'network work'),
            ('svc-a', now() - interval '3 days', now() - interval '3 days' + interval '1 hour', 'done');
         INSERT INTO service_incidents (service_type, started_at, ended_at, error_kind, error_message, failed_checks) VALUES
            ('svc-b', now() - interval '20 minutes', NULL, 'timeout', 'timeout: no answer within 5s', 4),
            ('svc-a', now() - interval '5 hours', now() - interval '4 hours', 'connect', 'connect: refused', 120),
            ('svc-a', now() - interval '30 days', now() - interval '30 days' + interval '1 hour', 'dns', 'dns: no such host', 3),
            ('svc-x', now() - interval '20 minutes', NULL, 'status', 'status: 503', 4);

         -- each hour: 120 checks, 10 in maintenance, 5 inconclusive, 1 counted failure:
         -- uptime 104 / 105; latency 50 ms on average, 200 at most
         INSERT INTO service_health_rollups (service_type, hour, checks, failures, latency_sum_ms,
                                             latency_max_ms, maintenance_checks, inconclusive_checks)
         SELECT s, date_trunc('hour', now(), 'UTC') - h * interval '1 hour', 120, 1, 6000, 200, 10, 5
           FROM unnest(ARRAY['svc-a', 'svc-b', 'svc-c', 'svc-d', 'svc-e', 'svc-x']) AS s,
                generate_series(0, 47) AS h;
         INSERT INTO service_health_rollups (service_type, hour, checks, failures, latency_sum_ms,
                                             latency_max_ms)
         VALUES ('svc-a', date_trunc('hour', now(), 'UTC') - interval '10 days', 120, 120, 600000, 5000);
         -- each day: the same proportions
         INSERT INTO service_health_daily (service_type, day, checks, failures, maintenance_checks,
                                           inconclusive_checks, latency_sum_ms, latency_max_ms)
         SELECT s, (now() AT TIME ZONE 'UTC')::date - d, 2880, 24, 240, 120, 144000, 200
           FROM unnest(ARRAY['svc-a', 'svc-b', 'svc-c', 'svc-d', 'svc-e', 'svc-x']) AS s,
                generate_series(0, 59) AS d;",
    )
    .execute(pool)
    .await
    .expect("seed the fleet");
}

/// Runs `sql` as it is (Grafana sends it so) and as JSON rows (to read any column type).
async fn run(pool: &PgPool, name: &str, sql: &str) -> Vec<Value> {
    let plain = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}\n{sql}"));
    let rows: Vec<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(q) FROM ({sql}\n) AS q"
    )))
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{name} (as JSON): {e}\n{sql}"));
    assert_eq!(plain.len(), rows.len(), "{name}");
    assert!(!rows.is_empty(), "{name}: no rows\n{sql}");
    rows
}

fn num(row: &Value, col: &str) -> f64 {
    row[col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col} is not a number in {row}"))
}

fn services(rows: &[Value], col: &str) -> Vec<String> {
    let mut s: Vec<String> = rows
        .iter()
        .map(|r| r[col].as_str().unwrap_or_default().to_owned())
        .collect();
    s.sort();
    s.dedup();
    s
}

const UPTIME: f64 = 100.0 * 104.0 / 105.0;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test]
async fn every_dashboard_query_runs_as_the_dashboard_role_and_shows_the_fleet() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds["name"], "DS_POSTGRES");
    let service = vars.iter().find(|v| v["name"] == "service").unwrap();
    assert_eq!(service["multi"], true);
    assert_eq!(service["includeAll"], true);

    let all = queries(&dash);
    for q in &all {
        let allowed: Vec<&str> = match q.source {
            Source::Variable => vec!["service_registry"],
            _ => PANEL_RELATIONS.to_vec(),
        };
        let read = relations(&q.sql);
        assert!(!read.is_empty(), "{}: reads nothing?", q.name);
        for r in &read {
            assert!(allowed.contains(&r.as_str()), "{} reads {r}", q.name);
        }
        if q.source != Source::Variable {
            assert!(
                q.sql.contains("IN ($service)"),
                "{}: not filtered by $service",
                q.name
            );
        }
    }

    let db = TestDb::migrated().await;
    seed(&db.pool).await;
    let gateway_role = format!("{}_gw", db.name);
    let dashboard_role = format!("{}_dash", db.name);
    run_script(
        &db,
        "app-roles.sql",
        &[
            ("gateway_role", &gateway_role),
            ("dashboard_role", &dashboard_role),
        ],
    );
    let dash_pool = pool_as(&db, &dashboard_role).await;

    // The time range Grafana would send for "the last 48 hours", rendered as Grafana does.
    let (from, to): (String, String) = sqlx::query_as(
        "SELECT to_char(date_trunc('hour', now(), 'UTC') - interval '48 hours', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                to_char(date_trunc('hour', now(), 'UTC') + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();

    let mut results = std::collections::HashMap::new();
    for q in &all {
        let sql = expand(&q.sql, &from, &to);
        let rows = run(&dash_pool, &q.name, &sql).await;
        results.insert(q.name.clone(), rows);
    }
    let get = |name: &str| -> &Vec<Value> {
        results
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the dashboard"))
    };

    // The variable lists the whole registry.
    assert_eq!(
        services(get("variable \"service\""), "service_type"),
        ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-x"]
    );

    // (a) one row of counts, of the selected services only (svc-x is down too).
    let counts = get("panel \"Fleet state\"");
    assert_eq!(counts.len(), 1);
    for (status, n) in [
        ("up", 1.0),
        ("degraded", 1.0),
        ("down", 1.0),
        ("maintenance", 1.0),
        ("stale", 0.0),
        ("unknown", 0.0),
        ("unavailable", 1.0),
    ] {
        assert_eq!(num(&counts[0], status), n, "{status}: {}", counts[0]);
    }

    // (b) the services, worst first, with their flags.
    let table = get("panel \"Services\"");
    assert_eq!(table.len(), 5, "{table:?}");
    assert_eq!(table[0]["service"], "svc-b");
    assert_eq!(table[0]["status"], "down");
    assert_eq!(table[0]["error"], "timeout: no answer within 5s");
    let row = |s: &str| table.iter().find(|r| r["service"] == s).unwrap();
    assert_eq!(row("svc-a")["flapping"], true);
    assert_eq!(row("svc-c")["status"], "degraded");
    assert_eq!(row("svc-c")["degraded_reason"], "slow: 1200 ms");
    assert_eq!(num(row("svc-c"), "latency_ms"), 1200.0);
    assert_eq!(row("svc-d")["status"], "unavailable");
    assert_eq!(row("svc-e")["status"], "maintenance");

    // (c) uptime per hour and service inside the range, maintenance and inconclusive checks
    // left out; the bad hour 10 days ago is outside the range.
    let uptime = get("panel \"Uptime per service\"");
    assert_eq!(
        services(uptime, "metric"),
        ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e"]
    );
    assert_eq!(uptime.len(), 5 * 48, "one point per service and hour");
    for r in uptime {
        assert!(close(num(r, "uptime"), UPTIME), "{r}");
        assert!(r["time"].is_string(), "{r}");
    }

    // (d) latency: average = latency_sum_ms / checks, and the maximum.
    let latency = get("panel \"Latency per service\"");
    assert_eq!(latency.len(), 5 * 48);
    for r in latency {
        assert!(close(num(r, "avg"), 50.0), "{r}");
        assert_eq!(num(r, "max"), 200.0, "{r}");
    }

    // (e) incidents: the one open of the selected services; in the range, open and closed.
    let open = get("panel \"Open incidents\"");
    assert_eq!(services(open, "service"), ["svc-b"]);
    assert!(num(&open[0], "open_for") >= 1200.0, "{}", open[0]);
    let recent = get("panel \"Incidents in the time range\"");
    assert_eq!(recent.len(), 2, "{recent:?}");
    assert!(recent[0]["ended_at"].is_null(), "newest first: {recent:?}");
    assert_eq!(num(&recent[1], "duration"), 3600.0);

    // (f) the uptime report, one row per available selected service.
    let report = get("panel \"Uptime report\"");
    assert_eq!(
        services(report, "service"),
        ["svc-a", "svc-b", "svc-c", "svc-e"]
    );
    for r in report {
        for w in ["24h", "7d", "30d", "90d"] {
            assert!(close(num(r, w), UPTIME), "{w}: {r}");
        }
        assert_eq!(num(r, "checks_30d"), 30.0 * 2880.0, "{r}");
    }

    // (g) maintenance: the active window and the upcoming one for all services.
    let windows = get("panel \"Maintenance windows: current and upcoming\"");
    assert_eq!(windows.len(), 2, "{windows:?}");
    assert_eq!(windows[0]["service"], "svc-e");
    assert_eq!(windows[0]["state"], "active");
    assert_eq!(windows[1]["service"], "(all services)");
    assert_eq!(windows[1]["state"], "upcoming");

    // Daily uptime: the UTC days inside the range.
    let daily = get("panel \"Daily uptime per service\"");
    assert!(daily.len() >= 5 * 2, "{daily:?}");
    for r in daily {
        assert!(close(num(r, "uptime"), UPTIME), "{r}");
    }

    // Annotations: the incidents and the windows in the range.
    assert_eq!(get("annotation \"Incidents\"").len(), 2);
    assert_eq!(get("annotation \"Maintenance\"").len(), 1);

    dash_pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {gateway_role}, {dashboard_role}; DROP ROLE {gateway_role}; DROP ROLE {dashboard_role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}

#[test]
fn macros_expand_to_plain_sql() {
    let sql = "SELECT $__timeGroupAlias(hour, $__interval), x FROM t \
               WHERE $__timeFilter(hour) AND a < $__timeTo() AND b >= $__timeFrom() \
               AND s IN ($service) AND s IN (${service}) AND s IN (${service:sqlstring})";
    assert_eq!(
        expand(sql, "F", "T"),
        format!(
            "SELECT date_trunc('hour', hour) AS \"time\", x FROM t \
             WHERE hour BETWEEN 'F' AND 'T' AND a < 'T' AND b >= 'F' \
             AND s IN ({SELECTED}) AND s IN ({SELECTED}) AND s IN ({SELECTED})"
        )
    );
    assert_eq!(
        relations("SELECT extract(epoch FROM now()) FROM a JOIN b ON true, (SELECT 1 FROM c) q"),
        ["a", "b", "c"]
    );
}
