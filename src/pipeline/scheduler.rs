//! When each service is checked. Every service has a stable phase within the interval (from a
//! hash of its service_type), so thousands of services spread evenly instead of firing together.
//! Each service runs in its own task, so a hung or slow service never delays another; a global
//! semaphore bounds the checks in flight; a tick missed while a check ran long is skipped, not
//! burst.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plan::placement::{first_slot, next_slot, phase};
use crate::plan::target::Planned;
use crate::probe::{Check, Prober};

/// A finished check of one service, as the scheduler hands it to the monitor.
#[derive(Debug, Clone)]
pub struct Report {
    pub service_type: String,
    pub url: String,
    pub check: Check,
}

/// What every service task shares.
struct Shared {
    prober: Prober,
    semaphore: Arc<Semaphore>,
    interval: Duration,
    epoch: Instant,
    reports: mpsc::Sender<Report>,
    /// No new checks once cancelled.
    stop: CancellationToken,
    /// In-flight checks are abandoned once cancelled (the shutdown grace ran out).
    abort: CancellationToken,
}

struct Running {
    planned: Planned,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: HashMap<String, Running>,
}

impl Scheduler {
    pub fn new(
        prober: Prober,
        interval: Duration,
        concurrency: usize,
        reports: mpsc::Sender<Report>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                prober,
                semaphore: Arc::new(Semaphore::new(concurrency)),
                interval,
                epoch: Instant::now(),
                reports,
                stop: CancellationToken::new(),
                abort: CancellationToken::new(),
            }),
            tasks: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Makes the running set equal `planned`: starts new services, stops removed ones, and
    /// restarts changed ones (same phase, so a changed port costs no extra check).
    pub fn apply(&mut self, planned: Vec<Planned>) {
        let mut wanted: HashMap<String, Planned> = planned
            .into_iter()
            .map(|p| (p.service_type().to_owned(), p))
            .collect();
        self.tasks
            .retain(|service, running| match wanted.get(service) {
                Some(p) if *p == running.planned => {
                    wanted.remove(service);
                    true
                }
                _ => {
                    running.stop.cancel();
                    false
                }
            });
        let (added, total) = (wanted.len(), self.tasks.len() + wanted.len());
        for (service, p) in wanted {
            let stop = self.shared.stop.child_token();
            let handle = tokio::spawn(service_loop(self.shared.clone(), p.clone(), stop.clone()));
            self.tasks.insert(
                service,
                Running {
                    planned: p,
                    stop,
                    handle,
                },
            );
        }
        if added > 0 {
            tracing::debug!(added, total, "scheduler updated");
        }
    }

    /// Stops scheduling; in-flight checks get `grace` to finish, then are abandoned.
    pub async fn stop(self, grace: Duration) {
        self.shared.stop.cancel();
        let handles: Vec<JoinHandle<()>> = self.tasks.into_values().map(|r| r.handle).collect();
        let all = futures::future::join_all(handles);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!(
                event = "checks_abandoned",
                "shutdown grace ran out; cancelling checks still in flight"
            );
            self.shared.abort.cancel();
            all.await;
        }
    }
}

async fn service_loop(shared: Arc<Shared>, planned: Planned, stop: CancellationToken) {
    let phase = phase(planned.service_type(), shared.interval);
    let mut last_slot: Option<Duration> = None;
    loop {
        // From the clock, so a tick missed while a check ran long is skipped, never made up in
        // a burst; and strictly after the last slot, so a fast check never runs twice in one.
        let now = shared.epoch.elapsed();
        let slot = match (last_slot, first_slot(now, phase, shared.interval)) {
            (None, Some(first)) => {
                // Counts as this phase's slot: the next check is a whole interval after it.
                last_slot = Some(phase);
                first
            }
            _ => {
                let earliest = last_slot.map_or(now, |l| now.max(l + Duration::from_nanos(1)));
                let slot = next_slot(earliest, phase, shared.interval);
                last_slot = Some(slot);
                slot
            }
        };
        let due = shared.epoch + slot;
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = async {
                tokio::time::sleep_until(due).await;
                shared.semaphore.clone().acquire_owned().await
            } => permit,
        };
        let Ok(_permit) = permit else { return };
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        metrics::histogram!(crate::observe::metrics::SCHEDULER_LAG).record(lag.as_secs_f64());
        let check = tokio::select! {
            () = shared.abort.cancelled() => return,
            check = shared.prober.check_planned(&planned) => check,
        };
        drop(_permit);
        let report = Report {
            service_type: planned.service_type().to_owned(),
            url: planned.url().to_owned(),
            check,
        };
        if shared.reports.send(report).await.is_err() {
            return;
        }
    }
}
