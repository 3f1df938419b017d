//! The health state machine (pure): `next(state, observation, thresholds)` returns the new state
//! and the alert-worthy transition, if any. No I/O: the caller logs and stores.
//!
//! - A failure sets consecutive_failures += 1 and consecutive_successes = 0; a success the reverse.
//! - `healthy` becomes false when consecutive_failures reaches the failure threshold (logged as
//!   `service_down`), and true when consecutive_successes reaches the success threshold (logged as
//!   `service_up` if it was down; a never-judged service becoming healthy is not an alert).
//! - While down, every failure at least `reminder_interval` after the last alert is a reminder.
//! - A healthy service answering slower than `degraded_after` is `service_degraded`, once until
//!   it answers fast again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
    pub degraded_after: Duration,
    pub reminder_interval: Duration,
}

impl From<&Config> for Thresholds {
    fn from(config: &Config) -> Self {
        Self {
            failure: config.probe.failure_threshold,
            success: config.probe.success_threshold,
            degraded_after: config.probe.degraded_after,
            reminder_interval: config.alerts.reminder_interval,
        }
    }
}

/// What the state machine remembers of one service. Survives restarts through
/// `service_health_status` (all but `degraded` and `last_alert_at`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// `None` until the thresholds have judged the service one way or the other.
    pub healthy: Option<bool>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When `healthy` last changed.
    pub state_changed_at: Option<DateTime<Utc>>,
    pub degraded: bool,
    /// When `service_down` or `service_still_down` was last logged.
    pub last_alert_at: Option<DateTime<Utc>>,
}

/// One check, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub success: bool,
    pub latency: Duration,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up { down_for: Duration },
    StillDown,
    Degraded,
}

impl Transition {
    /// The alert log's `event` name.
    pub fn event(self) -> &'static str {
        match self {
            Transition::Down => "service_down",
            Transition::Up { .. } => "service_up",
            Transition::StillDown => "service_still_down",
            Transition::Degraded => "service_degraded",
        }
    }
}

pub fn next(
    state: &ServiceState,
    obs: Observation,
    th: &Thresholds,
) -> (ServiceState, Option<Transition>) {
    let mut s = state.clone();
    let since = |t: Option<DateTime<Utc>>| {
        t.map_or(Duration::ZERO, |t| {
            (obs.at - t).to_std().unwrap_or_default()
        })
    };
    if obs.success {
        s.consecutive_successes = s.consecutive_successes.saturating_add(1);
        s.consecutive_failures = 0;
        s.last_success_at = Some(obs.at);
        if s.healthy != Some(true) {
            if s.consecutive_successes < th.success {
                return (s, None);
            }
            let was = s.healthy;
            let down_for = since(s.state_changed_at);
            s.healthy = Some(true);
            s.state_changed_at = Some(obs.at);
            s.last_alert_at = None;
            return (
                s,
                (was == Some(false)).then_some(Transition::Up { down_for }),
            );
        }
        let slow = obs.latency > th.degraded_after;
        let became_slow = slow && !s.degraded;
        s.degraded = slow;
        (s, became_slow.then_some(Transition::Degraded))
    } else {
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.consecutive_successes = 0;
        s.last_failure_at = Some(obs.at);
        s.degraded = false;
        if s.healthy != Some(false) {
            if s.consecutive_failures < th.failure {
                return (s, None);
            }
            s.healthy = Some(false);
            s.state_changed_at = Some(obs.at);
            s.last_alert_at = Some(obs.at);
            return (s, Some(Transition::Down));
        }
        let due = s
            .last_alert_at
            .is_none_or(|t| since(Some(t)) >= th.reminder_interval);
        if due {
            s.last_alert_at = Some(obs.at);
        }
        (s, due.then_some(Transition::StillDown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const TH: Thresholds = Thresholds {
        failure: 3,
        success: 2,
        degraded_after: Duration::from_secs(2),
        reminder_interval: Duration::from_secs(1800),
    };

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn ok(s: i64) -> Observation {
        Observation {
            success: true,
            latency: Duration::from_millis(20),
            at: at(s),
        }
    }

    fn slow(s: i64) -> Observation {
        Observation {
            success: true,
            latency: Duration::from_secs(3),
            at: at(s),
        }
    }

    fn fail(s: i64) -> Observation {
        Observation {
            success: false,
            latency: Duration::from_millis(5),
            at: at(s),
        }
    }

    /// Runs `steps` from `start` and returns each step's transition.
    fn run(start: ServiceState, steps: &[Observation]) -> (ServiceState, Vec<Option<Transition>>) {
        let mut s = start;
        let mut out = Vec::new();
        for &obs in steps {
            let (n, t) = next(&s, obs, &TH);
            s = n;
            out.push(t);
        }
        (s, out)
    }

    fn healthy() -> ServiceState {
        ServiceState {
            healthy: Some(true),
            state_changed_at: Some(at(-100)),
            ..Default::default()
        }
    }

    fn down_since(t: i64) -> ServiceState {
        ServiceState {
            healthy: Some(false),
            consecutive_failures: 5,
            state_changed_at: Some(at(t)),
            last_alert_at: Some(at(t)),
            ..Default::default()
        }
    }

    /// (name, start state, checks, transition after each, healthy at the end)
    type Case = (
        &'static str,
        ServiceState,
        Vec<Observation>,
        Vec<Option<Transition>>,
        Option<bool>,
    );

    #[test]
    fn transitions() {
        use Transition::*;
        let cases: Vec<Case> = vec![
            (
                "unknown, successes reach the threshold: healthy, no alert",
                ServiceState::default(),
                vec![ok(0), ok(1)],
                vec![None, None],
                Some(true),
            ),
            (
                "unknown, one success is not enough with success threshold 2",
                ServiceState::default(),
                vec![ok(0)],
                vec![None],
                None,
            ),
            (
                "unknown, failures reach the threshold: down",
                ServiceState::default(),
                vec![fail(0), fail(1), fail(2)],
                vec![None, None, Some(Down)],
                Some(false),
            ),
            (
                "healthy, failures below the threshold: still healthy",
                healthy(),
                vec![fail(0), fail(1)],
                vec![None, None],
                Some(true),
            ),
            (
                "healthy, a success resets the failure count",
                healthy(),
                vec![fail(0), fail(1), ok(2), fail(3), fail(4)],
                vec![None; 5],
                Some(true),
            ),
            (
                "healthy, three failures: down exactly once",
                healthy(),
                vec![fail(0), fail(1), fail(2), fail(3)],
                vec![None, None, Some(Down), None],
                Some(false),
            ),
            (
                "down, successes below the threshold: still down",
                down_since(0),
                vec![ok(10)],
                vec![None],
                Some(false),
            ),
            (
                "down, success threshold reached: up with its downtime",
                down_since(0),
                vec![ok(10), ok(70)],
                vec![
                    None,
                    Some(Up {
                        down_for: Duration::from_secs(70),
                    }),
                ],
                Some(true),
            ),
            (
                "down, a failure between successes restarts the count",
                down_since(0),
                vec![ok(10), fail(11), ok(12)],
                vec![None, None, None],
                Some(false),
            ),
            (
                "down, reminder only after reminder_interval",
                down_since(0),
                vec![fail(60), fail(1799), fail(1800), fail(1830), fail(3600)],
                vec![None, None, Some(StillDown), None, Some(StillDown)],
                Some(false),
            ),
            (
                "down after a restart (no alert time): first failure reminds",
                ServiceState {
                    last_alert_at: None,
                    ..down_since(0)
                },
                vec![fail(5), fail(6)],
                vec![Some(StillDown), None],
                Some(false),
            ),
            (
                "healthy and slow: degraded once, again after a fast answer",
                healthy(),
                vec![slow(0), slow(1), ok(2), slow(3)],
                vec![Some(Degraded), None, None, Some(Degraded)],
                Some(true),
            ),
            (
                "a slow answer that brings a service up is an up, not a degraded",
                down_since(0),
                vec![slow(10), slow(11), slow(12)],
                vec![
                    None,
                    Some(Up {
                        down_for: Duration::from_secs(11),
                    }),
                    Some(Degraded),
                ],
                Some(true),
            ),
        ];
        for (name, start, steps, want, want_healthy) in cases {
            let (end, got) = run(start, &steps);
            assert_eq!(got, want, "{name}");
            assert_eq!(end.healthy, want_healthy, "{name}");
        }
    }

    #[test]
    fn counters_and_times_follow_the_checks() {
        let (s, _) = run(healthy(), &[fail(0), fail(1)]);
        assert_eq!((s.consecutive_failures, s.consecutive_successes), (2, 0));
        assert_eq!(s.last_failure_at, Some(at(1)));
        let (s, _) = run(s, &[ok(2)]);
        assert_eq!((s.consecutive_failures, s.consecutive_successes), (0, 1));
        assert_eq!(s.last_success_at, Some(at(2)));
        assert_eq!(s.state_changed_at, Some(at(-100)), "no state change");
        let (s, _) = run(s, &[fail(3), fail(4), fail(5)]);
        assert_eq!(s.state_changed_at, Some(at(5)));
    }

    #[test]
    fn event_names_match_the_alert_log_contract() {
        assert_eq!(Transition::Down.event(), "service_down");
        assert_eq!(
            Transition::Up {
                down_for: Duration::ZERO
            }
            .event(),
            "service_up"
        );
        assert_eq!(Transition::StillDown.event(), "service_still_down");
        assert_eq!(Transition::Degraded.event(), "service_degraded");
    }
}
