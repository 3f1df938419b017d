-- 0006 maintenance jobs
--
-- What the daemon needs to replace pg_cron (spec "Data Retention Policies"; DESIGN defect 9):
--   maintenance_job_runs  one row per run of a job: when it was due, when it ran, how it ended,
--                         how much it did. Pruned by the housekeeping job.
--   maintenance_leases    the leader lease: only the daemon holding an unexpired lease runs jobs.
--                         `epoch` grows whenever the lease changes hands, so a destructive step
--                         can check (under FOR SHARE, in its own transaction) that its holder is
--                         still the leader it was when the run started.
-- The spec's cleanup_old_usage_analytics() is not created: it DELETEd instead of dropping
-- partitions and its log INSERT violated two foreign keys (defect 2).

CREATE TABLE maintenance_job_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           text        NOT NULL,
    trigger       text        NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    scheduled_for timestamptz,                 -- the cron time it was due; NULL when run by hand
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    rows_affected bigint      NOT NULL DEFAULT 0,
    batches       integer     NOT NULL DEFAULT 0,
    error         text,
    holder        text        NOT NULL,        -- which daemon (host:pid:nonce) ran it
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK ((status IN ('failed', 'skipped')) = (error IS NOT NULL))
);

-- `jobs list` (last run per job) and pruning by age.
CREATE INDEX maintenance_job_runs_job_started ON maintenance_job_runs (job, started_at DESC);
CREATE INDEX maintenance_job_runs_started ON maintenance_job_runs (started_at);

CREATE TABLE maintenance_leases (
    name        text PRIMARY KEY,
    holder      text        NOT NULL,
    epoch       bigint      NOT NULL CHECK (epoch > 0),
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
