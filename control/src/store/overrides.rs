//! The store's override writes: add, change in place, remove, expire.
//!
//! Every write wakes the expiry timer, so a changed or new expiry is the one it
//! sleeps until.

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::overrides::{NewOverride, Override, OverrideChange};

// === impl Store ===

impl Store {
    /// Adds an incident override (`POST /v1/overrides`).
    pub async fn add_override(&self, new: NewOverride) -> Result<Override, StoreError> {
        let max = self.shared.options.max_override_duration;
        let new = new.build(self.now(), max).map_err(StoreError::Invalid)?;
        let mut inner = self.shared.inner.lock().await;
        let added = self.write(&mut inner, |_, inner| {
            if let Some(old) = inner.overrides.iter().find(|o| o.same_target(&new)) {
                return Err(StoreError::Conflict(format!(
                    "override {} already applies to {} until {}; change it (PATCH /v1/overrides/{}) or remove it first",
                    old.id,
                    new.target(),
                    old.expires_at,
                    old.id,
                )));
            }
            inner.overrides.push(new.clone());
            Ok(new.clone())
        });
        let added = added.await?;
        self.shared.overrides_changed.notify_one();
        Ok(added)
    }

    /// Changes an override in place (`PATCH /v1/overrides/{id}`): same id, same
    /// place in the application order.
    pub async fn update_override(
        &self,
        id: &str,
        change: &OverrideChange,
    ) -> Result<Override, StoreError> {
        let max = self.shared.options.max_override_duration;
        let mut inner = self.shared.inner.lock().await;
        let changed = self.write(&mut inner, |store, inner| {
            let Some(at) = inner.overrides.iter().position(|o| o.id == id) else {
                return Err(StoreError::NotFound(format!("no active override {id:?}")));
            };
            let next = change
                .apply_to(&inner.overrides[at], store.now(), max)
                .map_err(StoreError::Invalid)?;
            inner.overrides[at] = next.clone();
            Ok(next)
        });
        let changed = changed.await?;
        self.shared.overrides_changed.notify_one();
        Ok(changed)
    }

    /// Removes an override (`DELETE /v1/overrides/{id}`).
    pub async fn remove_override(&self, id: &str) -> Result<Override, StoreError> {
        let mut inner = self.shared.inner.lock().await;
        let removed = self.write(&mut inner, |_, inner| {
            let Some(at) = inner.overrides.iter().position(|o| o.id == id) else {
                return Err(StoreError::NotFound(format!("no active override {id:?}")));
            };
            Ok(inner.overrides.remove(at))
        });
        let removed = removed.await?;
        self.shared.overrides_changed.notify_one();
        Ok(removed)
    }

    /// Active overrides, in creation order.
    pub async fn overrides(&self) -> Vec<Override> {
        self.shared.inner.lock().await.overrides.clone()
    }

    /// Removes every override whose expiry has passed; returns how many.
    ///
    /// Replicas expiring the same override at once all end at the same state:
    /// the one that loses the race re-reads a state without it and has nothing
    /// left to remove.
    pub async fn expire(&self) -> usize {
        let mut inner = self.shared.inner.lock().await;
        let expired = self.write(&mut inner, |store, inner| {
            let now = store.now();
            let before = inner.overrides.len();
            inner.overrides.retain(|o| o.expires_at.0 > now);
            Ok(before - inner.overrides.len())
        });
        match expired.await {
            Ok(0) => 0,
            Ok(removed) => {
                tracing::info!(removed, "incident overrides expired");
                removed
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot persist state after override expiry");
                0
            }
        }
    }

    /// Sleeps until the earliest expiry, expires, and starts again; any override
    /// write wakes it to recompute the earliest expiry.
    pub(super) async fn expire_loop(self, cancel: CancellationToken) {
        loop {
            let next = {
                let inner = self.shared.inner.lock().await;
                inner.overrides.iter().map(|o| o.expires_at.0).min()
            };
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(self.shared.clock.instant_of(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.shared.overrides_changed.notified() => {}
                _ = wake => { self.expire().await; }
            }
        }
    }
}
