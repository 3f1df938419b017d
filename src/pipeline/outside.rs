//! What the monitor learns from outside the checks, each fed by a small task: the maintenance
//! windows (re-read from the database every few seconds; the last list read is kept while the
//! database is away) and the canaries' verdict (every canary checked once per interval; all
//! failing means the monitor's own network is the likelier culprit).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plan::target::{Method, Target};
use crate::probe::Prober;
use crate::store::db;
use crate::store::maintenance::{self, Window};

/// How often the maintenance windows are re-read.
pub const WINDOWS_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the maintenance windows every [`WINDOWS_EVERY`] until `stop`.
pub async fn feed_windows(
    pool: PgPool,
    config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Arc<Vec<Window>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(WINDOWS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let limit = db::call_limit(&config.borrow().database);
        let read = db::deadline(limit, maintenance::current_and_ahead(&pool));
        tokio::select! {
            () = stop.cancelled() => return,
            read = read => match read {
                Ok(windows) => {
                    tx.send_if_modified(|old| {
                        let changed = **old != windows;
                        if changed {
                            *old = Arc::new(windows);
                        }
                        changed
                    });
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the maintenance windows; keeping the last ones"),
            },
        }
    }
}

/// Checks every canary once per `probe.interval` until `stop`, and publishes whether all of
/// them failed (`None` while none is configured).
pub async fn feed_canaries(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Option<bool>>,
    stop: CancellationToken,
) {
    loop {
        let current = config.borrow_and_update().clone();
        let targets = canary_targets(&current);
        let prober = match Prober::new(&current.probe) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(event = "canaries_disabled", error = %format!("{e:#}"), "cannot build the canaries' prober");
                return;
            }
        };
        let mut tick = tokio::time::interval(current.probe.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Ok(()) = config.changed() => break,
                _ = tick.tick() => {}
            }
            if targets.is_empty() {
                tx.send_if_modified(|v| v.take().is_some());
                continue;
            }
            let checks = futures::future::join_all(targets.iter().map(|t| prober.check(t)));
            let all_failing = tokio::select! {
                () = stop.cancelled() => return,
                checks = checks => checks.iter().all(|c| !c.outcome.is_success()),
            };
            if all_failing {
                tracing::debug!(canaries = targets.len(), "every canary failed");
            }
            tx.send_if_modified(|v| v.replace(all_failing) != Some(all_failing));
        }
    }
}

fn canary_targets(config: &Config) -> Vec<Target> {
    config
        .alerts
        .canaries
        .iter()
        .map(|url| Target {
            service_type: "canary".into(),
            url: url.clone(),
            method: Method::Get,
            timeout: config.probe.timeout,
            expected_status: config.probe.expected_status.clone(),
            headers: Vec::new(),
            body_contains: None,
        })
        .collect()
}
