//! Tells a client connection's owner when its connection task ended, so a test
//! can wait for the server (the proxy) to close it: idle timeouts, drains.

use std::future::Future;

use tokio::sync::watch;

use crate::bound::within;

/// Resolves once the connection's task has ended. Clones watch the same task.
#[derive(Clone, Debug)]
pub(super) struct Closed(watch::Receiver<bool>);

// === impl Closed ===

impl Closed {
    /// Spawns the connection's task, noting when it ends.
    pub(super) fn spawn<F>(connection: F) -> Self
    where
        F: Future + Send + 'static,
    {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            // How it ended (cleanly or with an error) is for the request that
            // was in flight to report, not the connection.
            let _ = connection.await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    pub(super) fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    pub(super) async fn wait(&self, what: &str) {
        let mut rx = self.0.clone();
        // The sender is only dropped after sending `true`.
        let _ = within(what, rx.wait_for(|closed| *closed)).await;
    }
}
