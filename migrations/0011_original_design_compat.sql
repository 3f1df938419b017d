-- 0011 original design compatibility
--
-- What was written against the original design (dashboards, exports, runbooks, cron entries)
-- keeps working (issue 14):
--   * service_health_dashboard has the original view's 10 columns first, in their order
--       service_type, display_name, category, port, is_healthy, last_health_check,
--       response_time_ms, consecutive_failures, uptime_percentage, active_users
--     so a `SELECT *` read by position, or a fixed-column export, gets what it got before;
--     our columns (is_available, status, ...) follow. The types that changed are listed in the
--     README ("Differences from the original design").
--   * cleanup_old_usage_analytics() and cleanup_validation_cache() exist again, under the
--     names runbooks call, as thin functions doing what the daemon's jobs do (drop whole past
--     partitions; delete expired cache rows in batches), returning what they did, and
--     recording a maintenance_job_runs row like a `jobs run`.
-- No BEGIN/COMMIT (defect 5).

-- ---------------------------------------------------------------------------
-- The view is recreated (CREATE OR REPLACE VIEW cannot move columns); its grants are kept.
DO $$
DECLARE
    v_acl   aclitem[];
    v_owner oid;
    g       record;
BEGIN
    SELECT c.relacl, c.relowner INTO v_acl, v_owner
      FROM pg_class c WHERE c.oid = 'service_health_dashboard'::regclass;

    DROP VIEW service_health_dashboard;

    -- status and active_users as in 0004. Not security_invoker on purpose: active_users counts
    -- every user's active instances per service (as the view's owner, whom row-level security
    -- does not restrict), so any role granted SELECT on the view sees those per-service counts,
    -- never a user's rows (README, "Row-level security").
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
               WHEN shs.last_health_check IS NULL THEN 'unknown'
               WHEN shs.last_health_check < now() - greatest(
                        3 * coalesce(shs.check_interval_ms, 30000) * interval '1 millisecond',
                        interval '1 minute') THEN 'stale'
               WHEN shs.is_healthy IS NULL THEN 'unknown'
               WHEN shs.is_healthy THEN 'up'
               ELSE 'down'
           END AS status,
           shs.consecutive_successes,
           shs.error_kind,
           shs.error_message,
           shs.last_success_at,
           shs.state_changed_at
      FROM service_registry sr
      LEFT JOIN service_health_status shs ON shs.service_type = sr.service_type
      LEFT JOIN (SELECT service_type, count(*) AS active_users
                   FROM user_service_instances
                  WHERE is_active
                  GROUP BY service_type) au ON au.service_type = sr.service_type
     ORDER BY sr.category, sr.display_name, sr.service_type;

    FOR g IN SELECT * FROM aclexplode(v_acl) a WHERE a.grantee <> v_owner LOOP
        EXECUTE format('GRANT %s ON service_health_dashboard TO %s%s', g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- The original functions, if a database still has them, returned void, and the analytics one
-- could never succeed (defect 2). With them next to the new ones a call without arguments
-- would be ambiguous, so they go, saying so.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[to_regprocedure('cleanup_old_usage_analytics()'),
                             to_regprocedure('cleanup_validation_cache()')] LOOP
        IF f IS NOT NULL THEN
            RAISE NOTICE 'dropping the original design''s %; the function of that name is now mcp-healthd''s', f;
            EXECUTE format('DROP FUNCTION %s', f);
        END IF;
    END LOOP;
END
$$;

-- cleanup_old_usage_analytics([retain]): what the analytics_retention job does. Drops every
-- monthly partition of service_usage_analytics wholly older than now() - retain (the daemon's
-- default, 180 days, where the original deleted rows older than 6 months), then deletes rows
-- older than that from the default partition in batches of 10,000. Returns the rows removed and
-- the batches (partitions dropped + delete batches), and records a maintenance_job_runs row
-- (job analytics_retention, trigger manual, holder sql:<session user>:<backend pid>).
-- Everything runs in the caller's transaction: a failed call rolls back and records nothing.
-- While the daemon runs the same job (its advisory lock, see src/jobs/mod.rs lock_key) the call
-- does nothing and records a skipped run. SECURITY DEFINER (owner's rights), EXECUTE revoked from
-- PUBLIC: GRANT EXECUTE to the role a runbook or cron entry uses.
CREATE FUNCTION cleanup_old_usage_analytics(p_retain interval DEFAULT interval '180 days',
                                            OUT rows_affected bigint, OUT batches integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_holder  text := format('sql:%s:%s', session_user, pg_backend_pid());
    v_cutoff  timestamptz;
    v_part    regclass;
    v_rows    bigint;
BEGIN
    rows_affected := 0;
    batches := 0;
    IF p_retain IS NULL OR p_retain < interval '1 day' THEN
        RAISE EXCEPTION 'cleanup_old_usage_analytics: retain must be at least 1 day, not %', p_retain
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- JobName::AnalyticsRetention.lock_key(): 0x6d63_705f_6865_0000 + 1
    IF NOT pg_try_advisory_xact_lock(x'6d63705f68650001'::bigint) THEN
        INSERT INTO maintenance_job_runs (job, trigger, status, started_at, finished_at, error, holder)
        VALUES ('analytics_retention', 'manual', 'skipped', v_started, clock_timestamp(),
                'skipped: the previous run is still in progress', v_holder);
        RETURN;
    END IF;
    v_cutoff := now() - p_retain;
    FOR v_part IN
        SELECT c.oid::regclass
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                         $re$FROM \('([^']*)'\) TO \('([^']*)'\)$re$) AS m
         WHERE i.inhparent = 'service_usage_analytics'::regclass
           AND m IS NOT NULL
           AND m[2]::timestamptz <= v_cutoff
         ORDER BY m[1]::timestamptz
    LOOP
        rows_affected := rows_affected + usage_analytics_drop_partition(v_part);
        batches := batches + 1;
    END LOOP;
    LOOP
        v_rows := usage_analytics_delete_default_before(v_cutoff, 10000);
        EXIT WHEN v_rows = 0;
        rows_affected := rows_affected + v_rows;
        batches := batches + 1;
    END LOOP;
    INSERT INTO maintenance_job_runs (job, trigger, status, started_at, finished_at,
                                      rows_affected, batches, holder)
    VALUES ('analytics_retention', 'manual', 'succeeded', v_started, clock_timestamp(),
            rows_affected, batches, v_holder);
END
$$;

-- cleanup_validation_cache([batch_size]): what the validation_cache_cleanup job does. Deletes
-- api_key_validation_cache rows whose expires_at has passed, batch_size (default 10,000) per
-- statement, skipping rows locked by a writer; returns the rows deleted and the batches, and
-- records a maintenance_job_runs row (job validation_cache_cleanup), as above.
CREATE FUNCTION cleanup_validation_cache(p_batch_size integer DEFAULT 10000,
                                         OUT rows_affected bigint, OUT batches integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_holder  text := format('sql:%s:%s', session_user, pg_backend_pid());
    v_rows    bigint;
BEGIN
    rows_affected := 0;
    batches := 0;
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'cleanup_validation_cache: batch_size must be at least 1, not %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- JobName::ValidationCacheCleanup.lock_key(): 0x6d63_705f_6865_0000 + 2
    IF NOT pg_try_advisory_xact_lock(x'6d63705f68650002'::bigint) THEN
        INSERT INTO maintenance_job_runs (job, trigger, status, started_at, finished_at, error, holder)
        VALUES ('validation_cache_cleanup', 'manual', 'skipped', v_started, clock_timestamp(),
                'skipped: the previous run is still in progress', v_holder);
        RETURN;
    END IF;
    LOOP
        WITH gone AS (
            DELETE FROM api_key_validation_cache
             WHERE ctid = ANY (ARRAY(SELECT ctid FROM api_key_validation_cache
                                      WHERE expires_at < now()
                                      LIMIT p_batch_size FOR UPDATE SKIP LOCKED))
            RETURNING 1)
        SELECT count(*) INTO v_rows FROM gone;
        EXIT WHEN v_rows = 0;
        rows_affected := rows_affected + v_rows;
        batches := batches + 1;
    END LOOP;
    INSERT INTO maintenance_job_runs (job, trigger, status, started_at, finished_at,
                                      rows_affected, batches, holder)
    VALUES ('validation_cache_cleanup', 'manual', 'succeeded', v_started, clock_timestamp(),
            rows_affected, batches, v_holder);
END
$$;

REVOKE ALL ON FUNCTION cleanup_old_usage_analytics(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION cleanup_validation_cache(integer) FROM PUBLIC;
