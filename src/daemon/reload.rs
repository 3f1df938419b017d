//! SIGHUP: swap a freshly validated configuration in. What changed is rebuilt, the rest is
//! told through the config channel. Every new piece is built before any is swapped in, so a
//! reload that fails part-way (a busy port, a bad schedule) leaves everything as it was.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::running::Running;
use crate::cluster::instance_id;
use crate::config::Config;
use crate::jobs::scheduler::JobScheduling;
use crate::observe::telemetry::{self, LevelHandle};
use crate::pipeline::scheduler::Scheduler;

/// The pieces a reload replaces; `None` where the settings they depend on did not change.
struct Fresh {
    scheduler: Option<Scheduler>,
    jobs: Option<JobScheduling>,
    http: Option<Option<super::task::Task>>,
}

impl Running {
    /// Swaps `new` in: what changed is restarted, the rest keeps running.
    pub async fn reload(
        &mut self,
        mut new: Config,
        log: Option<&LevelHandle>,
    ) -> anyhow::Result<()> {
        let old = self.config.clone();
        keep_restart_only_settings(&old, &mut new);
        let fresh = self.build_fresh(&old, &new).await?;
        self.swap_in(fresh, &new).await;
        self.retune(new, &old, log).await;
        Ok(())
    }

    /// Builds whatever `new` changes; on a failure, stops what was already built.
    async fn build_fresh(&self, old: &Config, new: &Config) -> anyhow::Result<Fresh> {
        let scheduler = match new.probe != old.probe {
            true => Some(Self::new_scheduler(new, self.reports.clone())?),
            false => None,
        };
        let jobs = match new.jobs != old.jobs {
            true => Some(
                crate::jobs::scheduler::start(
                    self.pool.clone(),
                    Arc::new(new.clone()),
                    instance_id(),
                )
                .await?,
            ),
            false => None,
        };
        let http = match new.http.listen != old.http.listen {
            true => match Self::start_http(new, &self.stats, &self.pool).await {
                Ok(http) => Some(http),
                Err(e) => {
                    if let Some(jobs) = jobs {
                        jobs.stop(new.daemon.shutdown_grace).await;
                    }
                    return Err(e);
                }
            },
            false => None,
        };
        Ok(Fresh {
            scheduler,
            jobs,
            http,
        })
    }

    /// Replaces the running pieces by the fresh ones; the old ones finish in the background.
    async fn swap_in(&mut self, fresh: Fresh, new: &Config) {
        let grace = new.daemon.shutdown_grace;
        if let Some(scheduler) = fresh.scheduler {
            // The old tasks stop scheduling now; their in-flight checks finish and report. The
            // new scheduler takes over each service's slot grid: no repeated check, no burst.
            let old = std::mem::replace(&mut self.scheduler, scheduler);
            tokio::spawn(self.scheduler.take_over(old, grace));
        }
        if let Some(jobs) = fresh.jobs {
            tokio::spawn(std::mem::replace(&mut self.jobs, jobs).stop(grace));
        }
        if let Some(http) = fresh.http
            && let Some(previous) = std::mem::replace(&mut self.http, http)
        {
            previous.stop().await;
        }
    }

    /// Tells the long-lived pieces about `new` and re-plans every target with it.
    async fn retune(&mut self, new: Config, old: &Config, log: Option<&LevelHandle>) {
        if let Some(handle) = log {
            telemetry::set_level(handle, &new.log.level);
        }
        let period = new.probe.interval + new.probe.timeout;
        self.stats
            .check_period_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
        self.config = Arc::new(new);
        self.config_tx.send_replace(self.config.clone());
        if self.config.registry != old.registry {
            let fresh = Self::start_watcher(
                &self.pool,
                &self.config,
                self.rows.clone(),
                self.changes.clone(),
            );
            std::mem::replace(&mut self.watcher, fresh).stop().await;
        }
        // Re-plan: default_host, timeouts and expected statuses shape every target.
        let rows = self.rows.clone();
        self.apply_registry(rows, "registry_replanned");
    }
}

/// Settings that take effect only on restart: kept as they are, with a warning.
fn keep_restart_only_settings(old: &Config, new: &mut Config) {
    if new.database != old.database {
        tracing::warn!(
            event = "reload_partial",
            "database settings change only on restart; keeping the current ones"
        );
        new.database = old.database.clone();
    }
    if new.log.format != old.log.format {
        tracing::warn!(
            event = "reload_partial",
            "log.format changes only on restart"
        );
    }
}
