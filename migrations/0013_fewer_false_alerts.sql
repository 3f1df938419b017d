-- 0013 fewer false alerts (issue 12)
--
--   * service_health_status remembers why a healthy service is degraded (slow, or a certificate
--     inside probe.tls_expiry_warning), the certificate's not_after for https targets, whether
--     the service is flapping, whether the last alert said down (held-back alerts make that
--     differ from is_healthy; a restart must know which), and the outcomes of its last checks (probe.failure_window) so the
--     windowed rule survives a restart;
--   * service_health_rollups count, apart from the checks, those left out of uptime: checks
--     inside a maintenance window, and checks made during a monitor-side outage (inconclusive).
--     `failures` counts only the failures that count against uptime, so
--       uptime = (checks - maintenance_checks - inconclusive_checks - failures)
--              / (checks - maintenance_checks - inconclusive_checks);
--   * maintenance_windows: planned work, for one service or (service_type NULL) for all;
--   * service_incidents: one row per down period that was alerted (opened on service_down,
--     closed on service_up); at most one open row per service;
--   * service_health_dashboard: status adds `degraded` and `maintenance`, and the new columns
--     follow; the original design's 10 columns stay first (0011).
-- No BEGIN/COMMIT (defect 5).

ALTER TABLE service_health_status
    ADD COLUMN degraded_reason text,          -- NULL unless healthy and degraded
    ADD COLUMN tls_not_after   timestamptz,   -- the served certificate's expiry (https targets)
    ADD COLUMN flapping        boolean  NOT NULL DEFAULT false,
    ADD COLUMN alerted_down    boolean,       -- the last alert said down (NULL: written before 0013)
    ADD COLUMN recent_failures bigint   NOT NULL DEFAULT 0,  -- bit i: the i-th latest check failed
    ADD COLUMN recent_checks   smallint NOT NULL DEFAULT 0 CHECK (recent_checks BETWEEN 0 AND 64);

ALTER TABLE service_health_rollups
    ADD COLUMN maintenance_checks  integer NOT NULL DEFAULT 0 CHECK (maintenance_checks >= 0),
    ADD COLUMN inconclusive_checks integer NOT NULL DEFAULT 0 CHECK (inconclusive_checks >= 0);

CREATE TABLE maintenance_windows (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_type varchar(50)
                 REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- a window ended before it began (`maintenance end` of a future window) is empty
    CHECK (ends_at >= starts_at)
);
CREATE INDEX maintenance_windows_ends_at ON maintenance_windows (ends_at);

CREATE TABLE service_incidents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_type  varchar(50) NOT NULL
                  REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz CHECK (ended_at >= started_at),   -- NULL while open
    error_kind    text,
    error_message text,
    failed_checks integer NOT NULL DEFAULT 0 CHECK (failed_checks >= 0)
);
CREATE UNIQUE INDEX service_incidents_one_open ON service_incidents (service_type)
    WHERE ended_at IS NULL;
CREATE INDEX service_incidents_started_at ON service_incidents (started_at);

-- ---------------------------------------------------------------------------
-- The view is recreated (its column list changes); its grants are kept, as in 0011.
DO $$
DECLARE
    v_acl   aclitem[];
    v_owner oid;
    g       record;
BEGIN
    SELECT c.relacl, c.relowner INTO v_acl, v_owner
      FROM pg_class c WHERE c.oid = 'service_health_dashboard'::regclass;

    DROP VIEW service_health_dashboard;

    -- status:
    --   unavailable  is_available = false (not probed);
    --   maintenance  inside a maintenance window (checks go on, no service alert);
    --   unknown      never checked, or no verdict yet;
    --   stale        last check older than 3 intervals of the daemon that wrote it (>= 1 minute);
    --   degraded     healthy, but slow or with a certificate about to expire (counts as up);
    --   up / down    is_healthy.
    CREATE VIEW service_health_dashboard AS
    SELECT sr.service_type,
           sr.display_name,
           sr.category,
           sr.port,
           shs.is_healthy,
           shs.last_health_check,
           shs.response_time_ms,
           shs.consecutive_failures,
           shs.uptime_percentage,
           coalesce(au.active_users, 0) AS active_users,
           -- the original design's 10 columns end here
           sr.is_available,
           CASE
               WHEN NOT sr.is_available THEN 'unavailable'
               WHEN mw.in_maintenance THEN 'maintenance'
               WHEN shs.last_health_check IS NULL THEN 'unknown'
               WHEN shs.last_health_check < now() - greatest(
                        3 * coalesce(shs.check_interval_ms, 30000) * interval '1 millisecond',
                        interval '1 minute') THEN 'stale'
               WHEN shs.is_healthy IS NULL THEN 'unknown'
               WHEN shs.is_healthy AND shs.degraded_reason IS NOT NULL THEN 'degraded'
               WHEN shs.is_healthy THEN 'up'
               ELSE 'down'
           END AS status,
           shs.consecutive_successes,
           shs.error_kind,
           shs.error_message,
           shs.last_success_at,
           shs.state_changed_at,
           coalesce(shs.flapping, false) AS flapping,
           shs.degraded_reason,
           shs.tls_not_after,
           coalesce(mw.in_maintenance, false) AS in_maintenance
      FROM service_registry sr
      LEFT JOIN service_health_status shs ON shs.service_type = sr.service_type
      LEFT JOIN (SELECT service_type, count(*) AS active_users
                   FROM user_service_instances
                  WHERE is_active
                  GROUP BY service_type) au ON au.service_type = sr.service_type
      LEFT JOIN LATERAL (SELECT true AS in_maintenance
                           FROM maintenance_windows w
                          WHERE (w.service_type = sr.service_type OR w.service_type IS NULL)
                            AND w.starts_at <= now() AND now() < w.ends_at
                          LIMIT 1) mw ON true
     ORDER BY sr.category, sr.display_name, sr.service_type;

    FOR g IN SELECT * FROM aclexplode(v_acl) a WHERE a.grantee <> v_owner LOOP
        EXECUTE format('GRANT %s ON service_health_dashboard TO %s%s', g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;
