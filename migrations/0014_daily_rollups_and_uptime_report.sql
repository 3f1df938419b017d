-- 0014 daily rollups and the uptime report (issue 13)
--
--   * service_health_daily: one row per service and UTC day, the sums of that day's hourly
--     rollups (recomputed from them by the housekeeping job, so it is exact for every day whose
--     hours are still kept), kept uptime.retain_daily (400 days) for reports beyond the hourly
--     rollups' uptime.retain;
--   * service_uptime_report: uptime per service over the last 24h, 7d, 30d and 90d, for
--     dashboards. Like uptime_percentage, it leaves out maintenance and inconclusive checks.
--     24h and 7d come from the hourly rollups (whole hours, the current one included); 30d and
--     90d from the daily rollups (whole UTC days, today included as of the last housekeeping).
--     `window` is a reserved word: quote it ("window").
-- No BEGIN/COMMIT (defect 5).

CREATE TABLE service_health_daily (
    service_type        varchar(50) NOT NULL
                        REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    day                 date    NOT NULL,   -- the UTC day
    checks              integer NOT NULL DEFAULT 0 CHECK (checks >= 0),
    failures            integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    maintenance_checks  integer NOT NULL DEFAULT 0 CHECK (maintenance_checks >= 0),
    inconclusive_checks integer NOT NULL DEFAULT 0 CHECK (inconclusive_checks >= 0),
    latency_sum_ms      bigint  NOT NULL DEFAULT 0 CHECK (latency_sum_ms >= 0),
    latency_max_ms      integer NOT NULL DEFAULT 0 CHECK (latency_max_ms >= 0),
    PRIMARY KEY (service_type, day)
);

CREATE INDEX service_health_daily_day ON service_health_daily (day);

CREATE VIEW service_uptime_report AS
SELECT sr.service_type,
       w.name AS "window",
       coalesce(t.checks, 0) AS checks,
       coalesce(t.failures, 0) AS failures,
       (100.0 * (t.counted - t.failures) / nullif(t.counted, 0))::float8 AS uptime
  FROM service_registry sr
 CROSS JOIN (VALUES (1, '24h', interval '24 hours'), (2, '7d', interval '7 days'),
                    (3, '30d', interval '30 days'), (4, '90d', interval '90 days'))
            AS w(position, name, span)
  LEFT JOIN LATERAL (
        SELECT sum(u.checks)::bigint AS checks, sum(u.failures)::bigint AS failures,
               sum(u.counted)::bigint AS counted
          FROM (SELECT r.checks, r.failures,
                       r.checks - r.maintenance_checks - r.inconclusive_checks AS counted
                  FROM service_health_rollups r
                 WHERE w.span <= interval '7 days'
                   AND r.service_type = sr.service_type
                   AND r.hour > date_trunc('hour', now()) - w.span
                UNION ALL
                SELECT d.checks, d.failures,
                       d.checks - d.maintenance_checks - d.inconclusive_checks
                  FROM service_health_daily d
                 WHERE w.span > interval '7 days'
                   AND d.service_type = sr.service_type
                   AND d.day > (now() AT TIME ZONE 'UTC')::date - w.span) u
       ) t ON true
 WHERE sr.is_available
 ORDER BY sr.service_type, w.position;
