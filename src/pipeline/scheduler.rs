//! When each service is checked. Every service has a stable phase within the interval (from a
//! hash of its service_type), so thousands of services spread evenly instead of firing together.
//! One driver task keeps every service's next slot in a queue and starts each check, when due,
//! as a task of its own (so a hung or slow service never delays another); a global semaphore
//! bounds the checks in flight; the next slot is worked out when a check ends, so a tick
//! missed while a check ran long is skipped, not burst. A scheduler that replaces another on a
//! reload takes over its epoch and each service's last slot, so every service stays on its
//! slot grid.
//!
//! A waiting service is a queue row and a map entry (a few hundred bytes), not a task with its
//! timer and its futures: memory per service is what grows with the fleet (issue 16).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plan::placement::{LastSlot, next_check, phase};
use crate::plan::target::Planned;
use crate::probe::{Check, Prober};

/// A finished check of one service, as the scheduler hands it to the monitor.
#[derive(Debug, Clone)]
pub struct Report {
    /// Shared with the scheduler's entry: a report costs no copy of either string.
    pub service_type: Arc<str>,
    pub url: Arc<str>,
    pub check: Check,
}

/// One scheduled service.
struct Entry {
    planned: Arc<Planned>,
    service_type: Arc<str>,
    url: Arc<str>,
    phase: Duration,
    /// The slot its latest check counted for, written as the check starts.
    last: Option<LastSlot>,
    /// Changes when the entry is replaced: queue rows and checks of another one are stale.
    generation: u64,
}

/// A queued slot: due at, service, entry generation, the slot it counts for.
type Slot = Reverse<(Instant, Arc<str>, u64, Duration)>;

struct State {
    /// Slots are counted from here; a scheduler taking over keeps it.
    epoch: Instant,
    entries: HashMap<Arc<str>, Entry>,
    queue: BinaryHeap<Slot>,
    generations: u64,
}

impl State {
    /// Queues the entry's next slot (from the clock and its last one).
    fn queue_next(&mut self, service: &str, interval: Duration) -> Option<Instant> {
        let entry = self.entries.get(service)?;
        let (slot, counts_for) =
            next_check(self.epoch.elapsed(), entry.last, entry.phase, interval);
        let due = self.epoch + slot;
        let row = (
            due,
            entry.service_type.clone(),
            entry.generation,
            counts_for,
        );
        self.queue.push(Reverse(row));
        Some(due)
    }
}

/// What the driver and the checks share.
struct Shared {
    prober: Prober,
    semaphore: Arc<Semaphore>,
    interval: Duration,
    reports: mpsc::Sender<Report>,
    state: Mutex<State>,
    /// Wakes the driver: a slot was queued.
    queued: Notify,
    checks: TaskTracker,
    /// No new checks once cancelled.
    stop: CancellationToken,
    /// In-flight checks are abandoned once cancelled (the shutdown grace ran out).
    abort: CancellationToken,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Scheduler {
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            prober,
            semaphore: Arc::new(Semaphore::new(concurrency)),
            interval,
            reports,
            state: Mutex::new(State {
                epoch: Instant::now(),
                entries: HashMap::new(),
                queue: BinaryHeap::new(),
                generations: 0,
            }),
            queued: Notify::new(),
            checks: TaskTracker::new(),
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
        });
        tokio::spawn(drive(shared.clone()));
        Self {
            shared,
            inherited: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.shared.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the scheduled set equal `planned`: adds new services, drops removed ones, and
    /// replaces changed ones (same phase and last slot, so a changed port costs no extra
    /// check). A check in flight for a removed or changed service still reports.
    pub fn apply(&mut self, planned: Vec<Planned>) {
        let interval = self.shared.interval;
        let mut state = self.shared.state();
        let mut wanted: HashMap<String, Planned> = planned
            .into_iter()
            .map(|p| (p.service_type().to_owned(), p))
            .collect();
        let mut carried: HashMap<String, LastSlot> = HashMap::new();
        state
            .entries
            .retain(|service, entry| match wanted.get(&**service) {
                Some(p) if *p == *entry.planned => {
                    wanted.remove(&**service);
                    true
                }
                changed_or_gone => {
                    if let (Some(_), Some(last)) = (changed_or_gone, entry.last) {
                        carried.insert(service.to_string(), last);
                    }
                    false
                }
            });
        let (added, total) = (wanted.len(), state.entries.len() + wanted.len());
        for (service, p) in wanted {
            let last = carried
                .remove(&service)
                .or_else(|| self.inherited.remove(&service));
            state.generations += 1;
            let service_type: Arc<str> = service.as_str().into();
            let entry = Entry {
                phase: phase(&service, interval),
                url: p.url().into(),
                planned: Arc::new(p),
                service_type: service_type.clone(),
                last,
                generation: state.generations,
            };
            state.entries.insert(service_type, entry);
            state.queue_next(&service, interval);
        }
        // Rows of removed and replaced entries are skipped when they come up; a queue mostly
        // of those is rebuilt, so it stays proportional to the fleet.
        if state.queue.len() > 2 * state.entries.len() + 1024 {
            let State { entries, queue, .. } = &mut *state;
            queue
                .retain(|Reverse((_, s, g, _))| entries.get(s).is_some_and(|e| e.generation == *g));
        }
        drop(state);
        if added > 0 {
            self.shared.queued.notify_one();
            tracing::debug!(added, total, "scheduler updated");
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
        // First, so that no old check starts (and moves its slot) after the reading.
        old.shared.stop.cancel();
        {
            let old_state = old.shared.state();
            self.shared.state().epoch = old_state.epoch;
            self.inherited = old.inherited.clone();
            self.inherited.extend(
                old_state
                    .entries
                    .iter()
                    .filter_map(|(service, e)| Some((service.to_string(), e.last?))),
            );
        }
        old.stop(grace)
    }

    /// Stops scheduling at once; the returned future gives in-flight checks `grace` to finish,
    /// then abandons them.
    pub fn stop(self, grace: Duration) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        shared.stop.cancel();
        shared.checks.close();
        async move {
            if tokio::time::timeout(grace, shared.checks.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    event = "checks_abandoned",
                    "shutdown grace ran out; cancelling checks still in flight"
                );
                shared.abort.cancel();
                shared.checks.wait().await;
            }
        }
    }
}

/// A scheduler dropped without `stop` (a reload that failed after building it) ends its
/// driver: nothing else would, and the driver holds the reports channel open.
impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// The driver: sleeps until the earliest queued slot (or a newly queued one), then starts
/// every check that is due, each when a permit is free.
async fn drive(shared: Arc<Shared>) {
    // Taken at the first check, once the daemon has installed its recorder.
    let mut lag_seconds = None;
    loop {
        let next = shared.state().queue.peek().map(|Reverse(row)| row.0);
        let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            // Stopped first: a stopped scheduler must not start a check its successor also plans.
            biased;
            () = shared.stop.cancelled() => return,
            () = shared.queued.notified() => continue,
            () = tokio::time::sleep_until(wake) => {}
        }
        while let Some(Due {
            due,
            service,
            generation,
            counts_for,
        }) = pop_due(&shared)
        {
            let permit = tokio::select! {
                biased;
                () = shared.stop.cancelled() => return,
                permit = shared.semaphore.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { return };
            // Written once the check is certain, for a scheduler that takes this one over.
            let started = {
                let mut state = shared.state();
                // Stopped meanwhile (on another thread): a successor has read the last slots
                // and plans this one; and `checks` may be closed already.
                if shared.stop.is_cancelled() {
                    return;
                }
                match state.entries.get_mut(&*service) {
                    Some(entry) if entry.generation == generation => {
                        entry.last = Some(LastSlot {
                            slot: counts_for,
                            interval: shared.interval,
                        });
                        Some((
                            entry.planned.clone(),
                            entry.service_type.clone(),
                            entry.url.clone(),
                        ))
                    }
                    _ => None, // replaced or removed while waiting for the permit
                }
            };
            let Some((planned, service_type, url)) = started else {
                continue;
            };
            lag_seconds
                .get_or_insert_with(|| metrics::histogram!(crate::observe::metrics::SCHEDULER_LAG))
                .record(Instant::now().saturating_duration_since(due).as_secs_f64());
            shared.checks.spawn(run_check(
                shared.clone(),
                planned,
                service_type,
                url,
                generation,
                permit,
            ));
        }
    }
}

/// A queued slot that has come due.
struct Due {
    due: Instant,
    service: Arc<str>,
    generation: u64,
    /// The slot it counts for.
    counts_for: Duration,
}

/// The earliest queued slot if it is due; stale rows (of removed or replaced entries) are
/// dropped on the way.
fn pop_due(shared: &Shared) -> Option<Due> {
    let mut state = shared.state();
    let now = Instant::now();
    while let Some(Reverse((due, _, _, _))) = state.queue.peek() {
        if *due > now {
            return None;
        }
        let Reverse((due, service, generation, counts_for)) = state.queue.pop()?;
        if state
            .entries
            .get(&service)
            .is_some_and(|e| e.generation == generation)
        {
            return Some(Due {
                due,
                service,
                generation,
                counts_for,
            });
        }
    }
    None
}

/// One check, its report, and the service's next slot.
async fn run_check(
    shared: Arc<Shared>,
    planned: Arc<Planned>,
    service_type: Arc<str>,
    url: Arc<str>,
    generation: u64,
    permit: OwnedSemaphorePermit,
) {
    let check = tokio::select! {
        () = shared.abort.cancelled() => return,
        check = shared.prober.check_planned(&planned) => check,
    };
    drop(permit);
    let report = Report {
        service_type: service_type.clone(),
        url,
        check,
    };
    if shared.reports.send(report).await.is_err() || shared.stop.is_cancelled() {
        return;
    }
    let mut state = shared.state();
    if state
        .entries
        .get(&service_type)
        .is_some_and(|e| e.generation == generation)
    {
        let earliest = state.queue.peek().map(|Reverse(row)| row.0);
        let due = state.queue_next(&service_type, shared.interval);
        drop(state);
        if due.is_some_and(|due| earliest.is_none_or(|e| due < e)) {
            shared.queued.notify_one();
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
