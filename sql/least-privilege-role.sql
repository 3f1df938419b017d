-- least-privilege-role.sql: a PostgreSQL role for the mcp-healthd daemon that can do its job
-- and nothing else.
--
-- Who runs it: a superuser, or the owner of the schema (the role that ran `mcp-healthd migrate`)
-- if it also has CREATEROLE (PostgreSQL 15: creating the role needs it), connected to the daemon's
-- database, AFTER `mcp-healthd migrate`:
--
--   psql -v ON_ERROR_STOP=1 -d mcp_health -f sql/least-privilege-role.sql
--   psql -v ON_ERROR_STOP=1 -d mcp_health -v role=mcp_healthd -f sql/least-privilege-role.sql
--
-- psql variables (-v NAME=VALUE):
--   role      the daemon's login role                default: mcp_healthd
--   password  set this password on the role          default: unset (the password, if any, is
--             left as it is). Prefer leaving it unset and running `\password mcp_healthd` in
--             psql: that sends a SCRAM verifier, while `-v password=...` puts the clear text in
--             the shell's history, `ps`, and the server log if log_statement = 'ddl' or 'all'.
-- The daemon then connects as this role (DATABASE_URL in /etc/mcp-healthd/env), with
-- database.auto_migrate = false: migrations stay with the owner (the role cannot CREATE, and sqlx's
-- migrator runs CREATE TABLE IF NOT EXISTS _sqlx_migrations even when nothing is pending).
-- To remove the role: DROP OWNED BY mcp_healthd; (in this database; also drops its policies)
-- then DROP ROLE mcp_healthd; (With peer authentication over
-- the local socket the OS user mcp-healthd needs a pg_ident.conf map to the role mcp_healthd.)
--
-- Re-runnable, and meant to be re-run after every upgrade (after `migrate`): it converges. It first
-- revokes everything the role holds in schema public and drops its policies, then grants exactly
-- the list below, all in one transaction. Tables that later migrations add (maintenance_job_runs,
-- maintenance_leases, daemon_heartbeats) are granted only once they exist; until then the script
-- says so in a NOTICE and goes on. No ALTER DEFAULT PRIVILEGES on purpose: a future table is not
-- readable by the daemon until this list names it (users' secrets might be in it).
--
-- What the role can do (and the daemon's code that needs it):
--   CONNECT; USAGE on schema public
--   SELECT        service_registry's columns the registry load and the status flush read
--                 (service_type, port, base_url, health_check_endpoint, service_config,
--                 is_available; not auth_config), platform_settings, the views
--                 service_health_dashboard (`status`) and user_services_summary (see its note),
--                 _sqlx_migrations (to check at start-up that the schema is current)
--   S/I/U         service_health_status (the writer's upsert)
--   S/I/U/D       service_health_rollups (upsert, housekeeping prune)
--   S/I/D         service_health_flushes (idempotent flush ids, housekeeping prune)
--   S/D           api_key_validation_cache, expired rows only (row-level security, below), and
--                 SELECT only on ctid and expires_at (never validation_response or the keys),
--                 plus UPDATE (validated_at) that only serves the cleanup's FOR UPDATE row lock:
--                 a restrictive policy makes every real UPDATE fail
--   S/I/U/D       maintenance_job_runs, daemon_heartbeats;  S/I/U maintenance_leases
--   EXECUTE       ensure_usage_analytics_partition(date), usage_analytics_drop_partition(regclass),
--                 usage_analytics_delete_default_before(timestamptz, integer): SECURITY DEFINER
--                 functions owned by the table owner, the only way it touches partitions
--   SELECT ("timestamp") on service_usage_analytics_default (partition_maintenance's scan for
--                 months missed while the daemon was stopped; no user data)
-- What it cannot do: read users (password_hash), user_service_instances (encrypted_api_key),
-- service_registry.auth_config, api_key_validation_cache's payload (validation_response, key_hash,
-- user_id), the legacy tables or any analytics row; write service_registry; create, alter or drop anything
-- outside the three functions; bypass row-level security. The last block checks this.

\set ON_ERROR_STOP on
\if :{?role}
\else
    \set role mcp_healthd
\endif
\if :{?password}
\else
    \set password ''
\endif

BEGIN;

-- The DO blocks below cannot see psql variables: hand the role name over in a setting.
SELECT set_config('mcp_healthd.lp_role', :'role', true) IS NOT NULL AS ok \gset

-- ---- preconditions ------------------------------------------------------------------------------
DO $$
DECLARE
    v_owner name;
BEGIN
    IF to_regclass('public.service_health_status') IS NULL
       OR to_regprocedure('public.ensure_usage_analytics_partition(date)') IS NULL THEN
        RAISE EXCEPTION 'the mcp-healthd schema is not in database %: run `mcp-healthd migrate` first',
            current_database();
    END IF;
    SELECT c.relowner::regrole::name INTO v_owner
      FROM pg_class c WHERE c.oid = 'public.service_usage_analytics'::regclass;
    IF NOT pg_has_role(current_user, v_owner, 'MEMBER')
       AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'run this as the schema owner (%) or a superuser, not as %', v_owner, current_user;
    END IF;
    IF current_setting('mcp_healthd.lp_role') = v_owner THEN
        RAISE EXCEPTION 'the daemon role must not be the schema owner (%)', v_owner;
    END IF;
END
$$;

-- ---- the role ---------------------------------------------------------------------------------------
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS create_role \gset
-- NOINHERIT: should someone grant it membership in a powerful role, it would not silently gain
-- that role's rights. The other attributes are the defaults (NOSUPERUSER NOCREATEDB NOCREATEROLE
-- NOREPLICATION NOBYPASSRLS); only a superuser may even restate the last two, so for an existing
-- role they are not set here but checked at the end.
\if :create_role
    CREATE ROLE :"role" LOGIN NOINHERIT;
\else
    ALTER ROLE :"role" LOGIN NOINHERIT;
\endif
SELECT :'password' <> '' AS set_password \gset
\if :set_password
    ALTER ROLE :"role" PASSWORD :'password';
\endif
COMMENT ON ROLE :"role" IS 'mcp-healthd daemon (sql/least-privilege-role.sql): least privilege';

-- ---- start from nothing -----------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES    IN SCHEMA public FROM :"role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"role";
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM :"role";
SET LOCAL client_min_messages = warning;  -- no "does not exist, skipping" on a first run
DROP POLICY IF EXISTS healthd_cleanup_select       ON api_key_validation_cache;
DROP POLICY IF EXISTS healthd_cleanup_lock         ON api_key_validation_cache;
DROP POLICY IF EXISTS healthd_cleanup_delete       ON api_key_validation_cache;
DROP POLICY IF EXISTS healthd_cleanup_expired_only ON api_key_validation_cache;
SET LOCAL client_min_messages = notice;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";

-- ---- registry and settings: read only ----------------------------------------------------------------
-- Column-level: what registry::load_available and the status flush (a join on service_type)
-- read, and nothing else; auth_config (how to authenticate to a service) is not the prober's.
GRANT SELECT (service_type, port, base_url, health_check_endpoint, service_config, is_available)
    ON service_registry TO :"role";
GRANT SELECT ON platform_settings TO :"role";
-- service_health_dashboard runs with its owner's rights (not security_invoker): SELECT on it is
-- all the role needs, and its active_users count reveals no user's rows.
GRANT SELECT ON service_health_dashboard TO :"role";
-- user_services_summary is security_invoker: it reads user_service_instances with the CALLER's
-- rights, so as granted here it fails with "permission denied for table user_service_instances".
-- That is deliberate: the daemon never reads it, and making it work would mean SELECT on
-- user_service_instances' columns, whose user_isolation policy keys on app.current_user_id, a
-- setting any session may set: the role could then list any user's instances.
GRANT SELECT ON user_services_summary TO :"role";

-- ---- what the prober writes -----------------------------------------------------------------------------
GRANT SELECT, INSERT, UPDATE ON service_health_status TO :"role";
GRANT SELECT, INSERT, UPDATE, DELETE ON service_health_rollups TO :"role";
GRANT SELECT, INSERT, DELETE ON service_health_flushes TO :"role";
-- incidents: opened on service_down, closed on service_up; maintenance windows are only read
GRANT SELECT, INSERT, UPDATE, DELETE ON service_incidents TO :"role";
SELECT format('GRANT USAGE ON SEQUENCE %s TO %I', pg_get_serial_sequence('service_incidents', 'id'),
              :'role') \gexec
GRANT SELECT, DELETE ON maintenance_windows TO :"role";
-- housekeeping: daily rollups made from the hourly ones, pruned after uptime.retain_daily
GRANT SELECT, INSERT, UPDATE, DELETE ON service_health_daily TO :"role";
GRANT SELECT ON service_uptime_report TO :"role";

-- ---- validation_cache_cleanup ---------------------------------------------------------------------------
-- The table has row-level security (ENABLE, policy user_isolation for everyone: rows of the user
-- named in app.current_user_id). Rather than BYPASSRLS (every RLS table, every row), the role gets
-- policies of its own that show it expired rows only, and a RESTRICTIVE one, ANDed with all the
-- others, so that even with app.current_user_id set it sees no unexpired row and can write none.
-- The job's statement is
--   DELETE ... WHERE ctid = ANY (ARRAY(SELECT ctid ... WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
-- It reads ctid and expires_at only, so SELECT is granted on those two columns (a system column
-- takes a column grant like any other): the role deletes rows without being able to read their
-- payload. FOR UPDATE needs UPDATE on some column plus an UPDATE policy;
-- UPDATE (validated_at) is granted only for that row lock: the restrictive policy's
-- WITH CHECK (false) makes every actual UPDATE (or INSERT) of the role fail. If the job drops
-- FOR UPDATE SKIP LOCKED (the DELETE locks the rows itself), drop that grant and the lock policy.
GRANT SELECT (ctid, expires_at), DELETE, UPDATE (validated_at) ON api_key_validation_cache TO :"role";
CREATE POLICY healthd_cleanup_select ON api_key_validation_cache
    FOR SELECT TO :"role" USING (expires_at < now());
CREATE POLICY healthd_cleanup_lock ON api_key_validation_cache
    FOR UPDATE TO :"role" USING (expires_at < now()) WITH CHECK (false);
CREATE POLICY healthd_cleanup_delete ON api_key_validation_cache
    FOR DELETE TO :"role" USING (expires_at < now());
CREATE POLICY healthd_cleanup_expired_only ON api_key_validation_cache
    AS RESTRICTIVE FOR ALL TO :"role" USING (expires_at < now()) WITH CHECK (false);

-- ---- analytics partitions -------------------------------------------------------------------------------
-- Creating, attaching and dropping partitions needs ownership of service_usage_analytics; so does
-- LOCK ... ACCESS EXCLUSIVE without UPDATE/DELETE rights. Membership in the owner role would hand
-- the daemon the whole table (DROP, TRUNCATE, every user's rows, RLS bypassed as owner) and more.
-- Instead the three operations are SECURITY DEFINER functions owned by the table's owner, with
-- search_path pinned (pg_temp last, so no object of the caller's can stand in for the owner's),
-- EXECUTE revoked from PUBLIC and granted to the role alone. They refuse anything that is not a
-- month wholly in the past, so the role can never drop or delete current analytics.
--
-- The functions are defined by migration 0007 (usage_analytics_drop_partition,
-- usage_analytics_delete_default_before) and 0002/0007 (ensure_usage_analytics_partition, made
-- SECURITY DEFINER in 0007). This block makes sure they are owned by the table's owner and that
-- only the daemon's role may execute them.

DO $$
DECLARE
    v_role  text := current_setting('mcp_healthd.lp_role');
    v_owner name;
    v_fn    regprocedure;
BEGIN
    SELECT c.relowner::regrole::name INTO v_owner
      FROM pg_class c WHERE c.oid = 'public.service_usage_analytics'::regclass;
    FOREACH v_fn IN ARRAY ARRAY[
        'public.ensure_usage_analytics_partition(date)'::regprocedure,
        'public.usage_analytics_drop_partition(regclass)'::regprocedure,
        'public.usage_analytics_delete_default_before(timestamptz, integer)'::regprocedure]
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', v_fn, v_owner);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_fn, v_role);
    END LOOP;
    -- partition_maintenance looks for months missed while the daemon was stopped:
    --   SELECT DISTINCT date_trunc('month', "timestamp" ...) FROM service_usage_analytics_default
    -- Only that column: partitions have no row-level security of their own, so a wider grant
    -- would expose every user's analytics.
    IF to_regclass('public.service_usage_analytics_default') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ("timestamp") ON public.service_usage_analytics_default TO %I', v_role);
    END IF;
END
$$;

-- ---- tables of later migrations, granted once they exist -------------------------------------------------
DO $$
DECLARE
    v_role text := current_setting('mcp_healthd.lp_role');
    t      record;
    s      record;
BEGIN
    FOR t IN
        SELECT * FROM (VALUES
            -- one row per job run; housekeeping prunes old ones
            ('maintenance_job_runs', 'SELECT, INSERT, UPDATE, DELETE'),
            -- the leader lease: taken and renewed by upsert, released by UPDATE, FOR SHARE fence
            ('maintenance_leases',   'SELECT, INSERT, UPDATE'),
            -- one row per live daemon; expired rows are removed by the others
            ('daemon_heartbeats',    'SELECT, INSERT, UPDATE, DELETE'),
            -- sqlx's bookkeeping (created by the first `migrate`): read to check the schema is current
            ('_sqlx_migrations',     'SELECT')
        ) AS v(tbl, privs)
    LOOP
        IF to_regclass(format('public.%I', t.tbl)) IS NULL THEN
            RAISE NOTICE 'table % does not exist yet: no grants on it (re-run this script after the `mcp-healthd migrate` that creates it)', t.tbl;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT %s ON TABLE public.%I TO %I', t.privs, t.tbl, v_role);
        -- A serial column's sequence needs USAGE for the INSERT default (identity columns do not).
        IF t.privs LIKE '%INSERT%' THEN
            FOR s IN
                SELECT d.objid::regclass AS seq
                  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = format('public.%I', t.tbl)::regclass AND d.deptype = 'a'
            LOOP
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', s.seq, v_role);
            END LOOP;
        END IF;
    END LOOP;
END
$$;

-- ---- check what the role can and cannot do --------------------------------------------------------------
DO $$
DECLARE
    r  text := current_setting('mcp_healthd.lp_role');
    ro record;
    v_bad text[] := '{}';
    v_fn  regprocedure;
BEGIN
    SELECT * INTO ro FROM pg_roles WHERE rolname = r;
    IF ro.rolsuper OR ro.rolbypassrls OR ro.rolcreaterole OR ro.rolcreatedb OR ro.rolreplication THEN
        v_bad := array_append(v_bad, 'has a superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION attribute');
    END IF;
    IF EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = ro.oid) THEN
        v_bad := array_append(v_bad, 'is a member of another role');
    END IF;
    IF has_column_privilege(r, 'public.users', 'password_hash', 'SELECT') THEN
        v_bad := array_append(v_bad, 'can read users.password_hash');
    END IF;
    IF has_column_privilege(r, 'public.user_service_instances', 'encrypted_api_key', 'SELECT') THEN
        v_bad := array_append(v_bad, 'can read user_service_instances.encrypted_api_key');
    END IF;
    IF has_column_privilege(r, 'public.service_registry', 'auth_config', 'SELECT') THEN
        v_bad := array_append(v_bad, 'can read service_registry.auth_config');
    END IF;
    IF has_column_privilege(r, 'public.api_key_validation_cache', 'validation_response', 'SELECT')
       OR has_column_privilege(r, 'public.api_key_validation_cache', 'key_hash', 'SELECT') THEN
        v_bad := array_append(v_bad, 'can read api_key_validation_cache payloads');
    END IF;
    IF has_table_privilege(r, 'public.service_registry', 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') THEN
        v_bad := array_append(v_bad, 'can modify service_registry');
    END IF;
    IF has_table_privilege(r, 'public.service_usage_analytics', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') THEN
        v_bad := array_append(v_bad, 'has rights on service_usage_analytics itself');
    END IF;
    IF has_schema_privilege(r, 'public', 'CREATE') THEN
        v_bad := array_append(v_bad, 'can CREATE in schema public (PUBLIC has it: REVOKE CREATE ON SCHEMA public FROM PUBLIC)');
    END IF;
    IF has_database_privilege(r, current_database(), 'CREATE') THEN
        v_bad := array_append(v_bad, 'can CREATE schemas in the database');
    END IF;
    FOREACH v_fn IN ARRAY ARRAY[
        'public.ensure_usage_analytics_partition(date)'::regprocedure,
        'public.usage_analytics_drop_partition(regclass)'::regprocedure,
        'public.usage_analytics_delete_default_before(timestamptz, integer)'::regprocedure]
    LOOP
        IF has_function_privilege('public', v_fn, 'EXECUTE') THEN
            v_bad := array_append(v_bad, format('PUBLIC can execute %s', v_fn));
        END IF;
        IF NOT (SELECT p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, public, pg_temp']
                  FROM pg_proc p WHERE p.oid = v_fn) THEN
            v_bad := array_append(v_bad, format('%s is not SECURITY DEFINER with a pinned search_path', v_fn));
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = ro.oid)
       OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.proowner = ro.oid) THEN
        v_bad := array_append(v_bad, 'owns tables or functions');
    END IF;
    IF cardinality(v_bad) > 0 THEN
        RAISE EXCEPTION 'role % is not least-privilege: %', r, array_to_string(v_bad, '; ');
    END IF;
    -- Not an error, but worth knowing: every role gets TEMP and CONNECT through PUBLIC.
    IF has_database_privilege('public', current_database(), 'TEMP') THEN
        RAISE NOTICE 'PUBLIC (so also %) may create temporary tables in %; REVOKE TEMP ON DATABASE % FROM PUBLIC if nothing needs it',
            r, current_database(), current_database();
    END IF;
    RAISE NOTICE 'role % is set up with least privilege in database %', r, current_database();
END
$$;

COMMIT;
