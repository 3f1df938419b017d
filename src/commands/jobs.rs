//! `mcp-healthd jobs list` and `jobs run NAME`: the schedules with their last runs, and one
//! job run by hand through the same code path (and the same run record) as the scheduler.

use std::process::ExitCode;

use chrono::Utc;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::jobs::{self, Fence, JobContext, JobName, RunOutcome, Trigger, runs};
use crate::store::db;

fn names() -> String {
    JobName::ALL.map(JobName::as_str).join(", ")
}

pub async fn list(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = db::open_current(&config.database).await?;
    let last = runs::last_runs(&pool).await?;
    let now = Utc::now();
    let time = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    println!(
        "{:<26} {:<14} {:<19}  {:<19}  {:<9} {:>9} {:>7}  ERROR",
        "JOB", "SCHEDULE", "NEXT RUN (UTC)", "LAST RUN (UTC)", "STATUS", "ROWS", "BATCHES"
    );
    for job in JobName::ALL {
        let schedule = job.schedule(config);
        let run = last.iter().find(|r| r.job == job.as_str());
        println!(
            "{:<26} {:<14} {:<19}  {:<19}  {:<9} {:>9} {:>7}  {}",
            job.as_str(),
            schedule.as_str(),
            time(schedule.next_after(now)),
            time(run.map(|r| r.started_at)),
            run.map_or("never", |r| r.status.as_str()),
            run.map_or(0, |r| r.rows_affected),
            run.map_or(0, |r| r.batches),
            run.and_then(|r| r.error.as_deref()).unwrap_or("")
        );
    }
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let Some(job) = JobName::parse(name) else {
        anyhow::bail!("no job named {name:?}; the jobs are: {}", names());
    };
    let pool = db::open_current(&config.database).await?;
    let ctx = JobContext {
        pool: &pool,
        config,
        clock: &SystemClock,
        fence: Fence::Manual,
    };
    let holder = format!("{} (manual)", crate::cluster::identity());
    let outcome = jobs::run(job, &ctx, Trigger::Manual, &holder).await?;
    pool.close().await;
    match outcome {
        RunOutcome::Finished(done) => {
            println!(
                "{job}: succeeded, {} rows affected in {} batches",
                done.rows_affected, done.batches
            );
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Failed(failed) => {
            anyhow::bail!(
                "{job}: failed after {} rows in {} batches: {:#}",
                failed.done.rows_affected,
                failed.done.batches,
                failed.error
            )
        }
        RunOutcome::Skipped => {
            anyhow::bail!("{job}: skipped, another run of it is still in progress")
        }
    }
}
