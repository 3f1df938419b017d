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
    /// Oldest first, [`DAYS`] of them, today last.
    pub days: Vec<Day>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Day {
    pub day: NaiveDate,
    /// Checks that count in uptime (maintenance and inconclusive ones left out).
    pub checks: i64,
    pub uptime: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenIncident {
    pub service_type: String,
    pub display_name: String,
    pub started_at: DateTime<Utc>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
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

const SNAPSHOT: &str = "
WITH today AS (
    SELECT (now() AT TIME ZONE 'UTC')::date AS day
), days AS (
    SELECT g::date AS day
      FROM today, generate_series(today.day - ($1::int - 1), today.day, interval '1 day') g
), per_day AS (
    SELECT d.service_type, d.day, d.checks - d.maintenance_checks - d.inconclusive_checks AS counted,
           d.failures
      FROM service_health_daily d, today
     WHERE d.day >= today.day - ($1::int - 1) AND d.day < today.day
    UNION ALL
    SELECT r.service_type, today.day,
           sum(r.checks - r.maintenance_checks - r.inconclusive_checks), sum(r.failures)
      FROM service_health_rollups r, today
     WHERE r.hour >= today.day::timestamp AT TIME ZONE 'UTC'
     GROUP BY r.service_type, today.day
)
SELECT json_build_object(
    'generated_at', now(),
    'services', coalesce((
        SELECT json_agg(json_build_object(
                   'service_type', s.service_type, 'display_name', s.display_name,
                   'category', s.category, 'status', s.status,
                   'response_time_ms', s.response_time_ms,
                   'uptime_percentage', s.uptime_percentage, 'error_kind', s.error_kind,
                   'degraded_reason', s.degraded_reason, 'flapping', s.flapping,
                   'last_health_check', s.last_health_check,
                   'days', (SELECT json_agg(json_build_object(
                                       'day', days.day,
                                       'checks', coalesce(p.counted, 0),
                                       'uptime', 100.0 * (p.counted - p.failures) / nullif(p.counted, 0))
                                    ORDER BY days.day)
                              FROM days
                              LEFT JOIN per_day p ON p.day = days.day AND p.service_type = s.service_type))
               ORDER BY s.category NULLS LAST, s.display_name, s.service_type)
          FROM service_health_dashboard s
         WHERE s.status <> 'unavailable'), '[]'::json),
    'incidents', coalesce((
        SELECT json_agg(json_build_object(
                   'service_type', i.service_type, 'display_name', sr.display_name,
                   'started_at', i.started_at, 'error_kind', i.error_kind,
                   'error_message', i.error_message)
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

/// Reads the whole page's data in one statement.
pub async fn snapshot(pool: &PgPool) -> sqlx::Result<Snapshot> {
    let json: sqlx::types::Json<Snapshot> = sqlx::query_scalar(SNAPSHOT)
        .bind(DAYS as i32)
        .fetch_one(pool)
        .await?;
    Ok(json.0)
}
