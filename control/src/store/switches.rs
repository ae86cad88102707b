//! The store's fleet-wide switches (see [`crate::switches`]).

use super::{Store, StoreError};
use crate::switches::BoostsState;
use crate::timestamp::Timestamp;

// === impl Store ===

impl Store {
    /// Turns boosts off on every sidecar, or back to what the document says
    /// (`PUT /v1/boosts`). Setting what is already set changes nothing (the
    /// time it was turned off stays).
    pub async fn set_boosts(&self, enabled: bool) -> Result<BoostsState, StoreError> {
        let mut inner = self.shared.inner.lock().await;
        let changed = self.write(&mut inner, |store, inner| {
            let was = inner.switches.boosts_enabled();
            inner.switches.boosts_off_since = match (enabled, inner.switches.boosts_off_since) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(Timestamp(store.now())),
            };
            Ok(was != enabled)
        });
        if changed.await? {
            tracing::info!(
                enabled,
                "boosts turned {} fleet-wide",
                if enabled { "on" } else { "off" }
            );
        }
        drop(inner);
        Ok(self.boosts().await)
    }

    /// The fleet switch for boosts (`GET /v1/boosts`).
    pub async fn boosts(&self) -> BoostsState {
        let switches = self.shared.inner.lock().await.switches;
        BoostsState {
            enabled: switches.boosts_enabled(),
            off_since: switches.boosts_off_since,
            version: self.snapshot().version,
        }
    }
}
