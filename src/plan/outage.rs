//! Telling the monitor's own outage from the fleet's (pure): when every canary fails, or when
//! more than `mass_failure_ratio` of the daemon's services (at least [`MIN_SERVICES`]) go from
//! passing to failing within one interval, the failures are the monitor's (its network, its
//! resolver, its host), not the services'.
//!
//! The detector sees every check before the state machine does. The failures that made the
//! share were judged normally as they came; when the outage is declared they are handed back
//! (`Declared::recalled`) so the caller can undo them: restore each service's state from before
//! its first failure and count those checks as inconclusive. While the outage lasts every
//! failure is inconclusive; it ends when the canaries pass again and the failing share falls
//! back to the ratio or below.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::plan::health::ServiceState;

/// A mass failure among fewer services than this is judged service by service.
pub const MIN_SERVICES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every configured canary fails.
    Canaries,
    /// More than the ratio of services went from passing to failing within one interval.
    MassFailure,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Canaries => "canaries",
            Reason::MassFailure => "mass_failure",
        }
    }
}

/// A service whose failures began within the last interval, after a success.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// Its state before the first of these failures.
    pub before: ServiceState,
    /// When each of these failures was made.
    pub failures: Vec<DateTime<Utc>>,
}

/// An outage just declared.
#[derive(Debug)]
pub struct Declared {
    pub reason: Reason,
    pub failing: usize,
    pub total: usize,
    /// The failures judged before the declaration, to be undone.
    pub recalled: Vec<(String, Fresh)>,
}

/// What the caller does with one check.
#[derive(Debug)]
pub enum Verdict {
    /// Judge it as usual.
    Judge,
    /// A failure during an outage: count it as inconclusive, leave the state alone.
    Inconclusive,
    /// This failure declares an outage; it is inconclusive too.
    Declare(Declared),
}

#[derive(Debug)]
pub struct Detector {
    ratio: f64,
    interval: TimeDelta,
    /// Services whose latest check failed.
    failing: HashSet<String>,
    fresh: HashMap<String, Fresh>,
    /// (first failure, service) in arrival order, to forget fresh failures after an interval.
    order: VecDeque<(DateTime<Utc>, String)>,
    /// `None`: no canaries configured (or none checked yet).
    canaries_failing: Option<bool>,
    active: Option<Reason>,
}

impl Detector {
    pub fn new(ratio: f64, interval: std::time::Duration) -> Self {
        Self {
            ratio,
            interval: TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX),
            failing: HashSet::new(),
            fresh: HashMap::new(),
            order: VecDeque::new(),
            canaries_failing: None,
            active: None,
        }
    }

    pub fn set_limits(&mut self, ratio: f64, interval: std::time::Duration) {
        self.ratio = ratio;
        self.interval = TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX);
    }

    pub fn active(&self) -> Option<Reason> {
        self.active
    }

    /// Services whose latest check failed.
    pub fn failing(&self) -> usize {
        self.failing.len()
    }

    /// The canaries' latest verdict (`None`: no canaries).
    pub fn canaries(&mut self, all_failing: Option<bool>) {
        self.canaries_failing = all_failing;
    }

    /// Whether more than the ratio of `total` services is `count`.
    fn over_ratio(&self, count: usize, total: usize) -> bool {
        total >= MIN_SERVICES && count as f64 > self.ratio * total as f64
    }

    /// One check of `service` (`before`: its state before this check), among `total` services.
    pub fn observe(
        &mut self,
        service: &str,
        success: bool,
        at: DateTime<Utc>,
        before: &ServiceState,
        total: usize,
    ) -> Verdict {
        self.forget_before(at - self.interval);
        if success {
            self.failing.remove(service);
            self.fresh.remove(service);
            return Verdict::Judge;
        }
        let newly = self.failing.insert(service.to_owned());
        if self.active.is_some() {
            return Verdict::Inconclusive;
        }
        if let Some(f) = self.fresh.get_mut(service) {
            f.failures.push(at);
        } else if newly && before.consecutive_successes > 0 {
            self.fresh.insert(
                service.to_owned(),
                Fresh {
                    before: before.clone(),
                    failures: vec![at],
                },
            );
            self.order.push_back((at, service.to_owned()));
        }
        let reason = if self.canaries_failing == Some(true) {
            Some(Reason::Canaries)
        } else if self.over_ratio(self.fresh.len(), total) {
            Some(Reason::MassFailure)
        } else {
            None
        };
        let Some(reason) = reason else {
            return Verdict::Judge;
        };
        let mut declared = self.declare(reason, total);
        // This check has not been judged: the caller records it as inconclusive itself.
        if let Some((_, fresh)) = declared.recalled.iter_mut().find(|(s, _)| s == service) {
            fresh.failures.pop();
        }
        Verdict::Declare(declared)
    }

    /// Declares an outage now (the canaries failing between checks).
    pub fn declare_if_due(&mut self, total: usize) -> Option<Declared> {
        (self.active.is_none() && self.canaries_failing == Some(true))
            .then(|| self.declare(Reason::Canaries, total))
    }

    fn declare(&mut self, reason: Reason, total: usize) -> Declared {
        self.active = Some(reason);
        self.order.clear();
        let mut recalled: Vec<(String, Fresh)> = self.fresh.drain().collect();
        recalled.sort_by(|a, b| a.0.cmp(&b.0));
        Declared {
            reason,
            failing: self.failing.len(),
            total,
            recalled,
        }
    }

    /// Ends the outage if it is over: the canaries do not all fail, and the failing share is back
    /// at the ratio or below. Returns the reason it had.
    pub fn recover_if_due(&mut self, total: usize) -> Option<Reason> {
        let reason = self.active?;
        let over =
            self.canaries_failing == Some(true) || self.over_ratio(self.failing.len(), total);
        if over {
            return None;
        }
        self.active = None;
        Some(reason)
    }

    /// A service no longer ours (deleted, or handed over) no longer counts.
    pub fn forget(&mut self, service: &str) {
        self.failing.remove(service);
        self.fresh.remove(service);
    }

    fn forget_before(&mut self, oldest: DateTime<Utc>) {
        while let Some((t, _)) = self.order.front() {
            if *t >= oldest {
                break;
            }
            let (t, service) = self.order.pop_front().expect("front exists");
            if self
                .fresh
                .get(&service)
                .is_some_and(|f| f.failures.first() == Some(&t))
            {
                self.fresh.remove(&service);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    fn passing() -> ServiceState {
        ServiceState {
            healthy: Some(true),
            consecutive_successes: 4,
            ..Default::default()
        }
    }

    fn name(i: usize) -> String {
        format!("s{i:02}")
    }

    #[test]
    fn most_of_a_fleet_failing_within_an_interval_is_the_monitors_outage() {
        let mut d = Detector::new(0.5, Duration::from_secs(10));
        for i in 0..6 {
            let v = d.observe(&name(i), false, at(i as i64 * 100), &passing(), 12);
            assert!(
                matches!(v, Verdict::Judge),
                "{i}: half is not more than half"
            );
        }
        let Verdict::Declare(declared) = d.observe(&name(6), false, at(700), &passing(), 12) else {
            panic!("the 7th of 12 is more than half")
        };
        assert_eq!(
            (declared.reason, declared.failing, declared.total),
            (Reason::MassFailure, 7, 12)
        );
        assert_eq!(
            declared.recalled.len(),
            7,
            "all the failures judged so far are handed back"
        );
        let judged: usize = declared
            .recalled
            .iter()
            .map(|(_, f)| f.failures.len())
            .sum();
        assert_eq!(judged, 6, "the declaring check itself was not judged");
        assert!(matches!(
            d.observe(&name(7), false, at(800), &passing(), 12),
            Verdict::Inconclusive
        ));
        assert!(matches!(
            d.observe(&name(9), true, at(900), &passing(), 12),
            Verdict::Judge
        ));
        assert_eq!(d.recover_if_due(12), None, "8 of 12 still failing");
        for i in 0..3 {
            d.observe(&name(i), true, at(1000 + i as i64), &passing(), 12);
        }
        assert_eq!(
            d.recover_if_due(12),
            Some(Reason::MassFailure),
            "5 of 12 failing"
        );
        assert_eq!(d.active(), None);
    }

    #[test]
    fn failures_spread_over_more_than_an_interval_are_the_services_own() {
        let mut d = Detector::new(0.5, Duration::from_secs(1));
        for i in 0..12 {
            let v = d.observe(&name(i), false, at(i as i64 * 400), &passing(), 12);
            assert!(matches!(v, Verdict::Judge), "{i}");
        }
    }

    #[test]
    fn small_fleets_and_services_already_failing_never_declare() {
        let mut d = Detector::new(0.5, Duration::from_secs(10));
        for i in 0..9 {
            assert!(matches!(
                d.observe(&name(i), false, at(0), &passing(), 9),
                Verdict::Judge
            ));
        }
        let mut d = Detector::new(0.5, Duration::from_secs(10));
        let down = ServiceState::default();
        for i in 0..12 {
            assert!(matches!(
                d.observe(&name(i), false, at(0), &down, 12),
                Verdict::Judge
            ));
        }
    }

    #[test]
    fn failing_canaries_declare_and_passing_ones_recover() {
        let mut d = Detector::new(0.5, Duration::from_secs(10));
        d.canaries(Some(false));
        assert!(d.declare_if_due(3).is_none());
        d.canaries(Some(true));
        let declared = d.declare_if_due(3).expect("every canary fails");
        assert_eq!(declared.reason, Reason::Canaries);
        assert!(matches!(
            d.observe("a", false, at(0), &passing(), 3),
            Verdict::Inconclusive
        ));
        assert_eq!(d.recover_if_due(3), None);
        d.canaries(Some(false));
        assert_eq!(d.recover_if_due(3), Some(Reason::Canaries));
    }
}
