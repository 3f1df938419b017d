//! A background task the daemon can stop: a cancellation token and the handle to wait on.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Task {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `body(stop)`; the body returns once `stop` is cancelled.
    pub fn spawn<F>(body: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(body(stop.clone()));
        Self { stop, handle }
    }

    /// Cancels the task and waits for it to return.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }

    /// Cancels the task and waits at most `limit` for it to return; then aborts it (a task stuck
    /// on a silent database must not hold up the shutdown).
    pub async fn stop_within(mut self, limit: std::time::Duration) {
        self.stop.cancel();
        if tokio::time::timeout(limit, &mut self.handle).await.is_err() {
            self.handle.abort();
            tracing::warn!(
                event = "task_abandoned",
                "a task did not stop within {limit:?}"
            );
        }
    }
}
