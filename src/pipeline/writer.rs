//! The writer: flushes the pending batch on a fixed cadence, one statement per flush. When a
//! write fails it keeps that batch whole, under its id, and retries it as it is with backoff
//! (newer results wait in the pending batch), so a write that failed after the server committed
//! is not counted twice; `db_unavailable` / `db_recovered` are logged once per outage.
//!
//! Every flush has a deadline (`database.statement_timeout`, on the server and here): a database
//! that goes silent makes a failed flush, not a stuck writer. What the final flush at shutdown
//! cannot write goes to `daemon.state_dir` (`store::spill`), to be replayed at the next start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tokio::sync::watch;

use crate::config::Config;
use crate::observe::metrics::{DB_ERRORS, DB_UP, FLUSH_DURATION};
use crate::observe::stats::Stats;
use crate::store::db::{self, Backoff};
use crate::store::{self, FlushContext, Pending, spill};

pub struct Writer {
    pub pool: PgPool,
    pub pending: Arc<Mutex<Pending>>,
    /// Flush interval, uptime window and check interval come from here (reloadable).
    pub config: watch::Receiver<Arc<Config>>,
    pub stats: Arc<Stats>,
    pub checked_by: String,
}

/// What the writer knows of the database's reachability, and the batch it could not write.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Option<Backoff>,
    /// The batch being written, or whose write failed, kept whole under its id: retried as it
    /// is, so that if the failure came after the server committed, the retry adds nothing twice.
    /// It stays here while its write is in flight, so a write abandoned at shutdown loses nothing.
    failed: Option<(uuid::Uuid, Pending)>,
}

impl Outage {
    /// After a failed write (the batch stays under its id for the retry): schedules the retry
    /// with backoff, and logs `db_unavailable` once per outage.
    fn write_failed(&mut self, e: &sqlx::Error) {
        metrics::counter!(DB_ERRORS).increment(1);
        let checks = self.failed.as_ref().map_or(0, |(_, batch)| batch.checks());
        let backoff = self
            .backoff
            .get_or_insert_with(|| Backoff::new(Duration::from_secs(5)));
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::error!(
                event = "db_unavailable",
                error = %e,
                checks_pending = checks,
                "cannot write results; keeping them in memory and retrying"
            );
        }
        self.retry_at = Some(Instant::now() + backoff.next_delay());
    }
}

/// A registry row deleted between the flush's snapshot and its insert: the rollup's foreign key
/// fails (SQLSTATE 23503) although the database is fine.
fn deleted_meanwhile(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "23503")
}

impl Writer {
    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending batch lock poisoned"))
    }

    /// Writes the failed batch if there is one, else the pending results. Returns whether there
    /// was anything to write.
    async fn flush_once(&self, outage: &mut Outage, limit: Duration) -> bool {
        if outage.retry_at.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        if !self.next_batch(outage) {
            return false;
        }
        let Some((id, batch)) = outage.failed.as_ref() else {
            return false;
        };
        let ctx = self.flush_context();
        let started = Instant::now();
        let flush = store::flush(&self.pool, *id, batch, &ctx, Utc::now());
        let result = db::deadline(limit, flush).await;
        let raced = result.as_ref().is_err_and(deleted_meanwhile);
        metrics::gauge!(DB_UP).set(if result.is_ok() || raced { 1.0 } else { 0.0 });
        self.stats.db_ok.store(
            result.is_ok() || raced,
            std::sync::atomic::Ordering::Relaxed,
        );
        match result {
            Ok(()) => {
                let (_, batch) = outage.failed.take().expect("the batch just written");
                self.written(&batch, started, outage);
            }
            // Not an outage: the next tick writes the same batch again, without that service.
            Err(e) if raced => {
                tracing::debug!(error = %e, "a service was deleted while its results were written; retrying");
            }
            Err(e) => outage.write_failed(&e),
        }
        true
    }

    /// Makes `outage.failed` the batch to write: the failed one, under its id, if there is one;
    /// else the pending results under a new id. `false` when there is nothing to write.
    fn next_batch(&self, outage: &mut Outage) -> bool {
        if outage.failed.is_none() {
            let batch = self.take();
            if batch.is_empty() {
                return false;
            }
            outage.failed = Some((uuid::Uuid::new_v4(), batch));
        }
        true
    }

    /// The current configuration's uptime window and check interval.
    fn flush_context(&self) -> FlushContext<'_> {
        let (uptime_window, check_interval) = {
            let config = self.config.borrow();
            (config.uptime.window, config.probe.interval)
        };
        FlushContext {
            uptime_window,
            check_interval,
            checked_by: &self.checked_by,
        }
    }

    /// After a successful write: metrics, and `db_recovered` if it ends an outage.
    fn written(&self, batch: &Pending, started: Instant, outage: &mut Outage) {
        metrics::histogram!(FLUSH_DURATION).record(started.elapsed().as_secs_f64());
        self.stats.flushed();
        tracing::debug!(
            services = batch.status.len(),
            checks = batch.checks(),
            flush_ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        if let Some(since) = outage.since.take() {
            tracing::info!(
                event = "db_recovered",
                down_for_s = since.elapsed().as_secs(),
                checks_written = batch.checks(),
                "database reachable again; results kept during the outage are written"
            );
        }
        *outage = Outage::default();
    }

    /// The deadline of one flush: the server's statement deadline plus the round trip.
    fn call_limit(&self) -> Duration {
        db::call_limit(&self.config.borrow().database)
    }

    /// Flushes every `flush_interval` until `stop`, then once more (the final flush), and keeps
    /// on disk what the final flush could not write.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut outage = Outage::default();
        let new_tick = |every: Duration| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        let mut tick = new_tick(self.config.borrow().database.flush_interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    // A stop does not wait for a write to a silent server: the batch it was
                    // writing stays under its id, for the final flush or the spill file.
                    let limit = self.call_limit();
                    tokio::select! {
                        _ = self.flush_once(&mut outage, limit) => {}
                        () = stop.cancelled() => break,
                    }
                }
                Ok(()) = self.config.changed() => {
                    tick = new_tick(self.config.borrow_and_update().database.flush_interval);
                }
            }
        }
        self.final_flush(&mut outage).await;
        let left = self.take();
        let failed = outage.failed.take();
        let mut batches: Vec<(uuid::Uuid, &Pending)> = Vec::new();
        if let Some((id, batch)) = &failed {
            batches.push((*id, batch));
        }
        if !left.is_empty() {
            batches.push((uuid::Uuid::new_v4(), &left));
        }
        if !batches.is_empty() {
            self.keep_on_disk(&batches);
        }
    }

    /// A failed batch first, then what is pending: one attempt each, together within one
    /// statement deadline (the shutdown's budget for the database).
    async fn final_flush(&self, outage: &mut Outage) {
        let end = Instant::now() + self.config.borrow().database.statement_timeout;
        for _ in 0..2 {
            outage.retry_at = None;
            let limit = end.saturating_duration_since(Instant::now());
            if limit.is_zero() || !self.flush_once(outage, limit).await || outage.failed.is_some() {
                break;
            }
        }
    }

    /// Writes `batches` to the state directory (`results_spilled`), or says they are lost.
    fn keep_on_disk(&self, batches: &[(uuid::Uuid, &Pending)]) {
        let checks: i64 = batches.iter().map(|(_, b)| b.checks()).sum();
        let services = batches
            .iter()
            .map(|(_, b)| b.status.len())
            .max()
            .unwrap_or(0);
        let dir = self.config.borrow().daemon.state_dir.clone();
        let why = match dir.as_deref().map(|dir| spill::save(dir, batches)) {
            Some(Ok(file)) => {
                tracing::warn!(event = "results_spilled", services, checks, file = %file.display(),
                               "database unreachable at shutdown; results kept for the next start");
                return;
            }
            Some(Err(e)) => format!("cannot write the state directory: {e}"),
            None => "no daemon.state_dir (or $STATE_DIRECTORY) to keep them in".to_owned(),
        };
        tracing::error!(event = "results_lost", services, checks, reason = %why,
                        "database unreachable at shutdown; these results were not written");
    }
}
