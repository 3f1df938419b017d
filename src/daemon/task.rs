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
}
