//! The store's base document: the source file's reloads and the API's writes,
//! last writer wins (see [`crate`]'s model).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Inner, Store, StoreError};
use crate::document::Document;
use crate::resolve;
use crate::source::{self, SourceText};
use crate::state::ApiBase;
use crate::timestamp::Timestamp;

// === impl Store ===

impl Store {
    /// Handles a poll of the source file: only a content change does anything.
    pub async fn source_changed(&self, read: Result<SourceText, String>) {
        let mut inner = self.shared.inner.lock().await;
        let seen = read.as_ref().map(|s| s.hash).map_err(Clone::clone);
        if inner.last_seen.as_ref() == Some(&seen) {
            return;
        }
        inner.last_seen = Some(seen);
        match source::parse(read, &self.shared.source_path) {
            Err(e) => {
                tracing::warn!(error = %e, "source file rejected; the last good document keeps serving");
                inner.load_error = Some(e);
            }
            Ok((doc, hash)) => {
                tracing::info!(source = %self.shared.source_path.display(), "source file loaded");
                inner.load_error = None;
                inner.file_doc = Some(doc);
                inner.file_hash = Some(hash);
                // The file changed after the API's last write: the file wins now,
                // unless that write was made against this very content (another
                // replica read the new file first).
                let written = self.write(&mut inner, |_, inner| {
                    if inner.api_base.as_ref().map(|(b, _)| b.source_hash) != Some(Some(hash)) {
                        inner.api_base = None;
                    }
                    Ok(())
                });
                if let Err(e) = written.await {
                    tracing::error!(error = %e, "cannot persist state after a source reload");
                }
            }
        }
    }

    /// Replaces the base document (`PUT /v1/config/base`); returns the version.
    pub async fn put_base(&self, doc: Document) -> Result<u64, StoreError> {
        let mut inner = self.shared.inner.lock().await;
        let base = self.write(&mut inner, |store, inner| {
            set_base(store, inner, doc.clone());
            Ok(())
        });
        base.await?;
        Ok(self.snapshot().version)
    }

    /// Applies a JSON merge patch to the base document (`PATCH /v1/config/base`);
    /// on a conflict with another replica it applies to the fresh document.
    pub async fn patch_base(&self, patch: &Value) -> Result<u64, StoreError> {
        let mut inner = self.shared.inner.lock().await;
        let base = self.write(&mut inner, |store, inner| {
            let mut json = inner.document().to_json();
            resolve::merge_patch(&mut json, patch);
            let doc = Document::from_json(json, "patched document")
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            set_base(store, inner, doc);
            Ok(())
        });
        base.await?;
        Ok(self.snapshot().version)
    }

    /// Polls the source file every `interval` until `cancel`, handing each read to
    /// [`Store::source_changed`] ([`source`] explains why polling).
    pub(super) async fn poll_source(self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let path = self.source_path().to_path_buf();
            let read = match tokio::task::spawn_blocking(move || source::read(&path)).await {
                Ok(read) => read,
                Err(e) => Err(format!("source reader task failed: {e}")),
            };
            self.source_changed(read).await;
        }
    }
}

/// Makes `doc` the base document until the source file changes again (last
/// writer wins).
fn set_base(store: &Store, inner: &mut Inner, doc: Document) {
    let base = ApiBase {
        document: doc.to_json(),
        source_hash: inner.file_hash,
        updated_at: Timestamp(store.now()),
    };
    inner.api_base = Some((base, doc));
}

#[cfg(test)]
mod tests {
    use crate::source;
    use crate::state::StateFile;
    use crate::store::Store;

    const GOOD: &str = "defaults: {sampling: {default_rate: 0.1}}\n";

    #[tokio::test]
    async fn an_emptied_source_keeps_the_last_good_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let store = Store::open(&path, StateFile::new(dir.path().join("state.json"))).unwrap();
        let before = store.snapshot();
        for emptied in ["", "\n  \n", "# being rewritten\n"] {
            std::fs::write(&path, emptied).unwrap();
            store.source_changed(source::read(&path)).await;
            let error = store.status().await.last_load_error.unwrap_or_default();
            assert!(error.contains("empty"), "{emptied:?}: {error:?}");
            let now = store.snapshot();
            assert_eq!(now.version, before.version, "nothing new was published");
            assert_eq!(
                now.document, before.document,
                "the last good document serves"
            );
            // Back to the good file (a change again), which clears the error.
            std::fs::write(&path, GOOD).unwrap();
            store.source_changed(source::read(&path)).await;
        }
    }

    #[test]
    fn an_empty_source_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let opened = Store::open(&path, StateFile::new(dir.path().join("state.json")));
        let error = opened.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("empty"), "{error}");
    }
}
