-- 0005 legacy instance migration
--
-- The spec's migrations 010 (copy mcp_instances into user_service_instances)
-- and 011 (archive and drop the legacy tables), made lossless and safe, as
-- functions an operator calls explicitly. This file moves no data: the
-- registry is imported after `migrate` (by `registry import`), and only then
-- can instances be mapped to services.
--
--   SELECT * FROM legacy_migrate_instances();   -- re-runnable, idempotent
--   SELECT * FROM legacy_migration_report();    -- unaccounted must be 0
--   SELECT * FROM legacy_finalize();            -- archive, then drop legacy tables
--
-- Defect 3 fixed: instance_id is derived from the source row's id (unique, no
-- 3-letter-prefix collisions); duplicate and inactive instances are decided
-- by an explicit rule and recorded, never silently dropped; a missing or blank
-- credential is a recorded rejection, never an empty key. Every source row
-- ends up in legacy_instance_ledger with its outcome.
-- Defect 4 fixed: the archive has explicit columns and keys, stores a SHA-256
-- of each access token instead of the token, and the legacy tables are
-- dropped without CASCADE after a check that names anything depending on them.
-- Defect 6: legacy TIMESTAMP values are read as UTC and stored as timestamptz.
-- No BEGIN/COMMIT (defect 5): each function runs in its caller's transaction.

-- One row per mcp_instances row that legacy_migrate_instances() has decided.
-- Reasons: no_registry_service, target_exists (retried on every run, e.g.
-- after a registry import), no_credentials, duplicate (final; delete the
-- ledger row to have a source row decided again).
CREATE TABLE legacy_instance_ledger (
    source_id      uuid        PRIMARY KEY,   -- mcp_instances.id
    user_id        uuid        NOT NULL,
    mcp_type_name  text,
    outcome        text        NOT NULL CHECK (outcome IN ('migrated', 'rejected')),
    reason         text        CHECK (reason IN ('no_registry_service', 'no_credentials',
                                                 'duplicate', 'target_exists')),
    instance_id    varchar(100) UNIQUE,       -- the user_service_instances row it became
    kept_source_id uuid,                      -- for a duplicate: the source row kept instead
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'migrated') = (reason IS NULL)),
    CHECK ((outcome = 'migrated') = (instance_id IS NOT NULL)),
    CHECK ((reason IS NOT DISTINCT FROM 'duplicate') = (kept_source_id IS NOT NULL))
);

-- Decides every mcp_instances row that has no ledger row yet, in one
-- set-based statement:
--   type has no service_registry row (service_type = mcp_types.name)
--                                          -> rejected no_registry_service
--   encrypted_credentials NULL or blank    -> rejected no_credentials
--   of the remaining rows of one (user, service), ONE is kept: active before
--   inactive, then latest updated_at, latest created_at, lowest id; the others
--                                          -> rejected duplicate (kept_source_id)
--   (user, service) already in user_service_instances, not from this
--   migration                              -> rejected target_exists
--   (user, service) already migrated by an earlier run
--                                          -> rejected duplicate of that row
--   otherwise inserted into user_service_instances -> migrated.
-- Returns the whole ledger's counts by outcome and reason; no rows when
-- mcp_instances no longer exists (legacy_finalize() has run).
-- jit off: when row estimates are off, JIT compilation alone took ~1 s,
-- more than it could save on a one-off statement; work_mem: the dedup sort of
-- 50k wide rows stays in memory instead of spilling to disk.
CREATE FUNCTION legacy_migrate_instances()
RETURNS TABLE (outcome text, reason text, rows bigint)
LANGUAGE plpgsql
SET jit = off
SET work_mem = '64MB'
AS $$
#variable_conflict use_column
BEGIN
    IF to_regclass('mcp_instances') IS NULL THEN
        RETURN;
    END IF;

    -- One run at a time (readers of the ledger are not blocked).
    LOCK TABLE legacy_instance_ledger IN EXCLUSIVE MODE;

    -- Retryable decisions are made again.
    DELETE FROM legacy_instance_ledger l
     WHERE l.reason IN ('no_registry_service', 'target_exists');

    WITH src AS (
        SELECT mi.id, mi.user_id, mt.name AS type_name, sr.service_type,
               mi.encrypted_credentials,
               coalesce(mi.is_active, false) AS is_active,
               mi.config, mi.created_at, mi.updated_at,
               sr.service_type || '_' || replace(mi.id::text, '-', '') AS new_instance_id,
               CASE
                   WHEN sr.service_type IS NULL THEN 'no_registry_service'
                   WHEN btrim(coalesce(mi.encrypted_credentials, ''), E' \t\r\n') = '' THEN 'no_credentials'
               END AS early_reason
          FROM mcp_instances mi
          LEFT JOIN mcp_types mt ON mt.id = mi.mcp_type_id
          LEFT JOIN service_registry sr ON sr.service_type = mt.name
         WHERE NOT EXISTS (SELECT 1 FROM legacy_instance_ledger l WHERE l.source_id = mi.id)
    ),
    ranked AS (
        -- keep_id: the row kept among the candidates of its (user, service);
        -- rows already rejected are in a partition of their own and ignored.
        SELECT s.*,
               CASE WHEN s.early_reason IS NULL THEN
                   first_value(s.id) OVER (
                       PARTITION BY s.early_reason IS NULL, s.user_id, s.service_type
                       ORDER BY s.is_active DESC,
                                s.updated_at DESC NULLS LAST,
                                s.created_at DESC NULLS LAST,
                                s.id)
               END AS keep_id
          FROM src s
    ),
    existing AS (
        -- (user, service) pairs already taken, and by which earlier migrated
        -- source row if it was this migration that took them.
        SELECT usi.user_id, usi.service_type, l.source_id AS migrated_source
          FROM user_service_instances usi
          LEFT JOIN legacy_instance_ledger l
                 ON l.outcome = 'migrated' AND l.instance_id = usi.instance_id
    ),
    decided AS (
        SELECT r.*,
               coalesce(r.early_reason,
                        CASE
                            WHEN e.migrated_source IS NOT NULL OR r.id <> r.keep_id THEN 'duplicate'
                            -- (user, service) taken, or the derived id itself
                            WHEN e.user_id IS NOT NULL OR t.instance_id IS NOT NULL THEN 'target_exists'
                        END) AS reason,
               CASE WHEN r.early_reason IS NULL
                    THEN coalesce(e.migrated_source, nullif(r.keep_id, r.id))
               END AS kept_source_id
          FROM ranked r
          LEFT JOIN existing e
                 ON r.early_reason IS NULL
                AND e.user_id = r.user_id AND e.service_type = r.service_type
          LEFT JOIN user_service_instances t
                 ON r.early_reason IS NULL AND t.instance_id = r.new_instance_id
    ),
    migrated AS (
        INSERT INTO user_service_instances
               (instance_id, user_id, service_type, encrypted_api_key, is_active, config,
                created_at, updated_at, last_used_at)
        SELECT d.new_instance_id, d.user_id, d.service_type, d.encrypted_credentials,
               d.is_active, coalesce(d.config, '{}'),
               -- legacy TIMESTAMP values are read as UTC
               coalesce(d.created_at AT TIME ZONE 'UTC', now()),
               coalesce(d.updated_at AT TIME ZONE 'UTC', d.created_at AT TIME ZONE 'UTC', now()),
               d.updated_at AT TIME ZONE 'UTC'
          FROM decided d
         WHERE d.reason IS NULL
    )
    INSERT INTO legacy_instance_ledger
           (source_id, user_id, mcp_type_name, outcome, reason, instance_id, kept_source_id)
    SELECT d.id, d.user_id, d.type_name,
           CASE WHEN d.reason IS NULL THEN 'migrated' ELSE 'rejected' END,
           d.reason,
           CASE WHEN d.reason IS NULL THEN d.new_instance_id END,
           d.kept_source_id
      FROM decided d;

    RETURN QUERY
        SELECT l.outcome, l.reason, count(*)
          FROM legacy_instance_ledger l
         GROUP BY l.outcome, l.reason
         ORDER BY l.outcome, l.reason;
END
$$;

-- total = source rows; unaccounted = source rows without a ledger row.
-- After legacy_finalize() the source is gone: the archive is reported
-- (unaccounted 0), or the ledger if there is no archive either.
CREATE FUNCTION legacy_migration_report()
RETURNS TABLE (total bigint, migrated bigint, rejected bigint, unaccounted bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF to_regclass('mcp_instances') IS NOT NULL THEN
        RETURN QUERY
            SELECT count(*),
                   count(*) FILTER (WHERE l.outcome = 'migrated'),
                   count(*) FILTER (WHERE l.outcome = 'rejected'),
                   count(*) FILTER (WHERE l.source_id IS NULL)
              FROM mcp_instances mi
              LEFT JOIN legacy_instance_ledger l ON l.source_id = mi.id;
    ELSIF to_regclass('legacy_mcp_instances_archive') IS NOT NULL THEN
        RETURN QUERY
            SELECT count(*),
                   count(*) FILTER (WHERE a.outcome = 'migrated'),
                   count(*) FILTER (WHERE a.outcome = 'rejected'),
                   0::bigint
              FROM legacy_mcp_instances_archive a;
    ELSE
        RETURN QUERY
            SELECT count(*),
                   count(*) FILTER (WHERE l.outcome = 'migrated'),
                   count(*) FILTER (WHERE l.outcome = 'rejected'),
                   0::bigint
              FROM legacy_instance_ledger l;
    END IF;
END
$$;

-- The spec's migration 011, made safe. For an operator to call explicitly,
-- never from a migration. Refuses (RAISE EXCEPTION, nothing changed) unless
-- every source row is in the ledger, every migrated row still exists in
-- user_service_instances, and nothing else depends on the legacy tables;
-- then archives both tables, checks the counts, and drops them RESTRICT.
CREATE FUNCTION legacy_finalize()
RETURNS TABLE (archived_instances bigint, archived_types bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_unaccounted bigint;
    v_missing     bigint;
    v_dependents  text;
    v_src_inst    bigint;
    v_src_types   bigint;
    v_arch_inst   bigint;
    v_arch_types  bigint;
BEGIN
    IF to_regclass('mcp_instances') IS NULL OR to_regclass('mcp_types') IS NULL THEN
        RAISE EXCEPTION 'legacy_finalize: mcp_instances or mcp_types does not exist (already finalized?)';
    END IF;
    IF to_regclass('legacy_mcp_instances_archive') IS NOT NULL
       OR to_regclass('legacy_mcp_types_archive') IS NOT NULL THEN
        RAISE EXCEPTION 'legacy_finalize: an archive table already exists; refusing to overwrite it';
    END IF;

    -- Nothing may change the legacy rows between the checks and the drop.
    LOCK TABLE mcp_instances, mcp_types, legacy_instance_ledger IN EXCLUSIVE MODE;

    SELECT r.unaccounted INTO v_unaccounted FROM legacy_migration_report() r;
    IF v_unaccounted > 0 THEN
        RAISE EXCEPTION 'legacy_finalize: % mcp_instances row(s) have no ledger row', v_unaccounted
            USING HINT = 'Run SELECT * FROM legacy_migrate_instances() first.';
    END IF;

    SELECT count(*) INTO v_missing
      FROM legacy_instance_ledger l
     WHERE l.outcome = 'migrated'
       AND NOT EXISTS (SELECT 1 FROM user_service_instances u WHERE u.instance_id = l.instance_id);
    IF v_missing > 0 THEN
        RAISE EXCEPTION 'legacy_finalize: % migrated instance(s) no longer exist in user_service_instances', v_missing
            USING HINT = 'See legacy_instance_ledger rows with outcome = ''migrated'' whose instance_id is missing.';
    END IF;

    -- Anything outside the two tables that depends on them (views, foreign
    -- keys of other tables, policies, columns or functions using their row
    -- type, ...) would make DROP fail, or with CASCADE vanish silently: name
    -- it instead. The tables' own indexes, constraints, triggers, sequences and
    -- toast depend on them with deptype 'a'/'i' and are not listed; a normal
    -- ('n') dependency is listed unless the object belongs to one of the two.
    WITH legacy AS (
        SELECT c.oid, c.reltype FROM pg_class c
         WHERE c.oid IN ('mcp_instances'::regclass, 'mcp_types'::regclass)
    ),
    deps AS (
        SELECT d.classid, d.objid, d.objsubid,
               CASE d.classid
                   WHEN 'pg_constraint'::regclass THEN (SELECT nullif(x.conrelid, 0) FROM pg_constraint x WHERE x.oid = d.objid)
                   WHEN 'pg_rewrite'::regclass    THEN (SELECT x.ev_class FROM pg_rewrite x WHERE x.oid = d.objid)
                   WHEN 'pg_trigger'::regclass    THEN (SELECT x.tgrelid  FROM pg_trigger x WHERE x.oid = d.objid)
                   WHEN 'pg_policy'::regclass     THEN (SELECT x.polrelid FROM pg_policy  x WHERE x.oid = d.objid)
                   WHEN 'pg_attrdef'::regclass    THEN (SELECT x.adrelid  FROM pg_attrdef x WHERE x.oid = d.objid)
                   WHEN 'pg_class'::regclass      THEN d.objid
               END AS owner_rel
          FROM pg_depend d
         WHERE d.deptype = 'n'
           AND (   (d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM legacy))
                OR (d.refclassid = 'pg_type'::regclass  AND d.refobjid IN (SELECT reltype FROM legacy)))
    )
    SELECT string_agg(DISTINCT
               CASE WHEN d.classid = 'pg_rewrite'::regclass  -- a view's rule: name the view
                    THEN pg_describe_object('pg_class'::regclass, d.owner_rel, 0)
                    ELSE pg_describe_object(d.classid, d.objid, d.objsubid)
               END, '; ')
      INTO v_dependents
      FROM deps d
     WHERE d.owner_rel IS NULL OR d.owner_rel NOT IN (SELECT oid FROM legacy);
    IF v_dependents IS NOT NULL THEN
        RAISE EXCEPTION 'legacy_finalize: other objects depend on mcp_instances or mcp_types: %', v_dependents
            USING HINT = 'Drop or change them first; the legacy tables are never dropped with CASCADE.';
    END IF;

    CREATE TABLE legacy_mcp_types_archive (
        id          uuid         PRIMARY KEY,
        name        varchar(100) NOT NULL UNIQUE,
        description text,
        icon_url    varchar(500),
        category    varchar(100),
        is_active   boolean,
        created_at  timestamptz,
        archived_at timestamptz  NOT NULL DEFAULT now()
    );

    -- user_id cascades like the legacy table did: deleting a user still
    -- deletes their (encrypted) credentials.
    CREATE TABLE legacy_mcp_instances_archive (
        id                    uuid         PRIMARY KEY,
        user_id               uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        mcp_type_id           uuid         NOT NULL REFERENCES legacy_mcp_types_archive (id),
        name                  varchar(255) NOT NULL,
        config                jsonb,
        is_active             boolean,
        status                varchar(50),
        process_id            integer,
        access_token_sha256   text,         -- hex SHA-256 of access_token; never the token
        encrypted_credentials text,
        created_at            timestamptz,
        updated_at            timestamptz,
        outcome               text         NOT NULL CHECK (outcome IN ('migrated', 'rejected')),
        reason                text,
        instance_id           varchar(100),
        archived_at           timestamptz  NOT NULL DEFAULT now()
    );
    CREATE INDEX legacy_mcp_instances_archive_user_id ON legacy_mcp_instances_archive (user_id);

    INSERT INTO legacy_mcp_types_archive (id, name, description, icon_url, category, is_active, created_at)
    SELECT t.id, t.name, t.description, t.icon_url, t.category, t.is_active,
           t.created_at AT TIME ZONE 'UTC'
      FROM mcp_types t;

    INSERT INTO legacy_mcp_instances_archive
           (id, user_id, mcp_type_id, name, config, is_active, status, process_id,
            access_token_sha256, encrypted_credentials, created_at, updated_at,
            outcome, reason, instance_id)
    SELECT mi.id, mi.user_id, mi.mcp_type_id, mi.name, mi.config, mi.is_active, mi.status,
           mi.process_id,
           encode(sha256(convert_to(mi.access_token, 'UTF8')), 'hex'),
           mi.encrypted_credentials,
           mi.created_at AT TIME ZONE 'UTC', mi.updated_at AT TIME ZONE 'UTC',
           l.outcome, l.reason, l.instance_id
      FROM mcp_instances mi
      JOIN legacy_instance_ledger l ON l.source_id = mi.id;

    SELECT count(*) INTO v_src_inst   FROM mcp_instances;
    SELECT count(*) INTO v_src_types  FROM mcp_types;
    SELECT count(*) INTO v_arch_inst  FROM legacy_mcp_instances_archive;
    SELECT count(*) INTO v_arch_types FROM legacy_mcp_types_archive;
    IF v_arch_inst <> v_src_inst OR v_arch_types <> v_src_types THEN
        RAISE EXCEPTION 'legacy_finalize: archived % of % instances and % of % types; nothing dropped',
            v_arch_inst, v_src_inst, v_arch_types, v_src_types;
    END IF;

    -- RESTRICT (the default): fails rather than dropping anything else.
    DROP TABLE mcp_instances;
    DROP TABLE mcp_types;

    RETURN QUERY SELECT v_arch_inst, v_arch_types;
END
$$;
