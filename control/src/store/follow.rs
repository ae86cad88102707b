//! Following the other replicas' writes (Kubernetes backend).
//!
//! A loop reads the ConfigMap, adopts it, and watches it from that
//! `resourceVersion`, adopting every write; when the watch ends (the server's
//! timeout, 410 Gone, a dropped connection) it reads again and watches again.
//! While the API is unreachable the replica keeps serving the last state it
//! read and retries with a backoff doubling from [`BACKOFF_MIN`] to
//! [`BACKOFF_MAX`]; a watch that lasted [`HEALTHY`] resets it.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::state::kubernetes::Change;
use crate::state::{ConfigMapState, StateError};

/// The first retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A watch round lasting this long counts as healthy.
pub const HEALTHY: Duration = Duration::from_secs(5);

// === impl Store ===

impl Store {
    /// Follows the ConfigMap until `cancel`.
    pub(super) async fn follow(self, state: ConfigMapState, cancel: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let round = tokio::select! {
                _ = cancel.cancelled() => return,
                round = self.follow_once(&state) => round,
            };
            if let Err(e) = &round {
                tracing::warn!(
                    error = %e,
                    retry_in = ?backoff,
                    "cannot follow the shared state; serving the last state read"
                );
            }
            if round.is_ok() && started.elapsed() >= HEALTHY {
                backoff = BACKOFF_MIN;
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One read-then-watch round; returns when the watch ends.
    async fn follow_once(&self, state: &ConfigMapState) -> Result<(), StateError> {
        let stored = state.load().await?;
        let revision = stored.revision.clone();
        self.adopt_remote(stored).await;
        let mut changes = pin!(state.watch(&revision).await?);
        while let Some(change) = changes.next().await {
            match change {
                Change::Written(stored) => self.adopt_remote(stored).await,
                Change::Progress => {}
                Change::Deleted => {
                    tracing::warn!(
                        configmap = state.describe(),
                        "the state ConfigMap was deleted; the next write creates it again"
                    );
                }
                Change::Restart(why) => {
                    tracing::debug!(%why, "watch of the shared state restarts");
                    break;
                }
            }
        }
        Ok(())
    }
}
