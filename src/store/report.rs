//! The uptime report (`mcp-healthd report`): per service, over a period, the checks and
//! failures (from the rollups) and the incidents (from `service_incidents`). One statement per
//! call; the period, the clipping of incidents, the month parser and the duration format are
//! pure and tested here.
//!
//! Definitions (README, "Reports"):
//!
//! - **Period**: the half-open interval `[from, to)` in UTC. `--month 2026-03` is
//!   `[2026-03-01 00:00, 2026-04-01 00:00)`; `--since 30d` is `[now - 30d, now)`.
//! - **Checks, failures, maintenance and inconclusive checks**: the hourly rollups whose hour
//!   starts inside the period (so the hour in progress at `to = now` counts, and the hour in
//!   progress at `from` does not). For each service and each UTC day lying wholly inside the
//!   period, that day's daily rollup replaces its hourly rows when it counts more checks than
//!   they do: the day's hourly rows were pruned after `uptime.retain` (all of them, or, on the
//!   day at the retention edge, some). A day is thus counted once, from one source. Days
//!   before the last one `housekeeping` remade are final in the daily rollups and read only
//!   from there (their hours are not summed again: at 10,000 services a month is 7 million
//!   hourly rows).
//! - **Uptime** = 100 × (checks − maintenance − inconclusive − failures) / (checks −
//!   maintenance − inconclusive); `None` when no check counted. `failures` holds only the
//!   failures that count against uptime (migration 0013).
//! - **Incidents**: the rows of `service_incidents` overlapping the period; an open incident
//!   lasts until `now`. **Downtime** is the sum of their durations clipped to
//!   `[from, min(to, now))`, **longest** the longest clipped duration.
//! - **MTTR** (mean time to recovery): the mean *full* duration (`ended_at − started_at`, not
//!   clipped) of the incidents that ended inside the period; `None` when none did. An incident
//!   that began before the period but ended inside it counts whole; one still open, or ending
//!   after the period, does not count (yet).

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::text::echo;

/// A report's period: `[from, to)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    /// The UTC calendar month `year-month`: from its first day 00:00 to the next month's first
    /// day 00:00 (December rolls the year). `None` for a month outside 1–12 or a year chrono
    /// cannot represent.
    pub fn month(year: i32, month: u32) -> Option<Self> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        Some(Self {
            from: first.and_hms_opt(0, 0, 0)?.and_utc(),
            to: next.and_hms_opt(0, 0, 0)?.and_utc(),
        })
    }

    /// The last `dur` up to `now`: `[now - dur, now)`. `from` is never before the Unix epoch
    /// (nothing was recorded before it, and PostgreSQL's range is narrower than chrono's).
    pub fn since(now: DateTime<Utc>, dur: TimeDelta) -> Self {
        let from = now
            .checked_sub_signed(dur)
            .unwrap_or(DateTime::UNIX_EPOCH)
            .max(DateTime::UNIX_EPOCH);
        Self {
            from: from.min(now),
            to: now,
        }
    }

    /// How the table's header names the period.
    pub fn describe(&self) -> String {
        let t = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC");
        format!("{} to {} (end excluded)", t(&self.from), t(&self.to))
    }
}

/// `--month YYYY-MM`: exactly four digits, a dash, two digits, the month 01–12.
pub fn parse_month(raw: &str) -> Result<Period, String> {
    let raw = raw.trim();
    let shape = raw.len() == 7
        && raw.as_bytes()[4] == b'-'
        && raw
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || b.is_ascii_digit());
    if !shape {
        return Err(format!(
            "`{}` is not a month: use YYYY-MM, e.g. 2026-03",
            echo(raw)
        ));
    }
    let year: i32 = raw[..4].parse().map_err(|_| "bad year".to_owned())?;
    let month: u32 = raw[5..].parse().map_err(|_| "bad month".to_owned())?;
    if !(1..=12).contains(&month) {
        return Err(format!(
            "`{raw}` is not a month: the month must be 01 to 12"
        ));
    }
    Period::month(year, month).ok_or_else(|| format!("`{raw}` is out of range"))
}

/// The part of `[start, end)` inside `period`, in whole seconds (rounded); 0 when they do not
/// overlap. `end` is `None` for an incident still open: it lasts until `now`.
pub fn clipped_seconds(
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    period: &Period,
    now: DateTime<Utc>,
) -> i64 {
    let end = end.unwrap_or(now).min(period.to);
    let start = start.max(period.from);
    if end <= start {
        return 0;
    }
    let micros = (end - start).num_microseconds().unwrap_or(i64::MAX);
    (micros + 500_000) / 1_000_000
}

/// A length of time for the table, two units at most, the second zero-padded and the rest cut
/// off: `9s`, `45m 00s`, `1h 05m`, `2d 03h`. Negative lengths show as `0s`.
pub fn format_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// An uptime for the table: three decimals, cut rather than rounded so that a single failure
/// never shows as 100%; `-` when no check counted.
pub fn format_uptime(uptime: Option<f64>) -> String {
    match uptime {
        None => "-".into(),
        Some(u) if u >= 100.0 => "100%".into(),
        Some(u) => format!("{:.3}%", ((u * 1000.0) + 1e-6).floor() / 1000.0),
    }
}

/// One service's figures over a period (see the module's definitions).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ServiceReport {
    pub service_type: String,
    pub display_name: String,
    /// Every check recorded, maintenance and inconclusive ones included.
    pub checks: i64,
    /// The failures that count against uptime.
    pub failures: i64,
    pub maintenance_checks: i64,
    pub inconclusive_checks: i64,
    /// `None` when no check counted.
    pub uptime_percent: Option<f64>,
    /// Incidents overlapping the period.
    pub incidents: i64,
    /// Their durations clipped to the period, summed (seconds).
    pub downtime_s: i64,
    /// The longest clipped duration (seconds); `None` without incidents.
    pub longest_incident_s: Option<i64>,
    /// Mean full duration of the incidents that ended inside the period (seconds).
    pub mttr_s: Option<i64>,
}

/// $1 from, $2 to, $3 the one service (NULL: every available one), $4 now.
const REPORT: &str = "
WITH services AS (
    SELECT service_type, display_name::text AS display_name
      FROM service_registry
     WHERE CASE WHEN $3::text IS NULL THEN is_available ELSE service_type = $3::text END
), hourly AS (
    SELECT r.service_type, (r.hour AT TIME ZONE 'UTC')::date AS day,
           sum(r.checks)::bigint AS checks, sum(r.failures)::bigint AS failures,
           sum(r.maintenance_checks)::bigint AS maintenance_checks,
           sum(r.inconclusive_checks)::bigint AS inconclusive_checks
      FROM service_health_rollups r
      JOIN services s ON s.service_type = r.service_type
     WHERE r.hour >= $1 AND r.hour < $2
       -- Days before the day housekeeping last recomputed are final in the daily rollups: their
       -- hours need not be summed again (30 days of 10,000 services is 7 million hourly rows).
       AND (r.hour >= (SELECT coalesce(max(day) - 1, '-infinity'::date) FROM service_health_daily)
                      ::timestamp AT TIME ZONE 'UTC'
            -- a first day only partly inside the period has no daily row to stand in for it
            OR r.hour < (($1 AT TIME ZONE 'UTC')::date + 1)::timestamp AT TIME ZONE 'UTC')
     GROUP BY 1, 2
), daily AS (
    SELECT d.service_type, d.day, d.checks::bigint AS checks, d.failures::bigint AS failures,
           d.maintenance_checks::bigint AS maintenance_checks,
           d.inconclusive_checks::bigint AS inconclusive_checks
      FROM service_health_daily d
      JOIN services s ON s.service_type = d.service_type
     WHERE d.day BETWEEN ($1 AT TIME ZONE 'UTC')::date AND ($2 AT TIME ZONE 'UTC')::date
       AND d.day::timestamp AT TIME ZONE 'UTC' >= $1
       AND (d.day + 1)::timestamp AT TIME ZONE 'UTC' <= $2
), days AS (
    -- one source per service and day: the daily row where it counts more than the hours kept
    SELECT coalesce(h.service_type, d.service_type) AS service_type,
           coalesce(d.checks > coalesce(h.checks, 0), false) AS from_daily,
           h.checks AS h_checks, h.failures AS h_failures,
           h.maintenance_checks AS h_maintenance, h.inconclusive_checks AS h_inconclusive,
           d.checks AS d_checks, d.failures AS d_failures,
           d.maintenance_checks AS d_maintenance, d.inconclusive_checks AS d_inconclusive
      FROM hourly h
      FULL JOIN daily d ON d.service_type = h.service_type AND d.day = h.day
), counts AS (
    SELECT service_type,
           sum(CASE WHEN from_daily THEN d_checks ELSE h_checks END)::bigint AS checks,
           sum(CASE WHEN from_daily THEN d_failures ELSE h_failures END)::bigint AS failures,
           sum(CASE WHEN from_daily THEN d_maintenance ELSE h_maintenance END)::bigint
               AS maintenance_checks,
           sum(CASE WHEN from_daily THEN d_inconclusive ELSE h_inconclusive END)::bigint
               AS inconclusive_checks
      FROM days
     GROUP BY 1
), incidents AS (
    SELECT i.service_type, i.started_at, i.ended_at,
           greatest(extract(epoch FROM least(coalesce(i.ended_at, $4), $2))
                    - extract(epoch FROM greatest(i.started_at, $1)), 0) AS clipped_s
      FROM service_incidents i
      JOIN services s ON s.service_type = i.service_type
     WHERE i.started_at < $2
       AND (coalesce(i.ended_at, $4) > $1 OR i.started_at >= $1)
), outages AS (
    SELECT service_type, count(*) AS incidents,
           round(sum(clipped_s))::bigint AS downtime_s,
           round(max(clipped_s))::bigint AS longest_s,
           round(avg(extract(epoch FROM ended_at - started_at))
                 FILTER (WHERE ended_at >= $1 AND ended_at < $2))::bigint AS mttr_s
      FROM incidents
     GROUP BY 1
)
SELECT s.service_type::text AS service_type, s.display_name,
       coalesce(c.checks, 0) AS checks, coalesce(c.failures, 0) AS failures,
       coalesce(c.maintenance_checks, 0) AS maintenance_checks,
       coalesce(c.inconclusive_checks, 0) AS inconclusive_checks,
       (100.0 * (c.checks - c.maintenance_checks - c.inconclusive_checks - c.failures)
              / nullif(c.checks - c.maintenance_checks - c.inconclusive_checks, 0))::float8
           AS uptime_percent,
       coalesce(o.incidents, 0) AS incidents,
       coalesce(o.downtime_s, 0) AS downtime_s,
       o.longest_s AS longest_incident_s,
       o.mttr_s
  FROM services s
  LEFT JOIN counts c ON c.service_type = s.service_type
  LEFT JOIN outages o ON o.service_type = s.service_type
 ORDER BY s.service_type";

/// The report over `period` for every available service, or for `service` alone (whether
/// available or not; an empty result when there is no such service), ordered by service_type.
/// An open incident lasts until now. One statement.
pub async fn report(
    pool: &PgPool,
    period: &Period,
    service: Option<&str>,
) -> sqlx::Result<Vec<ServiceReport>> {
    report_at(pool, period, service, Utc::now()).await
}

/// [`report`] with "now" given: open incidents last until `now`.
pub async fn report_at(
    pool: &PgPool,
    period: &Period,
    service: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<ServiceReport>> {
    sqlx::query_as(REPORT)
        .bind(period.from)
        .bind(period.to)
        .bind(service)
        .bind(now)
        .fetch_all(pool)
        .await
}

/// The calendar month's name (`March 2026`) when `period` is exactly one UTC month.
pub fn month_name(period: &Period) -> Option<String> {
    let p = Period::month(period.from.year(), period.from.month())?;
    (p == *period).then(|| period.from.format("%B %Y").to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_month_is_its_exact_utc_boundaries_and_december_rolls_the_year() {
        let march = Period::month(2026, 3).unwrap();
        assert_eq!(march.from, at(2026, 3, 1, 0, 0));
        assert_eq!(march.to, at(2026, 4, 1, 0, 0));
        let december = Period::month(2026, 12).unwrap();
        assert_eq!(december.from, at(2026, 12, 1, 0, 0));
        assert_eq!(december.to, at(2027, 1, 1, 0, 0));
        let feb_leap = Period::month(2028, 2).unwrap();
        assert_eq!(feb_leap.to - feb_leap.from, TimeDelta::days(29));
        assert_eq!(Period::month(2026, 0), None);
        assert_eq!(Period::month(2026, 13), None);
        assert_eq!(month_name(&march).as_deref(), Some("March 2026"));
        let since = Period::since(at(2026, 3, 10, 12, 0), TimeDelta::days(1));
        assert_eq!(month_name(&since), None);
    }

    #[test]
    fn since_is_the_last_stretch_up_to_now_and_never_before_the_epoch() {
        let now = at(2026, 3, 10, 12, 30);
        let p = Period::since(now, TimeDelta::days(30));
        assert_eq!(p.from, at(2026, 2, 8, 12, 30));
        assert_eq!(p.to, now);
        let far = Period::since(now, TimeDelta::days(365 * 100_000));
        assert_eq!(far.from, DateTime::UNIX_EPOCH);
        assert!(
            p.describe()
                .starts_with("2026-02-08 12:30:00 UTC to 2026-03-10 12:30:00 UTC")
        );
    }

    #[test]
    fn the_month_parser_wants_yyyy_mm_and_says_why_not() {
        assert_eq!(parse_month("2026-03"), Ok(Period::month(2026, 3).unwrap()));
        assert_eq!(
            parse_month(" 2026-12 "),
            Ok(Period::month(2026, 12).unwrap())
        );
        for bad in [
            "2026-3",
            "26-03",
            "2026/03",
            "March",
            "",
            "2026-03-01",
            "+026-03",
            "2026-0x",
        ] {
            let err = parse_month(bad).unwrap_err();
            assert!(err.contains("use YYYY-MM, e.g. 2026-03"), "{bad}: {err}");
        }
        for bad in ["2026-00", "2026-13"] {
            let err = parse_month(bad).unwrap_err();
            assert!(err.contains("the month must be 01 to 12"), "{bad}: {err}");
        }
        assert!(parse_month("x\u{1b}[2J").unwrap_err().contains("\\u{1b}"));
    }

    #[test]
    fn incidents_are_clipped_to_the_period_and_open_ones_to_now() {
        let march = Period::month(2026, 3).unwrap();
        let now = at(2026, 12, 3, 10, 0);
        // Feb 28 23:30 to Mar 1 00:45: 45 minutes inside March.
        let across = clipped_seconds(
            at(2026, 2, 28, 23, 30),
            Some(at(2026, 3, 1, 0, 45)),
            &march,
            now,
        );
        assert_eq!(across, 45 * 60);
        // Mar 31 23:00 to Apr 1 02:00: one hour inside.
        let out = clipped_seconds(
            at(2026, 3, 31, 23, 0),
            Some(at(2026, 4, 1, 2, 0)),
            &march,
            now,
        );
        assert_eq!(out, 3600);
        // Wholly inside; wholly outside.
        let inside = clipped_seconds(
            at(2026, 3, 5, 10, 0),
            Some(at(2026, 3, 5, 10, 20)),
            &march,
            now,
        );
        assert_eq!(inside, 20 * 60);
        assert_eq!(
            clipped_seconds(
                at(2026, 2, 1, 0, 0),
                Some(at(2026, 2, 2, 0, 0)),
                &march,
                now
            ),
            0
        );
        // Open: until the end of the period when now is later, until now when it is inside.
        assert_eq!(
            clipped_seconds(at(2026, 3, 31, 0, 0), None, &march, now),
            86_400
        );
        let mid = at(2026, 3, 31, 6, 0);
        assert_eq!(
            clipped_seconds(at(2026, 3, 31, 0, 0), None, &march, mid),
            6 * 3600
        );
        // Open, begun after now (a skewed clock): nothing, never negative.
        assert_eq!(clipped_seconds(at(2026, 3, 31, 7, 0), None, &march, mid), 0);
    }

    #[test]
    fn durations_show_two_units_at_most() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(9), "9s");
        assert_eq!(format_duration(45 * 60), "45m 00s");
        assert_eq!(format_duration(65 * 60 + 59), "1h 05m");
        assert_eq!(format_duration(2 * 86_400 + 3 * 3600 + 59), "2d 03h");
        assert_eq!(format_duration(-5), "0s");
    }

    #[test]
    fn uptime_is_cut_not_rounded_up_to_100() {
        assert_eq!(format_uptime(None), "-");
        assert_eq!(format_uptime(Some(100.0)), "100%");
        assert_eq!(format_uptime(Some(99.9999)), "99.999%");
        assert_eq!(format_uptime(Some(99.9)), "99.900%");
        assert_eq!(format_uptime(Some(97.5)), "97.500%");
        assert_eq!(format_uptime(Some(0.0)), "0.000%");
    }
}
