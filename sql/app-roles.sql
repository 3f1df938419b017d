-- app-roles.sql: the platform's two application roles on the mcp-healthd schema, each able to do
-- its job and nothing else (issue 14). The daemon's own role is sql/least-privilege-role.sql.
--
--   gateway    the API gateway that serves users' requests: routes by service_registry, reads
--              and counts the requesting user's own instance, records usage analytics and API-key
--              validation results for any user.
--   dashboard  read-only: the service_health_dashboard view and the health tables behind it; no
--              user's data at all.
--
-- Who runs it: a superuser, or the schema owner with CREATEROLE, connected to the daemon's
-- database, after `mcp-healthd migrate` (and again after each upgrade: it converges):
--
--   psql -v ON_ERROR_STOP=1 -d mcp_health -f sql/app-roles.sql
--   psql -d mcp_health -v gateway_role=api_gateway -v dashboard_role=grafana -f sql/app-roles.sql
--
-- psql variables: gateway_role (default mcp_gateway), dashboard_role (default mcp_dashboard).
-- Both are LOGIN roles without a password: set one with `\password ROLE` in psql (a SCRAM verifier
-- is sent, never the clear text), or use another authentication method in pg_hba.conf.
--
-- Row-level security and app.current_user_id
-- ------------------------------------------
-- user_service_instances, service_usage_analytics and api_key_validation_cache have a policy
-- user_isolation: a non-owner role sees and writes only the rows whose user_id equals the setting
-- app.current_user_id, and no row at all while it is unset. The gateway sets it per request, inside
-- the request's transaction, so it cannot leak to the next request served by the same pooled
-- connection:
--
--   BEGIN;
--   SET LOCAL app.current_user_id = '6f1c...';             -- the authenticated user
--   SELECT service_type, encrypted_api_key FROM user_service_instances WHERE instance_id = $1;
--   UPDATE user_service_instances SET usage_count = usage_count + 1, last_used_at = now()
--    WHERE instance_id = $1;
--   COMMIT;
--
-- (or SELECT set_config('app.current_user_id', $1, true), which takes a bind parameter). A plain
-- SET would stay on the connection after COMMIT. What this protects against: an application bug
-- (a missing WHERE user_id = ..., an instance id taken from another user's URL) returns nothing
-- instead of another user's instance. What it does not protect against: a hostile session of the
-- role, which may set app.current_user_id to any user's id. RLS is ENABLEd, not FORCEd: the owner
-- of the tables (the role that ran `migrate`) is not subject to it.
--
-- Analytics and cache rows are written for any user, without the setting (a background writer
-- batches many users' rows into one INSERT): the policies below say so explicitly, for this role
-- only. The gateway cannot read analytics back, and cannot delete anything.
--
-- What each role may do (a test, tests/it/app_roles.rs, tries every line, allowed and forbidden):
--   gateway   SELECT service_registry (all columns: auth_type/auth_config tell it how to
--             authenticate to the service), service_health_status;
--             SELECT + UPDATE (last_used_at, usage_count) user_service_instances, the current
--             user's rows only (user_isolation);
--             INSERT service_usage_analytics, any user (policy app_gateway_insert);
--             SELECT/INSERT/UPDATE api_key_validation_cache, any user (policies app_gateway_*),
--             so INSERT ... ON CONFLICT DO UPDATE works; no DELETE (expiry is the daemon's job).
--   dashboard SELECT service_health_dashboard, service_health_status, service_health_rollups,
--             maintenance_job_runs, daemon_heartbeats, and service_registry without auth_config.
--   Neither:  users, legacy tables, user_services_summary (per user), writes to the registry or the
--             health tables, DELETE/TRUNCATE anywhere, the maintenance functions, CREATE.
-- service_health_dashboard runs with its owner's rights: its active_users column counts every
-- user's active instances per service, which any role granted SELECT on the view (the dashboard
-- role, the daemon's role) sees. The count names no user; grant the view only where per-service
-- usage numbers may be seen.

\set ON_ERROR_STOP on
\if :{?gateway_role}
\else
    \set gateway_role mcp_gateway
\endif
\if :{?dashboard_role}
\else
    \set dashboard_role mcp_dashboard
\endif

BEGIN;

-- DO blocks cannot see psql variables: hand the names over in settings.
SELECT set_config('mcp_healthd.gateway_role', :'gateway_role', true) IS NOT NULL AS ok,
       set_config('mcp_healthd.dashboard_role', :'dashboard_role', true) IS NOT NULL AS ok2 \gset

DO $$
DECLARE
    v_owner name;
BEGIN
    IF to_regclass('public.service_health_status') IS NULL
       OR to_regclass('public.maintenance_job_runs') IS NULL THEN
        RAISE EXCEPTION 'the mcp-healthd schema is not in database %: run `mcp-healthd migrate` first',
            current_database();
    END IF;
    SELECT c.relowner::regrole::name INTO v_owner
      FROM pg_class c WHERE c.oid = 'public.service_registry'::regclass;
    IF v_owner IN (current_setting('mcp_healthd.gateway_role'), current_setting('mcp_healthd.dashboard_role')) THEN
        RAISE EXCEPTION 'an application role must not be the schema owner (%)', v_owner;
    END IF;
    IF current_setting('mcp_healthd.gateway_role') = current_setting('mcp_healthd.dashboard_role') THEN
        RAISE EXCEPTION 'gateway_role and dashboard_role must differ';
    END IF;
END
$$;

-- ---- the roles: created if missing, then stripped of everything in this database ------------------
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'gateway_role') AS create_gateway,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'dashboard_role') AS create_dashboard \gset
\if :create_gateway
    CREATE ROLE :"gateway_role" LOGIN NOINHERIT;
\else
    ALTER ROLE :"gateway_role" LOGIN NOINHERIT;
\endif
\if :create_dashboard
    CREATE ROLE :"dashboard_role" LOGIN NOINHERIT;
\else
    ALTER ROLE :"dashboard_role" LOGIN NOINHERIT;
\endif
COMMENT ON ROLE :"gateway_role" IS 'mcp-healthd schema: API gateway (sql/app-roles.sql)';
COMMENT ON ROLE :"dashboard_role" IS 'mcp-healthd schema: read-only dashboard (sql/app-roles.sql)';

REVOKE ALL ON ALL TABLES    IN SCHEMA public FROM :"gateway_role", :"dashboard_role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"gateway_role", :"dashboard_role";
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM :"gateway_role", :"dashboard_role";
SET LOCAL client_min_messages = warning;
DROP POLICY IF EXISTS app_gateway_insert ON service_usage_analytics;
DROP POLICY IF EXISTS app_gateway_select ON api_key_validation_cache;
DROP POLICY IF EXISTS app_gateway_insert ON api_key_validation_cache;
DROP POLICY IF EXISTS app_gateway_update ON api_key_validation_cache;
SET LOCAL client_min_messages = notice;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"gateway_role", :"dashboard_role";
GRANT USAGE ON SCHEMA public TO :"gateway_role", :"dashboard_role";

-- ---- gateway -----------------------------------------------------------------------------------
GRANT SELECT ON service_registry, service_health_status TO :"gateway_role";
-- The current user's instance (user_isolation applies: the role is not the owner).
GRANT SELECT, UPDATE (last_used_at, usage_count) ON user_service_instances TO :"gateway_role";
-- Analytics of any user, write only. id and created_date are filled in by the table.
GRANT INSERT (user_id, service_type, instance_id, endpoint, method, status_code, response_time_ms,
              error_message, "timestamp")
    ON service_usage_analytics TO :"gateway_role";
CREATE POLICY app_gateway_insert ON service_usage_analytics
    FOR INSERT TO :"gateway_role" WITH CHECK (true);
-- The validation cache of any user: read, insert, refresh (upsert); never delete.
GRANT SELECT, INSERT, UPDATE (is_valid, validated_at, expires_at, validation_response)
    ON api_key_validation_cache TO :"gateway_role";
CREATE POLICY app_gateway_select ON api_key_validation_cache
    FOR SELECT TO :"gateway_role" USING (true);
CREATE POLICY app_gateway_insert ON api_key_validation_cache
    FOR INSERT TO :"gateway_role" WITH CHECK (true);
CREATE POLICY app_gateway_update ON api_key_validation_cache
    FOR UPDATE TO :"gateway_role" USING (true) WITH CHECK (true);

-- ---- dashboard -----------------------------------------------------------------------------------
GRANT SELECT ON service_health_dashboard, service_health_status, service_health_rollups,
                maintenance_job_runs, maintenance_windows, service_incidents,
                service_health_daily, service_uptime_report TO :"dashboard_role";
GRANT SELECT (service_type, name, display_name, description, icon_url, category, port, base_url,
              health_check_endpoint, auth_type, service_config, is_available, created_at, updated_at)
    ON service_registry TO :"dashboard_role";
DO $$
BEGIN
    IF to_regclass('public.daemon_heartbeats') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON public.daemon_heartbeats TO %I',
                       current_setting('mcp_healthd.dashboard_role'));
    END IF;
END
$$;

-- ---- check what the roles can and cannot do -------------------------------------------------------
DO $$
DECLARE
    g     text := current_setting('mcp_healthd.gateway_role');
    d     text := current_setting('mcp_healthd.dashboard_role');
    r     text;
    ro    record;
    v_bad text[] := '{}';
    t     text;
BEGIN
    FOREACH r IN ARRAY ARRAY[g, d] LOOP
        SELECT * INTO ro FROM pg_roles WHERE rolname = r;
        IF ro.rolsuper OR ro.rolbypassrls OR ro.rolcreaterole OR ro.rolcreatedb OR ro.rolreplication THEN
            v_bad := array_append(v_bad, r || ' has a superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION attribute');
        END IF;
        IF EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = ro.oid) THEN
            v_bad := array_append(v_bad, r || ' is a member of another role');
        END IF;
        IF has_column_privilege(r, 'public.users', 'password_hash', 'SELECT') THEN
            v_bad := array_append(v_bad, r || ' can read users.password_hash');
        END IF;
        FOREACH t IN ARRAY ARRAY['service_registry', 'service_health_status', 'user_service_instances',
                                 'service_usage_analytics', 'api_key_validation_cache'] LOOP
            IF has_table_privilege(r, 'public.' || t, 'DELETE, TRUNCATE, REFERENCES, TRIGGER') THEN
                v_bad := array_append(v_bad, format('%s can delete from or alter %s', r, t));
            END IF;
        END LOOP;
        IF has_function_privilege(r, 'public.usage_analytics_drop_partition(regclass)', 'EXECUTE') THEN
            v_bad := array_append(v_bad, r || ' can drop analytics partitions');
        END IF;
        IF has_schema_privilege(r, 'public', 'CREATE') THEN
            v_bad := array_append(v_bad, r || ' can CREATE in schema public');
        END IF;
    END LOOP;
    IF has_table_privilege(g, 'public.service_usage_analytics', 'SELECT') THEN
        v_bad := array_append(v_bad, 'the gateway can read analytics');
    END IF;
    IF has_column_privilege(d, 'public.service_registry', 'auth_config', 'SELECT') THEN
        v_bad := array_append(v_bad, 'the dashboard can read service_registry.auth_config');
    END IF;
    FOREACH t IN ARRAY ARRAY['user_service_instances', 'service_usage_analytics',
                             'api_key_validation_cache', 'user_services_summary'] LOOP
        IF has_table_privilege(d, 'public.' || t, 'SELECT')
           OR EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = ('public.' || t)::regclass AND a.attnum > 0
                         AND has_column_privilege(d, a.attrelid, a.attnum, 'SELECT')) THEN
            v_bad := array_append(v_bad, 'the dashboard can read ' || t);
        END IF;
    END LOOP;
    IF cardinality(v_bad) > 0 THEN
        RAISE EXCEPTION 'application roles are not least-privilege: %', array_to_string(v_bad, '; ');
    END IF;
    RAISE NOTICE 'roles % (gateway) and % (dashboard) are set up in database %', g, d, current_database();
END
$$;

COMMIT;
