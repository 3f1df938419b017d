//! The scheduler's timing under paused time: invalid targets are "checked" at once, without
//! I/O, so every report arrives at the instant its check was due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

use super::{Report, Scheduler};
use crate::plan::target::{InvalidTarget, Planned};
use crate::probe::Prober;

const SERVICES: usize = 40;
/// Timers fire on whole milliseconds.
const TOLERANCE: Duration = Duration::from_millis(2);

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn services(reason: &str) -> Vec<Planned> {
    (0..SERVICES)
        .map(|i| {
            Planned::Invalid(InvalidTarget {
                service_type: format!("svc-{i}"),
                url: String::new(),
                reason: reason.to_owned(),
            })
        })
        .collect()
}

fn scheduler(interval: Duration, reports: mpsc::Sender<Report>) -> Scheduler {
    // What `main` does first (the prober's client needs a TLS provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = crate::config::Config::from_toml("", "test", None).unwrap();
    Scheduler::new(Prober::new(&config.probe).unwrap(), interval, 8, reports)
}

type Log = Arc<Mutex<Vec<(String, Instant)>>>;

/// Every check's service and time, as they arrive.
fn record(mut reports: mpsc::Receiver<Report>) -> Log {
    let log = Log::default();
    let writer = log.clone();
    tokio::spawn(async move {
        while let Some(r) = reports.recv().await {
            writer
                .lock()
                .unwrap()
                .push((r.service_type.to_string(), Instant::now()));
        }
    });
    log
}

/// Each service's check times, oldest first.
fn by_service(log: &Log) -> HashMap<String, Vec<Instant>> {
    let mut times: HashMap<String, Vec<Instant>> = HashMap::new();
    for (service, at) in log.lock().unwrap().iter() {
        times.entry(service.clone()).or_default().push(*at);
    }
    times
}

/// Lets a scheduler run its first round and part of its second, then replaces it (as a reload
/// does) by one with `interval`; returns the log and the time of the replacement.
async fn reload_to(interval: Duration) -> (Log, Instant) {
    let (tx, rx) = mpsc::channel(1024);
    let log = record(rx);
    let mut old = scheduler(s(10), tx.clone());
    old.apply(services("before"));
    sleep(s(25)).await;
    let reloaded = Instant::now();
    let mut new = scheduler(interval, tx);
    tokio::spawn(new.take_over(old, s(1)));
    new.apply(services("before"));
    sleep(s(20)).await;
    // A changed target restarts its task: it keeps its slot too.
    new.apply(services("after"));
    sleep(s(20)).await;
    (log, reloaded)
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_every_service_on_its_grid() {
    let (log, reloaded) = reload_to(s(10)).await;
    for (service, times) in by_service(&log) {
        // The first round is compressed: the second check comes 1 to 1.4 intervals after it.
        let first = times[1] - times[0];
        assert!(first >= s(10) && first < s(14), "{service}: {first:?}");
        for pair in times[1..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap.abs_diff(s(10)) <= TOLERANCE,
                "{service}: checks {gap:?} apart, {:?} after the reload",
                pair[1] - reloaded
            );
        }
    }
    let after: usize = by_service(&log)
        .values()
        .map(|t| {
            t.iter()
                .filter(|at| **at >= reloaded && **at - reloaded < s(10))
                .count()
        })
        .sum();
    assert_eq!(
        after, SERVICES,
        "one check per service in the interval after the reload"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shorter_interval_takes_effect_without_a_burst() {
    let (log, reloaded) = reload_to(s(4)).await;
    for (service, times) in by_service(&log) {
        for pair in times[1..].windows(2) {
            let gap = pair[1] - pair[0];
            let since = pair[1] - reloaded;
            // At least the new interval, and on the new grid once the old slot is behind.
            assert!(
                gap + TOLERANCE >= s(4),
                "{service}: {gap:?}, {since:?} after"
            );
            if pair[0] > reloaded {
                assert!(
                    gap.abs_diff(s(4)) <= TOLERANCE,
                    "{service}: {gap:?}, {since:?} after"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_removed_service_is_checked_no_more_and_the_others_keep_their_rhythm() {
    let (tx, rx) = mpsc::channel(1024);
    let log = record(rx);
    let mut scheduler = scheduler(s(10), tx);
    let all = services("x");
    scheduler.apply(all.clone());
    sleep(s(25)).await;
    let removed_at = Instant::now();
    let kept: Vec<Planned> = all.into_iter().skip(SERVICES / 2).collect();
    scheduler.apply(kept);
    assert_eq!(scheduler.len(), SERVICES - SERVICES / 2);
    sleep(s(31)).await;
    let times = by_service(&log);
    for i in 0..SERVICES {
        let at = &times[&format!("svc-{i}")];
        let after = at
            .iter()
            .filter(|t| **t > removed_at && **t <= removed_at + s(30))
            .count();
        if i < SERVICES / 2 {
            assert_eq!(
                after, 0,
                "svc-{i} was removed, yet checked {after} times after"
            );
        } else {
            assert_eq!(after, 3, "svc-{i}: 30 s at a 10 s interval");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_scheduler_starts_no_check() {
    let (tx, rx) = mpsc::channel(1024);
    let log = record(rx);
    let mut scheduler = scheduler(s(10), tx);
    scheduler.apply(services("x"));
    sleep(s(15)).await;
    let before = log.lock().unwrap().len();
    scheduler.stop(s(1)).await;
    sleep(s(30)).await;
    assert_eq!(log.lock().unwrap().len(), before);
}

/// A scheduler dropped without `stop` (a reload that failed after building it) lets go of the
/// reports channel, so the monitor still sees the end of the checks at shutdown.
#[tokio::test(start_paused = true)]
async fn a_dropped_scheduler_lets_go_of_the_reports() {
    let (tx, mut rx) = mpsc::channel(1024);
    let mut scheduler = scheduler(s(10), tx);
    scheduler.apply(services("x"));
    sleep(s(15)).await;
    drop(scheduler);
    let drained = tokio::time::timeout(s(60), async { while rx.recv().await.is_some() {} }).await;
    assert!(drained.is_ok(), "the reports channel is still held");
}
