//! Running jobs on their cron schedules (tokio-cron-scheduler, UTC), on the leader only.
//!
//! A lease task renews the leader lease every third of `jobs.lease_ttl`; each cron tick checks
//! whether this daemon is the leader and, if so, spawns the run. Overlap is handled by the run
//! lock in `jobs::run` (a due run finding the previous one still going is recorded as skipped).
//! On shutdown the lease is released so another daemon takes over at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::lease::{self, Fence};
use super::{JobContext, JobName, Trigger};
use crate::clock::{Renewal, SystemClock};
use crate::config::Config;
use crate::config::cron::CronSchedule;

/// Shared between the lease task and the cron callbacks: the epoch of our lease, 0 if none.
#[derive(Debug, Default)]
pub struct Leadership(AtomicI64);

impl Leadership {
    pub fn epoch(&self) -> Option<i64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|e| *e > 0)
    }
}

pub struct JobScheduling {
    scheduler: JobScheduler,
    lease_task: tokio::task::JoinHandle<()>,
    runs: Arc<tokio::sync::Mutex<Option<JoinSet<()>>>>,
    stop: CancellationToken,
}

pub async fn start(
    pool: PgPool,
    config: Arc<Config>,
    holder: String,
) -> anyhow::Result<JobScheduling> {
    let leadership = Arc::new(Leadership::default());
    let stop = CancellationToken::new();
    let lease_task = tokio::spawn(keep_lease(
        pool.clone(),
        config.jobs.lease_ttl,
        holder.clone(),
        leadership.clone(),
        stop.clone(),
    ));
    let shared = Shared {
        pool,
        config,
        holder,
        leadership,
        runs: Arc::new(tokio::sync::Mutex::new(Some(JoinSet::new()))),
    };
    let scheduler = JobScheduler::new().await?;
    for job in JobName::ALL {
        scheduler.add(cron_job(job, shared.clone())?).await?;
    }
    scheduler.start().await?;
    Ok(JobScheduling {
        scheduler,
        lease_task,
        runs: shared.runs,
        stop,
    })
}

/// What every cron callback works with.
#[derive(Clone)]
struct Shared {
    pool: PgPool,
    config: Arc<Config>,
    holder: String,
    leadership: Arc<Leadership>,
    runs: Arc<tokio::sync::Mutex<Option<JoinSet<()>>>>,
}

/// The cron entry of one job, on the job's schedule.
fn cron_job(job: JobName, shared: Shared) -> anyhow::Result<Job> {
    let schedule = job.schedule(&shared.config).clone();
    let text = schedule.as_str().to_owned();
    let cron_job = Job::new_async(text, move |_, _| {
        Box::pin(on_tick(job, shared.clone(), schedule.clone()))
    })?;
    Ok(cron_job)
}

/// One firing of `job`'s schedule: on the leader, spawns the run, due at the firing time.
async fn on_tick(job: JobName, shared: Shared, schedule: CronSchedule) {
    let Some(epoch) = shared.leadership.epoch() else {
        return;
    };
    let now = Utc::now();
    let due = schedule.latest_at_or_before(now).unwrap_or(now);
    let runs = shared.runs.clone();
    // `None` once stopping: a firing that raced the stop starts nothing the stop cannot see.
    if let Some(runs) = runs.lock().await.as_mut() {
        spawn_reaping(runs, run_due(job, shared, epoch, due));
    }
}

/// Spawns `run` into `runs` after taking out the runs that have finished, so the set holds
/// only runs still going, however long the daemon runs. A run that panicked is logged.
fn spawn_reaping<F>(runs: &mut JoinSet<()>, run: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    while let Some(finished) = runs.try_join_next() {
        if let Err(e) = finished
            && e.is_panic()
        {
            tracing::error!(event = "job_failed", error = %e, "a maintenance job run panicked");
        }
    }
    runs.spawn(run);
}

/// Runs `job` under the lease of `epoch`, as due at `due`.
async fn run_due(job: JobName, shared: Shared, epoch: i64, due: DateTime<Utc>) {
    let ctx = JobContext {
        pool: &shared.pool,
        config: &shared.config,
        clock: &SystemClock,
        fence: Fence::Lease {
            holder: shared.holder.clone(),
            epoch,
        },
    };
    if let Err(e) = super::run(job, &ctx, Trigger::Schedule(due), &shared.holder).await {
        tracing::error!(event = "job_failed", job = job.as_str(), error = %format!("{e:#}"),
                        "could not record the run");
    }
}

impl JobScheduling {
    /// Stops scheduling, gives running jobs `grace` to finish (then abandons them: their
    /// transactions roll back), and always releases the lease.
    pub async fn stop(mut self, grace: std::time::Duration) {
        let _ = self.scheduler.shutdown().await;
        let mut runs = self.runs.lock().await.take().unwrap_or_default();
        let finished =
            tokio::time::timeout(grace, async { while runs.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(
                event = "jobs_abandoned",
                "maintenance jobs still running when the grace ran out"
            );
            runs.abort_all();
        }
        self.stop.cancel();
        let _ = self.lease_task.await;
    }
}

async fn keep_lease(
    pool: PgPool,
    ttl: std::time::Duration,
    holder: String,
    leadership: Arc<Leadership>,
    stop: CancellationToken,
) {
    let mut renewal = Renewal::every_third_of(ttl);
    while renewal.due(&stop).await {
        // A renewal slower than the lease itself is worthless: the ttl is its deadline.
        let renew = lease::acquire_or_renew(&pool, lease::MAINTENANCE, &holder, ttl);
        let epoch = match crate::store::db::deadline(ttl, renew).await {
            Ok(epoch) => {
                renewal.succeeded();
                epoch
            }
            Err(e) => {
                // Once per streak: a missing grant would otherwise stop all jobs silently.
                if renewal.failed() {
                    tracing::warn!(event = "lease_failed", error = %e, "cannot take or renew the leader lease; no jobs run here");
                }
                None
            }
        };
        let before = leadership.0.swap(epoch.unwrap_or(0), Ordering::SeqCst);
        match (before > 0, epoch) {
            (false, Some(epoch)) => {
                tracing::info!(event = "leader_elected", holder = %holder, epoch)
            }
            (true, None) => tracing::warn!(event = "leader_lost", holder = %holder),
            _ => {}
        }
    }
    if leadership.0.swap(0, Ordering::SeqCst) > 0 {
        let release = lease::release(&pool, lease::MAINTENANCE, &holder);
        let _ = crate::store::db::deadline(ttl, release).await;
        tracing::info!(event = "leader_released", holder = %holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_runs_are_reaped_so_the_set_does_not_grow() {
        let mut runs = JoinSet::new();
        for _ in 0..100 {
            let (done, finished) = tokio::sync::oneshot::channel();
            spawn_reaping(&mut runs, async move {
                let _ = done.send(());
            });
            // On this one-thread runtime the run has returned once its message is here.
            finished.await.unwrap();
        }
        assert_eq!(runs.len(), 1, "only the latest run, not one per tick");
        let (_keep, pending) = tokio::sync::oneshot::channel::<()>();
        spawn_reaping(&mut runs, async move {
            let _ = pending.await;
        });
        spawn_reaping(&mut runs, std::future::ready(()));
        assert_eq!(runs.len(), 2, "a run still going is kept");
    }
}
