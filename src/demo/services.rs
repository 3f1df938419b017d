//! The demo's sample services: one small HTTP server per sample on a free loopback port, with
//! a mix of behaviours chosen by position (mostly healthy; some failing, slow, flapping or
//! recovering), the same on every run. Tests have their own, more hostile fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::task::JoinHandle;

/// How long a slow sample takes to answer: more than the demo's `probe.degraded_after`
/// (250 ms), less than its `probe.timeout` (1 s).
pub const SLOW: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    Failing,
    /// Answers after [`SLOW`]: degraded, but within the demo's probe timeout.
    Slow,
    /// Three answers, then three failures, and so on.
    Flapping,
    /// Fails its first six requests, then recovers.
    Recovering,
}

impl Behaviour {
    /// The sample at `index`: out of every ten, six healthy and one of each other kind.
    pub fn for_index(index: usize) -> Self {
        match index % 10 {
            6 => Self::Failing,
            7 => Self::Slow,
            8 => Self::Flapping,
            9 => Self::Recovering,
            _ => Self::Healthy,
        }
    }

    /// Whether request number `n` (from 1) succeeds.
    fn succeeds(self, n: usize) -> bool {
        match self {
            Self::Healthy | Self::Slow => true,
            Self::Failing => false,
            Self::Flapping => ((n - 1) / 3).is_multiple_of(2),
            Self::Recovering => n > 6,
        }
    }
}

/// One running sample service; stops when dropped.
pub struct Service {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `behaviour` on every path of a free loopback port.
pub async fn spawn(behaviour: Behaviour) -> std::io::Result<Service> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let requests = Arc::new(AtomicUsize::new(0));
    let answer = move || {
        let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            if behaviour == Behaviour::Slow {
                tokio::time::sleep(SLOW).await;
            }
            match behaviour.succeeds(n) {
                true => (StatusCode::OK, "{\"status\":\"ok\"}"),
                false => (StatusCode::INTERNAL_SERVER_ERROR, "{\"status\":\"error\"}"),
            }
        }
    };
    let app = Router::new().fallback(get(answer));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Service { port, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_succeed_and_fail_in_their_pattern() {
        let pattern = |b: Behaviour| (1..=12).map(|n| b.succeeds(n)).collect::<Vec<_>>();
        assert!(pattern(Behaviour::Healthy).iter().all(|ok| *ok));
        assert!(pattern(Behaviour::Failing).iter().all(|ok| !ok));
        let flap = pattern(Behaviour::Flapping);
        assert_eq!(&flap[..7], [true, true, true, false, false, false, true]);
        let recovering = pattern(Behaviour::Recovering);
        assert_eq!(recovering.iter().filter(|ok| !**ok).count(), 6);
        assert!(recovering[6..].iter().all(|ok| *ok));
        let kinds: Vec<Behaviour> = (0..10).map(Behaviour::for_index).collect();
        assert_eq!(
            kinds.iter().filter(|b| **b == Behaviour::Healthy).count(),
            6
        );
    }
}
