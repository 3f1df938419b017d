-- 0008 daemon heartbeats
--
-- Several daemons may share one database (DESIGN "Running several daemons"). Each keeps a row
-- here, renewed every third of its time to live; the live daemons (expires_at in the future, by
-- the database's clock) split the services among themselves by rendezvous hashing of
-- service_type over their ids. A daemon that stops deletes its row; one that dies simply expires.

CREATE TABLE daemon_heartbeats (
    daemon_id  text PRIMARY KEY,            -- host:pid:nonce, unique per process start
    host       text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX daemon_heartbeats_expires ON daemon_heartbeats (expires_at);
