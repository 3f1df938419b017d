-- 0004 dashboard views
--
-- The spec's two views, fixed:
--   * user_services_summary built instance_url on the placeholder domain
--     'https://yourdomain.com'; the base URL now comes from platform_settings
--     (key instance_base_url) and the URL is NULL while it is not set;
--   * service_health_dashboard grouped by every column to count active users,
--     could not tell a stale status (the daemon stopped) from a current one,
--     and showed never-checked services as healthy (spec's DEFAULT true).
--     It now has a status column: unavailable / unknown / stale / up / down.
-- Timestamps are timestamptz (defect 6). No BEGIN/COMMIT (defect 5).

-- Platform-wide settings, one row per key. Documented keys:
--   instance_base_url  public base URL of the instances, e.g.
--                      'https://mcp.example.net' (a trailing '/' is trimmed).
CREATE TABLE platform_settings (
    key        text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER platform_settings_set_updated_at
    BEFORE UPDATE ON platform_settings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- security_invoker: the view is evaluated with the caller's rights, so the
-- row-level security of user_service_instances (0002) applies to a non-owner
-- caller exactly as on the table; without it a view bypasses RLS, because it
-- reads the table as the view's owner.
CREATE VIEW user_services_summary WITH (security_invoker = true) AS
SELECT usi.user_id,
       usi.service_type,
       sr.display_name,
       sr.category,
       usi.instance_id,
       usi.is_active,
       usi.created_at,
       usi.last_used_at,
       usi.usage_count,
       shs.is_healthy AS service_healthy,
       -- NULL (not a placeholder domain) until instance_base_url is set
       nullif(rtrim(btrim(ps.value), '/'), '')
           || '/' || usi.instance_id || '/' || usi.service_type || '/' AS instance_url
  FROM user_service_instances usi
  JOIN service_registry sr ON sr.service_type = usi.service_type
  LEFT JOIN service_health_status shs ON shs.service_type = usi.service_type
  LEFT JOIN platform_settings ps ON ps.key = 'instance_base_url';

-- status:
--   unavailable  is_available = false (not probed);
--   unknown      never checked, or checked but no verdict yet (is_healthy NULL);
--   stale        last check older than 3 probe intervals of the daemon that
--                wrote it (30 s if it did not say), and at least 1 minute:
--                the daemon has stopped, so is_healthy cannot be trusted;
--   up / down    is_healthy.
-- active_users is pre-aggregated (an index-only scan of
-- user_service_instances_active_by_service) and joined, instead of grouping
-- the whole row by every column as the spec did. Not security_invoker on
-- purpose: the count is over all users (as the view's owner, whom RLS does not
-- restrict) and reveals no user's rows.
CREATE VIEW service_health_dashboard AS
SELECT sr.service_type,
       sr.display_name,
       sr.category,
       sr.port,
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
       shs.is_healthy,
       shs.last_health_check,
       shs.response_time_ms,
       shs.consecutive_failures,
       shs.consecutive_successes,
       shs.uptime_percentage,
       shs.error_kind,
       shs.error_message,
       shs.last_success_at,
       shs.state_changed_at,
       coalesce(au.active_users, 0) AS active_users
  FROM service_registry sr
  LEFT JOIN service_health_status shs ON shs.service_type = sr.service_type
  LEFT JOIN (SELECT service_type, count(*) AS active_users
               FROM user_service_instances
              WHERE is_active
              GROUP BY service_type) au ON au.service_type = sr.service_type
 ORDER BY sr.category, sr.display_name, sr.service_type;
