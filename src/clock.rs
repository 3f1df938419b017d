//! Time, injected: "now" comes from a [`Clock`] (the daemon uses the system clock; tests of
//! time-dependent work pass one they control), and [`Renewal`] paces the loops that keep an
//! expiring row alive (heartbeats, the leader lease).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Paces the renewal of something that expires after `ttl`: due at once, then every third of
/// the ttl (two renewals may fail before it lapses), never in a burst after a stall. It also
/// tracks failure streaks, so the caller logs the first failure of each streak and not every one.
#[derive(Debug)]
pub struct Renewal {
    tick: Interval,
    failing: bool,
}

impl Renewal {
    pub fn every_third_of(ttl: Duration) -> Self {
        let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            tick,
            failing: false,
        }
    }

    /// Waits until the next renewal is due: `true`, or `false` once `stop` is cancelled.
    pub async fn due(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }

    pub fn succeeded(&mut self) {
        self.failing = false;
    }

    /// Records a failed renewal; `true` if it starts a streak (the one to log).
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }
}

/// Sleeps until `at`, or forever when there is no such moment: a `select!` arm for an optional
/// deadline (a fence, a hand-over).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn renewals_come_every_third_of_the_ttl_until_stopped() {
        let stop = CancellationToken::new();
        let mut renewal = Renewal::every_third_of(Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        assert!(renewal.due(&stop).await, "due at once");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(renewal.due(&stop).await);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        stop.cancel();
        assert!(!renewal.due(&stop).await);
    }

    #[test]
    fn only_the_first_failure_of_a_streak_is_reported() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut renewal = rt.block_on(async { Renewal::every_third_of(Duration::from_secs(3)) });
        assert!(renewal.failed());
        assert!(!renewal.failed());
        renewal.succeeded();
        assert!(renewal.failed(), "a new streak after a success");
    }
}
