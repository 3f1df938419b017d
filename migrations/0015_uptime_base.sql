-- 0015: uptime without reading the window's rollups at every flush (issue 16).
--
-- Each flush used to sum every hourly rollup of the window (24 rows a service by default) for
-- every service in the batch. The status row now keeps the sums of the window's complete hours:
-- the "base", covering [uptime_base_from, uptime_base_until). A flush whose rows are all in the
-- hour the base stops at adds that hour's row to it; any other flush (a new hour, a moved
-- window, a replayed spill with older hours) recomputes the base from the rollups, and a
-- reclassification clears it. uptime_percentage stays exact at every flush.
--
-- The columns are added last, so a `SELECT *` read by position is unchanged; NULL (every row
-- at first) means "no base: recompute".
ALTER TABLE service_health_status
    ADD COLUMN uptime_base_from     timestamptz,
    ADD COLUMN uptime_base_until    timestamptz,
    ADD COLUMN uptime_base_counted  bigint,
    ADD COLUMN uptime_base_failures bigint;

COMMENT ON COLUMN service_health_status.uptime_base_until IS
    'The daemon''s uptime cache: counted checks and failures of the window''s hours before this one (NULL: recomputed at the next flush)';
