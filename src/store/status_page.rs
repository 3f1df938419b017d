//! What the status page shows, read in ONE query: every service (from the dashboard view) with
//! its last 90 UTC days of uptime, the open incidents, and the maintenance windows now and
//! ahead. Days before today come from the daily rollups (made hourly by `housekeeping`); today
//! from the hourly rollups. Uptime leaves out maintenance and inconclusive checks, as everywhere.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// Days in a service's history bar.
pub const DAYS: i64 = 90;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub generated_at: DateTime<Utc>,
    /// The UTC day of every service's first history cell (today is the last, [`DAYS`] later).
    pub first_day: NaiveDate,
    pub services: Vec<ServiceLine>,
    pub incidents: Vec<OpenIncident>,
    pub maintenance: Vec<MaintenanceLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceLine {
    pub service_type: String,
    pub display_name: String,
    pub category: Option<String>,
    /// The dashboard's status: up, degraded, down, maintenance, stale, unknown.
    pub status: String,
    pub response_time_ms: Option<i32>,
    /// Over `uptime.window` (the dashboard's figure).
    pub uptime_percentage: Option<f64>,
    pub error_kind: Option<String>,
    pub degraded_reason: Option<String>,
    pub flapping: bool,
    pub last_health_check: Option<DateTime<Utc>>,
    /// Per day from `first_day`, [`DAYS`] of them: the checks that count in uptime
    /// (maintenance and inconclusive ones left out), and the uptime (`None`: no such check).
    #[serde(default)]
    pub day_checks: Vec<i64>,
    #[serde(default)]
    pub day_uptime: Vec<Option<f64>>,
}

impl ServiceLine {
    /// Spreads the days that have data (`index` from the first day) over the whole bar.
    fn fill(&mut self, index: &[i64], checks: &[i64], uptime: &[Option<f64>]) {
        let n = DAYS as usize;
        self.day_checks = vec![0; n];
        self.day_uptime = vec![None; n];
        for ((&i, &c), &u) in index.iter().zip(checks).zip(uptime) {
            if let Ok(i) = usize::try_from(i)
                && i < n
            {
                self.day_checks[i] = c;
                self.day_uptime[i] = u;
            }
        }
    }
}

/// An open incident as the public page shows it: the kind of error, not its detail (which can
/// name internal hosts and addresses; the alert log and the database have it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenIncident {
    pub service_type: String,
    pub display_name: String,
    pub started_at: DateTime<Utc>,
    pub error_kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceLine {
    pub id: i64,
    /// `None`: every service.
    pub service_type: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub active: bool,
}

/// The services' history comes back sparse (only the days with data, as offsets from the first
/// day) and is spread over the bar in Rust: the database never builds 90 cells per service.
const SNAPSHOT: &str = "
WITH today AS (
    SELECT (now() AT TIME ZONE 'UTC')::date AS day
), per_day AS (
    SELECT d.service_type, d.day, d.checks - d.maintenance_checks - d.inconclusive_checks AS counted,
           d.failures
      FROM service_health_daily d, today
     WHERE d.day > today.day - $1::int AND d.day < today.day
    UNION ALL
    SELECT r.service_type, today.day,
           sum(r.checks - r.maintenance_checks - r.inconclusive_checks), sum(r.failures)
      FROM service_health_rollups r, today
     WHERE r.hour >= today.day::timestamp AT TIME ZONE 'UTC'
     GROUP BY r.service_type, today.day
), bars AS (
    SELECT p.service_type,
           array_agg(p.day - (today.day - ($1::int - 1)) ORDER BY p.day) AS idx,
           array_agg(p.counted ORDER BY p.day) AS checks,
           array_agg(round(100.0 * (p.counted - p.failures) / nullif(p.counted, 0), 3)::float8
                     ORDER BY p.day) AS uptime
      FROM per_day p, today
     GROUP BY p.service_type
)
SELECT json_build_object(
    'generated_at', now(),
    'first_day', (SELECT day - ($1::int - 1) FROM today),
    'services', coalesce((
        SELECT json_agg(json_build_object(
                   'service_type', s.service_type, 'display_name', s.display_name,
                   'category', s.category, 'status', s.status,
                   'response_time_ms', s.response_time_ms,
                   'uptime_percentage', s.uptime_percentage, 'error_kind', s.error_kind,
                   'degraded_reason', s.degraded_reason, 'flapping', s.flapping,
                   'last_health_check', s.last_health_check,
                   'idx', coalesce(b.idx, '{}'), 'checks', coalesce(b.checks, '{}'),
                   'uptime', coalesce(b.uptime, '{}'))
               ORDER BY s.category NULLS LAST, s.display_name, s.service_type)
          FROM service_health_dashboard s
          LEFT JOIN bars b ON b.service_type = s.service_type
         WHERE s.status <> 'unavailable'), '[]'::json),
    'incidents', coalesce((
        SELECT json_agg(json_build_object(
                   'service_type', i.service_type, 'display_name', sr.display_name,
                   'started_at', i.started_at, 'error_kind', i.error_kind)
               ORDER BY i.started_at DESC)
          FROM service_incidents i JOIN service_registry sr USING (service_type)
         WHERE i.ended_at IS NULL), '[]'::json),
    'maintenance', coalesce((
        SELECT json_agg(json_build_object(
                   'id', w.id, 'service_type', w.service_type, 'starts_at', w.starts_at,
                   'ends_at', w.ends_at, 'reason', w.reason,
                   'active', w.starts_at <= now())
               ORDER BY w.starts_at, w.id)
          FROM maintenance_windows w
         WHERE w.ends_at > now() AND w.ends_at > w.starts_at), '[]'::json))";

/// A service as the query returns it: the dashboard's figures, and its sparse history.
#[derive(Deserialize)]
struct Row {
    #[serde(flatten)]
    line: ServiceLine,
    idx: Vec<i64>,
    checks: Vec<i64>,
    uptime: Vec<Option<f64>>,
}

#[derive(Deserialize)]
struct Raw {
    generated_at: DateTime<Utc>,
    first_day: NaiveDate,
    services: Vec<Row>,
    incidents: Vec<OpenIncident>,
    maintenance: Vec<MaintenanceLine>,
}

/// Reads the whole page's data in one statement.
pub async fn snapshot(pool: &PgPool) -> sqlx::Result<Snapshot> {
    let raw: sqlx::types::Json<Raw> = sqlx::query_scalar(SNAPSHOT)
        .bind(DAYS as i32)
        .fetch_one(pool)
        .await?;
    let raw = raw.0;
    let services = raw
        .services
        .into_iter()
        .map(|mut r| {
            r.line.fill(&r.idx, &r.checks, &r.uptime);
            r.line
        })
        .collect();
    Ok(Snapshot {
        generated_at: raw.generated_at,
        first_day: raw.first_day,
        services,
        incidents: raw.incidents,
        maintenance: raw.maintenance,
    })
}
