//! Graceful shutdown: one signal that every listener and connection watches, and a
//! tracker that knows when the last in-flight connection is done.
//!
//! SIGTERM, SIGINT and `POST /shutdown` all call [`Drain::start`]. Listeners stop
//! accepting (new connections are refused by the kernel), HTTP/1 connections close
//! after their in-flight request, HTTP/2 connections send GOAWAY and finish their
//! open streams, and [`Drain::wait`] returns once all of that is done or the drain
//! timeout expires.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared shutdown state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    signal: CancellationToken,
    tasks: TaskTracker,
}

// === impl Drain ===

impl Drain {
    /// Begins draining. Idempotent.
    pub fn start(&self) {
        self.signal.cancel();
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        self.signal.is_cancelled()
    }

    /// Resolves when draining begins.
    pub async fn signaled(&self) {
        self.signal.cancelled().await;
    }

    /// Spawns a connection task that the drain waits for.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Waits for draining to begin, then for every tracked task, at most `timeout`.
    /// Returns true when every task finished in time.
    pub async fn wait(&self, timeout: Duration) -> bool {
        self.signaled().await;
        self.tasks.close();
        let drained = tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                remaining = self.tasks.len(),
                "drain timeout expired with connections still open"
            );
        }
        drained
    }
}
