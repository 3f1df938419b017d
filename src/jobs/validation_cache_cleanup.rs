//! `validation_cache_cleanup`: deletes expired `api_key_validation_cache` rows in bounded
//! batches, each its own transaction, so no lock is held longer than one batch and rows being
//! written concurrently are skipped rather than waited for.

use super::{Done, JobContext};

pub async fn run(ctx: &JobContext<'_>, done: &mut Done) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let batch = i64::from(ctx.config.jobs.validation_cache_cleanup.batch_size);
    super::delete_in_batches(
        ctx,
        done,
        "WITH gone AS (
             DELETE FROM api_key_validation_cache
              WHERE ctid = ANY (ARRAY(SELECT ctid FROM api_key_validation_cache
                                       WHERE expires_at < $1
                                       LIMIT $2 FOR UPDATE SKIP LOCKED))
             RETURNING 1)
         SELECT count(*) FROM gone",
        now,
        batch,
    )
    .await
}
