-- 0010 heartbeats by node name
--
-- A daemon's heartbeat row is now keyed by its stable node name (`cluster.node_name`, default
-- the host name) instead of a per-start id, so a daemon restarted on the same host (systemd's
-- Restart=on-failure after a crash) finds its own row still live and takes its services back at
-- once, instead of waiting for a dead process's heartbeat to expire. `instance` tells the starts
-- of one node apart (host:pid:nonce). Rows of the old per-start form simply expire, and every
-- daemon deletes expired rows as it beats.

ALTER TABLE daemon_heartbeats ADD COLUMN instance text;

COMMENT ON COLUMN daemon_heartbeats.daemon_id IS 'the node name (cluster.node_name), stable across restarts';
COMMENT ON COLUMN daemon_heartbeats.instance IS 'host:pid:nonce of the process that wrote the row last';
