-- 0007 maintenance functions
--
-- The destructive steps of analytics retention as SECURITY DEFINER functions owned by the table's
-- owner, so a least-privilege daemon role (sql/least-privilege-role.sql) can run retention without
-- owning service_usage_analytics: dropping a partition and deleting from the default partition
-- need ownership. Both refuse anything that is not wholly in the past. search_path is pinned
-- (pg_temp last) so no object of the caller's can stand in for the owner's. EXECUTE is revoked
-- from PUBLIC; the owner (and the role script's grantee) may call them.
--
-- ensure_usage_analytics_partition (0002) becomes SECURITY DEFINER for the same reason.

-- Drops one monthly partition of service_usage_analytics and returns how many rows it held.
-- Refuses the default partition, any other table, and a month that is not wholly past. Honours
-- the caller's lock_timeout (SET LOCAL lock_timeout before calling, and retry on 55P03).
CREATE OR REPLACE FUNCTION public.usage_analytics_drop_partition(p_partition regclass)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
AS $$
DECLARE
    v_parent regclass := 'public.service_usage_analytics'::regclass;
    v_bound  text;
    v_m      text[];
    v_rows   bigint;
BEGIN
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO v_bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = v_parent AND i.inhrelid = p_partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a partition of %', p_partition, v_parent
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_m := regexp_match(v_bound, '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$');
    IF v_m IS NULL THEN
        RAISE EXCEPTION 'refusing to drop % (%): not a range partition', p_partition, v_bound
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_m[2]::timestamptz > now() THEN
        RAISE EXCEPTION 'refusing to drop %: its range ends at %, not in the past', p_partition, v_m[2]
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', p_partition) INTO v_rows;
    -- Parent first, as inserts lock it, so the DROP cannot deadlock with them.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_parent);
    EXECUTE format('DROP TABLE %s', p_partition);
    RETURN v_rows;
END
$$;

-- Deletes at most p_limit rows older than p_before from the default partition (rows outside every
-- monthly partition) and returns how many; call it until it returns 0. p_before must be past.
CREATE OR REPLACE FUNCTION public.usage_analytics_delete_default_before(p_before timestamptz, p_limit integer)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_default regclass;
    v_rows    bigint;
BEGIN
    IF p_before IS NULL OR p_before > now() THEN
        RAISE EXCEPTION 'refusing to delete analytics rows up to %: not in the past', p_before
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'p_limit must be at least 1, not %', p_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT nullif(pt.partdefid, 0)::regclass INTO v_default
      FROM pg_partitioned_table pt WHERE pt.partrelid = 'public.service_usage_analytics'::regclass;
    IF v_default IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format('DELETE FROM ONLY %1$s WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM ONLY %1$s WHERE "timestamp" < $1 LIMIT $2))', v_default)
      USING p_before, p_limit;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

ALTER FUNCTION ensure_usage_analytics_partition(date)
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;

REVOKE ALL ON FUNCTION ensure_usage_analytics_partition(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_analytics_drop_partition(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_analytics_delete_default_before(timestamptz, integer) FROM PUBLIC;
