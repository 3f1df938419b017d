-- 0002 shared instances schema
--
-- The spec's migration 008, made to run on PostgreSQL 15 and fixed:
--   defect 1: service_usage_analytics is really partitioned, by RANGE on
--             "timestamp" (not on the generated created_date), its primary key
--             includes the partition key, a DEFAULT partition catches anything
--             outside the premade months, and ensure_usage_analytics_partition()
--             creates the monthly partitions (called below for this month and
--             the next 3; the daemon's partition_maintenance job keeps calling it);
--   defect 5: no BEGIN/COMMIT, the migrator owns the transaction;
--   defect 6: every timestamp is timestamptz;
--   defect 7: uptime is double precision, NULL until measured, and
--             service_health_rollups keeps its raw material (hourly counts);
--   defect 8: useless and redundant indexes dropped; validation cache rows
--             always have an expires_at, so cleanup deletes them all.
-- Also: the health columns no longer claim health or a check nobody made,
-- and row-level security implements the spec's "row-level security for user
-- data isolation".

-- updated_at maintenance, shared by every table that has the column.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------
-- service_registry: one row per hosted MCP service (spec, replaces mcp_types).
-- No CHECK on port range or endpoint format on purpose: the daemon tolerates
-- bad rows at run time and reports them instead of rejecting the import.
-- No index on category or is_available: a few hundred (or 10,000) rows are
-- read whole; a boolean index would never be chosen.
CREATE TABLE service_registry (
    service_type          varchar(50)  PRIMARY KEY,
    name                  varchar(100) NOT NULL,
    display_name          varchar(100) NOT NULL,
    description           text,
    icon_url              varchar(500),
    category              varchar(100),
    port                  integer      NOT NULL UNIQUE,
    base_url              varchar(255),
    health_check_endpoint varchar(255) NOT NULL DEFAULT '/health',
    auth_type             varchar(50)  NOT NULL DEFAULT 'api_key',  -- api_key, oauth2, basic_auth
    auth_config           jsonb        NOT NULL DEFAULT '{}',
    service_config        jsonb        NOT NULL DEFAULT '{}',      -- 'health' key: per-service probe overrides
    is_available          boolean      NOT NULL DEFAULT true,
    created_at            timestamptz  NOT NULL DEFAULT now(),
    updated_at            timestamptz  NOT NULL DEFAULT now()
);

CREATE TRIGGER service_registry_set_updated_at
    BEFORE UPDATE ON service_registry
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- user_service_instances: one per user per service (spec).
CREATE TABLE user_service_instances (
    instance_id                      varchar(100) PRIMARY KEY,
    user_id                          uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_type                     varchar(50)  NOT NULL
                                     REFERENCES service_registry (service_type) ON UPDATE CASCADE,
    -- never an empty key (the spec's migration 010 stored '' for missing ones)
    encrypted_api_key                text         NOT NULL CHECK (btrim(encrypted_api_key) <> ''),
    encrypted_additional_credentials jsonb        NOT NULL DEFAULT '{}',
    is_active                        boolean      NOT NULL DEFAULT true,
    config                           jsonb        NOT NULL DEFAULT '{}',
    created_at                       timestamptz  NOT NULL DEFAULT now(),
    updated_at                       timestamptz  NOT NULL DEFAULT now(),
    last_used_at                     timestamptz,
    usage_count                      bigint       NOT NULL DEFAULT 0,
    UNIQUE (user_id, service_type)
);

-- The spec's indexes on user_id (the UNIQUE constraint's leading column
-- already serves it), is_active (boolean) and last_used_at (no query) are
-- not created. Instead:
-- the spec's hot lookup
--   SELECT instance_id, service_type FROM user_service_instances
--   WHERE user_id = $1 AND is_active = true
-- becomes an index-only scan of this partial covering index;
CREATE INDEX user_service_instances_active_by_user
    ON user_service_instances (user_id) INCLUDE (service_type, instance_id)
    WHERE is_active;
-- and the dashboard's active-user count per service reads this one.
CREATE INDEX user_service_instances_active_by_service
    ON user_service_instances (service_type)
    WHERE is_active;

CREATE TRIGGER user_service_instances_set_updated_at
    BEFORE UPDATE ON user_service_instances
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- service_health_status: the daemon's current view of each service, one row
-- per registry row (0003 creates them).
--   is_healthy NULL        = never judged (the spec's DEFAULT true claimed
--                            health nobody measured);
--   last_health_check NULL = never checked (the spec's DEFAULT now() made a
--                            service never checked look checked);
--   uptime_percentage NULL = no data yet; double precision because
--                            DECIMAL(5,2) rounded 99.995 to 100.00;
--   check_interval_ms      = the probe interval of the daemon that wrote the
--                            row: the dashboard view derives staleness from it;
--   checked_by             = id of that daemon (several may share the work).
-- Every row is rewritten every probe interval, so: fillfactor 70 leaves room
-- on each page for HOT updates, and there is deliberately NO secondary index
-- (an index on is_healthy or last_health_check would change with every update
-- and defeat HOT; a sequential scan of 10,000 rows is sub-millisecond).
CREATE TABLE service_health_status (
    service_type          varchar(50) PRIMARY KEY
                          REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    is_healthy            boolean,
    last_health_check     timestamptz,
    response_time_ms      integer,
    error_message         text,         -- 'KIND: detail'
    error_kind            text,         -- KIND alone: timeout, connect, dns, tls, status, ...
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    consecutive_successes integer     NOT NULL DEFAULT 0,
    last_success_at       timestamptz,
    last_failure_at       timestamptz,
    state_changed_at      timestamptz,  -- when is_healthy last changed
    uptime_percentage     double precision CHECK (uptime_percentage BETWEEN 0 AND 100),
    check_interval_ms     integer,
    checked_by            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

CREATE TRIGGER service_health_status_set_updated_at
    BEFORE UPDATE ON service_health_status
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- service_health_rollups: hourly check counts per service, the raw material
-- of uptime_percentage (defect 7). O(services x hours), never O(checks); the
-- daemon prunes rows older than uptime.retain using the index on hour.
CREATE TABLE service_health_rollups (
    service_type   varchar(50) NOT NULL
                   REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    hour           timestamptz NOT NULL    -- start of the UTC hour
                   CHECK (extract(epoch FROM hour) % 3600 = 0),
    checks         integer     NOT NULL DEFAULT 0 CHECK (checks >= 0),
    failures       integer     NOT NULL DEFAULT 0 CHECK (failures BETWEEN 0 AND checks),
    latency_sum_ms bigint      NOT NULL DEFAULT 0 CHECK (latency_sum_ms >= 0),
    latency_max_ms integer     NOT NULL DEFAULT 0 CHECK (latency_max_ms >= 0),
    PRIMARY KEY (service_type, hour)
);

CREATE INDEX service_health_rollups_hour ON service_health_rollups (hour);

-- ---------------------------------------------------------------------------
-- api_key_validation_cache (spec). expires_at is NOT NULL with a default:
-- the spec allowed NULL, and `expires_at < now()` never deleted those rows.
CREATE TABLE api_key_validation_cache (
    user_id             uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_type        varchar(50)  NOT NULL
                        REFERENCES service_registry (service_type) ON DELETE CASCADE ON UPDATE CASCADE,
    key_hash            varchar(255) NOT NULL,   -- hash of the API key, never the key
    is_valid            boolean      NOT NULL,
    validated_at        timestamptz  NOT NULL DEFAULT now(),
    expires_at          timestamptz  NOT NULL DEFAULT now() + interval '1 day',
    validation_response jsonb        NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_id, service_type, key_hash)
);

-- validation_cache_cleanup deletes expired rows in batches through this index.
CREATE INDEX api_key_validation_cache_expires_at ON api_key_validation_cache (expires_at);

-- ---------------------------------------------------------------------------
-- service_usage_analytics: partitioned by month on "timestamp" (defect 1).
-- Retention drops whole partitions (analytics_retention job), never DELETEs.
-- created_date is kept from the spec for readers; it is the UTC date, and
-- ("timestamp" AT TIME ZONE 'UTC')::date is immutable, as a generated column
-- requires (a plain ::date would depend on the session's TimeZone).
CREATE TABLE service_usage_analytics (
    id               uuid         NOT NULL DEFAULT gen_random_uuid(),
    user_id          uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_type     varchar(50)  NOT NULL
                     REFERENCES service_registry (service_type) ON UPDATE CASCADE,
    instance_id      varchar(100) NOT NULL,
    endpoint         varchar(255),
    method           varchar(10),
    status_code      integer,
    response_time_ms integer,
    error_message    text,
    "timestamp"      timestamptz  NOT NULL DEFAULT now(),
    created_date     date GENERATED ALWAYS AS (("timestamp" AT TIME ZONE 'UTC')::date) STORED,
    -- a primary key on a partitioned table must include the partition key
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

-- Created on the parent, so every partition gets them. The spec's index on
-- service_type alone becomes (service_type, "timestamp"): it still serves the
-- foreign key and also the per-service time-range queries.
CREATE INDEX service_usage_analytics_user_service ON service_usage_analytics (user_id, service_type);
CREATE INDEX service_usage_analytics_timestamp    ON service_usage_analytics ("timestamp");
CREATE INDEX service_usage_analytics_service_time ON service_usage_analytics (service_type, "timestamp");

-- Rows outside every monthly partition land here instead of failing the
-- insert; ensure_usage_analytics_partition() moves them out when it creates
-- their month.
CREATE TABLE service_usage_analytics_default PARTITION OF service_usage_analytics DEFAULT;

-- True when parent has a partition bounded exactly FROM p_from TO p_to.
-- The bounds are read back from pg_class.relpartbound (rendered as
-- "FOR VALUES FROM ('...') TO ('...')") and compared as timestamptz values.
CREATE FUNCTION usage_analytics_partition_exists(p_parent regclass, p_from timestamptz, p_to timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                         '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$') AS b(m)
         WHERE i.inhparent = p_parent
           AND b.m[1]::timestamptz = p_from
           AND b.m[2]::timestamptz = p_to)
$$;

-- Creates the monthly partition service_usage_analytics_pYYYYMM for the UTC
-- month containing p_month, bounds [YYYY-MM-01 00:00+00, next month 00:00+00).
-- Returns false when a partition with exactly those bounds already exists,
-- whatever its name (found by its bounds in the catalog, so hand-made
-- partitions count). Rows of that month sitting in the default partition are
-- moved into the new partition in the same transaction.
-- TimeZone and DateStyle are pinned so the bound literals it writes, and the
-- catalog's rendering of existing bounds, read the same (UTC, ISO) whatever
-- the caller's session says.
CREATE FUNCTION ensure_usage_analytics_partition(p_month date) RETURNS boolean
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
AS $$
DECLARE
    v_parent  regclass    := 'service_usage_analytics'::regclass;
    v_from    timestamptz := date_trunc('month', p_month::timestamp) AT TIME ZONE 'UTC';
    v_to      timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    v_schema  name;
    v_part    text;   -- qualified, quoted name of the new partition
    v_default regclass;
BEGIN
    -- Cheap check first, without locks: the common case is "already there".
    IF usage_analytics_partition_exists(v_parent, v_from, v_to) THEN
        RETURN false;
    END IF;

    -- Serialise concurrent callers (SHARE UPDATE EXCLUSIVE conflicts with
    -- itself, not with inserts), then look again.
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', v_parent);
    IF usage_analytics_partition_exists(v_parent, v_from, v_to) THEN
        RETURN false;
    END IF;

    SELECT c.relnamespace::regnamespace::name INTO v_schema
      FROM pg_class c WHERE c.oid = v_parent;
    v_part := format('%I.%I', v_schema, 'service_usage_analytics_p' || to_char(v_from, 'YYYYMM'));

    SELECT nullif(pt.partdefid, 0)::regclass INTO v_default
      FROM pg_partitioned_table pt WHERE pt.partrelid = v_parent;

    -- Built standalone and then attached (rather than CREATE ... PARTITION OF)
    -- so rows can be moved in from the default partition before the attach,
    -- and because ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent:
    -- inserts into other months keep flowing.
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING ALL)', v_part, v_parent);

    IF v_default IS NOT NULL THEN
        -- Block inserts into the default until the attach (which needs this
        -- lock anyway), so no row of the month can slip in behind the move.
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_default);
        -- created_date is generated: it cannot be inserted, so list columns.
        EXECUTE format(
            'WITH moved AS (
                 DELETE FROM ONLY %1$s
                  WHERE "timestamp" >= %3$L AND "timestamp" < %4$L
              RETURNING id, user_id, service_type, instance_id, endpoint, method,
                        status_code, response_time_ms, error_message, "timestamp")
             INSERT INTO %2$s (id, user_id, service_type, instance_id, endpoint, method,
                               status_code, response_time_ms, error_message, "timestamp")
             SELECT * FROM moved',
            v_default, v_part, v_from, v_to);
    END IF;

    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                   v_parent, v_part, v_from, v_to);
    RETURN true;
END
$$;

-- This month and the next three, in UTC (the daemon keeps this going).
SELECT ensure_usage_analytics_partition(
           ((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => n))::date))
  FROM generate_series(0, 3) AS n;

-- ---------------------------------------------------------------------------
-- Row-level security: a session that sets app.current_user_id sees and writes
-- only that user's rows; a session that does not set it sees none.
-- ENABLE, not FORCE: the table owner (the daemon and the migrator connect as
-- the owner or a superuser) is not subject to the policies, so maintenance
-- jobs and the data migration see every row. For the partitioned table the
-- policy applies to queries through the parent; partitions have no policies
-- (only the owner touches them directly).
ALTER TABLE user_service_instances   ENABLE ROW LEVEL SECURITY;
ALTER TABLE service_usage_analytics  ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_validation_cache ENABLE ROW LEVEL SECURITY;

CREATE POLICY user_isolation ON user_service_instances
    USING      (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid)
    WITH CHECK (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid);
CREATE POLICY user_isolation ON service_usage_analytics
    USING      (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid)
    WITH CHECK (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid);
CREATE POLICY user_isolation ON api_key_validation_cache
    USING      (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid)
    WITH CHECK (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid);
