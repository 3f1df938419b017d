-- 0003 health status rows
--
-- The spec's migration 009 created a service_health_status row once, for the
-- services present at that moment; services imported later had none and were
-- invisible to health queries that join on it. Here:
--   * a status row for every registry row that exists now (all columns at
--     their "never checked" defaults, see 0002);
--   * an AFTER INSERT trigger that creates the status row of every service
--     added later (statement-level with a transition table, so a registry
--     import of 10,000 services is one INSERT, not 10,000);
--   * a statement-level trigger that tells the daemon, through
--     NOTIFY mcp_healthd_registry, to reload the registry at once instead of
--     waiting for its next refresh.
-- Deletes and renames need no trigger: the status row's foreign key cascades.
-- No BEGIN/COMMIT: the migrator runs each file in its own transaction (defect 5).

INSERT INTO service_health_status (service_type)
SELECT service_type FROM service_registry
ON CONFLICT (service_type) DO NOTHING;

CREATE FUNCTION service_registry_create_health_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO service_health_status (service_type)
    SELECT service_type FROM new_services
    ON CONFLICT (service_type) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER service_registry_create_health_status
    AFTER INSERT ON service_registry
    REFERENCING NEW TABLE AS new_services
    FOR EACH STATEMENT EXECUTE FUNCTION service_registry_create_health_status();

-- The payload is empty: the daemon reloads the whole registry anyway, and
-- identical notifications in one transaction are delivered once, at commit.
CREATE FUNCTION service_registry_notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mcp_healthd_registry', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER service_registry_notify_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON service_registry
    FOR EACH STATEMENT EXECUTE FUNCTION service_registry_notify_changed();
