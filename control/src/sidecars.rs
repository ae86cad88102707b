//! Connected sidecars: who is watching, what they were sent, what they accepted.
//!
//! A sidecar is identified by `namespace/pod`. It is registered while its watch
//! stream is open; a reconnect under the same identity replaces the entry (the
//! older stream, if still open, no longer updates it and does not remove it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The ACK/NACK body is part of the wire protocol the sidecar shares.
pub use meshtrace_config::wire::{Ack, AckStatus};

use crate::overrides::Timestamp;
use crate::resolve::Workload;

/// What `GET /v1/sidecars` shows for one sidecar.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct SidecarInfo {
    /// `namespace/pod`.
    pub identity: String,
    /// Its service.
    pub service: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When the current watch stream opened.
    pub connected_since: Timestamp,
    /// The version of the last config sent to it.
    pub sent_version: Option<u64>,
    /// The last version it acknowledged.
    pub acked_version: Option<u64>,
    /// The last version it rejected, and why.
    pub last_rejection: Option<Rejection>,
}

/// A NACK.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Rejection {
    /// The rejected version.
    pub version: u64,
    /// The sidecar's error.
    pub error: String,
}

/// The registry; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Sidecars {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    info: SidecarInfo,
    namespace: String,
    connection: u64,
}

/// Keeps a sidecar registered; dropping it (stream end) unregisters it.
#[derive(Debug)]
pub struct Registration {
    sidecars: Sidecars,
    identity: String,
    connection: u64,
}

// === impl Sidecars ===

impl Sidecars {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave an entry half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a watch stream.
    pub fn register(
        &self,
        namespace: &str,
        pod: &str,
        workload: &Workload,
        now: Timestamp,
    ) -> Registration {
        let identity = format!("{namespace}/{pod}");
        let connection = fastrand::u64(..);
        let info = SidecarInfo {
            identity: identity.clone(),
            service: workload.service.clone(),
            labels: workload.labels.clone(),
            connected_since: now,
            sent_version: None,
            acked_version: None,
            last_rejection: None,
        };
        let entry = Entry {
            info,
            namespace: namespace.to_string(),
            connection,
        };
        self.lock().insert(identity.clone(), entry);
        Registration {
            sidecars: self.clone(),
            identity,
            connection,
        }
    }

    /// Records an ACK or NACK; `false` if no such sidecar is connected.
    pub fn ack(&self, ack: &Ack) -> bool {
        let mut all = self.lock();
        let Some(entry) = all.get_mut(&format!("{}/{}", ack.namespace, ack.pod)) else {
            return false;
        };
        match ack.status {
            AckStatus::Ack => entry.info.acked_version = Some(ack.version),
            AckStatus::Nack => {
                entry.info.last_rejection = Some(Rejection {
                    version: ack.version,
                    error: ack
                        .error
                        .clone()
                        .unwrap_or_else(|| "(no error given)".into()),
                })
            }
        }
        true
    }

    /// Every connected sidecar, by identity.
    pub fn list(&self) -> Vec<SidecarInfo> {
        let mut list: Vec<SidecarInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        list.sort_by(|a, b| a.identity.cmp(&b.identity));
        list
    }

    /// Whether a connected sidecar has `service` (in `namespace`, if given).
    pub fn has_service(&self, service: &str, namespace: Option<&str>) -> bool {
        self.lock().values().any(|e| {
            e.info.service.as_deref() == Some(service)
                && namespace.is_none_or(|ns| e.namespace == ns)
        })
    }

    /// How many are connected.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

// === impl Registration ===

impl Registration {
    /// Records that `version` was sent on this stream.
    pub fn sent(&self, version: u64) {
        if let Some(e) = self.sidecars.lock().get_mut(&self.identity) {
            if e.connection == self.connection {
                e.info.sent_version = Some(version);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut all = self.sidecars.lock();
        if all
            .get(&self.identity)
            .is_some_and(|e| e.connection == self.connection)
        {
            all.remove(&self.identity);
        }
    }
}
