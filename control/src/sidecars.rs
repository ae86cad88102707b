//! Connected sidecars: who is watching, what they were sent, what they accepted.
//!
//! A sidecar is identified by `namespace/pod`. It is listed while any watch
//! stream under that identity is open. Each stream keeps its own entry, and the
//! newest one is what `/v1/sidecars` shows: a reconnect takes over at once, yet a
//! second stream claiming a connected pod's identity (a stale replica, a typo, a
//! misbehaving client) takes only its own entry away when it leaves, so the real
//! sidecar stays listed and its ACKs keep being recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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
    inner: Arc<Inner>,
}

/// Per identity, one entry per open stream, oldest first.
type Streams = HashMap<String, Vec<Entry>>;

#[derive(Debug, Default)]
struct Inner {
    streams: Mutex<Streams>,
    /// Numbers the streams: unique, so a leaving stream finds exactly its entry.
    next_connection: AtomicU64,
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
    fn lock(&self) -> MutexGuard<'_, Streams> {
        // A panic while holding this lock cannot leave an entry half-written.
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry each identity shows: its newest stream's.
    fn current(all: &Streams) -> impl Iterator<Item = &Entry> {
        all.values().filter_map(|streams| streams.last())
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
        let connection = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
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
        self.lock().entry(identity.clone()).or_default().push(entry);
        Registration {
            sidecars: self.clone(),
            identity,
            connection,
        }
    }

    /// Records an ACK or NACK; `false` if no such sidecar is connected.
    ///
    /// An ACK names the pod, not the stream, so it is recorded on every stream
    /// of that identity: whichever of them is left open shows it.
    pub fn ack(&self, ack: &Ack) -> bool {
        let mut all = self.lock();
        let Some(streams) = all.get_mut(&format!("{}/{}", ack.namespace, ack.pod)) else {
            return false;
        };
        for entry in streams.iter_mut() {
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
        }
        true
    }

    /// Every connected sidecar, by identity.
    pub fn list(&self) -> Vec<SidecarInfo> {
        let all = self.lock();
        let mut list: Vec<SidecarInfo> = Self::current(&all).map(|e| e.info.clone()).collect();
        list.sort_by(|a, b| a.identity.cmp(&b.identity));
        list
    }

    /// Whether a connected sidecar has `service` (in `namespace`, if given).
    pub fn has_service(&self, service: &str, namespace: Option<&str>) -> bool {
        Self::current(&self.lock()).any(|e| {
            e.info.service.as_deref() == Some(service)
                && namespace.is_none_or(|ns| e.namespace == ns)
        })
    }

    /// How many identities are connected.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

// === impl Registration ===

impl Registration {
    /// Records that `version` was sent on this stream.
    pub fn sent(&self, version: u64) {
        let mut all = self.sidecars.lock();
        let mut streams = all.get_mut(&self.identity).into_iter().flatten();
        if let Some(e) = streams.find(|e| e.connection == self.connection) {
            e.info.sent_version = Some(version);
        }
    }
}

impl Drop for Registration {
    /// Removes this stream's entry only; the identity goes with its last stream.
    fn drop(&mut self) {
        let mut all = self.sidecars.lock();
        if let Some(streams) = all.get_mut(&self.identity) {
            streams.retain(|e| e.connection != self.connection);
            if streams.is_empty() {
                all.remove(&self.identity);
            }
        }
    }
}
