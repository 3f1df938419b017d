-- 0009 status flush ids
--
-- Makes a status flush idempotent. A flush adds check counts to service_health_rollups; if the
-- connection drops after the server committed but before the daemon read the reply, the daemon
-- must retry without counting the same checks twice. Each batch carries an id, recorded by the
-- same statement that adds its counts; a retried batch whose id is already here adds nothing.
-- The housekeeping job prunes ids after two days.

CREATE TABLE service_health_flushes (
    flush_id   uuid PRIMARY KEY,
    flushed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX service_health_flushes_flushed_at ON service_health_flushes (flushed_at);
