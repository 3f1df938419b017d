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

use crate::monitor::Report;
use crate::probe::{Check, ErrorKind, Outcome, Prober};
use crate::target::Planned;

/// The service's offset within the interval: FNV-1a of its name, so it is the same on every
/// start and on every host.
pub fn phase(service_type: &str, interval: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service_type.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos(u64::try_from(u128::from(hash) % nanos).unwrap_or(0))
}

/// The first slot `phase + k * interval` (k ≥ 0) at or after `elapsed`.
pub fn next_slot(elapsed: Duration, phase: Duration, interval: Duration) -> Duration {
    if elapsed <= phase {
        return phase;
    }
    let interval_ns = interval.as_nanos().max(1);
    let k = (elapsed - phase).as_nanos().div_ceil(interval_ns);
    phase + Duration::from_nanos(u64::try_from(k * interval_ns).unwrap_or(u64::MAX))
}

/// The first round after a scheduler starts is compressed into this share of the interval, so
/// every service has been checked once well within one interval of start, start-up included
/// (its second check then comes at most 1.4 intervals after its first; from there on, exactly
/// one per interval).
const FIRST_ROUND: f64 = 0.6;

/// A service's first slot while the scheduler is still in its first round (`elapsed` since it
/// started): its compressed phase, or at once if that has passed already (services with the
/// smallest phases, added while the scheduler was being set up). `None` after the first round.
pub fn first_slot(elapsed: Duration, phase: Duration, interval: Duration) -> Option<Duration> {
    (elapsed < interval.mul_f64(FIRST_ROUND)).then(|| phase.mul_f64(FIRST_ROUND).max(elapsed))
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
        metrics::histogram!(crate::metrics::SCHEDULER_LAG).record(lag.as_secs_f64());
        let check = match &planned {
            Planned::Probe(target) => {
                tokio::select! {
                    () = shared.abort.cancelled() => return,
                    check = shared.prober.check(target) => check,
                }
            }
            Planned::Invalid(invalid) => Check {
                started_at: chrono::Utc::now(),
                latency: Duration::ZERO,
                outcome: Outcome::failure(ErrorKind::InvalidTarget, invalid.reason.clone()),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_stable_and_spread() {
        let interval = Duration::from_secs(30);
        assert_eq!(phase("github", interval), phase("github", interval));
        assert!(phase("github", interval) < interval);
        // 10,000 services over 30 one-second buckets: each bucket near 333.
        let mut buckets = [0u32; 30];
        for i in 0..10_000 {
            buckets[phase(&format!("svc-{i}"), interval).as_secs() as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min > 250 && *max < 420, "uneven spread: {min}..{max}");
    }

    #[test]
    fn the_first_round_finishes_within_most_of_one_interval() {
        let s = Duration::from_secs;
        let interval = s(30);
        assert_eq!(first_slot(s(0), s(10), interval), Some(s(6)));
        assert_eq!(
            first_slot(s(7), s(10), interval),
            Some(s(7)),
            "passed already: at once"
        );
        assert_eq!(
            first_slot(s(19), s(10), interval),
            None,
            "after the first round: regular slots"
        );
        // After the compressed first check the regular schedule resumes one interval on.
        assert_eq!(
            next_slot(s(10) + Duration::from_nanos(1), s(10), s(30)),
            s(40)
        );
    }

    #[test]
    fn slots_skip_missed_ticks() {
        let s = Duration::from_secs;
        let cases = [
            (s(0), s(7), s(10), s(7)),
            (s(7), s(7), s(10), s(7)),
            (s(8), s(7), s(10), s(17)),
            (s(43), s(7), s(10), s(47)),
            (s(47), s(7), s(10), s(47)),
        ];
        for (elapsed, phase, interval, want) in cases {
            assert_eq!(
                next_slot(elapsed, phase, interval),
                want,
                "{elapsed:?} {phase:?}"
            );
        }
    }
}
