//! When each service is checked. Every service has a stable phase within the interval (from a
//! hash of its service_type), so thousands of services spread evenly instead of firing together.
//! Each service runs in its own task, so a hung or slow service never delays another; a global
//! semaphore bounds the checks in flight; a tick missed while a check ran long is skipped, not
//! burst. A scheduler that replaces another on a reload takes over its epoch and each service's
//! last slot, so every service stays on its slot grid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plan::placement::{LastSlot, next_check, phase};
use crate::plan::target::Planned;
use crate::probe::{Check, Prober};

/// A finished check of one service, as the scheduler hands it to the monitor.
#[derive(Debug, Clone)]
pub struct Report {
    /// Shared with the service's task: a report costs no copy of either string.
    pub service_type: Arc<str>,
    pub url: Arc<str>,
    pub check: Check,
}

/// What every service task shares.
struct Shared {
    prober: Prober,
    semaphore: Arc<Semaphore>,
    interval: Duration,
    reports: mpsc::Sender<Report>,
    /// No new checks once cancelled.
    stop: CancellationToken,
    /// In-flight checks are abandoned once cancelled (the shutdown grace ran out).
    abort: CancellationToken,
}

/// The slot a service's latest check counted for, written by its task as the check starts.
type LastCell = Arc<Mutex<Option<LastSlot>>>;

fn read(cell: &LastCell) -> Option<LastSlot> {
    *cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Running {
    planned: Planned,
    stop: CancellationToken,
    handle: JoinHandle<()>,
    last: LastCell,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    /// Slots are counted from here; a scheduler taking over keeps it.
    epoch: Instant,
    tasks: HashMap<String, Running>,
    /// The last slots of services a replaced scheduler ran, for their first check here.
    inherited: HashMap<String, LastSlot>,
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
                reports,
                stop: CancellationToken::new(),
                abort: CancellationToken::new(),
            }),
            epoch: Instant::now(),
            tasks: HashMap::new(),
            inherited: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Makes the running set equal `planned`: starts new services, stops removed ones, and
    /// restarts changed ones (same phase and last slot, so a changed port costs no extra check).
    pub fn apply(&mut self, planned: Vec<Planned>) {
        let mut wanted: HashMap<String, Planned> = planned
            .into_iter()
            .map(|p| (p.service_type().to_owned(), p))
            .collect();
        let mut carried: HashMap<String, LastSlot> = HashMap::new();
        self.tasks
            .retain(|service, running| match wanted.get(service) {
                Some(p) if *p == running.planned => {
                    wanted.remove(service);
                    true
                }
                changed_or_gone => {
                    running.stop.cancel();
                    if let (Some(_), Some(last)) = (changed_or_gone, read(&running.last)) {
                        carried.insert(service.clone(), last);
                    }
                    false
                }
            });
        let (added, total) = (wanted.len(), self.tasks.len() + wanted.len());
        for (service, p) in wanted {
            let last = carried
                .remove(&service)
                .or_else(|| self.inherited.remove(&service));
            let running = self.spawn(p, last);
            self.tasks.insert(service, running);
        }
        if added > 0 {
            tracing::debug!(added, total, "scheduler updated");
        }
    }

    fn spawn(&self, planned: Planned, last: Option<LastSlot>) -> Running {
        let stop = self.shared.stop.child_token();
        let last = Arc::new(Mutex::new(last));
        let handle = tokio::spawn(service_loop(
            self.shared.clone(),
            self.epoch,
            planned.clone(),
            stop.clone(),
            last.clone(),
        ));
        Running {
            planned,
            stop,
            handle,
            last,
        }
    }

    /// Takes over from `old`, the scheduler this one replaces on a reload (before any service
    /// is applied here): `old` stops scheduling at once, and this one keeps its epoch and each
    /// service's last slot, so every service stays on its slot grid, with no check repeated and
    /// no compressed first round. Returns `old`'s stop, which lets its in-flight checks finish.
    pub fn take_over(
        &mut self,
        old: Scheduler,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        // First, so that no old task starts a check (and moves its slot) after the reading.
        old.shared.stop.cancel();
        self.epoch = old.epoch;
        self.inherited = old.inherited.clone();
        self.inherited.extend(
            old.tasks
                .iter()
                .filter_map(|(service, r)| Some((service.clone(), read(&r.last)?))),
        );
        old.stop(grace)
    }

    /// Stops scheduling at once; the returned future gives in-flight checks `grace` to finish,
    /// then abandons them.
    pub fn stop(self, grace: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.shared.stop.cancel();
        let abort = self.shared.abort.clone();
        let handles: Vec<JoinHandle<()>> = self.tasks.into_values().map(|r| r.handle).collect();
        async move {
            let all = futures::future::join_all(handles);
            tokio::pin!(all);
            if tokio::time::timeout(grace, &mut all).await.is_err() {
                tracing::warn!(
                    event = "checks_abandoned",
                    "shutdown grace ran out; cancelling checks still in flight"
                );
                abort.cancel();
                all.await;
            }
        }
    }
}

async fn service_loop(
    shared: Arc<Shared>,
    epoch: Instant,
    planned: Planned,
    stop: CancellationToken,
    last: LastCell,
) {
    let phase = phase(planned.service_type(), shared.interval);
    let mut previous = read(&last);
    let (service_type, url): (Arc<str>, Arc<str>) =
        (planned.service_type().into(), planned.url().into());
    let lag_seconds = metrics::histogram!(crate::observe::metrics::SCHEDULER_LAG);
    loop {
        // From the clock, so a tick missed while a check ran long is skipped, never made up in
        // a burst; and a whole interval after the last slot, so no check runs twice in one.
        let (slot, counts_for) = next_check(epoch.elapsed(), previous, phase, shared.interval);
        let due = epoch + slot;
        let permit = tokio::select! {
            // Stopped first: a stopped task must not start a check its successor also plans.
            biased;
            () = stop.cancelled() => return,
            permit = async {
                tokio::time::sleep_until(due).await;
                shared.semaphore.clone().acquire_owned().await
            } => permit,
        };
        let Ok(_permit) = permit else { return };
        // Written once the check is certain, for a scheduler that takes this one over.
        previous = Some(LastSlot {
            slot: counts_for,
            interval: shared.interval,
        });
        *last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = previous;
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        lag_seconds.record(lag.as_secs_f64());
        let check = tokio::select! {
            () = shared.abort.cancelled() => return,
            // Boxed: a task's future is as large as its largest state, and a check's is kilobytes
            // (hyper's connection, the redirect loop); boxed, it is allocated only while a check
            // runs (at most `probe.concurrency` at once), not held by every sleeping task.
            check = Box::pin(shared.prober.check_planned(&planned)) => check,
        };
        drop(_permit);
        let report = Report {
            service_type: service_type.clone(),
            url: url.clone(),
            check,
        };
        if shared.reports.send(report).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
