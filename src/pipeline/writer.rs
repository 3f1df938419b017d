//! The writer: flushes the pending batch on a fixed cadence, one statement per flush. When a
//! write fails it keeps that batch whole, under its id, and retries it as it is with backoff
//! (newer results wait in the pending batch), so a write that failed after the server committed
//! is not counted twice; `db_unavailable` / `db_recovered` are logged once per outage.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tokio::sync::watch;

use crate::config::Config;
use crate::observe::metrics::{DB_ERRORS, FLUSH_DURATION};
use crate::observe::stats::Stats;
use crate::store::db::Backoff;
use crate::store::{self, FlushContext, Pending};

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
    /// A batch whose write failed, kept whole under its id: retried as it is, so that if the
    /// failure came after the server committed, the retry adds nothing twice.
    failed: Option<(uuid::Uuid, Pending)>,
}

impl Outage {
    /// After a failed write: keeps `batch` under `id` for the retry, schedules the retry with
    /// backoff, and logs `db_unavailable` once per outage.
    fn write_failed(&mut self, e: &sqlx::Error, id: uuid::Uuid, batch: Pending) {
        metrics::counter!(DB_ERRORS).increment(1);
        let checks = batch.checks();
        self.failed = Some((id, batch));
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

impl Writer {
    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending batch lock poisoned"))
    }

    /// Writes the failed batch if there is one, else the pending results. Returns whether there
    /// was anything to write.
    async fn flush_once(&self, outage: &mut Outage) -> bool {
        if outage.retry_at.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        let Some((id, batch)) = self.next_batch(outage) else {
            return false;
        };
        let ctx = self.flush_context();
        let started = Instant::now();
        let result = store::flush(&self.pool, id, &batch, &ctx, Utc::now()).await;
        self.stats
            .db_ok
            .store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => self.written(&batch, started, outage),
            Err(e) => outage.write_failed(&e, id, batch),
        }
        true
    }

    /// The failed batch, under its id, if there is one; else the pending results under a new
    /// id; `None` when there is nothing to write.
    fn next_batch(&self, outage: &mut Outage) -> Option<(uuid::Uuid, Pending)> {
        match outage.failed.take() {
            Some(failed) => Some(failed),
            None => {
                let batch = self.take();
                if batch.is_empty() {
                    return None;
                }
                Some((uuid::Uuid::new_v4(), batch))
            }
        }
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

    /// Flushes every `flush_interval` until `stop`, then once more (the final flush).
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
                    self.flush_once(&mut outage).await;
                }
                Ok(()) = self.config.changed() => {
                    tick = new_tick(self.config.borrow_and_update().database.flush_interval);
                }
            }
        }
        // The final flush: a failed batch first, then what is pending, one attempt each.
        for _ in 0..2 {
            outage.retry_at = None;
            if !self.flush_once(&mut outage).await || outage.failed.is_some() {
                break;
            }
        }
        let left = self.take();
        let failed = outage
            .failed
            .take()
            .map(|(_, batch)| batch)
            .unwrap_or_default();
        if !left.is_empty() || !failed.is_empty() {
            tracing::error!(
                event = "results_lost",
                services = left.status.len().max(failed.status.len()),
                checks = left.checks() + failed.checks(),
                "database unreachable at shutdown; these results were not written"
            );
        }
    }
}
