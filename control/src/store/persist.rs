//! Persisting and publishing a change, and adopting another replica's state.
//!
//! Every write runs through [`Store::write`]: the change is applied to the
//! state in memory, saved, then published. With the Kubernetes backend the save
//! carries the `resourceVersion` last read; when another replica wrote first
//! (409), the fresh state is read and adopted and the *same change* is applied
//! to it again, at most [`CONFLICT_RETRIES`] more times. A change that no longer
//! applies (the override it edits was removed meanwhile) fails as it would have
//! on that state. On any failure the state in memory is what it was.

use std::sync::Arc;

use super::{Inner, Snapshot, Store, StoreError};
use crate::document::Document;
use crate::overrides::Override;
use crate::stages::StageAssignment;
use crate::state::{ApiBase, Backend, StateError, Stored};
use crate::switches::Switches;

/// How many times a write is re-applied after losing a race to another replica.
pub const CONFLICT_RETRIES: usize = 5;

/// The persisted part of [`Inner`], to compare and restore.
#[derive(Clone, PartialEq)]
struct Saved {
    overrides: Vec<Override>,
    stages: Vec<StageAssignment>,
    api_base: Option<ApiBase>,
    api_doc: Option<Document>,
    switches: Switches,
}

impl Inner {
    fn saved(&self) -> Saved {
        Saved {
            overrides: self.overrides.clone(),
            stages: self.stages.clone(),
            api_base: self.api_base.as_ref().map(|(b, _)| b.clone()),
            api_doc: self.api_base.as_ref().map(|(_, d)| d.clone()),
            switches: self.switches,
        }
    }

    fn restore(&mut self, saved: Saved) {
        self.overrides = saved.overrides;
        self.stages = saved.stages;
        self.api_base = saved.api_base.zip(saved.api_doc);
        self.switches = saved.switches;
    }
}

// === impl Store ===

impl Store {
    /// Applies `change`, persists what must be kept (only if it changed), and
    /// publishes; retries on a conflict with another replica (see the module).
    pub(super) async fn write<T>(
        &self,
        inner: &mut Inner,
        mut change: impl FnMut(&Store, &mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            let before = inner.saved();
            let out = change(self, inner)?;
            let persist = inner.saved() != before;
            match self.publish(inner, persist).await {
                Ok(()) => return Ok(out),
                Err(e) => {
                    inner.restore(before);
                    let retry = matches!(e, StateError::Conflict { .. });
                    if !retry || attempt == CONFLICT_RETRIES {
                        return Err(e.into());
                    }
                    attempt += 1;
                    tracing::debug!(attempt, "another replica wrote first; re-applying");
                    self.refresh(inner).await?;
                }
            }
        }
    }

    /// Saves the state if `persist`, then publishes a snapshot if anything
    /// effective changed. On an error nothing is published.
    async fn publish(&self, inner: &mut Inner, persist: bool) -> Result<(), StateError> {
        if persist {
            let snapshot = Snapshot::new(inner);
            let state = inner.persisted(snapshot.version);
            match &self.shared.state {
                Backend::File(file) => {
                    let file = file.clone();
                    let path = file.path().to_path_buf();
                    tokio::task::spawn_blocking(move || file.save(&state))
                        .await
                        .map_err(|e| StateError::Io {
                            path,
                            error: std::io::Error::other(e.to_string()),
                        })??;
                }
                Backend::Kubernetes(cm) => {
                    let revision = cm.save(&state, inner.revision.as_deref()).await?;
                    inner.revision = Some(revision);
                }
            }
            self.announce(snapshot);
            return Ok(());
        }
        self.announce(Snapshot::new(inner));
        Ok(())
    }

    /// Sends `next` unless it is the current state.
    fn announce(&self, next: Snapshot) {
        let current = self.snapshot();
        let changed = current.document != next.document
            || current.stages != next.stages
            || current.overrides != next.overrides
            || current.switches != next.switches;
        if changed {
            self.shared.tx.send_replace(Arc::new(next));
        }
    }

    /// Reads the stored state again (after a conflict) and adopts it.
    async fn refresh(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let Backend::Kubernetes(cm) = &self.shared.state else {
            return Ok(());
        };
        let stored = cm.load().await?;
        self.adopt(inner, stored);
        Ok(())
    }

    /// Makes another replica's write (or the state re-read) this replica's
    /// state, and publishes it. A revision already held is ignored, and so is
    /// one older than it (etcd's revisions increase; a watch may deliver an
    /// event this replica already overtook with a fresh read).
    pub(super) fn adopt(&self, inner: &mut Inner, stored: Stored) {
        if !newer(inner.revision.as_deref(), &stored.revision) {
            return;
        }
        inner.revision = Some(stored.revision);
        let state = stored.state;
        // Expired ones are dropped as on start, so every replica serves the same
        // overrides whether or not the expiry was written yet.
        let now = self.now();
        inner.overrides = state.overrides;
        inner.overrides.retain(|o| o.expires_at.0 > now);
        inner.stages = state.stages;
        inner.switches = state.switches;
        inner.api_base = state.api_base.and_then(|base| {
            match serde_json::from_value::<Document>(base.document.clone()) {
                Ok(doc) => Some((base, doc)),
                Err(e) => {
                    tracing::warn!(error = %e, "stored API document is invalid; serving the source file");
                    None
                }
            }
        });
        self.announce(Snapshot::new(inner));
        self.shared.overrides_changed.notify_one();
    }

    /// Adopts another replica's write (see [`Self::adopt`]).
    pub(super) async fn adopt_remote(&self, stored: Stored) {
        let mut inner = self.shared.inner.lock().await;
        self.adopt(&mut inner, stored);
    }
}

/// Whether `next` is a revision to adopt over `held`.
fn newer(held: Option<&str>, next: &str) -> bool {
    match held {
        None => true,
        Some(held) if held == next => false,
        Some(held) => match (held.parse::<u64>(), next.parse::<u64>()) {
            (Ok(h), Ok(n)) => n > h,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::newer;

    #[test]
    fn only_newer_revisions_are_adopted() {
        assert!(newer(None, "3"));
        assert!(!newer(Some("3"), "3"));
        assert!(!newer(Some("4"), "3"));
        assert!(newer(Some("4"), "10"));
        assert!(newer(Some("a"), "b"), "opaque revisions: adopt any other");
    }
}
